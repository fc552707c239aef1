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
    // Set up as the facade sets it up: defaults to fill into each notification.
    let service = NotificationService::builder()
        .with_source("checkout")
        .with_service("checkout")
        .with_environment("production")
        .build();
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
    let mut ours: Vec<Call> = Vec::with_capacity(10_000);
    let mut peer: Vec<Call> = Vec::with_capacity(10_000);
    // Each call is timed alone (the notification is cloned before), and the thread's
    // context switches are read around it: a voluntary one means the call slept (a
    // wait: a lock, here or in the allocator), an involuntary one that the machine
    // took the core away in its middle.
    let timed = |out: &mut Vec<Call>, call: &mut dyn FnMut()| {
        let before = switches();
        let t = Instant::now();
        call();
        let ns = t.elapsed().as_nanos() as u64;
        let after = switches();
        out.push(Call {
            ns,
            slept: after.0 > before.0,
            preempted: after.1 > before.1,
        });
    };
    for i in 0..10_000 {
        let mut a = Some(n.clone());
        let mut b = Some(n.clone());
        let mut enqueue = || {
            if let Some(n) = a.take() {
                black_box(service.enqueue(n).ok());
            }
        };
        let mut try_send = || {
            if let Some(n) = b.take() {
                black_box(tx.try_send(n).is_ok());
            }
        };
        if i % 2 == 0 {
            timed(&mut ours, &mut enqueue);
            timed(&mut peer, &mut try_send);
        } else {
            timed(&mut peer, &mut try_send);
            timed(&mut ours, &mut enqueue);
        }
    }
    let stats = dispatcher.stats();
    let report = runtime.block_on(dispatcher.shutdown(Duration::from_secs(10)));
    let summary = |calls: &[Call], name: &str| {
        let mut lat: Vec<u64> = calls.iter().map(|c| c.ns).collect();
        lat.sort_unstable();
        let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        let undisturbed = calls
            .iter()
            .filter(|c| !c.slept && !c.preempted)
            .map(|c| c.ns)
            .max()
            .unwrap_or(0);
        format!(
            "\"{name}p50_ns\":{},\"{name}p99_ns\":{},\"{name}p999_ns\":{},\"{name}max_ns\":{},\"{name}over_1ms\":{},\"{name}slept\":{},\"{name}preempted\":{},\"{name}max_undisturbed_ns\":{undisturbed}",
            at(0.5),
            at(0.99),
            at(0.999),
            lat[lat.len() - 1],
            lat.iter().filter(|&&l| l > 1_000_000).count(),
            calls.iter().filter(|c| c.slept).count(),
            calls.iter().filter(|c| c.preempted).count(),
        )
    };
    let json = format!(
        "{{\"calls\":{},{},{},\"queued\":{},\"dead_lettered\":{},\"dropped\":{}}}\n",
        ours.len(),
        summary(&ours, ""),
        summary(&peer, "peer_"),
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
/// One timed call: its latency, and whether the thread slept or was preempted in it.
struct Call {
    ns: u64,
    slept: bool,
    preempted: bool,
}

/// This thread's voluntary and involuntary context switches so far.
fn switches() -> (i64, i64) {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_THREAD).map_or((0, 0), |u| {
        (
            u.voluntary_context_switches(),
            u.involuntary_context_switches(),
        )
    })
}

criterion_group!(benches, enqueue);
criterion_main!(benches);
