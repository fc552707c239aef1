//! The lifecycle contract of piko-obs, with no dependency but `std` (tokio comes with the
//! `signal` and `runtime` features).
//!
//! - [`Lifecycle`]: what every started part implements (the probe server, the
//!   notification dispatcher, the error forwarder, Sentry, the OTLP pipeline, the metrics
//!   upkeep, the log hub): shut down within a budget.
//! - [`ShutdownError`]: the one error of a shutdown. It names the part and keeps its
//!   source ([`std::error::Error::source`]).
//! - [`Stack`]: started parts, shut down in reverse order within one shared deadline;
//!   [`ShutdownErrors`] lists the parts that failed. The facade's `Guard` is a stack, and
//!   a failed `init()` unwinds the same stack ([`Unwind`]).
//! - [`bounded`]: runs a blocking or async shutdown on a thread of its own and waits at
//!   most its budget, so no part can hold the stack past its deadline.
//! - [`settings`]: the one precedence of start-up settings (code, then environment, then
//!   default), [`EnvSettingError`] and [`ConfigError`], the [`RunMode`] and the
//!   [`Identity`] (environment and release) every part shares; [`setup`]: those shared
//!   settings as a composer takes them ([`setup::ServiceSetup`]), resolved in one call.
//! - `signal` (feature `signal`): waiting for SIGTERM or SIGINT; `runtime` (feature
//!   `runtime`): piko-obs's own tokio runtime as a part. Without features the crate
//!   depends on `std` and `percent-encoding` (the `%XX` decoding of `key=value` lists) only.
//!
//! ```
//! use std::time::Duration;
//! use piko_obs_lifecycle::{Lifecycle, ShutdownError, Stack};
//!
//! struct Step(&'static str, bool);
//!
//! impl Lifecycle for Step {
//!     fn part(&self) -> &'static str {
//!         self.0
//!     }
//!     fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
//!         if self.1 { Ok(()) } else { Err(ShutdownError::timed_out(self.0, budget)) }
//!     }
//! }
//!
//! let stack = Stack::new();
//! stack.push(Step("log hub", true));
//! stack.push(Step("probe server", false));
//! let err = stack.shutdown(Duration::from_secs(1)).unwrap_err();
//! assert_eq!(err.failures.len(), 1);
//! assert_eq!(err.failures[0].part(), "probe server");
//! assert!(err.to_string().starts_with("shutdown: probe server: not finished after"));
//! // A second shutdown has nothing left to do.
//! assert!(stack.shutdown(Duration::from_secs(1)).is_ok());
//! ```

use std::error::Error;
use std::fmt;

#[cfg(feature = "runtime")]
pub mod runtime;
pub mod settings;
pub mod setup;
#[cfg(feature = "signal")]
pub mod signal;
pub use settings::{ConfigError, EnvSettingError, Identity, RunMode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Any error a part keeps as the source of its [`ShutdownError`].
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// The longest wait taken as given: a longer one (up to `Duration::MAX`) is a century, as
/// `Instant` cannot add more.
pub const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long [`bounded`] waits past a part's budget before it reports the part as not
/// finished: the part's own bound plus the time to hand its answer over.
pub const GRACE: Duration = Duration::from_millis(200);

/// A started part of piko-obs that shuts down within a budget.
///
/// The contract:
/// - `shutdown_within` returns within `budget` plus a few hundred milliseconds, whatever
///   its peers do (a collector that never answers, a full disk); use [`bounded`] for work
///   that can block.
/// - A second call does nothing and returns `Ok`.
/// - It never panics.
pub trait Lifecycle: Send + Sync {
    /// The part's name, as [`ShutdownError`] shows it ("probe server", "log hub").
    fn part(&self) -> &'static str;

    /// The time this part needs at shutdown, kept back from the budgets of the parts a
    /// [`Stack`] shuts down before it. Zero by default.
    fn reserve(&self) -> Duration {
        Duration::ZERO
    }

    /// Shuts the part down within `budget`, reporting what did not finish.
    fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError>;
}

/// A part behind a pointer is the part (as `metrics` does for its `Recorder`).
macro_rules! impl_lifecycle_through {
    ($($ptr:ty),*) => {$(
        impl<T: Lifecycle + ?Sized> Lifecycle for $ptr {
            fn part(&self) -> &'static str {
                (**self).part()
            }
            fn reserve(&self) -> Duration {
                (**self).reserve()
            }
            fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
                (**self).shutdown_within(budget)
            }
        }
    )*};
}

impl_lifecycle_through!(Box<T>, Arc<T>, &T);

/// A part did not shut down cleanly: which part, and why ([`Error::source`]).
#[derive(Debug)]
pub struct ShutdownError {
    part: &'static str,
    source: BoxError,
}

impl ShutdownError {
    /// `part` failed because of `source`.
    pub fn new(part: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            part,
            source: source.into(),
        }
    }

    /// `part` had not finished when `budget` ran out (the source is [`NotFinished`]).
    pub fn timed_out(part: &'static str, budget: Duration) -> Self {
        Self::new(part, NotFinished(budget))
    }

    /// The part that failed.
    pub fn part(&self) -> &'static str {
        self.part
    }

    /// Whether the part did not finish within its budget.
    pub fn is_timeout(&self) -> bool {
        self.source.is::<NotFinished>()
    }
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.part, self.source)
    }
}

impl Error for ShutdownError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// A part had not finished when its budget ran out; it may go on in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFinished(pub Duration);

impl fmt::Display for NotFinished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not finished after {:?}", self.0)
    }
}

impl Error for NotFinished {}

/// The parts of a [`Stack`] that did not shut down cleanly, in the order they were shut
/// down.
#[derive(Debug)]
pub struct ShutdownErrors {
    /// Each failed part and why.
    pub failures: Vec<ShutdownError>,
}

impl fmt::Display for ShutdownErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shutdown: ")?;
        for (i, e) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Error for ShutdownErrors {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.failures.first().map(|e| e as _)
    }
}

/// Runs `shutdown` on a thread of its own and waits for it at most `budget` plus
/// [`GRACE`]; past that the part is reported as [`NotFinished`] and the thread is left to
/// end on its own bound. Safe to call from inside an async runtime (the work may
/// `block_on` a runtime handle of its own). When no thread can be started, `shutdown`
/// runs on the caller's thread.
pub fn bounded<F>(part: &'static str, budget: Duration, shutdown: F) -> Result<(), ShutdownError>
where
    F: FnOnce() -> Result<(), ShutdownError> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let job = Arc::new(Mutex::new(Some(shutdown)));
    let on_thread = job.clone();
    let spawned = std::thread::Builder::new()
        .name("piko-obs-shutdown".into())
        .spawn(move || {
            let f = on_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(f) = f {
                let _ = tx.send(f());
            }
        });
    if spawned.is_err() {
        let f = job.lock().unwrap_or_else(|p| p.into_inner()).take();
        return f.map_or(Ok(()), |f| f());
    }
    match rx.recv_timeout(budget.min(LONGEST_WAIT).saturating_add(GRACE)) {
        Ok(result) => result,
        Err(_) => Err(ShutdownError::timed_out(part, budget)),
    }
}

/// Started parts, shut down in reverse order of [`push`](Self::push) within one shared
/// deadline. Each part's budget is what is left of the deadline less the
/// [`reserve`](Lifecycle::reserve) of every part shut down after it. A second
/// [`shutdown`](Self::shutdown) finds the stack empty and does nothing.
#[derive(Default)]
pub struct Stack {
    parts: Mutex<Vec<Box<dyn Lifecycle>>>,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_list()
            .entries(parts.iter().map(|p| p.part()))
            .finish()
    }
}

impl Stack {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a started part on top: it is shut down before every part already there.
    pub fn push(&self, part: impl Lifecycle + 'static) {
        self.lock().push(Box::new(part));
    }

    /// Puts every part of `above` on top of this stack, in its order.
    pub fn append(&self, above: Stack) {
        let moved = std::mem::take(&mut *above.lock());
        self.lock().extend(moved);
    }

    /// The parts' names, from the bottom (shut down last) to the top.
    pub fn parts(&self) -> Vec<&'static str> {
        self.lock().iter().map(|p| p.part()).collect()
    }

    /// Shuts every part down, top first, all within `timeout`, and reports every part
    /// that failed.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownErrors> {
        let deadline = Instant::now() + timeout.min(LONGEST_WAIT);
        let mut parts = std::mem::take(&mut *self.lock());
        let mut failures = Vec::new();
        while let Some(part) = parts.pop() {
            let kept_back: Duration = parts.iter().map(|p| p.reserve()).sum();
            let budget = deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(kept_back);
            if let Err(e) = part.shutdown_within(budget) {
                failures.push(e);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ShutdownErrors { failures })
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn Lifecycle>>> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stack being built: shut down within its bound when dropped, unless
/// [`keep`](Self::keep) took it first. The facade's `init()` builds its stack in one, so
/// a failure at any step unwinds what was started so far.
#[derive(Debug)]
pub struct Unwind {
    stack: Option<Stack>,
    bound: Duration,
}

impl Unwind {
    /// An empty stack, unwound within `bound` if dropped.
    pub fn new(bound: Duration) -> Self {
        Self {
            stack: Some(Stack::new()),
            bound,
        }
    }

    /// Adds a started part on top.
    pub fn push(&self, part: impl Lifecycle + 'static) {
        if let Some(s) = &self.stack {
            s.push(part);
        }
    }

    /// The stack, no longer unwound on drop.
    pub fn keep(mut self) -> Stack {
        self.stack.take().unwrap_or_default()
    }
}

impl Drop for Unwind {
    fn drop(&mut self) {
        if let Some(s) = self.stack.take() {
            let _ = s.shutdown(self.bound);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records the order parts shut down in and the budgets they got.
    struct Recorded {
        name: &'static str,
        reserve: Duration,
        sleep: Duration,
        log: Arc<Mutex<Vec<(&'static str, Duration)>>>,
    }

    impl Lifecycle for Recorded {
        fn part(&self) -> &'static str {
            self.name
        }
        fn reserve(&self) -> Duration {
            self.reserve
        }
        fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
            self.log.lock().unwrap().push((self.name, budget));
            let sleep = self.sleep;
            bounded(self.name, budget, move || {
                std::thread::sleep(sleep);
                Ok(())
            })
        }
    }

    fn part(
        name: &'static str,
        reserve_ms: u64,
        sleep_ms: u64,
        log: &Arc<Mutex<Vec<(&'static str, Duration)>>>,
    ) -> Recorded {
        Recorded {
            name,
            reserve: Duration::from_millis(reserve_ms),
            sleep: Duration::from_millis(sleep_ms),
            log: log.clone(),
        }
    }

    #[test]
    fn parts_shut_down_in_reverse_order_and_keep_back_the_later_reserves() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let stack = Stack::new();
        stack.push(part("logs", 300, 0, &log));
        stack.push(part("otlp", 1000, 0, &log));
        stack.push(part("server", 0, 0, &log));
        assert_eq!(stack.parts(), ["logs", "otlp", "server"]);
        stack.shutdown(Duration::from_secs(10)).unwrap();
        let log = log.lock().unwrap();
        let order: Vec<_> = log.iter().map(|(n, _)| *n).collect();
        assert_eq!(order, ["server", "otlp", "logs"]);
        // The server's budget keeps back what the two later parts reserve.
        assert!(log[0].1 <= Duration::from_millis(8700), "{:?}", log[0]);
        assert!(log[0].1 > Duration::from_millis(8000), "{:?}", log[0]);
        assert!(log[1].1 <= Duration::from_millis(9700), "{:?}", log[1]);
        assert!(log[2].1 > Duration::from_millis(9000), "{:?}", log[2]);
    }

    #[test]
    fn a_part_past_its_budget_is_reported_by_name_and_the_rest_still_run() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let stack = Stack::new();
        stack.push(part("logs", 0, 0, &log));
        stack.push(part("sleeper", 0, 5_000, &log));
        let started = Instant::now();
        let err = stack.shutdown(Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "bounded");
        assert_eq!(err.failures.len(), 1);
        assert_eq!(err.failures[0].part(), "sleeper");
        assert!(err.failures[0].is_timeout());
        let source = err.source().and_then(Error::source).unwrap();
        assert!(source.is::<NotFinished>(), "{source:?}");
        assert_eq!(log.lock().unwrap().len(), 2, "logs still shut down");
        assert!(stack.shutdown(Duration::from_secs(1)).is_ok(), "idempotent");
    }

    #[test]
    fn the_source_is_kept() {
        let io = std::io::Error::other("disk full");
        let e = ShutdownError::new("log hub", io);
        assert_eq!(e.to_string(), "log hub: disk full");
        assert_eq!(e.source().unwrap().to_string(), "disk full");
        assert!(!e.is_timeout());
    }

    #[test]
    fn an_unwind_shuts_down_what_was_pushed_unless_kept() {
        static DOWN: AtomicUsize = AtomicUsize::new(0);
        struct Counted;
        impl Lifecycle for Counted {
            fn part(&self) -> &'static str {
                "counted"
            }
            fn shutdown_within(&self, _: Duration) -> Result<(), ShutdownError> {
                DOWN.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
        {
            let unwind = Unwind::new(Duration::from_secs(1));
            unwind.push(Counted);
            unwind.push(Counted);
        }
        assert_eq!(DOWN.load(Ordering::SeqCst), 2);
        let unwind = Unwind::new(Duration::from_secs(1));
        unwind.push(Counted);
        let kept = unwind.keep();
        assert_eq!(DOWN.load(Ordering::SeqCst), 2, "kept, not unwound");
        let base = Stack::new();
        base.push(Counted);
        base.append(kept);
        assert_eq!(base.parts().len(), 2);
        base.shutdown(Duration::from_secs(1)).unwrap();
        assert_eq!(DOWN.load(Ordering::SeqCst), 4);
    }
}
