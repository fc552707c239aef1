//! The aggregating service: runs probes concurrently, each within its own deadline.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use crate::probe::Probe;
use crate::status::{CheckKind, State, Status};

/// The longest wait taken as given: a longer one (up to `Duration::MAX`) is a century,
/// as `Instant` cannot add more.
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Probe`], for storing probes of different types together.
trait ErasedProbe: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn check_owned(
        self: Arc<Self>,
        kind: CheckKind,
        deadline: Instant,
    ) -> BoxFuture<'static, Status>;
}

impl<P: Probe> ErasedProbe for P {
    fn name(&self) -> &str {
        Probe::name(self)
    }
    fn check_owned(
        self: Arc<Self>,
        kind: CheckKind,
        deadline: Instant,
    ) -> BoxFuture<'static, Status> {
        Box::pin(async move { self.check(kind, deadline).await })
    }
}

/// How one probe is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeOptions {
    /// Its deadline; `None` takes the service's (default 5 s).
    pub timeout: Option<Duration>,
    /// Whether an unhealthy result makes the whole unhealthy (default). A non-critical
    /// probe that is unhealthy makes the whole degraded instead.
    pub critical: bool,
    /// Reuse a result for this long; `None` (default) runs the probe for every request,
    /// though requests that arrive while a run is under way (one that did not answer
    /// at once) share that run. With a TTL, runs are strictly one at a time.
    pub cache_ttl: Option<Duration>,
    /// The kinds this probe answers: by default readiness and startup, not liveness
    /// (see [`ProbeKinds::DEFAULT`]); [`ProbeOptions::with_liveness`] adds it.
    pub kinds: ProbeKinds,
}

/// A set of [`CheckKind`]s: the checks a probe answers.
///
/// The default is [`ProbeKinds::DEFAULT`], readiness and startup. Liveness is opt-in
/// because a failing liveness check makes Kubernetes restart the container: a probe of
/// a dependency (a database, an upstream service) in liveness turns that dependency's
/// outage into a restart of every pod at once, which fixes nothing and adds load (a
/// restart storm). Dependencies belong in readiness, which only takes the pod out of
/// the Service's endpoints until they recover. Put a probe in liveness only when its
/// failure means this process cannot recover by itself (a deadlocked worker, a
/// corrupted in-memory state).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeKinds(u8);

impl ProbeKinds {
    /// No kind: the probe is registered but never run.
    pub const NONE: ProbeKinds = ProbeKinds(0);
    /// Liveness only.
    pub const LIVENESS: ProbeKinds = ProbeKinds(1 << 0);
    /// Readiness only.
    pub const READINESS: ProbeKinds = ProbeKinds(1 << 1);
    /// Startup only.
    pub const STARTUP: ProbeKinds = ProbeKinds(1 << 2);
    /// Readiness and startup: the default for a probe.
    pub const DEFAULT: ProbeKinds = ProbeKinds(Self::READINESS.0 | Self::STARTUP.0);
    /// Liveness, readiness and startup.
    pub const ALL: ProbeKinds = ProbeKinds(Self::LIVENESS.0 | Self::DEFAULT.0);

    /// The set of `kinds`.
    pub fn of(kinds: &[CheckKind]) -> ProbeKinds {
        kinds.iter().copied().collect()
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: CheckKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    /// The set with `kind` added.
    #[must_use]
    pub fn with(self, kind: CheckKind) -> ProbeKinds {
        ProbeKinds(self.0 | Self::bit(kind))
    }

    /// The set without `kind`.
    #[must_use]
    pub fn without(self, kind: CheckKind) -> ProbeKinds {
        ProbeKinds(self.0 & !Self::bit(kind))
    }

    /// The kinds in the set, in the order liveness, readiness, startup.
    pub fn iter(self) -> impl Iterator<Item = CheckKind> {
        [
            CheckKind::Liveness,
            CheckKind::Readiness,
            CheckKind::Startup,
        ]
        .into_iter()
        .filter(move |k| self.contains(*k))
    }

    fn bit(kind: CheckKind) -> u8 {
        1 << index(kind)
    }
}

impl Default for ProbeKinds {
    fn default() -> Self {
        ProbeKinds::DEFAULT
    }
}

impl FromIterator<CheckKind> for ProbeKinds {
    fn from_iter<I: IntoIterator<Item = CheckKind>>(kinds: I) -> Self {
        kinds.into_iter().fold(ProbeKinds::NONE, ProbeKinds::with)
    }
}

impl std::ops::BitOr for ProbeKinds {
    type Output = ProbeKinds;
    fn bitor(self, other: ProbeKinds) -> ProbeKinds {
        ProbeKinds(self.0 | other.0)
    }
}

/// Lists the kinds: `{readiness, startup}`.
impl std::fmt::Debug for ProbeKinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(CheckKind::as_str))
            .finish()
    }
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: None,
            critical: true,
            cache_ttl: None,
            kinds: ProbeKinds::DEFAULT,
        }
    }
}

impl ProbeOptions {
    /// Its own deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Non-critical: unhealthy makes the whole degraded.
    pub fn non_critical(mut self) -> Self {
        self.critical = false;
        self
    }
    /// Reuse results for `ttl`.
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }
    /// Only for these kinds (replacing the default readiness and startup).
    pub fn only(mut self, kinds: &[CheckKind]) -> Self {
        self.kinds = ProbeKinds::of(kinds);
        self
    }
    /// For liveness too: only for a probe whose failure means this process cannot
    /// recover by itself, never for a dependency (see [`ProbeKinds`]).
    pub fn with_liveness(mut self) -> Self {
        self.kinds = self.kinds.with(CheckKind::Liveness);
        self
    }
}

fn index(kind: CheckKind) -> usize {
    match kind {
        CheckKind::Liveness => 0,
        CheckKind::Readiness => 1,
        CheckKind::Startup => 2,
    }
}

/// The last result of a probe for one kind, and whether a run is under way.
#[derive(Default)]
struct Slot {
    /// When the last run finished, and its status.
    last: Option<(Instant, Status)>,
}

/// A probe's state for one kind: the lock that makes runs single-flight, and how many
/// requests wait for it (so that a result is kept for them only when someone waits).
#[derive(Default)]
struct SlotCell {
    lock: tokio::sync::Mutex<Slot>,
    waiting: std::sync::atomic::AtomicUsize,
    /// Set while the lock holder's run is under way past its first poll (a probe that
    /// did not answer at once): only such a run is worth waiting for without a TTL.
    pending_run: AtomicBool,
}

struct Registered {
    probe: Arc<dyn ErasedProbe>,
    options: ProbeOptions,
    /// One per kind.
    slots: [SlotCell; 3],
}

type Observer = Arc<dyn Fn(CheckKind, &Status) + Send + Sync>;

type PanicObserver = Arc<dyn Fn(&ProbePanic<'_>) + Send + Sync>;

/// A probe that panicked: what [`HealthService::on_probe_panic`] observers get. The
/// status served says only "probe panicked", since probe bodies are served without
/// authentication; the panic's message is here.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ProbePanic<'a> {
    /// The probe's name.
    pub probe: &'a str,
    /// The kind checked.
    pub kind: CheckKind,
    /// The panic's message (`"unknown panic"` when it was neither text nor a string).
    pub message: &'a str,
}

/// The message a panicking probe's status has.
pub const PROBE_PANICKED: &str = "probe panicked";

struct Inner {
    name: String,
    default_timeout: Duration,
    /// Replaced as a whole on registration, so a check clones one `Arc`.
    probes: RwLock<Arc<Vec<Arc<Registered>>>>,
    draining: AtomicBool,
    observers: RwLock<Vec<Observer>>,
    panic_observers: RwLock<Vec<PanicObserver>>,
}

/// A probe could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Another probe has this name.
    #[error("a health probe named {0:?} is already registered: give each probe its own name")]
    DuplicateName(String),
    /// The probe's own timeout is zero.
    #[error("health probe {0:?}: its timeout must be greater than zero (for example 2s or 300ms)")]
    ZeroTimeout(String),
}

/// A deadline that is zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("health check timeout must be greater than zero (for example 5s or 300ms)")]
pub struct ZeroTimeout;

/// Runs registered probes and aggregates their statuses (Piko's health service, with
/// its bugs fixed).
///
/// - Every probe runs concurrently with its own deadline (any `Duration`, sub-second
///   ones included). A probe that answers at once is polled in place; one that waits
///   continues on its own task and, if it misses the deadline, is abandoned: the answer
///   comes back on time with that probe UNHEALTHY "timed out after …". (A probe that
///   blocks its thread before its first await point cannot be abandoned; probes must
///   await, or use `spawn_blocking`, for slow work.)
/// - A probe that panics is reported UNHEALTHY "probe panicked" (the status is served
///   without authentication, so the panic's message is not in it: it goes to the
///   [`HealthService::on_probe_panic`] observers); nothing else is affected.
/// - Worst-of over the top level (non-critical probes count at most as DEGRADED);
///   children sorted by name; nested dependencies are passed through.
/// - Concurrent requests share one run of each probe; with a cache TTL, results are
///   reused for that long.
/// - After [`HealthService::signal_drain`], readiness answers UNHEALTHY "Application is
///   shutting down" at once without running probes; liveness is unchanged.
///
/// Checks need a tokio runtime (probes run as tasks).
///
/// ```
/// use std::time::Duration;
/// use piko_obs_health::{CheckKind, HealthService, State, Status, probe_fn};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let health = HealthService::new("orders", Duration::from_secs(5)).unwrap();
/// health.register(probe_fn("db", |_kind, _deadline| async { Status::healthy("db") })).unwrap();
/// let status = health.check(CheckKind::Readiness).await;
/// assert_eq!(status.state, State::Healthy);
/// assert_eq!(status.message, "Readiness check completed");
/// assert_eq!(status.dependencies[0].name, "db");
/// # });
/// ```
#[derive(Clone)]
pub struct HealthService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HealthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthService")
            .field("name", &self.inner.name)
            .field("probes", &self.probe_names())
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl HealthService {
    /// A service whose top-level status is called `name`, with a default deadline per
    /// probe.
    pub fn new(name: impl Into<String>, default_timeout: Duration) -> Result<Self, ZeroTimeout> {
        if default_timeout.is_zero() {
            return Err(ZeroTimeout);
        }
        Ok(HealthService {
            inner: Arc::new(Inner {
                name: name.into(),
                default_timeout,
                probes: RwLock::new(Arc::new(Vec::new())),
                draining: AtomicBool::new(false),
                observers: RwLock::new(Vec::new()),
                panic_observers: RwLock::new(Vec::new()),
            }),
        })
    }

    /// The top-level name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Registers a probe with the default options. A name already registered is an
    /// error.
    pub fn register(&self, probe: impl Probe) -> Result<(), RegisterError> {
        self.register_with(probe, ProbeOptions::default())
    }

    /// Registers a probe with options. A name already registered, or a zero timeout, is
    /// an error.
    pub fn register_with(
        &self,
        probe: impl Probe,
        options: ProbeOptions,
    ) -> Result<(), RegisterError> {
        let mut probes = self.inner.probes.write().unwrap_or_else(|p| p.into_inner());
        let name = Probe::name(&probe).to_string();
        if probes.iter().any(|p| p.probe.name() == name) {
            return Err(RegisterError::DuplicateName(name));
        }
        if options.timeout.is_some_and(|t| t.is_zero()) {
            return Err(RegisterError::ZeroTimeout(name));
        }
        let mut next = Vec::clone(&probes);
        next.push(Arc::new(Registered {
            probe: Arc::new(probe),
            options,
            slots: Default::default(),
        }));
        *probes = Arc::new(next);
        Ok(())
    }

    /// Names of the registered probes.
    pub fn probe_names(&self) -> Vec<String> {
        self.inner
            .probes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|p| p.probe.name().to_string())
            .collect()
    }

    /// From now on readiness answers UNHEALTHY without running probes. Irreversible.
    pub fn signal_drain(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Whether drain was signalled.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Runs every probe for `kind` and aggregates.
    pub async fn check(&self, kind: CheckKind) -> Status {
        let started = Instant::now();
        if kind == CheckKind::Readiness && self.is_draining() {
            return Status::unhealthy(self.inner.name.clone(), "Application is shutting down");
        }
        let probes = self
            .inner
            .probes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let probes: Vec<&Registered> = probes
            .iter()
            .filter(|p| p.options.kinds.contains(kind))
            .map(|p| &**p)
            .collect();
        // Each probe runs on its own task (see run_isolated); the single-flight and
        // cache bookkeeping runs here, concurrently, without a task of its own.
        let report = |probe: &str, message: &str| self.report_panic(kind, probe, message);
        let runs = probes.iter().map(|p| {
            let timeout = p.options.timeout.unwrap_or(self.inner.default_timeout);
            run_one(p, kind, timeout, started, &report)
        });
        let statuses = futures_util::future::join_all(runs).await;
        let mut children = Vec::with_capacity(statuses.len());
        let mut state = State::Healthy;
        for (status, p) in statuses.into_iter().zip(probes) {
            let counted = match (status.state, p.options.critical) {
                (State::Unhealthy, false) => State::Degraded,
                (s, _) => s,
            };
            state = state.max(counted);
            children.push(status);
        }
        children.sort_by(|a, b| a.name.cmp(&b.name));
        let message = match (kind, state == State::Healthy) {
            (CheckKind::Liveness, true) => "Liveness check completed",
            (CheckKind::Liveness, false) => "Liveness check found issues",
            (CheckKind::Readiness, true) => "Readiness check completed",
            (CheckKind::Readiness, false) => "Readiness check found issues",
            (CheckKind::Startup, true) => "Startup check completed",
            (CheckKind::Startup, false) => "Startup check found issues",
        }
        .to_string();
        let status = Status {
            name: self.inner.name.clone(),
            state,
            message,
            timestamp: SystemTime::now(),
            duration: started.elapsed(),
            dependencies: children,
        };
        for observe in self
            .inner
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            observe(kind, &status);
        }
        status
    }

    /// Calls `observe` with every probe panic, with the panic's message (which the
    /// status served does not show). The facade logs them; it must be quick and must not
    /// panic.
    pub fn on_probe_panic(&self, observe: impl Fn(&ProbePanic<'_>) + Send + Sync + 'static) {
        self.inner
            .panic_observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(observe));
    }

    fn report_panic(&self, kind: CheckKind, probe: &str, message: &str) {
        let panic = ProbePanic {
            probe,
            kind,
            message,
        };
        for observe in self
            .inner
            .panic_observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            observe(&panic);
        }
    }

    /// Calls `observe` with every aggregated status a check produces (not for readiness
    /// while draining, which runs no probe). The facade uses it to record check
    /// durations and states as metrics; it must be quick and must not panic.
    pub fn observe(&self, observe: impl Fn(CheckKind, &Status) + Send + Sync + 'static) {
        self.inner
            .observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(observe));
    }
}

/// One probe, through its single-flight slot and cache, within its deadline. Only the
/// waits that can last (for another request's run, for a probe still pending) set a
/// timer; an uncontended slot and an instant probe cost none.
async fn run_one(
    p: &Registered,
    kind: CheckKind,
    timeout: Duration,
    asked: Instant,
    report: &Report<'_>,
) -> Status {
    let deadline = asked + timeout.min(LONGEST_WAIT);
    let name = p.probe.name();
    let cell = &p.slots[index(kind)];
    if p.options.cache_ttl.is_none() && !cell.pending_run.load(Ordering::Acquire) {
        // No cache and no run under way to share: run the probe without touching the
        // slot's lock (an instant probe then costs no write to shared state). A run that
        // does not answer at once takes the slot, if free, so later requests share it.
        return run_isolated(
            p.probe.clone(),
            kind,
            deadline,
            name,
            timeout,
            Share::Offer(cell),
            report,
        )
        .await;
    }
    let mut slot = match cell.lock.try_lock() {
        Ok(guard) => guard,
        Err(_) => {
            cell.waiting.fetch_add(1, Ordering::AcqRel);
            let got = tokio::time::timeout_at(deadline.into(), cell.lock.lock()).await;
            cell.waiting.fetch_sub(1, Ordering::AcqRel);
            match got {
                Ok(guard) => guard,
                Err(_) => return timed_out(name, timeout, asked),
            }
        }
    };
    if let Some((finished, status)) = &slot.last {
        // A run that finished after this request arrived answers it (single flight);
        // with a TTL, any result younger than the TTL does.
        let fresh_enough = *finished >= asked
            || p.options
                .cache_ttl
                .is_some_and(|ttl| finished.elapsed() < ttl);
        if fresh_enough {
            return status.clone();
        }
    }
    let status = run_isolated(
        p.probe.clone(),
        kind,
        deadline,
        name,
        timeout,
        Share::Held(&cell.pending_run),
        report,
    )
    .await;
    if p.options.cache_ttl.is_some() || cell.waiting.load(Ordering::Acquire) > 0 {
        slot.last = Some((Instant::now(), status.clone()));
    }
    status
}

/// Runs the probe: first polled in place (a probe that answers at once costs no task,
/// no timer and no thread wake-up), then, if it is still pending, on its own task, so
/// that it is abandoned at the deadline. A panic in either place is caught and reported.
/// While the run is under way past its first poll, the slot's `pending_run` flag is
/// raised (see [`Share`]), so that requests arriving meanwhile wait for its result.
async fn run_isolated(
    probe: Arc<dyn ErasedProbe>,
    kind: CheckKind,
    deadline: Instant,
    name: &str,
    timeout: Duration,
    share: Share<'_>,
    report: &Report<'_>,
) -> Status {
    let started = Instant::now();
    let mut fut = probe.check_owned(kind, deadline);
    let first = std::future::poll_fn(|cx| {
        Poll::Ready(
            match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                Ok(Poll::Ready(status)) => Some(Ok(status)),
                Ok(Poll::Pending) => None,
                Err(panic) => Some(Err(panic)),
            },
        )
    })
    .await;
    let outcome = match first {
        Some(Ok(status)) => Ok(status),
        Some(Err(panic)) => Err(panic_message(&*panic)),
        None => {
            // Take the slot if this run does not hold it yet and nobody does.
            let mut offered = match share {
                Share::Offer(cell) => cell.lock.try_lock().ok().map(|g| (cell, g)),
                Share::Held(_) => None,
            };
            let flag = match (&share, &offered) {
                (Share::Held(flag), _) => Some(*flag),
                (Share::Offer(_), Some((cell, _))) => Some(&cell.pending_run),
                (Share::Offer(_), None) => None,
            };
            let _pending = flag.map(PendingFlag::raise);
            let mut task = tokio::spawn(fut);
            let outcome = match tokio::time::timeout_at(deadline.into(), &mut task).await {
                Ok(Ok(status)) => Ok(status),
                Ok(Err(e)) if e.is_panic() => Err(panic_message(&*e.into_panic())),
                Ok(Err(e)) => {
                    return Status::unhealthy(name, format!("probe did not finish: {e}"))
                        .with_duration(started.elapsed());
                }
                Err(_) => {
                    task.abort();
                    return timed_out(name, timeout, started);
                }
            };
            let status = finish(outcome, name, started, report);
            if let Some((cell, slot)) = &mut offered
                && cell.waiting.load(Ordering::Acquire) > 0
            {
                slot.last = Some((Instant::now(), status.clone()));
            }
            return status;
        }
    };
    finish(outcome, name, started, report)
}

/// Hands a probe's name and panic message to the panic observers.
type Report<'a> = dyn Fn(&str, &str) + Send + Sync + 'a;

/// How a run relates to its probe's single-flight slot.
enum Share<'a> {
    /// The caller holds the slot; this is its `pending_run` flag.
    Held(&'a AtomicBool),
    /// The caller does not hold the slot: take it if the run goes pending.
    Offer(&'a SlotCell),
}

fn finish(
    outcome: Result<Status, String>,
    name: &str,
    started: Instant,
    report: &Report<'_>,
) -> Status {
    match outcome {
        Ok(mut status) => {
            if status.duration.is_zero() {
                status.duration = started.elapsed();
            }
            status
        }
        Err(msg) => {
            report(name, &msg);
            Status::unhealthy(name, PROBE_PANICKED).with_duration(started.elapsed())
        }
    }
}

/// Raises a slot's `pending_run` flag until dropped.
struct PendingFlag<'a>(&'a AtomicBool);

impl<'a> PendingFlag<'a> {
    fn raise(flag: &'a AtomicBool) -> PendingFlag<'a> {
        flag.store(true, Ordering::Release);
        PendingFlag(flag)
    }
}

impl Drop for PendingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn timed_out(name: &str, timeout: Duration, since: Instant) -> Status {
    Status::unhealthy(
        name,
        format!(
            "Health check timed out after {}",
            crate::status::duration_text(timeout)
        ),
    )
    .with_duration(since.elapsed())
}
