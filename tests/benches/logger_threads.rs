//! `cargo xtask bench logger-threads`: many threads logging into one output. 1, 2, 4 and
//! 8 threads each log the 5-field JSON line of `logger.rs` to one `/dev/null` file;
//! piko-obs in its default (lossless) mode against `tracing-appender`'s `non_blocking`
//! writer under tracing-subscriber's JSON formatter, and `slog-async` in front of
//! slog-json (behind a `LineWriter`, as slog-json needs one), each peer in its lossless
//! setting and in its default one.
//!
//! A measurement is one implementation at one thread count: the threads start together,
//! log [`LINES`] lines between them, and the clock stops when the output has written
//! every line it will write (its writer flushed and stopped). The destination counts the
//! lines and the `write` calls that reach it, so a lossy setting's drops are the lines
//! sent but never written, and the writer's batching is lines per `write`. Rounds run
//! every implementation at every thread count, the order rotating each round; each
//! measurement is one JSON line in `target/criterion/logger_threads.json`, for
//! `cargo xtask bench` to take ratios within each round.
//!
//! Two more piko-obs rows split its time: `piko_obs_no_syscall` is the same pipeline into
//! a destination that counts and discards (no `write(2)`), `piko_obs_format_only` formats
//! each line into the thread's buffer and hands it to no one.

mod shared;

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{self, LineWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use piko_obs_logger::{Hub, Level};
use piko_obs_logger_drains::{Format, JsonFormat, JsonOutput, TimeZone};
use slog::Drain;

/// Lines per measurement, shared between the threads.
const LINES: u64 = 120_000;
/// Rounds per process.
const ROUNDS: usize = 5;
const THREADS: [usize; 4] = [1, 2, 4, 8];
/// What slog-async writes when it has dropped lines (its default setting reports them).
const SLOG_ASYNC_REPORT: &[u8] = b"slog-async: logger dropped messages";

/// What reached the destination.
#[derive(Default)]
struct Arrived {
    lines: AtomicU64,
    writes: AtomicU64,
    reports: AtomicU64,
}

/// `/dev/null` (or nothing), counting the lines and the `write` calls that reach it.
struct Counted {
    file: Option<File>,
    arrived: Arc<Arrived>,
    /// Lines holding this are a peer's drop reports, not logged lines.
    report: Option<&'static [u8]>,
}

impl Counted {
    fn new(devnull: bool, arrived: &Arc<Arrived>) -> Counted {
        Counted {
            file: devnull.then(|| {
                OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .expect("/dev/null")
            }),
            arrived: Arc::clone(arrived),
            report: None,
        }
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.file {
            Some(f) => f.write(buf)?,
            None => buf.len(),
        };
        let written = &buf[..n];
        let lines = written.iter().filter(|&&b| b == b'\n').count() as u64;
        self.arrived.lines.fetch_add(lines, Ordering::Relaxed);
        self.arrived.writes.fetch_add(1, Ordering::Relaxed);
        if let Some(marker) = self.report {
            let reports = written
                .windows(marker.len())
                .filter(|w| *w == marker)
                .count();
            self.arrived
                .reports
                .fetch_add(reports as u64, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Imp {
    PikoObs,
    PikoObsNoSyscall,
    PikoObsFormatOnly,
    TracingLossless,
    TracingDefault,
    SlogAsyncBlock,
    SlogAsyncDefault,
}

const IMPS: [Imp; 7] = [
    Imp::PikoObs,
    Imp::PikoObsNoSyscall,
    Imp::PikoObsFormatOnly,
    Imp::TracingLossless,
    Imp::TracingDefault,
    Imp::SlogAsyncBlock,
    Imp::SlogAsyncDefault,
];

impl Imp {
    fn id(self) -> &'static str {
        match self {
            Imp::PikoObs => "piko_obs",
            Imp::PikoObsNoSyscall => "piko_obs_no_syscall",
            Imp::PikoObsFormatOnly => "piko_obs_format_only",
            Imp::TracingLossless => "tracing_appender_lossless",
            Imp::TracingDefault => "tracing_appender_default",
            Imp::SlogAsyncBlock => "slog_async_block",
            Imp::SlogAsyncDefault => "slog_async_default",
        }
    }
}

/// Runs `each` on `threads` threads, `per_thread` times each, started together; the
/// time from their start to the end of `finish` (the output written and stopped).
fn timed<S: Send + Sync + 'static>(
    threads: usize,
    per_thread: u64,
    state: S,
    each: fn(&S),
    finish: impl FnOnce(S),
) -> Duration {
    let state = Arc::new(state);
    let go = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (state, go) = (Arc::clone(&state), Arc::clone(&go));
            std::thread::spawn(move || {
                go.wait();
                for _ in 0..per_thread {
                    each(&state);
                }
            })
        })
        .collect();
    go.wait();
    let started = Instant::now();
    for w in workers {
        w.join().expect("a logging thread");
    }
    let state = Arc::into_inner(state).expect("the threads are done");
    finish(state);
    started.elapsed()
}

fn tracing_line(dispatch: &tracing::Dispatch) {
    tracing::dispatcher::with_default(dispatch, shared::tracing_line5)
}

thread_local! {
    static FORMAT_BUF: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(512));
}

/// What formatting alone needs, made once as a logger's hub holds it.
struct FormatOnly {
    format: JsonFormat,
    secrets: piko_obs_logger::SecretKeys,
}

static SOURCE: piko_obs_logger::Source = piko_obs_logger::Source {
    file: file!(),
    line: line!(),
    module: None,
};

fn format_only(f: &FormatOnly) {
    let attrs = shared::fields5();
    let r = piko_obs_logger::Record::new(
        Level::INFO,
        black_box(shared::MSG),
        "bench",
        &SOURCE,
        &attrs,
        &f.secrets,
    );
    FORMAT_BUF.with_borrow_mut(|buf| {
        buf.clear();
        f.format.format(&r, buf);
        black_box(&buf);
    });
}

/// One measurement: (time, what arrived).
fn measure(imp: Imp, threads: usize) -> (Duration, Arc<Arrived>) {
    let per_thread = LINES / threads as u64;
    let arrived = Arc::new(Arrived::default());
    let took = match imp {
        Imp::PikoObs | Imp::PikoObsNoSyscall => {
            let dest = Counted::new(matches!(imp, Imp::PikoObs), &arrived);
            let hub = Hub::default();
            let out = JsonOutput::writer(dest)
                .with_time_zone(TimeZone::Utc)
                .build()
                .expect("writer thread");
            hub.add_output("bench", Level::INFO, out).expect("output");
            let log = hub.get_logger("bench");
            timed(threads, per_thread, log, shared::piko_line5, |_| {
                hub.shutdown(Duration::from_secs(30))
                    .expect("every line written");
            })
        }
        Imp::PikoObsFormatOnly => {
            let took = timed(
                threads,
                per_thread,
                FormatOnly {
                    format: JsonFormat::new(TimeZone::Utc),
                    secrets: piko_obs_logger::SecretKeys::default(),
                },
                format_only,
                drop,
            );
            arrived
                .lines
                .store(per_thread * threads as u64, Ordering::Relaxed);
            took
        }
        Imp::TracingLossless | Imp::TracingDefault => {
            let dest = Counted::new(true, &arrived);
            let (writer, guard) = if matches!(imp, Imp::TracingLossless) {
                tracing_appender::non_blocking::NonBlockingBuilder::default()
                    .lossy(false)
                    .finish(dest)
            } else {
                tracing_appender::non_blocking(dest)
            };
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_writer(writer)
                .finish();
            let dispatch = tracing::Dispatch::new(subscriber);
            timed(threads, per_thread, dispatch, tracing_line, move |d| {
                drop(d);
                drop(guard);
            })
        }
        Imp::SlogAsyncBlock | Imp::SlogAsyncDefault => {
            let mut dest = Counted::new(true, &arrived);
            dest.report = Some(SLOG_ASYNC_REPORT);
            let json = slog_json::Json::new(LineWriter::new(dest))
                .add_default_keys()
                .set_newlines(true)
                .build()
                .fuse();
            let mut builder = slog_async::Async::new(json);
            if matches!(imp, Imp::SlogAsyncBlock) {
                builder = builder.overflow_strategy(slog_async::OverflowStrategy::Block);
            }
            let (drain, guard) = builder.build_with_guard();
            let log = slog::Logger::root(drain.fuse(), slog::o!());
            timed(threads, per_thread, log, shared::slog_line5, move |log| {
                drop(log);
                drop(guard);
            })
        }
    };
    (took, arrived)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter other than that is not supported.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: f64 = load
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(f64::NAN);
    let mut json = String::new();
    for round in 0..ROUNDS {
        for (k, &threads) in THREADS.iter().enumerate() {
            for i in 0..IMPS.len() {
                let imp = IMPS[(i + round + k) % IMPS.len()];
                let (took, arrived) = measure(imp, threads);
                let sent = LINES / threads as u64 * threads as u64;
                let reports = arrived.reports.load(Ordering::Relaxed);
                let lines = arrived.lines.load(Ordering::Relaxed) - reports;
                let writes = arrived.writes.load(Ordering::Relaxed);
                let line = format!(
                    "{{\"round\":{round},\"threads\":{threads},\"imp\":\"{}\",\"sent\":{sent},\"written\":{lines},\"writes\":{writes},\"secs\":{:.6},\"lines_per_s\":{:.0},\"load\":{load}}}\n",
                    imp.id(),
                    took.as_secs_f64(),
                    lines as f64 / took.as_secs_f64(),
                );
                eprint!("{line}");
                json.push_str(&line);
            }
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/criterion/logger_threads.json");
    let _ = std::fs::create_dir_all(path.parent().expect("parent"));
    std::fs::write(&path, &json).expect("write the report");
}
