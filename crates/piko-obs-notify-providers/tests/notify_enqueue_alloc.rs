//! `enqueue` allocates nothing on the caller's thread, with the queue full (the
//! notification goes to the dead-letter writer) and with room (it is queued): an
//! allocation there would take the allocator's lock, which the threads freeing what
//! the dispatcher handled also take, and the caller could sleep on it. The service's
//! defaults (source, environment, service) and the provider list are still filled in,
//! later, by the worker or the writer. Allocations are counted per thread by
//! `allocation-counter`, which installs a counting global allocator in this test
//! binary.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use piko_obs_notify::{
    DeadLetterStore as _, Dispatcher, DispatcherConfig, Enqueued, Notification,
    NotificationService, Notifier, SendError,
};
use piko_obs_notify_providers::FileDeadLetterStore;
use tokio::sync::Semaphore;

/// Holds every send until the test opens the gate; records what it was sent.
struct Gate {
    open: Arc<Semaphore>,
    got: Arc<Mutex<Vec<Notification>>>,
}

impl Notifier for Gate {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let _permit = self.open.acquire().await;
        self.got.lock().unwrap().push(n.clone());
        Ok(())
    }
}

fn notifications(k: usize, providers: &[&str]) -> Vec<Notification> {
    (0..k)
        .map(|i| {
            let mut n = Notification::new("disk almost full", format!("db-{i}"));
            n.content.fields.insert("host", "db-1");
            n.providers = providers.iter().map(|p| p.to_string()).collect();
            n
        })
        .collect()
}

/// Waits (bounded) for `done`.
async fn until(done: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < end, "not reached in 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_allocates_nothing_on_the_callers_thread() {
    let dir = tempfile::tempdir().unwrap();
    let open = Arc::new(Semaphore::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let service = NotificationService::builder()
        .with_source("checkout")
        .with_environment("staging")
        .with_service("checkout-api")
        .build();
    service
        .register(
            "gate",
            Gate {
                open: open.clone(),
                got: got.clone(),
            },
        )
        .unwrap();
    service
        .register(
            "other",
            Gate {
                open: open.clone(),
                got: got.clone(),
            },
        )
        .unwrap();
    let store = Arc::new(FileDeadLetterStore::open(dir.path().join("d.jsonl")).unwrap());
    let config = DispatcherConfig::default()
        .with_queue_capacity(64)
        .with_workers(1)
        .with_dead_letter_queue(4096);
    let d = Dispatcher::start(
        &tokio::runtime::Handle::current(),
        &service,
        store.clone(),
        config,
    )
    .unwrap();
    service.attach_dispatcher(d.clone()).unwrap();

    // With room: 32 to the default provider, 32 naming theirs. The worker takes the
    // first and waits at the gate.
    let mut room = notifications(32, &[]);
    room.extend(notifications(32, &["other", "gate", "other"]));
    let queued = allocation_counter::measure(|| {
        for n in room.drain(..) {
            assert_eq!(service.enqueue(n), Ok(Enqueued::Queued));
        }
    });
    until(|| d.stats().in_flight == 1).await;
    // The 65th fills the queue again; the rest go to the writer.
    let mut full = notifications(1, &[]);
    for n in full.drain(..) {
        assert_eq!(service.enqueue(n), Ok(Enqueued::Queued));
    }
    let mut over = notifications(1000, &[]);
    over.extend(notifications(1000, &["gate", "other", "gate"]));
    let overflow = allocation_counter::measure(|| {
        for n in over.drain(..) {
            assert_eq!(service.enqueue(n), Ok(Enqueued::DeadLettered));
        }
    });
    // The counter is live on this thread: a notification made here is counted.
    let live = allocation_counter::measure(|| {
        std::hint::black_box(notifications(1, &[]));
    });
    assert!(live.count_total > 0, "{live:?}");
    assert_eq!(
        overflow.count_total, 0,
        "enqueue to the dead-letter writer allocated: {overflow:?}"
    );
    // tokio's channel grows by blocks of 32 slots the first time through; that is the
    // only allocation the queued path may make.
    assert!(
        queued.count_total <= 2,
        "enqueue into the queue allocated more than the channel's blocks: {queued:?}"
    );

    // What the writer and the worker made of them: the service's defaults and the
    // providers, each once, in order.
    until(|| d.stats().dead_lettered == 2000).await;
    let entries = store.take_all().unwrap().entries;
    assert_eq!(entries.len(), 2000);
    for e in &entries {
        let c = &e.notification.context;
        assert_eq!(
            (
                c.source.as_str(),
                c.environment.as_str(),
                c.service.as_str()
            ),
            ("checkout", "staging", "checkout-api")
        );
        assert!(c.timestamp > std::time::SystemTime::UNIX_EPOCH);
        assert!(
            e.last_error.contains("dispatcher queue full"),
            "{}",
            e.last_error
        );
    }
    let default = entries.iter().filter(|e| e.providers == ["gate"]).count();
    let named = entries
        .iter()
        .filter(|e| e.providers == ["gate", "other"])
        .count();
    assert_eq!((default, named), (1000, 1000));

    open.add_permits(1_000_000);
    until(|| d.stats().delivered == 65).await;
    let got = std::mem::take(&mut *got.lock().unwrap());
    // 33 to the default provider, 32 twice (to "other" and "gate").
    assert_eq!(got.len(), 33 + 64);
    for n in got.iter() {
        assert_eq!(n.context.service, "checkout-api");
        assert_eq!(n.context.environment, "staging");
    }
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.within_bound, "{report:?}");
    assert_eq!(report.stats.dropped, 0);
}
