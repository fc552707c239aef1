//! `cargo xtask bench logger`: piko-obs's logger against slog-json, slog and
//! tracing-subscriber, all compiled into this one benchmark and run in the same process.
//!
//! Every scenario writes the same message and fields. The benchmark ids are
//! `<scenario>/<implementation>`; `cargo xtask bench` reads criterion's estimates and
//! writes the ratios to `docs/performance.md`.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

mod shared;

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{self, LineWriter};
use std::sync::Mutex;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use piko_obs_logger::{Hub, Level, attr};
use piko_obs_logger_drains::{JsonOutput, TimeZone};
use slog::Drain;

use shared::{
    ELAPSED, MSG, fields5, piko_line5 as log5_line, slog_line5, tracing_line5 as tracing_line,
};

fn devnull() -> File {
    OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null")
}

/// Our logger with one JSON output into `w`, queued (the default) or direct.
fn piko_json_with(
    w: impl io::Write + Send + 'static,
    level: Level,
    direct: bool,
) -> (Hub, piko_obs_logger::Logger) {
    let hub = Hub::default();
    let mut out = JsonOutput::writer(w).with_time_zone(TimeZone::Utc);
    if direct {
        out = out.direct();
    }
    let out = out.build().expect("writer thread");
    hub.add_output("bench", level, out).expect("output");
    let log = hub.get_logger("bench");
    (hub, log)
}

/// The same line at ERROR.
#[inline(always)]
fn error5_line(log: &piko_obs_logger::Logger) {
    log.error(black_box(MSG), &fields5())
}

/// The line of the `bound3_*` scenarios: two own fields on a logger with three bound.
#[inline(always)]
fn bound3_line(log: &piko_obs_logger::Logger) {
    log.info(
        black_box("cache miss"),
        &[
            attr::string("key", black_box("user:42")),
            attr::int("attempt", black_box(2)),
        ],
    )
}

fn with_bound3(log: &piko_obs_logger::Logger) -> piko_obs_logger::Logger {
    log.with(&[
        attr::string("service", "checkout"),
        attr::string("region", "eu-west-1"),
        attr::int("instance", 7),
    ])
}

fn piko_json(w: impl io::Write + Send + 'static, level: Level) -> (Hub, piko_obs_logger::Logger) {
    piko_json_with(w, level, false)
}

/// Raw slog with slog-json into `w`, the same default keys (time, level, msg).
fn slog_json<W: io::Write + Send + 'static>(w: W, level: slog::Level) -> slog::Logger {
    let json = slog_json::Json::new(w)
        .add_default_keys()
        .set_newlines(true)
        .build();
    let drain = Mutex::new(json).map(slog::Fuse);
    slog::Logger::root(slog::LevelFilter::new(drain, level).fuse(), slog::o!())
}

fn log5(c: &mut Criterion) {
    let mut g = c.benchmark_group("json5_sink");
    let (hub, log) = piko_json(io::sink(), Level::INFO);
    g.bench_function("piko_obs", |b| b.iter(|| log5_line(&log)));
    let _ = hub.shutdown(Duration::from_secs(5));
    let (hub, log) = piko_json_with(io::sink(), Level::INFO, true);
    g.bench_function("piko_obs_direct", |b| b.iter(|| log5_line(&log)));
    let _ = hub.shutdown(Duration::from_secs(5));
    {
        use piko_obs_logger_drains::{Format, JsonFormat};
        let f = JsonFormat::new(TimeZone::Utc);
        let secrets = piko_obs_logger::SecretKeys::default();
        let src = piko_obs_logger::Source {
            file: file!(),
            line: line!(),
            module: None,
        };
        let mut buf = Vec::with_capacity(512);
        g.bench_function("piko_format_only", |b| {
            b.iter(|| {
                let attrs = fields5();
                let r = piko_obs_logger::Record::new(
                    Level::INFO,
                    black_box(MSG),
                    "bench",
                    &src,
                    &attrs,
                    &secrets,
                );
                buf.clear();
                f.format(&r, &mut buf);
                black_box(&buf);
            })
        });
    }
    let slog = slog_json(io::sink(), slog::Level::Info);
    g.bench_function("slog_json", |b| b.iter(|| slog_line5(&slog)));
    let same = slog_json(io::sink(), slog::Level::Info).new(slog::o!("logger" => "bench"));
    g.bench_function("slog_json_same_content", |b| {
        b.iter(|| {
            slog::info!(same, "{}", black_box(MSG);
                "source_file" => file!(), "source_line" => line!(),
                "path" => black_box("/api/v1/users"), "status" => black_box(200),
                "latency_ms" => black_box(12.5), "cached" => black_box(true),
                "elapsed" => ?black_box(ELAPSED))
        })
    });
    // `tracing` events through piko-obs's bridge into the same kind of output.
    let (hub, _log) = piko_json(io::sink(), Level::INFO);
    let bridge = piko_obs_logger::TracingBridge::new(hub.clone());
    tracing::subscriber::with_default(bridge, || {
        g.bench_function("piko_obs_via_tracing", |b| b.iter(tracing_line));
    });
    let _ = hub.shutdown(Duration::from_secs(5));
    // The same events through the `tracing_subscriber::Layer` in a registry, as a
    // `tracing` service composes it.
    let (hub, _log) = piko_json(io::sink(), Level::INFO);
    let layered = {
        use tracing_subscriber::layer::SubscriberExt as _;
        tracing_subscriber::registry().with(piko_obs_otlp::TracingLayer::new(hub.clone()))
    };
    tracing::subscriber::with_default(layered, || {
        g.bench_function("piko_obs_via_tracing_layer", |b| b.iter(tracing_line));
    });
    let _ = hub.shutdown(Duration::from_secs(5));
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        g.bench_function("tracing_json", |b| b.iter(tracing_line));
    });
    g.finish();

    let mut g = c.benchmark_group("json5_devnull");
    let (hub, log) = piko_json(devnull(), Level::INFO);
    g.bench_function("piko_obs", |b| b.iter(|| log5_line(&log)));
    let _ = hub.shutdown(Duration::from_secs(5));
    let slog = slog_json(LineWriter::new(devnull()), slog::Level::Info);
    g.bench_function("slog_json_linewriter", |b| b.iter(|| slog_line5(&slog)));
    g.finish();
}

fn bound3(c: &mut Criterion) {
    let mut g = c.benchmark_group("bound3_own2_sink");
    let (hub, log) = piko_json(io::sink(), Level::INFO);
    let log = with_bound3(&log);
    g.bench_function("piko_obs", |b| b.iter(|| bound3_line(&log)));
    let _ = hub.shutdown(Duration::from_secs(5));
    let (hub, log) = piko_json_with(io::sink(), Level::INFO, true);
    let log = with_bound3(&log);
    g.bench_function("piko_obs_direct", |b| b.iter(|| bound3_line(&log)));
    let _ = hub.shutdown(Duration::from_secs(5));
    let slog = slog_json(io::sink(), slog::Level::Info).new(slog::o!(
        "service" => "checkout", "region" => "eu-west-1", "instance" => 7));
    g.bench_function("slog_json", |b| {
        b.iter(|| {
            slog::info!(slog, "{}", black_box("cache miss");
                "key" => black_box("user:42"), "attempt" => black_box(2))
        })
    });
    let same = slog_json(io::sink(), slog::Level::Info).new(slog::o!(
        "logger" => "bench", "service" => "checkout", "region" => "eu-west-1", "instance" => 7));
    g.bench_function("slog_json_same_content", |b| {
        b.iter(|| {
            slog::info!(same, "{}", black_box("cache miss");
                "source_file" => file!(), "source_line" => line!(),
                "key" => black_box("user:42"), "attempt" => black_box(2))
        })
    });
    g.finish();
}

/// The five attributes of the disabled-level rows, built where the macro is used (the
/// cost measured is their construction at the call).
macro_rules! disabled_attrs {
    () => {
        [
            attr::string("path", black_box("/api/v1/users")),
            attr::int("status", black_box(200)),
            attr::float("latency_ms", black_box(12.5)),
            attr::bool("cached", black_box(true)),
            attr::duration("elapsed", black_box(ELAPSED)),
        ]
    };
}

fn disabled(c: &mut Criterion) {
    let mut g = c.benchmark_group("disabled_debug5");
    let (hub, log) = piko_json(io::sink(), Level::INFO);
    g.bench_function("piko_obs_method", |b| {
        b.iter(|| log.debug(black_box(MSG), &disabled_attrs!()))
    });
    g.bench_function("piko_obs_macro", |b| {
        b.iter(|| {
            piko_obs_logger::debug!(
                log,
                black_box(MSG),
                attr::string("path", black_box("/api/v1/users")),
                attr::int("status", black_box(200)),
                attr::float("latency_ms", black_box(12.5)),
                attr::bool("cached", black_box(true)),
                attr::duration("elapsed", black_box(ELAPSED))
            )
        })
    });
    let _ = hub.shutdown(Duration::from_secs(5));
    // The floor of any method taking `(&str, &[Attr])`: its caller's arguments, built and
    // handed over, with no logger at all.
    g.bench_function("arguments_only", |b| {
        b.iter(|| {
            let _ = black_box::<(&str, &[attr::Attr<'_>])>((black_box(MSG), &disabled_attrs!()));
        })
    });
    let slog = slog_json(io::sink(), slog::Level::Info);
    g.bench_function("slog_levelfilter", |b| {
        b.iter(|| {
            slog::debug!(slog, "{}", black_box(MSG);
                "path" => black_box("/api/v1/users"), "status" => black_box(200),
                "latency_ms" => black_box(12.5), "cached" => black_box(true),
                "elapsed" => ?black_box(ELAPSED))
        })
    });
    g.finish();
}

/// An ERROR line against an INFO line with the same fields, the hub's defaults.
fn error5(c: &mut Criterion) {
    let mut g = c.benchmark_group("error5_sink");
    let (hub, log) = piko_json(io::sink(), Level::INFO);
    g.bench_function("piko_obs_info", |b| b.iter(|| log5_line(&log)));
    g.bench_function("piko_obs_error", |b| b.iter(|| error5_line(&log)));
    let _ = hub.shutdown(Duration::from_secs(5));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = log5, bound3, disabled, error5 }
criterion_main!(benches);
