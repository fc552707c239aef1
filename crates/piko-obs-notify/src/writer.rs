//! The dead-letter writer: the thread that writes what the dispatcher could not
//! deliver into the [`DeadLetterStore`], in groups with one sync each, from a bounded
//! ring that callers push into without a lock or an allocation; and the units it is
//! handed: a dispatcher's [`Job`] (a notification on its way), a ready entry, or the
//! end of a replay, with the [`Ticket`]s that tell a replay when its entries are
//! settled. Depends on the dead-letter port, the context defaults and the registry's
//! name list; knows nothing of the dispatcher that feeds it.

// Reports go to stderr with `writeln!`, their failure ignored: `eprintln!` panics when
// stderr is closed, which would stop the dead-letter writer thread.
use std::io::{self, Write as _};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, SystemTime};

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use crate::dead_letter::{DeadLetter, DeadLetterStore};
use crate::defaults::Defaults;
use crate::model::Notification;
use crate::registry::unique;

/// The dispatcher's counters; the writer keeps those of the dead letters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) enqueued: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) waiting_retry: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) dead_letter_errors: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

/// An entry the store could not take: printed whole, so it is at least in the logs.
pub(crate) fn report_unwritten(e: &io::Error, entry: &DeadLetter) {
    let _ = writeln!(
        std::io::stderr(),
        "piko-obs: notify.dead_letter.write_failed: {e}; entry: {}",
        serde_json::to_string(entry).unwrap_or_default()
    );
}
/// A replay under way: the store keeps the entries it set aside until every entry
/// the replay queued is settled (delivered, or durably dead-lettered again). Each
/// queued entry holds a [`Ticket`]; when the last one goes, the replay ends, as
/// complete unless a ticket was dropped unsettled (then the store keeps the entries
/// for the next replay: at least once).
pub(crate) struct ReplayRun {
    pub(crate) token: u64,
    pub(crate) lost: AtomicBool,
    pub(crate) writer: Arc<Writer>,
    pub(crate) store: Arc<dyn DeadLetterStore>,
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
pub(crate) struct Ticket {
    pub(crate) run: Arc<ReplayRun>,
    settled: bool,
}

impl Ticket {
    pub(crate) fn new(run: &Arc<ReplayRun>) -> Ticket {
        Ticket {
            run: run.clone(),
            settled: false,
        }
    }
    pub(crate) fn settle(mut self) {
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
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) n: Notification,
    pub(crate) pending: Vec<String>,
    /// How `pending` is to be made, for a job just queued: by the worker or the writer
    /// that first takes it, which also fills in the service's defaults, so that
    /// `enqueue` allocates nothing on the caller's thread.
    pub(crate) unresolved: Option<Unresolved>,
    pub(crate) attempts: u32,
    pub(crate) first_attempt: Option<SystemTime>,
    /// The last error of each provider that failed its last attempt (a few: a list).
    pub(crate) last_error: Vec<(String, String)>,
    pub(crate) ticket: Option<Ticket>,
}

/// Where a job just queued goes.
pub(crate) enum Unresolved {
    /// To the default provider, whose shared name was taken when it was queued.
    Default(Arc<str>),
    /// To the notification's own providers (all registered when it was queued).
    Named,
}

impl Job {
    /// For a job just queued: makes `pending`, and fills in the service's `defaults`.
    pub(crate) fn resolve(&mut self, defaults: &Defaults) {
        let Some(unresolved) = self.unresolved.take() else {
            return;
        };
        self.pending = match unresolved {
            Unresolved::Default(name) => vec![name.to_string()],
            Unresolved::Named => unique(&self.n.providers),
        };
        defaults.fill(&mut self.n);
    }

    /// For the writer, which makes its dead-letter entry: the caller's thread only
    /// moves it into the writer's ring and reads the clock, allocating nothing (an
    /// allocation here would meet the writer's frees in the allocator's lock).
    pub(crate) fn into_item(self, why: Option<&'static str>) -> Item {
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
pub(crate) enum Item {
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
    pub(crate) fn into_entry(self, defaults: &Defaults) -> Option<(DeadLetter, Option<Ticket>)> {
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
pub(crate) struct Writer {
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
    pub(crate) written: Notify,
    capacity: usize,
    /// The service's defaults, filled into the jobs it makes entries of.
    pub(crate) defaults: Arc<Defaults>,
}

impl Writer {
    pub(crate) fn new(capacity: usize, defaults: Arc<Defaults>) -> Writer {
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
    pub(crate) fn push(&self, item: Item, force: bool) -> Result<(), Item> {
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
    pub(crate) fn backed_up(&self) -> bool {
        self.pending.load(Ordering::Relaxed) >= self.capacity
    }

    /// Items queued or being written.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Entries queued or being written.
    pub(crate) fn pending_entries(&self) -> usize {
        self.pending_entries.load(Ordering::Relaxed)
    }

    pub(crate) fn close(&self) {
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
    pub(crate) fn run(&self, store: &dyn DeadLetterStore, counters: &Counters) {
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
pub(crate) fn write_group(
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

/// Locks `m`, whatever a panicking holder left.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::dead_letter::DeadLetterBatch;

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
