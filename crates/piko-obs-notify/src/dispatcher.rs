//! The dispatcher: a bounded queue, workers, retries with backoff, and a dead-letter
//! store, so that every notification handed to it is delivered or on disk.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::model::Notification;
use crate::service::{NotificationService, Registry};

/// One notification that could not be delivered, as kept by a [`DeadLetterStore`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// A unique id.
    pub id: String,
    /// The notification.
    pub notification: Notification,
    /// The providers that did not take it.
    pub providers: Vec<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The first attempt (or when it was handed over, if never attempted).
    #[serde(with = "crate::model::rfc3339")]
    pub first_attempt: SystemTime,
    /// The last attempt.
    #[serde(with = "crate::model::rfc3339")]
    pub last_attempt: SystemTime,
    /// The last error of each provider.
    pub last_error: String,
}

impl DeadLetter {
    /// An entry for `notification`, failed at `providers`.
    pub fn new(
        notification: Notification,
        providers: Vec<String>,
        attempts: u32,
        first_attempt: SystemTime,
        last_error: String,
    ) -> DeadLetter {
        DeadLetter {
            id: unique_id(),
            notification,
            providers,
            attempts,
            first_attempt,
            last_attempt: SystemTime::now(),
            last_error,
        }
    }
}

/// An id unique in this process and, with the time and process id in it, across
/// restarts: for dead letters and for webhook message ids.
pub fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An entry the store could not take: printed whole, so it is at least in the logs.
fn report_unwritten(e: &io::Error, entry: &DeadLetter) {
    eprintln!(
        "piko-obs: notify.dead_letter.write_failed: {e}; entry: {}",
        serde_json::to_string(entry).unwrap_or_default()
    );
}

/// What a dead-letter store read back for a replay.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DeadLetterBatch {
    /// The entries.
    pub entries: Vec<DeadLetter>,
    /// Lines that could not be read (truncated or corrupt), skipped.
    pub skipped: usize,
}

/// Where undeliverable notifications go: the port a durable store implements (the
/// providers crate has a JSON-lines file with fsync).
///
/// Contract: `append` returns only once the entry is durable; it is called from one
/// thread at a time, a blocking one, never from the async workers. `take_all` returns
/// every entry and removes them from the store, for a replay; unreadable entries are
/// counted and skipped, not fatal.
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Keeps one entry durably.
    fn append(&self, entry: &DeadLetter) -> io::Result<()>;
    /// Keeps several entries durably; the default appends them one by one. A store
    /// that syncs should write them all, then sync once (group commit).
    fn append_all(&self, entries: &[DeadLetter]) -> io::Result<()> {
        entries.iter().try_for_each(|e| self.append(e))
    }
    /// Reads and removes every entry.
    fn take_all(&self) -> io::Result<DeadLetterBatch>;
}

/// What `enqueue` did with a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued for delivery.
    Queued,
    /// The queue was full, or the dispatcher is shut down: written to the
    /// dead-letter store instead (replay it later).
    DeadLettered,
}

/// `enqueue` could not take a notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// It has neither title nor message.
    #[error("notification must have a title or a message")]
    Empty,
    /// No dispatcher is attached to the service.
    #[error("no dispatcher is attached to this notification service")]
    NoDispatcher,
    /// The queue was full and the dead-letter writer's queue too: counted as dropped.
    #[error("notification dropped: the dispatcher queue and the dead-letter writer are both full")]
    Dropped,
}

/// How the dispatcher runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DispatcherConfig {
    /// Notifications waiting for a worker (default 1000).
    pub queue_capacity: usize,
    /// Concurrent deliveries (default 4).
    pub workers: usize,
    /// Notifications waiting for a retry at once (default 10,000); more are
    /// dead-lettered at once.
    pub max_pending_retries: usize,
    /// Entries waiting for the dead-letter writer (default 10,000), which writes them
    /// in groups with one sync each.
    pub dead_letter_queue: usize,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            queue_capacity: 1000,
            workers: 4,
            max_pending_retries: 10_000,
            dead_letter_queue: 10_000,
        }
    }
}

impl DispatcherConfig {
    /// The queue's capacity (at least 1).
    pub fn with_queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }
    /// The number of workers (at least 1).
    pub fn with_workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }
    /// The cap on notifications waiting for a retry.
    pub fn with_max_pending_retries(mut self, n: usize) -> Self {
        self.max_pending_retries = n;
        self
    }
}

/// Counters of a dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DispatcherStats {
    /// Handed to `enqueue` and accepted into the queue.
    pub enqueued: u64,
    /// Waiting in the queue now.
    pub queued: u64,
    /// Being delivered now.
    pub in_flight: u64,
    /// Waiting for a retry now.
    pub waiting_retry: u64,
    /// Delivered to every provider they were for.
    pub delivered: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Written to the dead-letter store.
    pub dead_lettered: u64,
    /// Entries the dead-letter store failed to write (printed to stderr instead).
    pub dead_letter_errors: u64,
    /// Dropped: queue and dead-letter writer both full.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    enqueued: AtomicU64,
    in_flight: AtomicU64,
    waiting_retry: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    dead_letter_errors: AtomicU64,
    dropped: AtomicU64,
}

/// A notification on its way: the providers still to reach, attempts so far.
struct Job {
    id: u64,
    n: Notification,
    pending: Vec<String>,
    attempts: u32,
    first_attempt: Option<SystemTime>,
    last_error: HashMap<String, String>,
}

impl Job {
    fn into_dead_letter(self, why: Option<&str>) -> DeadLetter {
        let mut errors: Vec<String> = self
            .pending
            .iter()
            .map(|p| match self.last_error.get(p) {
                Some(e) => format!("{p}: {e}"),
                None => format!("{p}: {}", why.unwrap_or("not attempted")),
            })
            .collect();
        if let Some(why) = why
            && self.attempts > 0
        {
            errors.push(why.to_string());
        }
        let first = self.first_attempt.unwrap_or_else(SystemTime::now);
        DeadLetter::new(
            self.n,
            self.pending,
            self.attempts,
            first,
            errors.join("; "),
        )
    }
}

struct Inner {
    registry: Arc<Registry>,
    retry: crate::policy::RetryPolicy,
    config: DispatcherConfig,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    dead: Mutex<Option<std::sync::mpsc::SyncSender<DeadLetter>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    in_flight: Mutex<HashMap<u64, Job>>,
    next_id: AtomicU64,
    closing: AtomicBool,
    /// Set when shutdown starts: how long the shutdown path may wait for room at the
    /// dead-letter writer.
    deadline: Mutex<Option<Instant>>,
    stop_retries: Notify,
    counters: Counters,
    store: Arc<dyn DeadLetterStore>,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    retry_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Delivers queued notifications in the background. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The counters once it finished.
    pub stats: DispatcherStats,
    /// Whether everything finished within the bound (otherwise what was left was
    /// dead-lettered, and may still be delivered once more: at least once).
    pub within_bound: bool,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
#[error("replaying dead letters: {0}")]
pub struct ReplayError(#[from] io::Error);

impl Dispatcher {
    /// Starts the workers on `runtime`, delivering through `service`'s providers with
    /// its retry policy, dead-lettering into `store`. Attach it to the service with
    /// [`NotificationService::attach_dispatcher`] so `enqueue` reaches it.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        service: &NotificationService,
        store: Arc<dyn DeadLetterStore>,
        config: DispatcherConfig,
    ) -> io::Result<Dispatcher> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (dead_tx, dead_rx) =
            std::sync::mpsc::sync_channel::<DeadLetter>(config.dead_letter_queue.max(1));
        let inner = Arc::new(Inner {
            registry: service.registry.clone(),
            retry: service.retry_policy(),
            config,
            tx: Mutex::new(Some(tx)),
            rx: tokio::sync::Mutex::new(rx),
            dead: Mutex::new(Some(dead_tx)),
            writer: Mutex::new(None),
            in_flight: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            deadline: Mutex::new(None),
            stop_retries: Notify::new(),
            counters: Counters::default(),
            store,
            workers: Mutex::new(Vec::new()),
            retry_tasks: Mutex::new(Vec::new()),
        });
        let writer_inner = Arc::downgrade(&inner);
        let store = inner.store.clone();
        let writer = std::thread::Builder::new()
            .name("piko-obs-dead-letters".into())
            .spawn(move || {
                // Group commit: everything waiting is written, then synced once.
                while let Ok(first) = dead_rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 1024 {
                        match dead_rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                    let result = store.append_all(&batch);
                    let Some(inner) = writer_inner.upgrade() else {
                        continue;
                    };
                    match result {
                        Ok(()) => {
                            inner
                                .counters
                                .dead_lettered
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            // Not durable: print them, so they are at least in the logs.
                            for entry in &batch {
                                report_unwritten(&e, entry);
                            }
                            inner
                                .counters
                                .dead_letter_errors
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        }
                    }
                }
            })?;
        *inner.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
        let d = Dispatcher { inner };
        let mut workers = Vec::new();
        for _ in 0..config.workers.max(1) {
            let d = d.clone();
            workers.push(runtime.spawn(async move { d.work().await }));
        }
        *d.inner.workers.lock().unwrap_or_else(|p| p.into_inner()) = workers;
        Ok(d)
    }

    /// Queues a notification (already prepared by the service); returns at once.
    pub(crate) fn enqueue(&self, n: Notification) -> Result<Enqueued, EnqueueError> {
        let targets = match self.inner.registry.targets(&n) {
            Ok(t) => t,
            Err(e) => {
                let providers = if n.providers.is_empty() {
                    vec!["(default)".to_string()]
                } else {
                    n.providers.clone()
                };
                let entry = DeadLetter::new(n, providers, 0, SystemTime::now(), e.to_string());
                return if self.dead_letter(entry) {
                    Ok(Enqueued::DeadLettered)
                } else {
                    Err(EnqueueError::Dropped)
                };
            }
        };
        let job = Job {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            n,
            pending: targets,
            attempts: 0,
            first_attempt: None,
            last_error: HashMap::new(),
        };
        let tx = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let refused = match tx {
            Some(tx) if !self.inner.closing.load(Ordering::Acquire) => match tx.try_send(job) {
                Ok(()) => {
                    self.inner.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                    return Ok(Enqueued::Queued);
                }
                Err(mpsc::error::TrySendError::Full(job)) => (job, "dispatcher queue full"),
                Err(mpsc::error::TrySendError::Closed(job)) => (job, "dispatcher shut down"),
            },
            _ => (job, "dispatcher shut down"),
        };
        let (job, why) = refused;
        if self.dead_letter(job.into_dead_letter(Some(why))) {
            Ok(Enqueued::DeadLettered)
        } else {
            Err(EnqueueError::Dropped)
        }
    }

    /// Hands an entry to the dead-letter writer without waiting; false (and counted as
    /// dropped) when its queue is full. After shutdown, when the writer is gone, the
    /// entry is written here, on the caller's thread.
    pub(crate) fn dead_letter(&self, entry: DeadLetter) -> bool {
        let dead = self.inner.dead.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = dead.as_ref() else {
            drop(dead);
            return match self.inner.store.append(&entry) {
                Ok(()) => {
                    self.inner
                        .counters
                        .dead_lettered
                        .fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(e) => {
                    self.inner
                        .counters
                        .dead_letter_errors
                        .fetch_add(1, Ordering::Relaxed);
                    report_unwritten(&e, &entry);
                    false
                }
            };
        };
        match tx.try_send(entry) {
            Ok(()) => true,
            Err(
                std::sync::mpsc::TrySendError::Full(entry)
                | std::sync::mpsc::TrySendError::Disconnected(entry),
            ) => {
                self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "piko-obs: notify.dead_letter.dropped: the dead-letter writer is full; entry: {}",
                    serde_json::to_string(&entry).unwrap_or_default()
                );
                false
            }
        }
    }

    /// Like [`dead_letter`](Self::dead_letter), for the shutdown path: waits for room
    /// at the writer until the shutdown's deadline instead of dropping at once.
    async fn dead_letter_wait(&self, mut entry: DeadLetter) -> bool {
        let deadline = (*self
            .inner
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(Instant::now);
        loop {
            let next = {
                let dead = self.inner.dead.lock().unwrap_or_else(|p| p.into_inner());
                match dead.as_ref() {
                    None => Err(entry),
                    Some(tx) => match tx.try_send(entry) {
                        Ok(()) => return true,
                        Err(std::sync::mpsc::TrySendError::Full(e))
                            if Instant::now() < deadline =>
                        {
                            Ok(e)
                        }
                        Err(
                            std::sync::mpsc::TrySendError::Full(e)
                            | std::sync::mpsc::TrySendError::Disconnected(e),
                        ) => Err(e),
                    },
                }
            };
            match next {
                Ok(e) => {
                    entry = e;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => return self.dead_letter(e),
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> DispatcherStats {
        let c = &self.inner.counters;
        let queued = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity());
        DispatcherStats {
            enqueued: c.enqueued.load(Ordering::Relaxed),
            queued: queued as u64,
            in_flight: c.in_flight.load(Ordering::Relaxed),
            waiting_retry: c.waiting_retry.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            dead_letter_errors: c.dead_letter_errors.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    async fn work(&self) {
        loop {
            let job = { self.inner.rx.lock().await.recv().await };
            let Some(job) = job else { return };
            self.process(job).await;
        }
    }

    async fn process(&self, mut job: Job) {
        let inner = &self.inner;
        inner.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        job.attempts += 1;
        job.first_attempt.get_or_insert_with(SystemTime::now);
        let (id, n, pending) = (job.id, job.n.clone(), job.pending.clone());
        // Kept here while the attempt runs, so a shutdown that cannot wait for it
        // dead-letters it instead of losing it.
        inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, job);
        let results = inner.registry.attempt_all(&pending, &n).await;
        let Some(mut job) = inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        else {
            // Shutdown already dead-lettered it.
            inner.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        inner.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        job.pending.clear();
        let mut permanent = Vec::new();
        let mut wait_at_least = None;
        for (name, r) in results {
            match r {
                Ok(()) => {
                    job.last_error.remove(&name);
                }
                Err(e) => {
                    job.last_error.insert(name.clone(), e.to_string());
                    if e.is_retryable() {
                        wait_at_least = wait_at_least.max(e.retry_after());
                        job.pending.push(name);
                    } else {
                        permanent.push(name);
                    }
                }
            }
        }
        if !permanent.is_empty() {
            // Not worth retrying (a 4xx, a rejection): on disk at once, with the error.
            let mut dead = Job {
                id: job.id,
                n: job.n.clone(),
                pending: permanent,
                attempts: job.attempts,
                first_attempt: job.first_attempt,
                last_error: job.last_error.clone(),
            };
            dead.last_error.retain(|k, _| dead.pending.contains(k));
            self.dead_letter(dead.into_dead_letter(None));
        }
        if job.pending.is_empty() {
            if job.last_error.is_empty() {
                inner.counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if inner.closing.load(Ordering::Acquire) {
            self.dead_letter_wait(job.into_dead_letter(None)).await;
            return;
        }
        if job.attempts > inner.retry.max_retries {
            self.dead_letter(job.into_dead_letter(None));
            return;
        }
        if inner.counters.waiting_retry.load(Ordering::Relaxed) as usize
            >= inner.config.max_pending_retries
        {
            self.dead_letter(
                job.into_dead_letter(Some("too many notifications waiting for a retry")),
            );
            return;
        }
        let delay = inner.retry.delay(job.attempts, wait_at_least);
        inner.counters.retried.fetch_add(1, Ordering::Relaxed);
        inner.counters.waiting_retry.fetch_add(1, Ordering::Relaxed);
        let d = self.clone();
        let task = tokio::spawn(async move { d.retry_later(job, delay).await });
        let mut tasks = inner.retry_tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    async fn retry_later(&self, job: Job, delay: Duration) {
        let inner = &self.inner;
        let stopped = inner.stop_retries.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        let shutting_down = inner.closing.load(Ordering::Acquire)
            || tokio::select! {
                _ = tokio::time::sleep(delay) => false,
                _ = &mut stopped => true,
            };
        inner.counters.waiting_retry.fetch_sub(1, Ordering::Relaxed);
        if shutting_down {
            self.dead_letter_wait(job.into_dead_letter(Some("shut down before its next retry")))
                .await;
            return;
        }
        let tx = inner.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match tx {
            Some(tx) => {
                if let Err(e) = tx.send(job).await {
                    self.dead_letter(e.0.into_dead_letter(Some("shut down before its next retry")));
                }
            }
            None => {
                self.dead_letter(job.into_dead_letter(Some("shut down before its next retry")));
            }
        }
    }

    /// Stops taking notifications and finishes within `timeout`: queued ones get one
    /// more attempt while time allows, those waiting for a retry and whatever is left
    /// at the bound are dead-lettered (an attempt cut off at the bound may still
    /// arrive: delivery is at least once). Then the dead-letter writer is flushed. A
    /// second call returns at once.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let inner = &self.inner;
        let deadline = Instant::now() + timeout;
        *inner.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(deadline);
        if inner.closing.swap(true, Ordering::AcqRel) {
            return ShutdownReport {
                stats: self.stats(),
                within_bound: true,
            };
        }
        inner.stop_retries.notify_waiters();
        // Retry tasks dead-letter their jobs now; wait for them so none pushes later.
        let retry_tasks: Vec<_> =
            std::mem::take(&mut *inner.retry_tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in retry_tasks {
            let _ = tokio::time::timeout_at(deadline.into(), t).await;
        }
        // Closing the sender lets the workers drain the queue and stop.
        drop(inner.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let workers: Vec<_> =
            std::mem::take(&mut *inner.workers.lock().unwrap_or_else(|p| p.into_inner()));
        let mut within_bound = true;
        for w in workers {
            let abort = w.abort_handle();
            if tokio::time::timeout_at(deadline.into(), w).await.is_err() {
                abort.abort();
                within_bound = false;
            }
        }
        if !within_bound {
            // What the workers did not get to, and what they were sending.
            let mut left = Vec::new();
            {
                let mut rx = inner.rx.lock().await;
                rx.close();
                while let Ok(job) = rx.try_recv() {
                    left.push(job);
                }
            }
            left.extend(
                inner
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain()
                    .map(|(_, j)| j),
            );
            for job in left {
                self.dead_letter_wait(job.into_dead_letter(Some("shutdown bound reached")))
                    .await;
            }
        }
        // Flush the writer: closing its channel ends its loop once it has written
        // everything queued.
        drop(inner.dead.lock().unwrap_or_else(|p| p.into_inner()).take());
        let writer = inner
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(writer) = writer {
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let _ = writer.join();
                let _ = done_tx.send(());
            });
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            if tokio::time::timeout(left, done_rx).await.is_err() {
                within_bound = false;
            }
        }
        ShutdownReport {
            stats: self.stats(),
            within_bound,
        }
    }

    /// Reads every entry of the dead-letter store and queues each again for the
    /// providers that did not take it. Entries that find the queue full go back to the
    /// store. Returns how many were queued and how many lines were unreadable.
    pub fn replay(&self) -> Result<(usize, usize), ReplayError> {
        let batch = self.inner.store.take_all()?;
        let mut queued = 0;
        for entry in batch.entries {
            let mut n = entry.notification;
            n.providers = entry
                .providers
                .into_iter()
                .filter(|p| p != "(default)")
                .collect();
            if matches!(self.enqueue(n), Ok(Enqueued::Queued)) {
                queued += 1;
            }
        }
        Ok((queued, batch.skipped))
    }
}
