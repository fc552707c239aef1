//! Retry timing and the per-provider circuit breaker.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest wait taken as given: a longer one (up to `Duration::MAX`) is a century,
/// as `Instant` cannot add more.
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// When to try again after a failed attempt.
///
/// Attempt `k` (counting from 1) that fails is followed, if `k <= max_retries`, by a
/// wait of `initial_delay × factor^(k-1)`, capped at `max_delay`, plus up to 10 %
/// jitter; a `Retry-After` from a 429 or 503 answer makes the wait at least that long.
/// With the defaults a notification is tried 6 times over about a minute
/// (2 s, 4 s, 8 s, 16 s, 32 s) before it is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 5; 0: no retry).
    pub max_retries: u32,
    /// The first wait (default 2 s).
    pub initial_delay: Duration,
    /// The longest wait (default 5 min).
    pub max_delay: Duration,
    /// The growth of the wait per retry (default 2).
    pub factor: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(300),
            factor: 2.0,
        }
    }
}

/// A retry setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retry policy: {0}")]
pub struct PolicyError(pub &'static str);

impl RetryPolicy {
    /// Retries after the first attempt.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }
    /// The first wait, the longest wait and the growth factor; checked.
    pub fn with_backoff(
        mut self,
        initial: Duration,
        max: Duration,
        factor: f64,
    ) -> Result<Self, PolicyError> {
        if initial.is_zero() {
            return Err(PolicyError(
                "the initial delay must be greater than zero (for example 2s)",
            ));
        }
        if max < initial {
            return Err(PolicyError(
                "the maximum delay must be at least the initial delay",
            ));
        }
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(PolicyError(
                "the backoff factor must be a number of at least 1 (for example 2)",
            ));
        }
        self.initial_delay = initial;
        self.max_delay = max;
        self.factor = factor;
        Ok(self)
    }

    /// The wait after failed attempt `attempt` (from 1), with jitter, at least
    /// `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .factor
            .powi(i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX));
        // In floating point, then back with a saturating conversion and capped in
        // `Duration`s: any delay and any factor (an infinite or undefined product
        // included) gives a wait up to the longest one, never a panic.
        let base = self.initial_delay.as_secs_f64() * exp;
        let base = if base.is_nan() { 0.0 } else { base };
        let jitter = base * 0.1 * unit_random();
        let wait = Duration::try_from_secs_f64(base + jitter)
            .unwrap_or(Duration::MAX)
            .min(self.max_delay);
        match retry_after {
            Some(ra) if ra > wait => ra,
            _ => wait,
        }
    }
}

/// A number in [0, 1) from a small xorshift generator (jitter needs no more).
fn unit_random() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// When a provider's circuit opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit (default 5; 0: never opens).
    pub threshold: u32,
    /// How long it stays open before one trial request (default 30 s).
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

impl BreakerPolicy {
    /// A breaker opening after `threshold` consecutive failures for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> BreakerPolicy {
        BreakerPolicy {
            threshold,
            open_for,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// One provider's circuit: closed, open after `threshold` consecutive failures,
/// half-open (one trial) once `open_for` has passed.
///
/// Each change of state (closed, open, half-open) starts a new generation. A permit
/// records only into the generation it was admitted in: a request admitted while closed
/// that ends after the circuit opened (or while the half-open trial runs, or after it
/// closed again) changes nothing, and a trial cancelled after its half-open state ended
/// records nothing.
#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<Generation>,
}

/// A breaker's state and the generation it started.
#[derive(Debug, Clone, Copy)]
struct Generation {
    state: BreakerState,
    generation: u64,
}

/// Leave to send one request through a [`Breaker`]. Its outcome is recorded with
/// [`record`](Permit::record); a permit dropped without it (the send was cancelled: a
/// caller's timeout, a worker aborted at shutdown) is an attempt that did not complete.
/// For the half-open trial that counts as a failure, so the circuit opens again for
/// `open_for` and then lets a new trial through, instead of staying shut for good
/// waiting for an outcome that never comes; otherwise nothing is recorded. Either way
/// only while the state it was admitted in lasts.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    generation: u64,
    trial: bool,
    recorded: bool,
}

impl Permit<'_> {
    /// Records the outcome. Returns whether the circuit opened.
    pub(crate) fn record(mut self, ok: bool) -> bool {
        self.recorded = true;
        self.breaker.record(self.generation, ok)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded && self.trial {
            self.breaker.record(self.generation, false);
        }
    }
}

impl Breaker {
    pub(crate) fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            state: Mutex::new(Generation {
                state: BreakerState::Closed { failures: 0 },
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generation> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit when a request may go; `Err(wait)` while open, or while the one trial
    /// of the half-open state is under way.
    pub(crate) fn admit(&self) -> Result<Permit<'_>, Duration> {
        let mut s = self.lock();
        let trial = match s.state {
            BreakerState::Closed { .. } => false,
            BreakerState::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                s.enter(BreakerState::HalfOpen);
                true
            }
            // One trial is under way; its permit records it, or its drop does.
            BreakerState::HalfOpen => return Err(self.policy.open_for),
        };
        Ok(Permit {
            breaker: self,
            generation: s.generation,
            trial,
            recorded: false,
        })
    }

    /// Records the outcome of a request admitted in `generation`; nothing when the
    /// state has changed since. Returns whether the circuit opened.
    fn record(&self, generation: u64, ok: bool) -> bool {
        let mut s = self.lock();
        if s.generation != generation {
            return false;
        }
        if ok {
            match s.state {
                BreakerState::Closed { .. } => s.state = BreakerState::Closed { failures: 0 },
                _ => s.enter(BreakerState::Closed { failures: 0 }),
            }
            return false;
        }
        let failures = match s.state {
            BreakerState::Closed { failures } => failures.saturating_add(1),
            BreakerState::HalfOpen => self.policy.threshold.max(1),
            BreakerState::Open { .. } => return false,
        };
        if self.policy.threshold > 0 && failures >= self.policy.threshold {
            s.enter(BreakerState::Open {
                until: Instant::now() + self.policy.open_for.min(LONGEST_WAIT),
            });
            true
        } else {
            // Only a closed state gets here (a failed trial always opens).
            s.state = BreakerState::Closed { failures };
            false
        }
    }
}

impl Generation {
    /// Moves to another state, in a new generation.
    fn enter(&mut self, state: BreakerState) {
        self.state = state;
        self.generation = self.generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_and_honour_retry_after() {
        let p = RetryPolicy::default()
            .with_backoff(Duration::from_secs(1), Duration::from_secs(5), 2.0)
            .unwrap();
        let within = |d: Duration, lo: f64| {
            let s = d.as_secs_f64();
            s >= lo && s <= (lo * 1.1).min(5.0) + 1e-9
        };
        assert!(within(p.delay(1, None), 1.0));
        assert!(within(p.delay(2, None), 2.0));
        assert!(within(p.delay(3, None), 4.0));
        assert!(within(p.delay(9, None), 5.0));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert!(
            RetryPolicy::default()
                .with_backoff(Duration::ZERO, Duration::from_secs(1), 2.0)
                .is_err()
        );
        assert!(
            RetryPolicy::default()
                .with_backoff(Duration::from_secs(2), Duration::from_secs(1), 2.0)
                .is_err()
        );
        assert!(
            RetryPolicy::default()
                .with_backoff(Duration::from_secs(1), Duration::from_secs(1), 0.5)
                .is_err()
        );
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_tries_once_when_half_open() {
        let b = Breaker::new(BreakerPolicy::new(3, Duration::from_millis(50)));
        for _ in 0..2 {
            assert!(!b.admit().unwrap().record(false));
        }
        assert!(
            b.admit().unwrap().record(false),
            "the third failure opens it"
        );
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(60));
        let trial = b.admit().expect("half-open: one trial");
        assert!(b.admit().is_err(), "only one trial at a time");
        assert!(trial.record(false), "a failed trial opens it again");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!b.admit().unwrap().record(true));
        assert!(b.admit().is_ok() && b.admit().is_ok(), "closed again");
    }

    #[test]
    fn a_cancelled_trial_opens_the_circuit_again_instead_of_shutting_it_for_good() {
        let b = Breaker::new(BreakerPolicy::new(1, Duration::from_millis(50)));
        assert!(b.admit().unwrap().record(false));
        std::thread::sleep(Duration::from_millis(60));
        let trial = b.admit().expect("half-open");
        // The send is cancelled: the permit is dropped without an outcome.
        drop(trial);
        let wait = b.admit().expect_err("open again for open_for");
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
        std::thread::sleep(Duration::from_millis(60));
        let trial = b.admit().expect("a new trial once open_for has passed");
        assert!(!trial.record(true));
        assert!(b.admit().is_ok(), "closed");
        // A cancelled request while closed records nothing.
        let b = Breaker::new(BreakerPolicy::new(1, Duration::from_secs(60)));
        drop(b.admit().unwrap());
        assert!(b.admit().is_ok(), "still closed");
    }

    fn state(b: &Breaker) -> BreakerState {
        b.lock().state
    }

    #[test]
    fn a_request_admitted_before_the_circuit_opened_cannot_close_it_during_the_trial() {
        let b = Breaker::new(BreakerPolicy::new(1, Duration::from_millis(50)));
        // Admitted while closed; it is slow, and ends only after the trial started.
        let slow = b.admit().unwrap();
        assert!(b.admit().unwrap().record(false), "another request opens it");
        std::thread::sleep(Duration::from_millis(60));
        let trial = b.admit().expect("half-open");
        assert!(!slow.record(true), "a stale success");
        assert_eq!(state(&b), BreakerState::HalfOpen, "the trial still decides");
        assert!(b.admit().is_err(), "still one trial at a time");
        assert!(trial.record(false), "the failed trial opens it again");
        assert!(matches!(state(&b), BreakerState::Open { .. }));
        // A stale failure does not count in the closed state a trial went back to.
        let before_trial = Breaker::new(BreakerPolicy::new(2, Duration::from_millis(50)));
        let stale = before_trial.admit().unwrap();
        for _ in 0..2 {
            before_trial.admit().unwrap().record(false);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            !before_trial.admit().unwrap().record(true),
            "the trial closes it"
        );
        assert!(!stale.record(false));
        assert_eq!(
            state(&before_trial),
            BreakerState::Closed { failures: 0 },
            "the stale failure is not counted"
        );
    }

    #[test]
    fn a_trial_cancelled_after_its_half_open_state_ended_records_nothing() {
        let b = Breaker::new(BreakerPolicy::new(3, Duration::from_millis(50)));
        let slow = b.admit().unwrap();
        for _ in 0..3 {
            b.admit().unwrap().record(false);
        }
        std::thread::sleep(Duration::from_millis(60));
        let trial = b.admit().expect("half-open");
        // The request admitted before the circuit opened succeeds now: stale, ignored,
        // so the trial's cancellation still finds its half-open state and reopens it.
        slow.record(true);
        drop(trial);
        assert!(matches!(state(&b), BreakerState::Open { .. }));

        // Whatever else ends a half-open state, a trial cancelled afterwards changes
        // nothing: here the state is moved on by hand, as another path would.
        std::thread::sleep(Duration::from_millis(60));
        let trial = b.admit().expect("half-open again");
        b.lock().enter(BreakerState::Closed { failures: 0 });
        drop(trial);
        assert_eq!(
            state(&b),
            BreakerState::Closed { failures: 0 },
            "no failure counted for a cancellation"
        );
    }
}
