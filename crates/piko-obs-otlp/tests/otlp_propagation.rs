//! W3C trace context and baggage across real HTTP on loopback: a reqwest call made
//! with `traced_with` carries `traceparent`, `tracestate` and `baggage`; a warp server
//! reads all three with `warp_trace_context()` and runs its handler in a span of the
//! caller's trace with `run_in_span_from`.

use std::time::Duration;

use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use piko_obs_logger::Hub;
use warp::Filter as _;

#[test]
fn trace_context_and_baggage_cross_a_real_request_both_ways() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
            Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
        ]),
    );
    opentelemetry::global::set_tracer_provider(
        opentelemetry_sdk::trace::SdkTracerProvider::builder().build(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hub = Hub::default();
    let log = hub.get_logger("server");
    // The server: what it read, and the span its handler ran in.
    let route = warp::path("stock")
        .and(piko_obs_otlp::warp_trace_context())
        .then(move |parent: Context| {
            let log = log.clone();
            async move {
                let read = format!(
                    "{} {} {} {}",
                    parent.span().span_context().trace_id(),
                    parent.span().span_context().span_id(),
                    parent.span().span_context().trace_state().header(),
                    parent
                        .baggage()
                        .get("tenant")
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                );
                let inside = piko_obs_otlp::run_in_span_from(
                    &parent,
                    &log,
                    "GET /stock",
                    vec![],
                    |_| async {
                        let sc = Context::current().span().span_context().clone();
                        Ok::<_, std::io::Error>(format!("{} {}", sc.trace_id(), sc.span_id()))
                    },
                )
                .await
                .unwrap();
                format!("{read} | {inside}")
            }
        });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(warp::serve(route).incoming(listener).run());

    // The caller: a remote parent with a trace state, and baggage.
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let state = TraceState::from_key_value([("vendor", "abc")]).unwrap();
    let parent = SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, true, state);
    let cx = Context::current()
        .with_remote_span_context(parent)
        .with_baggage([KeyValue::new("tenant", "acme")]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let answer = rt.block_on(async {
        piko_obs_otlp::traced_with(&cx, client.get(format!("http://{addr}/stock")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let (read, inside) = answer.split_once(" | ").expect(&answer);
    assert_eq!(
        read, "4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7 vendor=abc acme",
        "traceparent, tracestate and baggage all arrived and were read"
    );
    let (inner_trace, inner_span) = inside.split_once(' ').unwrap();
    assert_eq!(
        inner_trace, "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's trace"
    );
    assert_ne!(inner_span, "00f067aa0ba902b7", "a span of its own");
}
