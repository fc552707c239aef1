//! The dispatcher: a bounded queue, workers, retries with backoff, and a dead-letter
//! store, so that every notification handed to it is delivered or on disk.

use std::collections::HashMap;
// Reports go to stderr with `writeln!`, their failure ignored: `eprintln!` panics when
// stderr is closed, which would stop the dead-letter writer thread.
use std::io::{self, Write as _};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;
use futures_util::FutureExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::model::Notification;
use crate::service::{Defaults, NotificationService, Registry};

/// The longest wait taken as given: a longer one (up to `Duration::MAX`) is a century,
/// as `Instant` cannot add more.
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

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
    // Asked of the system once, not for every id.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    format!(
        "{nanos:x}-{:x}-{:x}",
        PID.get_or_init(std::process::id),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An entry the store could not take: printed whole, so it is at least in the logs.
fn report_unwritten(e: &io::Error, entry: &DeadLetter) {
    let _ = writeln!(
        std::io::stderr(),
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
/// Contract: `append` and `append_all` return only once the entries are durable. The
/// dispatcher calls them, and `end_replay`, from its dead-letter writer thread (a
/// blocking one, never an async worker); `begin_replay`, `take_all`, and the
/// `append_all` of the replayed entries that find the queue full, run on the thread
/// that calls [`Dispatcher::replay`]. Implementations must be safe to call from
/// several threads at once. Unreadable entries are counted and skipped, not fatal.
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Keeps one entry durably.
    fn append(&self, entry: &DeadLetter) -> io::Result<()>;
    /// Keeps several entries durably; the default appends them one by one. A store
    /// that syncs should write them all, then sync once (group commit).
    fn append_all(&self, entries: &[DeadLetter]) -> io::Result<()> {
        entries.iter().try_for_each(|e| self.append(e))
    }
    /// Reads and removes every entry at once (not crash-safe: what is read is only in
    /// memory until it is delivered; a replay uses `begin_replay`).
    fn take_all(&self) -> io::Result<DeadLetterBatch>;
    /// Starts a crash-safe replay: sets the current entries aside (new entries go to a
    /// fresh store), and returns them, with those set aside by earlier replays that
    /// never ended (a crash), and a token for [`end_replay`](Self::end_replay). The
    /// entries set aside stay durable until `end_replay(token, true)`. The default
    /// is [`take_all`](Self::take_all), which is not crash-safe.
    fn begin_replay(&self) -> io::Result<(DeadLetterBatch, u64)> {
        Ok((self.take_all()?, 0))
    }
    /// Ends the replay `token`. `complete`: every entry it returned was delivered or
    /// appended again, so the set-aside copy is removed; otherwise it is kept for the
    /// next replay (at least once). The default does nothing.
    fn end_replay(&self, token: u64, complete: bool) -> io::Result<()> {
        let _ = (token, complete);
        Ok(())
    }
}

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

/// A replay under way: the store keeps the entries it set aside until every entry
/// the replay queued is settled (delivered, or durably dead-lettered again). Each
/// queued entry holds a [`Ticket`]; when the last one goes, the replay ends, as
/// complete unless a ticket was dropped unsettled (then the store keeps the entries
/// for the next replay: at least once).
struct ReplayRun {
    token: u64,
    lost: AtomicBool,
    writer: Arc<Writer>,
    store: Arc<dyn DeadLetterStore>,
}

impl Drop for ReplayRun {
    fn drop(&mut self) {
        let (token, complete) = (self.token, !self.lost.load(Ordering::Acquire));
        // Through the writer, after the entries handed to it before; inline when the
        // writer has stopped.
        if self
            .writer
            .push(Item::EndReplay { token, complete }, true)
            .is_err()
        {
            end_replay(&*self.store, token, complete);
        }
    }
}

fn end_replay(store: &dyn DeadLetterStore, token: u64, complete: bool) {
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| store.end_replay(token, complete)));
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = writeln!(
                std::io::stderr(),
                "piko-obs: notify.dead_letter.end_replay_failed: {e}"
            );
        }
        Err(_) => {
            let _ = writeln!(
                std::io::stderr(),
                "piko-obs: notify.dead_letter.end_replay_failed: the store panicked"
            );
        }
    }
}

/// One replayed entry's share of its [`ReplayRun`]. Dropped without
/// [`settle`](Ticket::settle), it marks the run as not complete.
struct Ticket {
    run: Arc<ReplayRun>,
    settled: bool,
}

impl Ticket {
    fn new(run: &Arc<ReplayRun>) -> Ticket {
        Ticket {
            run: run.clone(),
            settled: false,
        }
    }
    fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.run.lost.store(true, Ordering::Release);
        }
    }
}

/// A notification on its way: the providers still to reach, attempts so far.
struct Job {
    id: u64,
    n: Notification,
    pending: Vec<String>,
    /// How `pending` is to be made, for a job just queued: by the worker or the writer
    /// that first takes it, which also fills in the service's defaults, so that
    /// `enqueue` allocates nothing on the caller's thread.
    unresolved: Option<Unresolved>,
    attempts: u32,
    first_attempt: Option<SystemTime>,
    /// The last error of each provider that failed its last attempt (a few: a list).
    last_error: Vec<(String, String)>,
    ticket: Option<Ticket>,
}

/// Where a job just queued goes.
enum Unresolved {
    /// To the default provider, whose shared name was taken when it was queued.
    Default(Arc<str>),
    /// To the notification's own providers (all registered when it was queued).
    Named,
}

impl Job {
    /// For a job just queued: makes `pending`, and fills in the service's `defaults`.
    fn resolve(&mut self, defaults: &Defaults) {
        let Some(unresolved) = self.unresolved.take() else {
            return;
        };
        self.pending = match unresolved {
            Unresolved::Default(name) => vec![name.to_string()],
            Unresolved::Named => crate::service::unique(&self.n.providers),
        };
        defaults.fill(&mut self.n);
    }

    /// For the writer, which makes its dead-letter entry: the caller's thread only
    /// moves it into the writer's ring and reads the clock, allocating nothing (an
    /// allocation here would meet the writer's frees in the allocator's lock).
    fn into_item(self, why: Option<&'static str>) -> Item {
        Item::Job(self, why, SystemTime::now())
    }

    /// Its dead-letter entry, handed over at `at`, and its replay ticket.
    fn into_entry(
        mut self,
        why: Option<&str>,
        at: SystemTime,
        defaults: &Defaults,
    ) -> (DeadLetter, Option<Ticket>) {
        self.resolve(defaults);
        let mut errors: Vec<String> = self
            .pending
            .iter()
            .map(
                |p| match self.last_error.iter().find(|(k, _)| k == p).map(|(_, e)| e) {
                    Some(e) => format!("{p}: {e}"),
                    None => format!("{p}: {}", why.unwrap_or("not attempted")),
                },
            )
            .collect();
        if let Some(why) = why
            && self.attempts > 0
        {
            errors.push(why.to_string());
        }
        let first = self.first_attempt.unwrap_or(at);
        let mut entry = DeadLetter::new(
            self.n,
            self.pending,
            self.attempts,
            first,
            errors.join("; "),
        );
        entry.last_attempt = at;
        (entry, self.ticket)
    }
}

/// What the dead-letter writer thread is handed.
#[expect(
    clippy::large_enum_variant,
    reason = "a job is moved into the writer's ring, allocated once: boxing it would allocate on the caller's thread"
)]
enum Item {
    /// An entry to write, with its replay ticket, settled once it is durable.
    Entry(Box<DeadLetter>, Option<Ticket>),
    /// A job to write as an entry (with why it was not delivered, if not from its
    /// errors, and when it was handed over), made on the writer's thread.
    Job(Job, Option<&'static str>, SystemTime),
    /// A replay whose entries are all settled: end it in the store.
    EndReplay { token: u64, complete: bool },
}

impl Item {
    fn is_entry(&self) -> bool {
        matches!(self, Item::Entry(..) | Item::Job(..))
    }

    /// The entry to write, with its ticket; `None` for an `EndReplay`.
    fn into_entry(self, defaults: &Defaults) -> Option<(DeadLetter, Option<Ticket>)> {
        match self {
            Item::Entry(entry, ticket) => Some((*entry, ticket)),
            Item::Job(job, why, at) => Some(job.into_entry(why, at, defaults)),
            Item::EndReplay { .. } => None,
        }
    }
}

/// The dead-letter writer's queue. New entries are refused past `capacity`; entries of
/// notifications the dispatcher already held are forced in (their number is bounded
/// by the dispatcher's own bounds), so nothing it accepted is ever dropped.
///
/// The callers' side takes no lock and allocates nothing: new entries go into a ring
/// allocated once (`capacity` slots), counted by atomics; the writer thread, parked
/// when it has nothing to do, is woken by the push that finds it idle. Forced items
/// (from workers, shutdown and replays, never from `enqueue`) go to a locked list.
struct Writer {
    /// New entries, from `enqueue` and `dead_letter`: room is reserved in `pending`
    /// before the push, so the ring never refuses one.
    ring: ArrayQueue<Item>,
    /// Forced items: notifications the dispatcher held, ends of replays.
    forced: Mutex<Vec<Item>>,
    /// Items handed over and not yet written (reserved before they are queued).
    pending: AtomicUsize,
    /// Entries among `pending` (the others end replays).
    pending_entries: AtomicUsize,
    closed: AtomicBool,
    /// The writer thread is parked, or about to: the next push wakes it. Otherwise
    /// pushes do not (it looks again before it parks), which saves each `enqueue`
    /// into a busy writer a system call and the writer a wake-up.
    idle: AtomicBool,
    /// The writer thread, set when it starts.
    thread: OnceLock<Thread>,
    /// Notified each time the writer finishes a group.
    written: Notify,
    capacity: usize,
    /// The service's defaults, filled into the jobs it makes entries of.
    defaults: Arc<Defaults>,
}

impl Writer {
    fn new(capacity: usize, defaults: Arc<Defaults>) -> Writer {
        let capacity = capacity.max(1);
        Writer {
            ring: ArrayQueue::new(capacity),
            forced: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            pending_entries: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            thread: OnceLock::new(),
            written: Notify::new(),
            capacity,
            defaults,
        }
    }

    /// Queues an item; gives it back when the queue is full (and `force` is off) or
    /// the writer has stopped. Without `force`, it takes no lock.
    #[expect(clippy::result_large_err, reason = "the item is given back, not boxed")]
    fn push(&self, item: Item, force: bool) -> Result<(), Item> {
        // Reserved before `closed` is read: a writer that closes after this read sees
        // the reservation, and waits for the item before it stops.
        let before = self.pending.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            // It may be waiting for this reservation before it stops.
            self.unpark();
            return Err(item);
        }
        if !force && before >= self.capacity {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(item);
        }
        if item.is_entry() {
            self.pending_entries.fetch_add(1, Ordering::Relaxed);
        }
        // What `pending` holds bounds the ring's new entries by `capacity`; the
        // fallback only guards that reasoning.
        let refused = if force {
            Err(item)
        } else {
            self.ring.push(item)
        };
        if let Err(item) = refused {
            lock(&self.forced).push(item);
        }
        // Pairs with the fence in `run`: either this sees `idle`, or the writer sees
        // the item before it parks.
        fence(Ordering::SeqCst);
        if self.idle.swap(false, Ordering::SeqCst) {
            self.unpark();
        }
        Ok(())
    }

    fn unpark(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Whether as many items wait for the writer as its capacity: new notifications
    /// are then refused, so that the items forced in (from notifications accepted
    /// before) stay bounded too.
    fn backed_up(&self) -> bool {
        self.pending.load(Ordering::Relaxed) >= self.capacity
    }

    /// Items queued or being written.
    fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Entries queued or being written.
    fn pending_entries(&self) -> usize {
        self.pending_entries.load(Ordering::Relaxed)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.unpark();
    }

    /// The next item, from the ring and from the forced ones (taken from their list
    /// all at once into `forced`) in turn, so that neither holds the other back.
    fn next(&self, forced: &mut Vec<Item>, ring_first: &mut bool) -> Option<Item> {
        *ring_first = !*ring_first;
        if *ring_first && let Some(item) = self.ring.pop() {
            return Some(item);
        }
        if forced.is_empty() {
            let mut list = lock(&self.forced);
            if !list.is_empty() {
                std::mem::swap(&mut *list, forced);
                // Taken in the order they came.
                forced.reverse();
            }
        }
        forced.pop().or_else(|| self.ring.pop())
    }

    /// The writer thread: takes the items one by one, writes the entries in groups of
    /// at most 1024 (or fewer, when nothing more is queued) with one sync each,
    /// settles their tickets, ends replays in order, and counts each group out of
    /// `pending` as it finishes it; parks when there is nothing to do; stops once
    /// closed with nothing pending.
    fn run(&self, store: &dyn DeadLetterStore, counters: &Counters) {
        let _ = self.thread.set(std::thread::current());
        let mut forced = Vec::new();
        let mut ring_first = false;
        let mut group = Vec::new();
        let mut tickets = Vec::new();
        let mut reported = 0;
        loop {
            report_drops(counters, &mut reported);
            // Items taken and not yet counted out of `pending`.
            let mut done = 0;
            while let Some(item) = self.next(&mut forced, &mut ring_first) {
                done += 1;
                match item {
                    Item::EndReplay { token, complete } => {
                        let entries = group.len();
                        write_group(store, counters, &mut group, &mut tickets);
                        end_replay(store, token, complete);
                        self.count_written(std::mem::take(&mut done), entries);
                    }
                    entry => {
                        let Some((entry, ticket)) = entry.into_entry(&self.defaults) else {
                            continue;
                        };
                        group.push(entry);
                        tickets.push(ticket);
                        if group.len() == 1024 {
                            let entries = group.len();
                            write_group(store, counters, &mut group, &mut tickets);
                            self.count_written(std::mem::take(&mut done), entries);
                        }
                    }
                }
            }
            if done > 0 {
                let entries = group.len();
                write_group(store, counters, &mut group, &mut tickets);
                self.count_written(done, entries);
                continue;
            }
            let closed = self.closed.load(Ordering::SeqCst);
            if closed && self.pending() == 0 {
                report_drops(counters, &mut reported);
                return;
            }
            self.idle.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.ring.is_empty() && lock(&self.forced).is_empty() {
                // Woken by a push; the timeout only bounds the wait, when closed, for
                // an item reserved but not yet pushed.
                std::thread::park_timeout(if closed {
                    Duration::from_millis(1)
                } else {
                    Duration::from_secs(1)
                });
            }
            self.idle.store(false, Ordering::SeqCst);
        }
    }

    /// Counts `items` (`entries` of them entries) as written, and tells the waiters.
    fn count_written(&self, items: usize, entries: usize) {
        self.pending_entries.fetch_sub(entries, Ordering::Relaxed);
        self.pending.fetch_sub(items, Ordering::SeqCst);
        self.written.notify_waiters();
    }
}

/// Prints, once, the new notifications dropped since the last report (`reported`):
/// from the writer's thread, so that the caller that drops one never writes to stderr.
fn report_drops(counters: &Counters, reported: &mut u64) {
    let dropped = counters.dropped.load(Ordering::Relaxed);
    if dropped > *reported {
        let _ = writeln!(
            std::io::stderr(),
            "piko-obs: notify.dead_letter.dropped: {} new notification(s) dropped: the \
             dispatcher's queue and the dead-letter writer's were full ({dropped} in all)",
            dropped - *reported
        );
        *reported = dropped;
    }
}

/// Writes `group` with one sync; settles its tickets once durable. A failed write
/// prints the entries to stderr, counts them, and leaves their tickets unsettled.
fn write_group(
    store: &dyn DeadLetterStore,
    counters: &Counters,
    group: &mut Vec<DeadLetter>,
    tickets: &mut Vec<Option<Ticket>>,
) {
    if group.is_empty() {
        return;
    }
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| store.append_all(group)))
        .unwrap_or_else(|_| Err(io::Error::other("the dead-letter store panicked")));
    match result {
        Ok(()) => {
            counters
                .dead_lettered
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            tickets.drain(..).flatten().for_each(Ticket::settle);
        }
        Err(e) => {
            // Not durable: print them, so they are at least in the logs.
            for entry in group.iter() {
                report_unwritten(&e, entry);
            }
            counters
                .dead_letter_errors
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            tickets.clear();
        }
    }
    group.clear();
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
    retry: crate::policy::RetryPolicy,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dispatcher {
    /// Starts the workers on `runtime`, delivering through `service`'s providers with
    /// its retry policy, dead-lettering into `store` from a writer thread. Attach it
    /// to the service with [`NotificationService::attach_dispatcher`] so `enqueue`
    /// reaches it.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        service: &NotificationService,
        store: Arc<dyn DeadLetterStore>,
        config: DispatcherConfig,
    ) -> io::Result<Dispatcher> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let writer = Arc::new(Writer::new(
            config.dead_letter_queue,
            service.defaults.clone(),
        ));
        let counters = Arc::new(Counters::default());
        {
            let (writer, store, counters) = (writer.clone(), store.clone(), counters.clone());
            std::thread::Builder::new()
                .name("piko-obs-dead-letters".into())
                .spawn(move || writer.run(&*store, &counters))?;
        }
        let inner = Arc::new(Inner {
            registry: service.registry.clone(),
            retry: service.retry_policy(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's ring holds `dead_letter_queue` items, allocated at start: the
    /// documented size (about 4 MiB at the default 10,000) holds while an item stays
    /// within 448 bytes.
    #[test]
    fn a_ring_slot_stays_within_its_documented_size() {
        let item = std::mem::size_of::<Item>();
        assert!(item <= 448, "an item is {item} bytes");
    }

    /// Keeps what it is given in memory.
    #[derive(Default)]
    struct Memory(Mutex<Vec<String>>);

    impl DeadLetterStore for Memory {
        fn append(&self, entry: &DeadLetter) -> io::Result<()> {
            lock(&self.0).push(entry.notification.content.title.clone());
            Ok(())
        }
        fn take_all(&self) -> io::Result<DeadLetterBatch> {
            Ok(DeadLetterBatch::default())
        }
    }

    fn entry(title: String) -> Item {
        let n = Notification::new(title, "m");
        let e = DeadLetter::new(n, vec!["p".into()], 0, SystemTime::now(), "e".into());
        Item::Entry(Box::new(e), None)
    }

    /// A writer of `capacity` running on its own thread into a memory store.
    fn started(
        capacity: usize,
    ) -> (
        Arc<Writer>,
        Arc<Memory>,
        Arc<Counters>,
        std::thread::JoinHandle<()>,
    ) {
        let writer = Arc::new(Writer::new(capacity, Arc::default()));
        let store = Arc::new(Memory::default());
        let counters = Arc::new(Counters::default());
        let (w, s, c) = (writer.clone(), store.clone(), counters.clone());
        let thread = std::thread::spawn(move || w.run(&*s, &c));
        (writer, store, counters, thread)
    }

    /// Four threads push, new and forced, while the writer writes, and one closes it
    /// midway: every push the writer accepted is written, once, before its thread
    /// stops; every other was given back; new entries never went past the capacity.
    #[test]
    fn the_writer_writes_every_item_it_accepts_even_when_closed_meanwhile() {
        for round in 0..20 {
            let (writer, store, counters, thread) = started(64);
            let accepted: Vec<usize> = std::thread::scope(|scope| {
                let pushers: Vec<_> = (0..4)
                    .map(|t| {
                        let writer = &writer;
                        scope.spawn(move || {
                            let mut ok = 0;
                            for i in 0..2000 {
                                if i == 1000 && t == 0 && round % 2 == 0 {
                                    writer.close();
                                }
                                let force = i % 3 == 0;
                                if writer.push(entry(format!("{t}-{i}")), force).is_ok() {
                                    ok += 1;
                                }
                                assert!(writer.ring.len() <= 64);
                            }
                            ok
                        })
                    })
                    .collect();
                pushers.into_iter().map(|p| p.join().unwrap()).collect()
            });
            writer.close();
            thread.join().unwrap();
            let written = lock(&store.0).clone();
            let accepted: usize = accepted.iter().sum();
            assert_eq!(written.len(), accepted, "round {round}");
            let unique: std::collections::HashSet<_> = written.iter().collect();
            assert_eq!(unique.len(), written.len(), "round {round}: written twice");
            assert_eq!(writer.pending(), 0);
            assert_eq!(writer.pending_entries(), 0);
            assert_eq!(
                counters.dead_lettered.load(Ordering::Relaxed),
                accepted as u64
            );
        }
    }

    /// A push into an idle writer wakes it at once, well before its 1 s timeout.
    #[test]
    fn a_push_wakes_the_idle_writer() {
        let (writer, store, _, thread) = started(8);
        for i in 0..5 {
            // Let it park.
            let idle = Instant::now() + Duration::from_secs(5);
            while !writer.idle.load(Ordering::SeqCst) {
                assert!(Instant::now() < idle, "the writer never went idle");
                std::thread::sleep(Duration::from_millis(1));
            }
            let t = Instant::now();
            writer.push(entry(format!("{i}")), false).ok().unwrap();
            while writer.pending() > 0 {
                assert!(t.elapsed() < Duration::from_secs(5));
                std::thread::sleep(Duration::from_micros(100));
            }
            assert!(
                t.elapsed() < Duration::from_millis(500),
                "woken after {:?}",
                t.elapsed()
            );
        }
        writer.close();
        thread.join().unwrap();
        assert_eq!(lock(&store.0).len(), 5);
    }
}
