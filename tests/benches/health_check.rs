//! Where the time of a `/ready` answer goes: one readiness check of five instant probes,
//! and its JSON encoding, measured on their own (`cargo bench --bench health_check`).
//! `cargo xtask bench health` measures the whole server with wrk.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use piko_obs::health::CheckKind;

fn check(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let health = piko_obs_tests::five_instant_probes();
    let mut g = c.benchmark_group("ready5");
    g.bench_function("check", |b| {
        b.iter(|| runtime.block_on(health.check(CheckKind::Readiness)))
    });
    let status = runtime.block_on(health.check(CheckKind::Readiness));
    g.bench_function("encode", |b| {
        b.iter(|| serde_json::to_vec(black_box(&status)).expect("encodes"))
    });
    g.bench_function("block_on_empty", |b| b.iter(|| runtime.block_on(async {})));
    g.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
