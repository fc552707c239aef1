//! The records' clock: the wall time of each record, read in a few nanoseconds.
//!
//! `SystemTime::now()` reads the time-stamp counter through the vDSO behind a fence that
//! waits for every instruction before it, and costs about 35 ns a call on the virtual
//! machines services run on: a quarter of a JSON line's cost. Each thread here reads the
//! system clock once a millisecond at most (its anchor) and the counter in between
//! (through `quanta`, about 10 ns, no fence), adding the counter's ticks since the anchor,
//! scaled to nanoseconds. The counter's rate is calibrated once per process, on a thread
//! of its own that the first hub starts and that waits out the program's start-up first;
//! until it is done, every record reads the system clock as before. Where `quanta` finds no
//! usable counter (no invariant TSC, or no RDTSCP, as on some virtual machines), it reads
//! the monotonic clock instead: the times are as exact, and no cheaper than before.
//!
//! Within a millisecond the counter and the system clock part by at most the rate error
//! of the calibration and any slewing of the system clock (NTP slews at most 500 ppm):
//! under a microsecond. A thread's times never go back by that error (it keeps to its
//! last anchor's reckoning when the system clock reads a little behind it); a step of the
//! system clock shows within a millisecond.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The calibrated counter, once ready.
static COUNTER: OnceLock<quanta::Clock> = OnceLock::new();
/// The calibrating thread, while there is one to join.
static CALIBRATION: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);
/// Asks the calibrating thread to stop before it starts calibrating.
static STOP: AtomicBool = AtomicBool::new(false);

/// How long a thread's anchor serves before the thread reads the system clock again.
const ANCHOR_SPAN_NS: u64 = 1_000_000;

#[derive(Clone, Copy)]
struct Anchor {
    /// The counter when `wall` was read.
    raw: u64,
    wall: SystemTime,
}

thread_local! {
    static ANCHOR: Cell<Option<Anchor>> = const { Cell::new(None) };
}

/// How long the calibration waits before it starts. It keeps a core busy while it runs
/// (about 0.6 ms here, up to 200 ms on a loaded machine), so it waits out the program's
/// start-up rather than compete with it on a small machine; records read the system
/// clock meanwhile. (`cargo xtask bench startup` could not tell them apart: piko-obs added
/// 11.8 to 16.4 ms a run whether the calibration ran at once, after the delay, or not at
/// all.)
const CALIBRATION_DELAY: Duration = Duration::from_millis(200);

/// Starts calibrating the counter on a thread of its own, after [`CALIBRATION_DELAY`],
/// unless it is calibrated or a thread is already at it. If the thread cannot start,
/// records keep reading the system clock.
pub(crate) fn calibrate_in_background() {
    if COUNTER.get().is_some() {
        return;
    }
    let mut slot = CALIBRATION.lock().unwrap_or_else(|p| p.into_inner());
    if slot.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    if let Some(done) = slot.take() {
        let _ = done.join();
    }
    STOP.store(false, Ordering::Release);
    *slot = std::thread::Builder::new()
        .name("piko-log-clock".into())
        .spawn(|| {
            let until = Instant::now() + CALIBRATION_DELAY;
            while !STOP.load(Ordering::Acquire) {
                let now = Instant::now();
                if now >= until {
                    let _ = COUNTER.set(quanta::Clock::new());
                    return;
                }
                std::thread::park_timeout(until - now);
            }
        })
        .ok();
}

/// Ends the calibrating thread, if any, by `deadline`: one still waiting out the delay
/// stops without calibrating (the next hub built starts another), one calibrating is
/// waited for until `deadline`, then left to finish on its own. Returns whether no
/// calibrating thread is left running.
pub(crate) fn stop_calibration(deadline: Instant) -> bool {
    let Some(t) = CALIBRATION.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return true;
    };
    STOP.store(true, Ordering::Release);
    t.thread().unpark();
    // Never a join without a bound (after a `fork`, for one, the thread is not there).
    while !t.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(100));
    }
    if t.is_finished() {
        let _ = t.join();
        true
    } else {
        false
    }
}

/// How far before the system clock's a re-anchored thread may read, to keep its own
/// readings from going back: the counter's rate error over an anchor's span.
const REANCHOR_SLACK: Duration = Duration::from_micros(5);

/// How far apart the two counter readings around a system-clock reading may be for the
/// pair to become an anchor (a thread preempted between them would skew it).
const ANCHOR_READ_NS: u64 = 2_000;

/// The wall time now, from this thread's anchor and the counter (the system clock while
/// the counter is not calibrated).
pub(crate) fn now() -> SystemTime {
    let Some(counter) = COUNTER.get() else {
        return SystemTime::now();
    };
    let raw = counter.raw();
    ANCHOR
        .try_with(|cell| {
            let last = cell.get();
            let mut extrapolated = None;
            if let Some(a) = last
                && raw > a.raw
            {
                let since = counter.delta_as_nanos(a.raw, raw);
                let t = a.wall.checked_add(Duration::from_nanos(since));
                if since < ANCHOR_SPAN_NS
                    && let Some(t) = t
                {
                    return t;
                }
                extrapolated = t.filter(|_| since < 10 * ANCHOR_SPAN_NS);
            }
            let mut wall = SystemTime::now();
            let after = counter.raw();
            // A reading a little behind where this thread's last anchor had got to is the
            // counter's rate error: keep to the later one, so the thread's times never go
            // back. A larger gap is the system clock stepping back: follow it.
            if let Some(ext) = extrapolated
                && wall < ext
                && ext.duration_since(wall).is_ok_and(|d| d < REANCHOR_SLACK)
            {
                wall = ext;
            }
            if after > raw && counter.delta_as_nanos(raw, after) < ANCHOR_READ_NS {
                cell.set(Some(Anchor {
                    raw: raw + (after - raw) / 2,
                    wall,
                }));
            }
            wall
        })
        .unwrap_or_else(|_| SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn records_keep_to_the_system_clock() {
        let start = Instant::now();
        while COUNTER.get().is_none() && start.elapsed() < Duration::from_secs(5) {
            // Again and again: another test's hub shutting down stops a calibration
            // that has not begun.
            calibrate_in_background();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            COUNTER.get().is_some(),
            "the counter was not calibrated in 5 s"
        );
        // Over several anchors' spans, every reading lies between two system-clock
        // readings taken around it, give or take 50 µs (the bound asserted is 100 times
        // the expected error, so a loaded machine does not fail it).
        let slack = Duration::from_micros(50);
        let calibrated = Instant::now();
        let mut readings = 0;
        while calibrated.elapsed() < Duration::from_millis(30) || readings < 1000 {
            let before = SystemTime::now();
            let t = now();
            let after = SystemTime::now();
            assert!(t + slack >= before, "{t:?} is before {before:?}");
            assert!(t <= after + slack, "{t:?} is after {after:?}");
            readings += 1;
        }
    }

    #[test]
    fn stopping_leaves_no_calibrating_thread() {
        calibrate_in_background();
        assert!(stop_calibration(Instant::now() + Duration::from_secs(5)));
    }

    #[test]
    fn a_threads_first_reading_is_the_system_clock() {
        // Whether the counter is calibrated or not, a new thread's first reading is the
        // system clock's (its anchor): within the two readings around it.
        let (before, t, after) =
            std::thread::spawn(|| (SystemTime::now(), now(), SystemTime::now()))
                .join()
                .unwrap();
        assert!(before <= t && t <= after);
    }
}
