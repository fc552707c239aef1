//! `cargo xtask bench metrics`: piko-obs's recorder (the Prometheus exporter behind the
//! series guard) against the exporter's own recorder, in one process.
//!
//! - `counter_handle/*`: incrementing a counter handle registered once;
//! - `counter_macro/*`: `metrics::counter!` with two labels on every call (a registry
//!   lookup each time, plus the guard's check for piko-obs);
//! - `render_10k/*`: rendering 10,000 series (piko-obs also refreshes its process
//!   metrics, as its `/metrics` does).

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use metrics::Recorder;
use metrics_exporter_prometheus::PrometheusBuilder;
use piko_obs::metrics::MetricsBuilder;

const META: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);

fn counter_handle(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter_handle");
    let key = metrics::Key::from_static_name("jobs_done_total");
    let exporter = PrometheusBuilder::new().build_recorder();
    let handle = exporter.register_counter(&key, &META);
    g.bench_function("metrics_exporter", |b| {
        b.iter(|| handle.increment(black_box(1)))
    });
    let (piko, _metrics) = MetricsBuilder::new()
        .with_process_metrics(false)
        .build()
        .expect("recorder");
    let handle = piko.register_counter(&key, &META);
    g.bench_function("piko_obs", |b| b.iter(|| handle.increment(black_box(1))));
    g.finish();
}

fn count_with_macro() {
    metrics::counter!("jobs_done_total", "queue" => "emails", "outcome" => "ok")
        .increment(black_box(1));
}

fn counter_macro(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter_macro");
    let exporter = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&exporter, || {
        g.bench_function("metrics_exporter", |b| b.iter(count_with_macro));
    });
    let (piko, _metrics) = MetricsBuilder::new()
        .with_process_metrics(false)
        .build()
        .expect("recorder");
    metrics::with_local_recorder(&piko, || {
        g.bench_function("piko_obs", |b| b.iter(count_with_macro));
    });
    g.finish();
}

/// 10,000 series: 50 metrics (counters and gauges) with 200 label values each.
fn fill(recorder: &dyn Recorder) {
    for m in 0..50 {
        for v in 0..200 {
            let key = metrics::Key::from_parts(
                format!("bench_metric_{m}"),
                vec![metrics::Label::new("tenant", format!("t{v}"))],
            );
            if m % 2 == 0 {
                recorder.register_counter(&key, &META).increment(v);
            } else {
                recorder.register_gauge(&key, &META).set(v as f64);
            }
        }
    }
}

fn render_10k(c: &mut Criterion) {
    let mut g = c.benchmark_group("render_10k");
    g.sample_size(30);
    let exporter = PrometheusBuilder::new().build_recorder();
    fill(&exporter);
    let handle = exporter.handle();
    assert!(handle.render().lines().count() >= 10_000);
    g.bench_function("metrics_exporter", |b| {
        b.iter(|| black_box(handle.render()))
    });
    let (piko, metrics) = MetricsBuilder::new()
        .with_cardinality_limit(200)
        .expect("limit")
        .build()
        .expect("recorder");
    fill(&piko);
    // The process metrics record into the recorder in scope, as the installed one is
    // for `/metrics`.
    metrics::with_local_recorder(&piko, || {
        let text = metrics.render();
        assert!(text.lines().count() >= 10_000);
        assert!(text.contains("process_resident_memory_bytes"));
        assert!(!text.contains("piko_obs_metrics_series_refused_total"));
        g.bench_function("piko_obs", |b| b.iter(|| black_box(metrics.render())));
    });
    g.finish();
}

criterion_group!(benches, counter_handle, counter_macro, render_10k);
criterion_main!(benches);
