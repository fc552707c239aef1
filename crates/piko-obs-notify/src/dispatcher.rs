//! The dispatcher: a bounded queue, workers, retries with backoff, and the hand-over
//! of what cannot be delivered to the dead-letter writer, so that every notification
//! handed to it is delivered or on disk. It delivers through the [`Registry`] and
//! knows nothing of the service that feeds it (the service starts it:
//! [`Dispatcher::start`] is defined there).

use std::collections::HashMap;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use futures_util::FutureExt as _;
use tokio::sync::{Notify, mpsc};

use crate::dead_letter::{DeadLetter, DeadLetterStore};
use crate::defaults::Defaults;
use crate::model::Notification;
use crate::policy::{LONGEST_WAIT, RetryPolicy};
use crate::registry::Registry;
use crate::writer::{
    Counters, Item, Job, ReplayRun, Ticket, Unresolved, Writer, lock, report_unwritten, write_group,
};

/// What `enqueue` did with a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued for delivery.
    Queued,
    /// The queue was full, or the dispatcher is shut down: handed to the dead-letter
    /// writer instead, which writes it to the store (replay it later).
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
    /// New entries waiting for the dead-letter writer (default 10,000), which writes
    /// them in groups with one sync each. They wait in a ring allocated when the
    /// dispatcher starts, so that `enqueue` allocates nothing: at most 448 bytes a
    /// slot, about 4.3 MiB at the default. Notifications the dispatcher already holds
    /// (queued, in flight, waiting for a retry) are never refused by the writer: they
    /// may go past this. While this many wait, `enqueue` refuses new notifications
    /// (dropped, counted), so what goes past it stays below twice
    /// `queue_capacity + workers + max_pending_retries` (a notification for several
    /// providers can leave two entries).
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
    /// The cap on new entries waiting for the dead-letter writer (at least 1).
    pub fn with_dead_letter_queue(mut self, n: usize) -> Self {
        self.dead_letter_queue = n.max(1);
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
    /// Entries written to the dead-letter store. A notification that some of its
    /// providers did not take counts here, not in `delivered`; one for several
    /// providers can leave two entries: one at once for the providers that refused
    /// it (not worth retrying), one for those still failing after the last retry.
    pub dead_lettered: u64,
    /// Entries the dead-letter store failed to write (printed to stderr instead).
    pub dead_letter_errors: u64,
    /// Dropped: a new notification found the queue and the dead-letter writer both
    /// full (`enqueue` returned [`EnqueueError::Dropped`]; the writer thread prints
    /// how many to stderr).
    pub dropped: u64,
    /// Entries handed to the dead-letter writer and not yet written (a gauge). After a
    /// shutdown that reached its bound, these are still being written by the writer
    /// thread; see [`Dispatcher::flush_dead_letters`].
    pub dead_letter_pending: u64,
}
/// The jobs the dispatcher holds outside its queue: those being attempted and those
/// waiting for a retry. A job is always in exactly one place (the queue, this table, or
/// handed to the dead-letter writer), moved without an `await` in between, so a
/// shutdown that aborts a worker or a retry task still finds it here.
#[derive(Default)]
struct Jobs {
    in_flight: HashMap<u64, Job>,
    waiting: HashMap<u64, Job>,
    /// Set by shutdown once it has taken the queue and the jobs in flight: a worker
    /// still running (aborted but not yet stopped, or left running by a shutdown that
    /// was itself cancelled) hands the job it took to the writer instead of putting it
    /// here, where nobody would look for it again.
    drained: bool,
}

struct Inner {
    registry: Arc<Registry>,
    retry: RetryPolicy,
    config: DispatcherConfig,
    /// The queue's sender, taken away by shutdown. Read without a lock: `enqueue` must
    /// not wait for a thread that was preempted while holding one.
    tx: ArcSwapOption<mpsc::Sender<Job>>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    writer: Arc<Writer>,
    /// Set under its lock by shutdown, together with `closing`.
    jobs: Mutex<Jobs>,
    next_id: AtomicU64,
    closing: AtomicBool,
    stop_retries: Notify,
    counters: Arc<Counters>,
    store: Arc<dyn DeadLetterStore>,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    retry_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Held by the shutdown under way: a second call waits for it, and finishes its
    /// work if it was cancelled.
    shutting_down: tokio::sync::Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropped without a shutdown (the runtime that ran its tasks stopped, and every
        // handle went): what it still holds, queued, in flight or waiting for a
        // retry, goes to the writer, and this waits a little for the writer to have
        // written it, so that it is on disk even if the process exits next.
        let rx = self.rx.get_mut();
        rx.close();
        let mut left = Vec::new();
        while let Ok(job) = rx.try_recv() {
            left.push(job);
        }
        let jobs = self.jobs.get_mut().unwrap_or_else(|p| p.into_inner());
        if !jobs.drained {
            left.extend(jobs.in_flight.drain().map(|(_, j)| j));
            left.extend(jobs.waiting.drain().map(|(_, j)| j));
        }
        let rescued = !left.is_empty();
        for job in left {
            let item = job.into_item(Some("the dispatcher was dropped without a shutdown"));
            if let Err(item) = self.writer.push(item, true)
                && let Some((entry, _)) = item.into_entry(&self.writer.defaults)
            {
                report_unwritten(
                    &io::Error::other("the dead-letter writer has stopped"),
                    &entry,
                );
            }
        }
        // The writer thread writes what is queued, then stops. With something rescued,
        // this thread waits for it (at most 2 s: a misuse, dropped without a shutdown,
        // may block the thread dropping the last handle that long).
        self.writer.close();
        if rescued {
            let end = Instant::now() + DROP_FLUSH_BOUND;
            while self.writer.pending() > 0 && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// How long a dispatcher dropped without a shutdown waits for the writer to write
/// what it still held.
const DROP_FLUSH_BOUND: Duration = Duration::from_secs(2);

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
    /// Whether everything finished within the bound: every queued notification had
    /// its last attempt and every dead letter was written. Otherwise what was left was
    /// dead-lettered (it may still be delivered once more: at least once), and
    /// `stats.dead_letter_pending` entries were still being written when it returned.
    pub within_bound: bool,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
#[error("replaying dead letters: {0}")]
pub struct ReplayError(#[from] io::Error);

impl Dispatcher {
    /// Starts the workers on `runtime`, delivering through `registry`'s providers with
    /// `retry`, filling `defaults` into the notifications, dead-lettering into `store`
    /// from a writer thread ([`Dispatcher::start`] with a service's parts).
    pub(crate) fn launch(
        runtime: &tokio::runtime::Handle,
        registry: Arc<Registry>,
        retry: RetryPolicy,
        defaults: Arc<Defaults>,
        store: Arc<dyn DeadLetterStore>,
        config: DispatcherConfig,
    ) -> io::Result<Dispatcher> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let writer = Arc::new(Writer::new(config.dead_letter_queue, defaults));
        let counters = Arc::new(Counters::default());
        {
            let (writer, store, counters) = (writer.clone(), store.clone(), counters.clone());
            std::thread::Builder::new()
                .name("piko-obs-dead-letters".into())
                .spawn(move || writer.run(&*store, &counters))?;
        }
        let inner = Arc::new(Inner {
            registry,
            retry,
            config,
            tx: ArcSwapOption::from_pointee(tx),
            rx: tokio::sync::Mutex::new(rx),
            writer,
            jobs: Mutex::new(Jobs::default()),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            stop_retries: Notify::new(),
            counters,
            store,
            workers: Mutex::new(Vec::new()),
            retry_tasks: Mutex::new(Vec::new()),
            shutting_down: tokio::sync::Mutex::new(()),
        });
        let d = Dispatcher { inner };
        let mut workers = Vec::new();
        for _ in 0..config.workers.max(1) {
            let d = d.clone();
            workers.push(runtime.spawn(async move { d.work().await }));
        }
        *lock(&d.inner.workers) = workers;
        Ok(d)
    }

    /// Queues a notification (already prepared by the service); returns at once.
    /// When the queue is full, or after shutdown, it is handed to the dead-letter
    /// writer instead (never written on the caller's thread); when the writer's queue
    /// is full too, it is dropped and counted.
    pub(crate) fn enqueue(&self, n: Notification) -> Result<Enqueued, EnqueueError> {
        match self.try_queue(n, None) {
            Ok(()) => Ok(Enqueued::Queued),
            Err(item) => {
                if self.hand_over(item, false) {
                    Ok(Enqueued::DeadLettered)
                } else {
                    Err(EnqueueError::Dropped)
                }
            }
        }
    }

    /// Queues `n` (with `ticket`, for a replayed entry) without waiting; gives back
    /// the writer's item for it (its dead-letter entry, or the job the writer makes one
    /// of, with the ticket) when it has no provider, the queue is full, or the
    /// dispatcher is shut down.
    #[expect(clippy::result_large_err, reason = "the item is given back, not boxed")]
    fn try_queue(&self, mut n: Notification, ticket: Option<Ticket>) -> Result<(), Item> {
        let registry = &self.inner.registry;
        // The default provider's shared name is taken here, or the notification's own
        // providers checked; `pending` is made on the worker's or the writer's thread.
        let unresolved = if n.providers.is_empty() {
            registry.default_name().map(Unresolved::Default)
        } else {
            registry
                .knows_all(&n.providers)
                .then_some(Unresolved::Named)
        };
        let defaults = &self.inner.writer.defaults;
        let targets = match unresolved {
            // Made, with the defaults filled in, by the worker or the writer.
            Some(_) => Ok(Vec::new()),
            // Not known: the error (or, should a provider have been registered just
            // now, the list, and the defaults filled in here).
            None => registry.targets(&n).inspect(|_| defaults.fill(&mut n)),
        };
        let targets = match targets {
            Ok(t) => t,
            Err(e) => {
                let providers = if n.providers.is_empty() {
                    vec!["(default)".to_string()]
                } else {
                    n.providers.clone()
                };
                defaults.fill(&mut n);
                let entry = DeadLetter::new(n, providers, 0, SystemTime::now(), e.to_string());
                return Err(Item::Entry(Box::new(entry), ticket));
            }
        };
        let job = Job {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            n,
            pending: targets,
            unresolved,
            attempts: 0,
            first_attempt: None,
            last_error: Vec::new(),
            ticket,
        };
        let tx = self.inner.tx.load();
        let (job, why) = match tx.as_deref() {
            // The dead-letter writer has its whole queue waiting (the disk is that far
            // behind): a job taken now could not be sure of a place there if it failed,
            // and what the workers force in would grow without bound. It is refused,
            // as the writer refuses it (counted as dropped).
            Some(_) if self.inner.writer.backed_up() => (job, "the dead-letter writer is full"),
            Some(tx) if !self.inner.closing.load(Ordering::Acquire) => match tx.try_send(job) {
                Ok(()) => {
                    self.inner.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Full(job)) => (job, "dispatcher queue full"),
                Err(mpsc::error::TrySendError::Closed(job)) => (job, "dispatcher shut down"),
            },
            _ => (job, "dispatcher shut down"),
        };
        Err(job.into_item(Some(why)))
    }

    /// Hands an entry of a new notification (one `send_with_retries` could not deliver) to the
    /// dead-letter writer without waiting; false, counted as dropped, when its queue
    /// is full.
    pub(crate) fn dead_letter(&self, entry: DeadLetter) -> bool {
        self.hand_over(Item::Entry(Box::new(entry), None), false)
    }

    /// Hands an item to the writer without waiting. `force`: for a notification the
    /// dispatcher already holds, never refused while the writer runs.
    fn hand_over(&self, item: Item, force: bool) -> bool {
        // The writer is closed only once the dispatcher is dropped, and ends of replays
        // do not come this way: only a full queue refuses. The drop is counted; the
        // writer thread reports it (printing here could block the caller on stderr).
        let taken = self.inner.writer.push(item, force).is_ok();
        if !taken {
            self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// The counters.
    pub fn stats(&self) -> DispatcherStats {
        let c = &self.inner.counters;
        let queued = self
            .inner
            .tx
            .load()
            .as_deref()
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
            dead_letter_pending: self.inner.writer.pending_entries() as u64,
        }
    }

    /// Waits, at most `timeout`, until everything handed to the dead-letter writer is
    /// written (or failed and printed). True when it is. For a process about to exit
    /// after a shutdown that reported `dead_letter_pending` entries.
    pub async fn flush_dead_letters(&self, timeout: Duration) -> bool {
        self.written_by(Instant::now() + timeout.min(LONGEST_WAIT))
            .await
    }

    async fn written_by(&self, deadline: Instant) -> bool {
        let writer = &self.inner.writer;
        // Bounded by the deadline: each turn waits for one group to be written.
        loop {
            let written = writer.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if writer.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), written)
                .await
                .is_err()
            {
                return writer.pending() == 0;
            }
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
        job.resolve(&inner.writer.defaults);
        job.attempts += 1;
        job.first_attempt.get_or_insert_with(SystemTime::now);
        let (id, n, pending) = (job.id, job.n.clone(), job.pending.clone());
        // Kept in the table while the attempt runs, so a shutdown that cannot wait for
        // it (and aborts this worker) dead-letters it instead of losing it. Once that
        // shutdown has taken the table, nobody would: the job goes to the writer.
        {
            let mut jobs = lock(&inner.jobs);
            if jobs.drained {
                drop(jobs);
                self.hand_over(job.into_item(Some("shutdown bound reached")), true);
                return;
            }
            inner.counters.in_flight.fetch_add(1, Ordering::Relaxed);
            jobs.in_flight.insert(id, job);
        }
        // The registry guards each provider; this guard keeps the worker (and the
        // job) alive should anything else in an attempt panic.
        let results = AssertUnwindSafe(inner.registry.attempt_all(&pending, &n))
            .catch_unwind()
            .await;
        // From here on there is no `await`: the job is handed on before this returns.
        let Some(mut job) = lock(&inner.jobs).in_flight.remove(&id) else {
            // Shutdown already dead-lettered it (and counted it out of `in_flight`).
            return;
        };
        let results = match results {
            Ok(results) => results,
            Err(_) => {
                inner.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                self.hand_over(job.into_item(Some("the delivery attempt panicked")), true);
                return;
            }
        };
        inner.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        job.pending.clear();
        let mut permanent = Vec::new();
        let mut wait_at_least = None;
        for (name, r) in results {
            match r {
                Ok(()) => {
                    job.last_error.retain(|(k, _)| *k != name);
                }
                Err(e) => {
                    let text = e.to_string();
                    match job.last_error.iter_mut().find(|(k, _)| *k == name) {
                        Some((_, last)) => *last = text,
                        None => job.last_error.push((name.clone(), text)),
                    }
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
                unresolved: None,
                attempts: job.attempts,
                first_attempt: job.first_attempt,
                last_error: job.last_error.clone(),
                ticket: job.ticket.as_ref().map(|t| Ticket::new(&t.run)),
            };
            dead.last_error.retain(|(k, _)| dead.pending.contains(k));
            self.hand_over(dead.into_item(None), true);
        }
        if job.pending.is_empty() {
            if job.last_error.is_empty() {
                inner.counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(t) = job.ticket.take() {
                t.settle();
            }
            return;
        }
        if job.attempts > inner.retry.max_retries {
            self.hand_over(job.into_item(None), true);
            return;
        }
        let mut jobs = lock(&inner.jobs);
        // Checked under the lock shutdown sets it under: a job is either in the table
        // before shutdown drains it, or handed over here.
        if inner.closing.load(Ordering::Acquire) {
            drop(jobs);
            self.hand_over(job.into_item(None), true);
            return;
        }
        if jobs.waiting.len() >= inner.config.max_pending_retries {
            drop(jobs);
            self.hand_over(
                job.into_item(Some("too many notifications waiting for a retry")),
                true,
            );
            return;
        }
        let delay = inner.retry.delay(job.attempts, wait_at_least);
        jobs.waiting.insert(id, job);
        inner.counters.retried.fetch_add(1, Ordering::Relaxed);
        inner.counters.waiting_retry.fetch_add(1, Ordering::Relaxed);
        let d = self.clone();
        let task = tokio::spawn(async move { d.retry_later(id, delay).await });
        let mut tasks = lock(&inner.retry_tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Waits `delay`, then moves job `id` from the table back to the queue. The job
    /// stays in the table until a queue slot is reserved, so aborting this task loses
    /// nothing: shutdown takes the job from the table.
    async fn retry_later(&self, id: u64, delay: Duration) {
        let inner = &self.inner;
        let stopped = inner.stop_retries.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        let Some(tx) = inner.tx.load_full() else {
            return;
        };
        let permit = tokio::select! {
            _ = &mut stopped => return,
            p = async {
                tokio::time::sleep(delay).await;
                tx.reserve().await
            } => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        // Moved under the lock shutdown takes the table under, so the job is in the
        // queue before a shutdown starts, or still in the table for it.
        let mut jobs = lock(&inner.jobs);
        let Some(job) = jobs.waiting.remove(&id) else {
            return;
        };
        inner.counters.waiting_retry.fetch_sub(1, Ordering::Relaxed);
        permit.send(job);
        drop(jobs);
    }

    /// Stops taking notifications and finishes within `timeout`:
    ///
    /// - those waiting for a retry are dead-lettered at once;
    /// - queued ones get one more attempt while time allows (until nine tenths of the
    ///   bound, keeping the rest, at most 1 s, for the dead-letter writer); what is
    ///   still queued or in flight then is dead-lettered, the workers aborted (an
    ///   attempt cut off may still arrive: delivery is at least once);
    /// - then it waits, until the bound, for the writer to have written every entry.
    ///
    /// Nothing handed over is dropped. If the disk is too slow for the bound, shutdown
    /// still returns at the bound, with `within_bound` false and
    /// `stats.dead_letter_pending` entries not yet written: the writer thread keeps
    /// writing them for as long as the process lives
    /// ([`flush_dead_letters`](Self::flush_dead_letters) waits for it). After
    /// shutdown, `enqueue` hands notifications to that writer.
    ///
    /// One shutdown runs at a time; a shutdown cancelled (its future dropped) leaves the
    /// workers it had not seen stop to the next call, which finishes the work, within
    /// its own bound. Once one has finished, a later call only waits, within its
    /// bound, for the writer (at once when it has nothing left to write).
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let inner = &self.inner;
        let timeout = timeout.min(LONGEST_WAIT);
        let deadline = Instant::now() + timeout;
        let work_deadline = deadline - (timeout / 10).min(Duration::from_secs(1));
        {
            // Under the lock `process` checks it under: a job is either in the table
            // before shutdown takes it, or handed over.
            let _jobs = lock(&inner.jobs);
            inner.closing.store(true, Ordering::Release);
        }
        // Released when this returns or is cancelled.
        let Ok(_running) =
            tokio::time::timeout_at(deadline.into(), inner.shutting_down.lock()).await
        else {
            return ShutdownReport {
                stats: self.stats(),
                within_bound: false,
            };
        };
        // Only a shutdown sets it, and this one holds `shutting_down`.
        let drained = lock(&inner.jobs).drained;
        if drained {
            let within_bound = self.written_by(deadline).await;
            return ShutdownReport {
                stats: self.stats(),
                within_bound,
            };
        }
        let (waiting, retry_tasks) = {
            let mut jobs = lock(&inner.jobs);
            let waiting: Vec<Job> = jobs.waiting.drain().map(|(_, j)| j).collect();
            (waiting, std::mem::take(&mut *lock(&inner.retry_tasks)))
        };
        inner
            .counters
            .waiting_retry
            .fetch_sub(waiting.len() as u64, Ordering::Relaxed);
        for job in waiting {
            self.hand_over(job.into_item(Some("shut down before its next retry")), true);
        }
        inner.stop_retries.notify_waiters();
        for t in &retry_tasks {
            t.abort();
        }
        // Closing the sender lets the workers drain the queue and stop.
        inner.tx.store(None);
        let mut within_bound = true;
        // Back in the table if this is cancelled, for the next call to wait for.
        let mut workers = HeldWorkers {
            table: &inner.workers,
            held: std::mem::take(&mut *lock(&inner.workers)),
        };
        let mut i = 0;
        while i < workers.held.len() {
            let w = &mut workers.held[i];
            if tokio::time::timeout_at(work_deadline.into(), w)
                .await
                .is_ok()
            {
                // Stopped (or died: what it held is taken below).
                workers.held.swap_remove(i);
            } else {
                workers.held[i].abort();
                within_bound = false;
                i += 1;
            }
        }
        // An aborted worker that waited for the queue releases it once dropped.
        for w in workers.held.iter_mut() {
            let _ = tokio::time::timeout_at(deadline.into(), w).await;
        }
        // Past the bound, one may not have stopped yet: what it takes after the table
        // is drained goes to the writer (`drained`).
        workers.held.clear();
        let why = if within_bound {
            "the dispatcher's workers stopped before its delivery ended"
        } else {
            "shutdown bound reached"
        };
        // Whatever the workers left, always: the queue, then the jobs in flight (a
        // worker cut off, or one that died with its job).
        let mut left = Vec::new();
        match tokio::time::timeout_at(deadline.into(), inner.rx.lock()).await {
            Ok(mut rx) => {
                rx.close();
                while let Ok(job) = rx.try_recv() {
                    left.push(job);
                }
            }
            Err(_) => {
                // Not expected: take the queue over as soon as it is free.
                within_bound = false;
                let d = self.clone();
                tokio::spawn(async move {
                    let mut rx = d.inner.rx.lock().await;
                    rx.close();
                    while let Ok(job) = rx.try_recv() {
                        d.hand_over(job.into_item(Some("shutdown bound reached")), true);
                    }
                });
            }
        }
        // No `await` from here until every job taken is handed over.
        let in_flight: Vec<Job> = {
            let mut jobs = lock(&inner.jobs);
            jobs.drained = true;
            jobs.in_flight.drain().map(|(_, j)| j).collect()
        };
        inner
            .counters
            .in_flight
            .fetch_sub(in_flight.len() as u64, Ordering::Relaxed);
        left.extend(in_flight);
        for job in left {
            self.hand_over(job.into_item(Some(why)), true);
        }
        if !self.written_by(deadline).await {
            within_bound = false;
        }
        ShutdownReport {
            stats: self.stats(),
            within_bound,
        }
    }

    /// Re-delivers the dead-letter store's entries, crash-safely: the store sets them
    /// aside ([`DeadLetterStore::begin_replay`], with those of any replay a crash
    /// interrupted), each is queued again for the providers that did not take it
    /// (those finding the queue full, or naming no provider registered now, are
    /// written back to the store by the calling thread, in one `append_all`, never
    /// through the writer's queue), and the set-aside copy is removed only once every
    /// one is delivered or written to the store again. A crash before that leaves it
    /// for the next replay, which then sends again what was already delivered (at
    /// least once). Blocks on the store's I/O: call it from a blocking thread. Returns
    /// how many were queued and how many lines were unreadable.
    pub fn replay(&self) -> Result<(usize, usize), ReplayError> {
        let (batch, token) = self.inner.store.begin_replay()?;
        let run = Arc::new(ReplayRun {
            token,
            lost: AtomicBool::new(false),
            writer: self.inner.writer.clone(),
            store: self.inner.store.clone(),
        });
        let mut queued = 0;
        // Entries that do not fit the queue are written here, in one group, by this
        // thread (which already reads the store): the writer's queue stays bounded,
        // and free for new notifications.
        let mut overflow = Vec::new();
        let mut tickets = Vec::new();
        for entry in batch.entries {
            let mut n = entry.notification;
            n.providers = entry
                .providers
                .into_iter()
                .filter(|p| p != "(default)")
                .collect();
            match self.try_queue(n, Some(Ticket::new(&run))) {
                Ok(()) => queued += 1,
                Err(item) => {
                    if let Some((entry, ticket)) = item.into_entry(&self.inner.writer.defaults) {
                        overflow.push(entry);
                        tickets.push(ticket);
                    }
                }
            }
        }
        write_group(
            &*self.inner.store,
            &self.inner.counters,
            &mut overflow,
            &mut tickets,
        );
        Ok((queued, batch.skipped))
    }
}

/// The workers a shutdown is waiting for; put back in the dispatcher's table when the
/// shutdown is cancelled, so the next call waits for them (or aborts them) in turn.
struct HeldWorkers<'a> {
    table: &'a Mutex<Vec<tokio::task::JoinHandle<()>>>,
    held: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for HeldWorkers<'_> {
    fn drop(&mut self) {
        if !self.held.is_empty() {
            lock(self.table).append(&mut self.held);
        }
    }
}
