//! `cargo xtask bench otlp`: `run_in_span` against a raw SDK span through the same
//! processor, and a log line inside a span against the same line outside one. The
//! exporters discard what they get, so the figures are piko-obs's and the SDK's own
//! costs, not the network's.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::{
    FutureExt as _, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use piko_obs_logger::{Hub, Level, attr};
use piko_obs_logger_drains::JsonOutput;
use piko_obs_otlp::{BoundedLogProcessor, BoundedSpanProcessor, OtelLogOutput, run_in_span};

#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

impl LogExporter for Discard {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn spans(c: &mut Criterion) {
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BoundedSpanProcessor::new(Discard, 1 << 16).expect("processor"))
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    piko_obs_otlp::use_tracer_provider(Some(&provider));
    let hub = Hub::default();
    let log = hub.get_logger("bench");
    let tracer = provider.tracer("bench");
    let mut g = c.benchmark_group("span");
    // The peer: what a user writes with the SDK alone to run the same async operation in
    // a span (start it, make it current while the future runs, end it), on the same
    // executor.
    g.bench_function("raw_sdk", |b| {
        b.iter(|| {
            let r = futures_executor::block_on(async {
                let cx = opentelemetry::Context::current().with_span(tracer.start("op"));
                let r = async {
                    black_box(&log);
                    Ok::<_, Infallible>(())
                }
                .with_context(cx.clone())
                .await;
                cx.span().end();
                r
            });
            black_box(r)
        })
    });
    g.bench_function("run_in_span", |b| {
        b.iter(|| {
            let r = futures_executor::block_on(run_in_span(&log, "op", vec![], |l| async move {
                black_box(&l);
                Ok::<_, Infallible>(())
            }));
            black_box(r)
        })
    });
    g.finish();
}

fn log_in_span(c: &mut Criterion) {
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BoundedSpanProcessor::new(Discard, 1 << 16).expect("processor"))
        .build();
    // The log-record processor the pipeline uses.
    let logs = SdkLoggerProvider::builder()
        .with_log_processor(BoundedLogProcessor::new(Discard, 1 << 16).expect("processor"))
        .build();
    let hub = Hub::default();
    hub.add_output(
        "json",
        Level::INFO,
        JsonOutput::writer(std::io::sink())
            .direct()
            .build()
            .expect("output"),
    )
    .expect("json");
    hub.add_output("otlp", Level::INFO, OtelLogOutput::new(&logs))
        .expect("otlp");
    let log = hub.get_logger("bench");
    let tracer = provider.tracer("bench");
    // Lines come in requests of 100: inside a span, each request is a fresh span (so the
    // span has room for its events, as a request's span does) and the lines go through
    // the span's logger, with its ids bound, as in `run_in_span`; outside, the same
    // lines through the plain logger. Only the lines are timed.
    let requests = |iters: u64, in_span: bool| {
        let mut spent = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let k = left.min(100);
            left -= k;
            let cx = opentelemetry::Context::current().with_span(tracer.start("request"));
            let logger = if in_span {
                let sc = cx.span().span_context().clone();
                log.with_span_ids(sc.trace_id().to_bytes(), sc.span_id().to_bytes())
            } else {
                log.clone()
            };
            let _in = in_span.then(|| cx.clone().attach());
            let t = Instant::now();
            for _ in 0..k {
                logger.info(
                    black_box("request handled"),
                    &[attr::int("status", black_box(200))],
                );
            }
            spent += t.elapsed();
            drop(_in);
            cx.span().end();
        }
        spent
    };
    let mut g = c.benchmark_group("log_line");
    g.bench_function("outside_span", |b| {
        b.iter_custom(|iters| requests(iters, false))
    });
    g.bench_function("inside_span", |b| {
        b.iter_custom(|iters| requests(iters, true))
    });
    g.finish();
}

/// A `tracing` span (what `#[instrument]` makes: created with a field, entered, exited,
/// closed) through piko-obs's layer and through tracing-opentelemetry's, both on the same
/// SDK provider and processor.
fn tracing_spans(c: &mut Criterion) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BoundedSpanProcessor::new(Discard, 1 << 16).expect("processor"))
        .build();
    piko_obs_otlp::use_tracer_provider(Some(&provider));
    // An output that takes INFO, as the OTLP output does when export is on: the layer
    // traces the spans whose logger takes their level.
    let hub = Hub::default();
    hub.add_output(
        "sink",
        Level::INFO,
        JsonOutput::writer(std::io::sink()).build().expect("output"),
    )
    .expect("output");
    let span = || {
        let s = tracing::info_span!("handle_checkout", order_id = black_box(7_u64));
        let _entered = s.enter();
        black_box(&s);
    };
    let mut g = c.benchmark_group("tracing_span");
    let piko = tracing_subscriber::registry().with(piko_obs_otlp::TracingLayer::new(hub.clone()));
    tracing::subscriber::with_default(piko, || {
        g.bench_function("piko_obs_layer", |b| b.iter(span));
    });
    let peer = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")));
    tracing::subscriber::with_default(peer, || {
        g.bench_function("tracing_opentelemetry", |b| b.iter(span));
    });
    g.finish();
    let _ = hub.shutdown(Duration::from_secs(5));
    let _ = provider.shutdown();
}

criterion_group!(benches, spans, log_in_span, tracing_spans);
criterion_main!(benches);
