//! Writing off the caller's thread: a bounded byte queue drained by one writer thread.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use piko_obs_logger::{FlushError, OutputStats};

/// The longest wait taken as given: a longer one (up to `Duration::MAX`) is a century,
/// as `Instant` cannot add more.
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What a caller does when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Wait for room, at most `timeout`; a line still without room then is dropped and
    /// counted. The default, with a 1 s bound: no line is lost unless the destination
    /// stalls for longer than that.
    Block {
        /// The longest a caller waits.
        timeout: Duration,
    },
    /// Drop the line at once and count it (lossy mode, for callers that must never wait).
    Drop,
}

impl Default for Overflow {
    fn default() -> Self {
        Overflow::Block {
            timeout: Duration::from_secs(1),
        }
    }
}

/// Queue settings of an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOptions {
    /// Bytes the queue holds before callers wait or drop (default 1 MiB). A single line
    /// larger than this is still accepted when the queue is empty.
    pub capacity_bytes: usize,
    /// What happens when it is full.
    pub overflow: Overflow,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            capacity_bytes: 1 << 20,
            overflow: Overflow::default(),
        }
    }
}

struct State {
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: u64,
    closed: bool,
    writer_idle: bool,
    /// The writer is letting a batch build up.
    lingering: bool,
    /// A flush is waiting: the writer should not linger.
    flush_requested: bool,
    /// Lines accepted into the queue, in all.
    accepted: u64,
    /// Lines the writer has taken from the queue, in all.
    taken: u64,
    /// Lines taken by the writer and finished (written or failed), in all.
    done: u64,
    finished: bool,
    /// Callers waiting for room (`not_full`).
    full_waiters: u32,
    /// Callers waiting for the writer's progress (`progress`): flush and close.
    progress_waiters: u32,
}

struct Shared {
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    progress: Condvar,
    options: QueueOptions,
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    /// The writer thread, unparked to cut its lingering short.
    writer: OnceLock<Thread>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer's lock. A thread that blocks on a held `Mutex` marks it contended, and
    /// the holder then pays a system call to wake it on unlocking: callers hold the lock
    /// most of the time while lines stream in (each formats its line under it), so
    /// blocking here made them pay that call on every batch, several ns a line. The writer
    /// tries without blocking first, for [`WRITER_LOCK_SPIN`], and blocks only after.
    fn lock_behind_callers(&self) -> MutexGuard<'_, State> {
        let give_up = Instant::now() + WRITER_LOCK_SPIN;
        loop {
            match self.state.try_lock() {
                Ok(st) => return st,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) if Instant::now() >= give_up => return self.lock(),
                Err(TryLockError::WouldBlock) => {
                    for _ in 0..WRITER_LOCK_PAUSES {
                        std::hint::spin_loop();
                    }
                }
            }
        }
    }

    /// Cuts the writer's lingering short (a flush, a close, or a half-full queue).
    fn wake_lingering_writer(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }
}

/// How long the writer tries the lock before it blocks on it: many times a caller's hold
/// (a line's formatting, about 100 ns).
const WRITER_LOCK_SPIN: Duration = Duration::from_micros(5);
/// The spin hints the writer waits between two tries of the lock.
const WRITER_LOCK_PAUSES: u32 = 8;

/// A bounded queue of formatted lines and the thread that writes them to a destination.
///
/// Callers append whole lines under a short lock; the writer takes everything queued in
/// one swap and writes it with one `write_all`, so under load many lines share one
/// system call. Dropping the writer closes it: queued lines are written first, waiting
/// at most [`AsyncWriter::CLOSE_TIMEOUT`].
pub struct AsyncWriter {
    name: String,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AsyncWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWriter")
            .field("name", &self.name)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl AsyncWriter {
    /// How long dropping a writer waits for its queue to drain.
    pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

    /// Starts the writer thread for `dest`. `name` names the thread and appears in errors.
    pub fn spawn(
        name: impl Into<String>,
        dest: Box<dyn Write + Send>,
        options: QueueOptions,
    ) -> std::io::Result<AsyncWriter> {
        let name = name.into();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::with_capacity(options.capacity_bytes.min(1 << 16)),
                lines: 0,
                closed: false,
                writer_idle: false,
                lingering: false,
                flush_requested: false,
                accepted: 0,
                taken: 0,
                done: 0,
                finished: false,
                full_waiters: 0,
                progress_waiters: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            progress: Condvar::new(),
            options,
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            writer: OnceLock::new(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("piko-log-{name}"))
            .spawn(move || run(&worker, dest))?;
        let _ = shared.writer.set(thread.thread().clone());
        Ok(AsyncWriter {
            name,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues one line (it should end with `\n`). Never panics; waits only as the
    /// overflow policy allows.
    pub fn push(&self, line: &[u8]) {
        self.push_locked(self.shared.lock(), line);
    }

    /// Queues the line `write_line` appends, written straight into the queue's buffer
    /// under its lock: one copy of the line fewer than [`push`](Self::push). Returns
    /// `false`, having done nothing, when another thread holds the lock (the caller then
    /// formats aside and pushes, so callers never format one after another).
    /// `write_line` must not log to this output (it would wait for the lock this thread
    /// holds); if it panics, nothing of its line stays in the queue.
    pub(crate) fn try_push_with(&self, write_line: impl FnOnce(&mut Vec<u8>)) -> bool {
        let sh = &*self.shared;
        let mut st = match sh.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        if st.closed {
            drop(st);
            sh.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let start = st.buf.len();
        {
            let mut line = Uncommitted {
                buf: &mut st.buf,
                start,
            };
            write_line(line.buf);
            line.start = usize::MAX;
        }
        if start > 0 && st.buf.len() > sh.options.capacity_bytes {
            // No room for it: take the line out and wait for room as `push` does. Rare
            // (the queue is full), so the copy's allocation does not matter.
            let line = st.buf.split_off(start);
            self.push_locked(st, &line);
        } else {
            self.accepted(st);
        }
        true
    }

    fn push_locked(&self, mut st: MutexGuard<'_, State>, line: &[u8]) {
        let sh = &*self.shared;
        if st.closed {
            drop(st);
            sh.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let cap = sh.options.capacity_bytes;
        if !st.buf.is_empty() && st.buf.len() + line.len() > cap {
            match sh.options.overflow {
                Overflow::Drop => {
                    drop(st);
                    sh.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Overflow::Block { timeout } => {
                    let deadline = Instant::now() + timeout.min(LONGEST_WAIT);
                    while !st.buf.is_empty() && st.buf.len() + line.len() > cap && !st.closed {
                        let now = Instant::now();
                        if now >= deadline {
                            drop(st);
                            sh.dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        st.full_waiters += 1;
                        st = sh
                            .not_full
                            .wait_timeout(st, deadline - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                        st.full_waiters -= 1;
                    }
                    if st.closed {
                        drop(st);
                        sh.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
        st.buf.extend_from_slice(line);
        self.accepted(st);
    }

    /// Counts the line just appended and wakes the writer if it sleeps with nothing to
    /// do, or lingers while the queue is half full.
    fn accepted(&self, mut st: MutexGuard<'_, State>) {
        let sh = &*self.shared;
        st.lines += 1;
        // Counted under the lock, which is held anyway: no extra atomic operation.
        st.accepted += 1;
        let idle = st.writer_idle;
        let half_full = st.lingering && st.buf.len() >= sh.options.capacity_bytes / 2;
        drop(st);
        if idle {
            sh.not_empty.notify_one();
        } else if half_full {
            sh.wake_lingering_writer();
        }
    }

    /// Waits until every line accepted before the call is written (or failed), at most
    /// `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let sh = &*self.shared;
        let deadline = Instant::now() + timeout.min(LONGEST_WAIT);
        let mut st = sh.lock();
        let target = st.taken + st.lines;
        st.flush_requested = true;
        sh.not_empty.notify_one();
        sh.wake_lingering_writer();
        while st.done < target && !st.finished {
            let now = Instant::now();
            if now >= deadline {
                return Err(FlushError::Timeout {
                    output: self.name.clone(),
                    pending: target - st.done,
                    waited: timeout,
                });
            }
            st.progress_waiters += 1;
            st = sh
                .progress
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            st.progress_waiters -= 1;
        }
        Ok(())
    }

    /// Writes what is queued (within `timeout`), then stops the thread. Lines pushed
    /// afterwards are dropped and counted. Calling it again is harmless.
    pub fn close(&self, timeout: Duration) -> Result<(), FlushError> {
        let result = self.flush(timeout);
        let sh = &*self.shared;
        let mut st = sh.lock();
        st.closed = true;
        drop(st);
        sh.not_empty.notify_all();
        sh.wake_lingering_writer();
        sh.not_full.notify_all();
        // Join only a thread that has finished, so a stuck destination cannot hang us.
        let deadline = Instant::now() + Duration::from_millis(200);
        let mut st = sh.lock();
        while !st.finished && Instant::now() < deadline {
            st.progress_waiters += 1;
            st = sh
                .progress
                .wait_timeout(st, Duration::from_millis(20))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            st.progress_waiters -= 1;
        }
        let finished = st.finished;
        drop(st);
        if finished && let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        result
    }

    /// The counters.
    pub fn stats(&self) -> OutputStats {
        let sh = &*self.shared;
        OutputStats {
            accepted: sh.lock().accepted,
            written: sh.written.load(Ordering::Relaxed),
            dropped: sh.dropped.load(Ordering::Relaxed),
            write_errors: sh.write_errors.load(Ordering::Relaxed),
        }
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for AsyncWriter {
    fn drop(&mut self) {
        let _ = self.close(Self::CLOSE_TIMEOUT);
    }
}

/// The longest the writer waits after a wake-up for more lines to batch. Each wake-up of
/// the writer can take the core from a caller on a busy machine, so while lines trickle
/// it wakes at most once a millisecond (or when the queue is half full), not on every
/// line: a line reaches its destination within about 1 ms, or at once on `flush`.
const LINGER: Duration = Duration::from_millis(1);

/// The shortest wait between batches while lines stream in.
const LINGER_MIN: Duration = Duration::from_micros(50);

/// The batch the writer aims at while lines stream in. The callers write each line into
/// the queue's buffer, and the writer swaps that buffer with its own: the two buffers are
/// all the memory the callers write, so batches this small keep both in the callers'
/// cache, where batches of half the queue (1 MiB in all) miss it on every line.
const BATCH_TARGET: usize = 64 << 10;

/// How long the writer waits for its next batch: the time the callers took to queue
/// [`BATCH_TARGET`] bytes at the rate of the last batch (`bytes` queued in `took`), within
/// [`LINGER_MIN`] and [`LINGER`]. The writer wakes itself on its own timer, on its own
/// core; the callers do not wake it while it waits unless the queue is half full.
fn linger_after(bytes: usize, took: Duration) -> Duration {
    if bytes == 0 {
        return LINGER;
    }
    let wait = took.as_nanos().saturating_mul(BATCH_TARGET as u128) / bytes as u128;
    Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX)).clamp(LINGER_MIN, LINGER)
}

fn run(sh: &Shared, mut dest: Box<dyn Write + Send>) {
    let mut batch: Vec<u8> = Vec::new();
    let mut linger = LINGER;
    let mut last_take = Instant::now();
    loop {
        let mut st = sh.lock_behind_callers();
        while st.buf.is_empty() && !st.closed {
            st.writer_idle = true;
            st = sh.not_empty.wait(st).unwrap_or_else(|p| p.into_inner());
            // Lines after an idle spell: time them from now, at most the longest wait.
            last_take = Instant::now();
            linger = LINGER;
        }
        st.writer_idle = false;
        // Linger before taking a batch, so that the lines of a burst share one write and
        // callers never pay for waking this thread while it is busy. Cut short when
        // closing, when a flush asks, or when the queue is half full.
        let deadline = Instant::now() + linger;
        while !st.closed && !st.flush_requested && st.buf.len() < sh.options.capacity_bytes / 2 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Parked, not waiting on a condition variable, which would take the lock back
            // by blocking on it. A wake-up lost to other code on this thread (a
            // destination that parks) only lets the linger run to its deadline.
            st.lingering = true;
            drop(st);
            std::thread::park_timeout(deadline - now);
            st = sh.lock_behind_callers();
            st.lingering = false;
        }
        st.flush_requested = false;
        if st.buf.is_empty() {
            st.finished = true;
            drop(st);
            sh.progress.notify_all();
            let _ = contained(|| dest.flush());
            return;
        }
        std::mem::swap(&mut st.buf, &mut batch);
        let n = std::mem::take(&mut st.lines);
        st.taken += n;
        let full_waiters = st.full_waiters;
        drop(st);
        let now = Instant::now();
        linger = linger_after(batch.len(), now.saturating_duration_since(last_take));
        last_take = now;
        if full_waiters > 0 {
            sh.not_full.notify_all();
        }
        let ok = contained(|| dest.write_all(&batch).and_then(|()| dest.flush())).is_ok();
        if ok {
            sh.written.fetch_add(n, Ordering::Relaxed);
        } else {
            sh.write_errors.fetch_add(1, Ordering::Relaxed);
            sh.dropped.fetch_add(n, Ordering::Relaxed);
        }
        batch.clear();
        if batch.capacity() > 4 * sh.options.capacity_bytes.max(1 << 16) {
            batch.shrink_to(sh.options.capacity_bytes.min(1 << 16));
        }
        let mut st = sh.lock_behind_callers();
        st.done += n;
        let progress_waiters = st.progress_waiters;
        drop(st);
        if progress_waiters > 0 {
            sh.progress.notify_all();
        }
    }
}

/// A line being written into the queue's buffer: dropped before it is committed (the
/// writing panicked), it cuts the buffer back to where the line began.
struct Uncommitted<'a> {
    buf: &'a mut Vec<u8>,
    /// Where the line began; `usize::MAX` once committed.
    start: usize,
}

impl Drop for Uncommitted<'_> {
    fn drop(&mut self) {
        if self.start != usize::MAX {
            self.buf.truncate(self.start);
        }
    }
}

/// Runs a call into a destination, turning a panic in it into an error: a `Write` that
/// panics loses the lines of that call (counted as failed), never the writer thread or
/// the caller. The panic hook has already reported the panic.
fn contained(call: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|_| {
        Err(std::io::Error::other(
            "the destination panicked; its lines were dropped",
        ))
    })
}

/// Writes each line on the caller's thread, under a lock, with one `write_all` per line:
/// for destinations that never block (`io::sink()`, an in-memory buffer) or programs that
/// want a line on disk before the call returns. A failed write is counted; the line is
/// dropped.
pub struct DirectWriter {
    name: String,
    dest: Mutex<Direct>,
}

struct Direct {
    dest: Box<dyn Write + Send>,
    stats: OutputStats,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl DirectWriter {
    /// A direct writer to `dest`.
    pub fn new(name: impl Into<String>, dest: Box<dyn Write + Send>) -> DirectWriter {
        DirectWriter {
            name: name.into(),
            dest: Mutex::new(Direct {
                dest,
                stats: OutputStats::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Direct> {
        self.dest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one line now.
    pub fn push(&self, line: &[u8]) {
        let mut d = self.lock();
        d.stats.accepted += 1;
        if contained(|| d.dest.write_all(line)).is_ok() {
            d.stats.written += 1;
        } else {
            d.stats.write_errors += 1;
            d.stats.dropped += 1;
        }
    }

    /// Flushes the destination.
    pub fn flush(&self) -> Result<(), FlushError> {
        let mut d = self.lock();
        contained(|| d.dest.flush()).map_err(|e| FlushError::Failed {
            output: self.name.clone(),
            reason: e.to_string(),
        })
    }

    /// The counters.
    pub fn stats(&self) -> OutputStats {
        self.lock().stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);
    impl Write for Collect {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A destination that blocks until told to go on.
    struct Gate(Mutex<mpsc::Receiver<()>>, Collect);
    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.lock().unwrap().recv_timeout(Duration::from_secs(10));
            self.1.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_and_flush_waits_for_them() {
        let out = Collect::default();
        let w = AsyncWriter::spawn("t", Box::new(out.clone()), QueueOptions::default()).unwrap();
        for i in 0..1000 {
            w.push(format!("{i}\n").as_bytes());
        }
        w.flush(Duration::from_secs(5)).unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let got: Vec<usize> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        let s = w.stats();
        assert_eq!((s.accepted, s.written, s.dropped), (1000, 1000, 0));
    }

    /// 100 lines through `push` into a 64-byte lossy queue whose destination is stuck
    /// at first: some are dropped, every one is counted, and what is accepted is written.
    fn lossy_mode_counts_every_drop_of(push: impl Fn(&AsyncWriter, &[u8])) {
        let (tx, rx) = mpsc::channel();
        let out = Collect::default();
        let w = AsyncWriter::spawn(
            "lossy",
            Box::new(Gate(Mutex::new(rx), out.clone())),
            QueueOptions {
                capacity_bytes: 64,
                overflow: Overflow::Drop,
            },
        )
        .unwrap();
        for _ in 0..100 {
            push(&w, b"0123456789abcdef\n");
            assert!(w.shared.lock().buf.len() <= 64);
        }
        for _ in 0..200 {
            let _ = tx.send(());
        }
        w.flush(Duration::from_secs(5)).unwrap();
        let s = w.stats();
        let lines = out.0.lock().unwrap().split(|b| *b == b'\n').count() - 1;
        assert!(s.dropped > 0);
        assert_eq!(s.accepted + s.dropped, 100);
        assert_eq!(s.written as usize, lines);
        assert_eq!(s.written, s.accepted);
    }

    #[test]
    fn lossy_mode_counts_every_drop() {
        lossy_mode_counts_every_drop_of(|w, line| w.push(line));
    }

    #[test]
    fn blocking_mode_waits_at_most_its_bound_then_counts_the_drop() {
        let (tx, rx) = mpsc::channel::<()>();
        let w = AsyncWriter::spawn(
            "stuck",
            Box::new(Gate(Mutex::new(rx), Collect::default())),
            QueueOptions {
                capacity_bytes: 32,
                overflow: Overflow::Block {
                    timeout: Duration::from_millis(100),
                },
            },
        )
        .unwrap();
        // First line goes to the (stuck) writer, the second fills the queue.
        w.push(b"first line of twenty bytes\n");
        std::thread::sleep(Duration::from_millis(50));
        w.push(b"second line of twenty bytes\n");
        let start = Instant::now();
        w.push(b"third line of twenty bytes\n");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(w.stats().dropped, 1);
        let err = w.flush(Duration::from_millis(50)).unwrap_err();
        assert!(err.to_string().contains("still had"), "{err}");
        // Unblock the destination so the writer can close.
        drop(tx);
        w.close(Duration::from_secs(5)).unwrap();
    }

    /// An overflow wait and a flush bound of `Duration::MAX` (no bound, in effect) do
    /// not panic adding the bound to the clock: a caller waits for room as asked, and
    /// every line is written.
    #[test]
    fn the_longest_overflow_wait_and_flush_bound_do_not_panic() {
        let (tx, rx) = mpsc::channel::<()>();
        let out = Collect::default();
        let w = AsyncWriter::spawn(
            "patient",
            Box::new(Gate(Mutex::new(rx), out.clone())),
            QueueOptions {
                capacity_bytes: 32,
                overflow: Overflow::Block {
                    timeout: Duration::MAX,
                },
            },
        )
        .unwrap();
        w.push(b"first line of twenty bytes\n");
        std::thread::sleep(Duration::from_millis(50));
        w.push(b"second line of twenty bytes\n");
        // The queue is full: the third line waits until the destination moves on.
        let opener = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            for _ in 0..3 {
                let _ = tx.send(());
            }
        });
        w.push(b"third line of twenty bytes\n");
        w.flush(Duration::MAX).unwrap();
        opener.join().unwrap();
        let s = w.stats();
        assert_eq!((s.accepted, s.written, s.dropped), (3, 3, 0), "{s:?}");
        assert_eq!(out.0.lock().unwrap().split(|b| *b == b'\n').count() - 1, 3);
        w.close(Duration::MAX).unwrap();
    }

    /// A destination whose write panics while its text contains `boom`.
    #[derive(Clone, Default)]
    struct Explosive(Collect);
    impl Write for Explosive {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            assert!(
                !b.windows(4).any(|w| w == b"boom"),
                "the destination panicked"
            );
            self.0.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panicking_destination_loses_its_lines_not_the_writer() {
        let out = Explosive::default();
        let w = AsyncWriter::spawn(
            "explosive",
            Box::new(out.clone()),
            QueueOptions {
                capacity_bytes: 64,
                overflow: Overflow::Block {
                    timeout: Duration::from_secs(2),
                },
            },
        )
        .unwrap();
        w.push(b"boom\n");
        w.flush(Duration::from_secs(5)).unwrap();
        // The writer thread lives on: the later lines arrive, and no caller waits for
        // room in a queue that nobody drains.
        let start = Instant::now();
        for i in 0..200 {
            w.push(format!("line {i:03}\n").as_bytes());
        }
        w.flush(Duration::from_secs(5)).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let text = String::from_utf8(out.0.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 200);
        assert!(text.ends_with("line 199\n"));
        let s = w.stats();
        assert_eq!((s.accepted, s.written, s.dropped), (201, 200, 1));
        assert_eq!(s.write_errors, 1);
        // The same on the caller's thread: the panic stays inside the output.
        let direct = DirectWriter::new("explosive", Box::new(Explosive::default()));
        direct.push(b"boom\n");
        direct.push(b"fine\n");
        let s = direct.stats();
        assert_eq!((s.accepted, s.written, s.dropped), (2, 1, 1));
    }

    /// A line written in place that panics half-way leaves none of its bytes in the
    /// queue, and the queue goes on taking lines in place.
    #[test]
    fn a_line_written_in_place_that_panics_leaves_nothing_behind() {
        let out = Collect::default();
        let w =
            AsyncWriter::spawn("in-place", Box::new(out.clone()), QueueOptions::default()).unwrap();
        assert!(w.try_push_with(|b| b.extend_from_slice(b"one\n")));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            w.try_push_with(|b| {
                b.extend_from_slice(b"half a li");
                panic!("the format panicked");
            })
        }));
        assert!(panicked.is_err());
        assert!(w.try_push_with(|b| b.extend_from_slice(b"two\n")));
        w.flush(Duration::from_secs(5)).unwrap();
        assert_eq!(out.0.lock().unwrap().as_slice(), b"one\ntwo\n");
        let s = w.stats();
        assert_eq!((s.accepted, s.written, s.dropped), (2, 2, 0), "{s:?}");
    }

    /// Lines written in place obey the queue's bound as pushed ones do: in lossy mode
    /// a line without room is dropped and counted, and what is accepted is written.
    #[test]
    fn lines_written_in_place_keep_the_bound_and_count_drops() {
        lossy_mode_counts_every_drop_of(|w, line| {
            assert!(w.try_push_with(|b| b.extend_from_slice(line)));
        });
    }

    /// While another thread holds the queue's lock, a line is not written in place: the
    /// caller formats it aside and pushes it instead.
    #[test]
    fn writing_in_place_gives_way_to_a_held_lock() {
        let w = AsyncWriter::spawn(
            "busy",
            Box::new(Collect::default()),
            QueueOptions::default(),
        )
        .unwrap();
        let held = w.shared.lock();
        let w = &w;
        let tried = std::thread::scope(|s| {
            s.spawn(|| w.try_push_with(|b| b.extend_from_slice(b"line\n")))
                .join()
                .unwrap()
        });
        drop(held);
        assert!(!tried);
        assert_eq!(w.stats().accepted, 0);
    }

    #[test]
    fn the_writer_waits_less_while_lines_stream_in() {
        // 1 MiB in 2 ms: the next 64 KiB take 125 µs.
        assert_eq!(
            linger_after(1 << 20, Duration::from_millis(2)),
            Duration::from_micros(125)
        );
        // Within the shortest and the longest wait.
        assert_eq!(linger_after(1 << 30, Duration::from_millis(1)), LINGER_MIN);
        assert_eq!(linger_after(100, Duration::from_millis(1)), LINGER);
        assert_eq!(linger_after(0, Duration::ZERO), LINGER);
    }

    #[test]
    fn close_writes_everything_and_later_lines_are_counted_drops() {
        let out = Collect::default();
        let w = AsyncWriter::spawn("c", Box::new(out.clone()), QueueOptions::default()).unwrap();
        for _ in 0..500 {
            w.push(b"x\n");
        }
        w.close(Duration::from_secs(5)).unwrap();
        assert_eq!(out.0.lock().unwrap().len(), 1000);
        w.push(b"late\n");
        assert_eq!(w.stats().dropped, 1);
        w.close(Duration::from_secs(1)).unwrap();
    }
}
