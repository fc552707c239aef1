//! Writing off the caller's thread: a bounded byte queue drained by one writer thread.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
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
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            progress: Condvar::new(),
            options,
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("piko-log-{name}"))
            .spawn(move || run(&worker, dest))?;
        Ok(AsyncWriter {
            name,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues one line (it should end with `\n`). Never panics; waits only as the
    /// overflow policy allows.
    pub fn push(&self, line: &[u8]) {
        let sh = &*self.shared;
        let mut st = sh.lock();
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
                        st = sh
                            .not_full
                            .wait_timeout(st, deadline - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
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
        st.lines += 1;
        // Counted under the lock, which is held anyway: no extra atomic operation.
        st.accepted += 1;
        let wake =
            st.writer_idle || (st.lingering && st.buf.len() >= sh.options.capacity_bytes / 2);
        drop(st);
        if wake {
            sh.not_empty.notify_one();
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
        while st.done < target && !st.finished {
            let now = Instant::now();
            if now >= deadline {
                return Err(FlushError::Timeout {
                    output: self.name.clone(),
                    pending: target - st.done,
                    waited: timeout,
                });
            }
            st = sh
                .progress
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
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
        sh.not_full.notify_all();
        // Join only a thread that has finished, so a stuck destination cannot hang us.
        let deadline = Instant::now() + Duration::from_millis(200);
        let mut st = sh.lock();
        while !st.finished && Instant::now() < deadline {
            st = sh
                .progress
                .wait_timeout(st, Duration::from_millis(20))
                .unwrap_or_else(|p| p.into_inner())
                .0;
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

/// How long the writer waits after a wake-up for more lines to batch. Each wake-up of
/// the writer can take the core from a caller on a busy machine, so it wakes at most
/// once a millisecond while lines flow (or when the queue is half full), not on every
/// line: a line reaches its destination within about 1 ms, or at once on `flush`.
const LINGER: Duration = Duration::from_millis(1);

fn run(sh: &Shared, mut dest: Box<dyn Write + Send>) {
    let mut batch: Vec<u8> = Vec::new();
    loop {
        let mut st = sh.lock();
        while st.buf.is_empty() && !st.closed {
            st.writer_idle = true;
            st = sh.not_empty.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.writer_idle = false;
        // Linger before taking a batch, so that the lines of a burst share one write and
        // callers never pay for waking this thread while it is busy. Cut short when
        // closing, when a flush asks, or when the queue is half full.
        let deadline = Instant::now() + LINGER;
        while !st.closed && !st.flush_requested && st.buf.len() < sh.options.capacity_bytes / 2 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st.lingering = true;
            st = sh
                .not_empty
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
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
        drop(st);
        sh.not_full.notify_all();
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
        let mut st = sh.lock();
        st.done += n;
        drop(st);
        sh.progress.notify_all();
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

    #[test]
    fn lossy_mode_counts_every_drop() {
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
            w.push(b"0123456789abcdef\n");
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
