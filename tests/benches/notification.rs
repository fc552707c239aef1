//! `cargo xtask bench notification`: the cost of `enqueue`, against a bare bounded
//! tokio channel taking the same notification, both drained by consumers; and the
//! caller's latency while every provider is down.
//!
//! Each timed stretch is 5,000 calls, after which the bench waits (untimed) for the
//! queue to drain, so the numbers are for a queue with room, not for overload. The
//! latency while every provider is down is written to
//! `target/criterion/notification_down.json` for the report, with the number of times
//! the calling thread slept (a wait inside `enqueue`) and was preempted meanwhile.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use piko_obs::notification::{
    Dispatcher, DispatcherConfig, FileDeadLetterStore, HttpClient, NoopNotifier, Notification,
    NotificationService, WebhookNotifier,
};

const STRETCH: u64 = 5_000;

fn sample() -> Notification {
    let mut n = Notification::new("Payment failed", "card declined for order 1234");
    n.content.fields.insert("order", "1234");
    n.content.fields.insert("amount", "19.99");
    n
}

fn wait_until(done: &impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done() && Instant::now() < end {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Times `iters` calls of `call` in stretches of [`STRETCH`], waiting (untimed) for
/// `drained` after each.
fn stretches(iters: u64, mut call: impl FnMut(), drained: impl Fn() -> bool) -> Duration {
    let mut spent = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let k = left.min(STRETCH);
        let t = Instant::now();
        for _ in 0..k {
            call();
        }
        spent += t.elapsed();
        left -= k;
        wait_until(&drained);
    }
    spent
}

fn enqueue(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let service = NotificationService::default();
    service.register("noop", NoopNotifier).expect("provider");
    let store = Arc::new(FileDeadLetterStore::open(dir.path().join("d.jsonl")).expect("store"));
    let config = DispatcherConfig::default().with_queue_capacity(STRETCH as usize * 2);
    let dispatcher =
        Dispatcher::start(runtime.handle(), &service, store, config).expect("dispatcher");
    service
        .attach_dispatcher(dispatcher.clone())
        .expect("attach");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Notification>(STRETCH as usize * 2);
    runtime.spawn(async move { while rx.recv().await.is_some() {} });
    let n = sample();
    let mut g = c.benchmark_group("enqueue");
    g.bench_function("piko_obs", |b| {
        b.iter_custom(|iters| {
            stretches(
                iters,
                || {
                    black_box(service.enqueue(black_box(n.clone())).ok());
                },
                || dispatcher.stats().queued == 0,
            )
        })
    });
    g.bench_function("tokio_mpsc", |b| {
        b.iter_custom(|iters| {
            stretches(
                iters,
                || {
                    black_box(tx.try_send(black_box(n.clone())).is_ok());
                },
                || tx.capacity() == tx.max_capacity(),
            )
        })
    });
    g.finish();
    let stats = dispatcher.stats();
    assert_eq!(stats.dropped + stats.dead_lettered, 0, "{stats:?}");
    runtime.block_on(dispatcher.shutdown(Duration::from_secs(30)));
    all_down(&runtime);
}

/// 10,000 `enqueue` calls while the only provider refuses connections: the queue
/// fills, retries wait, and the overflow goes to the dead-letter writer. Records each
/// call's latency, and that of a bare `try_send` timed alongside.
fn all_down(runtime: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("temp dir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let url = format!("http://{}/hook", closed.local_addr().expect("addr"));
    drop(closed);
    let service = NotificationService::default();
    let hook = WebhookNotifier::new(&HttpClient::new().expect("client"), &url).expect("webhook");
    service.register("down", hook).expect("provider");
    let store = Arc::new(FileDeadLetterStore::open(dir.path().join("d.jsonl")).expect("store"));
    let dispatcher = Dispatcher::start(
        runtime.handle(),
        &service,
        store,
        DispatcherConfig::default(),
    )
    .expect("dispatcher");
    service
        .attach_dispatcher(dispatcher.clone())
        .expect("attach");
    // The peer, timed in the same loop (the two calls alternate which goes first): a
    // bare bounded tokio channel as large as the dispatcher's queue, drained by a task
    // that drops what it gets. It shares the machine's scheduler and the allocator's
    // locks with `enqueue`, so its tail is what the machine adds to any call.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Notification>(1_000);
    runtime.spawn(async move { while rx.recv().await.is_some() {} });
    let n = sample();
    let mut ours: Vec<u64> = Vec::with_capacity(10_000);
    let mut peer: Vec<u64> = Vec::with_capacity(10_000);
    let switches_before = context_switches();
    for i in 0..10_000 {
        let mut enqueue = || {
            let t = Instant::now();
            black_box(service.enqueue(n.clone()).ok());
            ours.push(t.elapsed().as_nanos() as u64);
        };
        let mut try_send = || {
            let t = Instant::now();
            black_box(tx.try_send(n.clone()).is_ok());
            peer.push(t.elapsed().as_nanos() as u64);
        };
        if i % 2 == 0 {
            enqueue();
            try_send();
        } else {
            try_send();
            enqueue();
        }
    }
    let switches_after = context_switches();
    // The loop does nothing else that can sleep: a voluntary switch is a wait inside a
    // call (for a lock, say); an involuntary one is the scheduler taking the core away.
    let (slept, preempted) = match (switches_before, switches_after) {
        (Some(b), Some(a)) => ((a.0 - b.0).to_string(), (a.1 - b.1).to_string()),
        _ => ("null".into(), "null".into()),
    };
    let stats = dispatcher.stats();
    let report = runtime.block_on(dispatcher.shutdown(Duration::from_secs(10)));
    let summary = |lat: &mut Vec<u64>, name: &str| {
        lat.sort_unstable();
        let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        format!(
            "\"{name}p50_ns\":{},\"{name}p99_ns\":{},\"{name}p999_ns\":{},\"{name}max_ns\":{},\"{name}over_1ms\":{}",
            at(0.5),
            at(0.99),
            at(0.999),
            lat[lat.len() - 1],
            lat.iter().filter(|&&l| l > 1_000_000).count()
        )
    };
    let json = format!(
        "{{\"calls\":{},{},{},\"queued\":{},\"dead_lettered\":{},\"dropped\":{},\"caller_slept\":{slept},\"caller_preempted\":{preempted}}}\n",
        ours.len(),
        summary(&mut ours, ""),
        summary(&mut peer, "peer_"),
        stats.enqueued,
        report.stats.dead_lettered,
        report.stats.dropped
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/criterion/notification_down.json");
    let _ = std::fs::create_dir_all(path.parent().expect("parent"));
    std::fs::write(&path, &json).expect("write the latency report");
    eprint!("notification_down: {json}");
}

/// This thread's voluntary and involuntary context switches so far (Linux), from
/// `/proc/thread-self/status`.
fn context_switches() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        get("voluntary_ctxt_switches:")?,
        get("nonvoluntary_ctxt_switches:")?,
    ))
}

criterion_group!(benches, enqueue);
criterion_main!(benches);
