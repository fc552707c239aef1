//! A slow disk under the JSON output (ADR 0002, `docs/reference/logger.md` "Queues and
//! loss"): a destination whose writes block. In the default mode (`Overflow::Block`, 1 s)
//! a caller waits at most the bound per line and, when the destination keeps up within
//! the bound, no line is lost; past the bound, and in the lossy mode, every line not
//! written is counted as dropped. Each test counts the lines that reach the destination.
//!
//! `piko-obs-logger-drains`'s unit tests cover the queue alone (`AsyncWriter`); these go
//! through the hub, the JSON format and `JsonOutput::writer(..).with_queue(..)`.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use piko_obs_logger::{Hub, Level, OutputStats, attr};
use piko_obs_logger_drains::{JsonOutput, Overflow, QueueOptions};
use piko_obs_testkit::Capture;

const T: Duration = Duration::from_secs(30);

/// A destination like a disk that stalls: while the gate is closed every write waits
/// (at most 60 s, so a failing test cannot hang); each write also takes `per_write`.
#[derive(Clone)]
struct SlowDisk {
    gate: Arc<(Mutex<bool>, Condvar)>,
    per_write: Duration,
    out: Capture,
}

impl SlowDisk {
    fn new(open: bool, per_write: Duration) -> SlowDisk {
        SlowDisk {
            gate: Arc::new((Mutex::new(open), Condvar::new())),
            per_write,
            out: Capture::new(),
        }
    }
    fn open(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }
    fn lines(&self) -> usize {
        self.out.lines().len()
    }
}

impl Write for SlowDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (lock, cvar) = &*self.gate;
        let open = lock.lock().unwrap();
        let _open = cvar
            .wait_timeout_while(open, Duration::from_secs(60), |open| !*open)
            .unwrap();
        std::thread::sleep(self.per_write);
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A hub with one JSON output into `disk`, queued with `queue`.
fn hub_on(disk: &SlowDisk, queue: QueueOptions) -> Hub {
    let hub = Hub::default();
    hub.add_output(
        "slow",
        Level::INFO,
        JsonOutput::writer(disk.clone())
            .with_queue(queue)
            .build()
            .unwrap(),
    )
    .unwrap();
    hub
}

/// Logs `n` lines of about 200 bytes from `threads` threads; returns the longest a
/// single call took.
fn log_lines(hub: &Hub, threads: u64, n: u64) -> Duration {
    let longest = Mutex::new(Duration::ZERO);
    std::thread::scope(|s| {
        for t in 0..threads {
            let log = hub.get_logger("disk").with(&[attr::uint("thread", t)]);
            let longest = &longest;
            s.spawn(move || {
                let mut mine = Duration::ZERO;
                for i in 0..n / threads {
                    let start = Instant::now();
                    log.info(
                        "Request handled",
                        &[
                            attr::uint("i", i),
                            attr::string("path", "/api/v1/orders/0123456789/items"),
                            attr::string("user_agent", "soak/1.0 (slow disk test)"),
                        ],
                    );
                    mine = mine.max(start.elapsed());
                }
                let mut l = longest.lock().unwrap();
                *l = (*l).max(mine);
            });
        }
    });
    longest.into_inner().unwrap()
}

fn stats(hub: &Hub) -> OutputStats {
    hub.outputs()[0].stats
}

#[test]
fn the_default_is_blocking_with_a_one_second_bound() {
    let q = QueueOptions::default();
    assert_eq!(
        q.overflow,
        Overflow::Block {
            timeout: Duration::from_secs(1)
        }
    );
    assert_eq!(q.capacity_bytes, 1 << 20);
}

#[test]
fn a_slow_disk_slows_callers_within_the_bound_and_loses_nothing() {
    // Every write takes 5 ms and the queue holds about 40 lines: callers wait for room
    // all the time, each at most the default bound (1 s).
    let disk = SlowDisk::new(true, Duration::from_millis(5));
    let hub = hub_on(
        &disk,
        QueueOptions {
            capacity_bytes: 8 << 10,
            ..QueueOptions::default()
        },
    );
    let n = 8_000;
    let start = Instant::now();
    let longest = log_lines(&hub, 4, n);
    let took = start.elapsed();
    hub.flush(T).unwrap();
    let s = stats(&hub);
    assert_eq!(
        (s.accepted, s.written, s.dropped, s.write_errors),
        (n, n, 0, 0),
        "{s:?}"
    );
    assert_eq!(disk.lines() as u64, n, "every line reaches the disk");
    assert!(
        longest < Duration::from_secs(1),
        "a call waited {longest:?}"
    );
    eprintln!("slow disk: {n} lines in {took:?}, longest call {longest:?}");
}

#[test]
fn a_stall_shorter_than_the_bound_loses_nothing_once_the_disk_unblocks() {
    let disk = SlowDisk::new(false, Duration::ZERO);
    let hub = hub_on(
        &disk,
        QueueOptions {
            capacity_bytes: 16 << 10,
            ..QueueOptions::default()
        },
    );
    // The disk stalls for 400 ms (under the 1 s bound) while 2000 lines (far more than
    // the queue holds) are logged.
    let opener = {
        let disk = disk.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            disk.open();
        })
    };
    let n = 2_000;
    let longest = log_lines(&hub, 2, n);
    opener.join().unwrap();
    hub.flush(T).unwrap();
    let s = stats(&hub);
    assert_eq!((s.accepted, s.written, s.dropped), (n, n, 0), "{s:?}");
    assert_eq!(disk.lines() as u64, n);
    assert!(
        longest >= Duration::from_millis(200),
        "callers waited: {longest:?}"
    );
    assert!(longest < Duration::from_secs(1), "{longest:?}");
}

#[test]
fn a_stall_longer_than_the_bound_costs_each_call_at_most_the_bound_and_counts_drops() {
    let bound = Duration::from_millis(150);
    let disk = SlowDisk::new(false, Duration::ZERO);
    let hub = hub_on(
        &disk,
        QueueOptions {
            capacity_bytes: 4 << 10,
            overflow: Overflow::Block { timeout: bound },
        },
    );
    let log = hub.get_logger("disk");
    // Lines until five have been dropped (the queue holds a few dozen; bounded).
    let mut n = 0u64;
    let mut longest = Duration::ZERO;
    let start = Instant::now();
    while n < 500 && stats(&hub).dropped < 5 {
        let t = Instant::now();
        log.info("Request handled", &[attr::uint("i", n)]);
        longest = longest.max(t.elapsed());
        n += 1;
    }
    let blocked = start.elapsed();
    let s = stats(&hub);
    assert!(
        s.dropped > 0,
        "the disk never unblocked: lines were dropped"
    );
    assert_eq!(s.accepted + s.dropped, n, "{s:?}");
    assert!(longest >= bound, "{longest:?}");
    assert!(longest < bound + Duration::from_millis(500), "{longest:?}");
    // Every call paid at most the bound: the whole took at most n bounds.
    assert!(blocked < bound * (n as u32) + Duration::from_secs(1));
    disk.open();
    hub.flush(T).unwrap();
    let s = stats(&hub);
    assert_eq!(s.written, s.accepted, "{s:?}");
    assert_eq!(
        disk.lines() as u64,
        s.written,
        "each accepted line is written"
    );
    assert_eq!(s.written + s.dropped, n);
}

#[test]
fn lossy_mode_never_waits_and_counts_every_drop() {
    let disk = SlowDisk::new(false, Duration::ZERO);
    let hub = hub_on(
        &disk,
        QueueOptions {
            capacity_bytes: 4 << 10,
            overflow: Overflow::Drop,
        },
    );
    let n = 5_000;
    let longest = log_lines(&hub, 2, n);
    let s = stats(&hub);
    assert!(s.dropped > 0, "{s:?}");
    assert_eq!(s.accepted + s.dropped, n, "{s:?}");
    // No bound to wait for: only the formatting and a short lock (generous for a loaded
    // machine).
    assert!(
        longest < Duration::from_millis(500),
        "a call waited {longest:?}"
    );
    disk.open();
    hub.flush(T).unwrap();
    let s = stats(&hub);
    assert_eq!(s.written, s.accepted, "{s:?}");
    assert_eq!(disk.lines() as u64, s.written);
    assert_eq!(s.written + s.dropped, n);
}
