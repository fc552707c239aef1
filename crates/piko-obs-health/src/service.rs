//! The aggregating service: runs probes concurrently, each within its own deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::probe::Probe;
use crate::status::{CheckKind, State, Status};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Probe`], for storing probes of different types together.
trait ErasedProbe: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn check_boxed(&self, kind: CheckKind, deadline: Instant) -> BoxFuture<'_, Status>;
}

impl<P: Probe> ErasedProbe for P {
    fn name(&self) -> &str {
        Probe::name(self)
    }
    fn check_boxed(&self, kind: CheckKind, deadline: Instant) -> BoxFuture<'_, Status> {
        Box::pin(self.check(kind, deadline))
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
    /// though concurrent requests still share one run.
    pub cache_ttl: Option<Duration>,
    /// The kinds this probe answers (default: liveness, readiness and startup).
    pub kinds: [bool; 3],
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: None,
            critical: true,
            cache_ttl: None,
            kinds: [true; 3],
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
    /// Only for these kinds.
    pub fn only(mut self, kinds: &[CheckKind]) -> Self {
        self.kinds = [false; 3];
        for k in kinds {
            self.kinds[index(*k)] = true;
        }
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

struct Registered {
    probe: Arc<dyn ErasedProbe>,
    options: ProbeOptions,
    /// One per kind: single flight and the cache.
    slots: [Arc<tokio::sync::Mutex<Slot>>; 3],
}

struct Inner {
    name: String,
    default_timeout: Duration,
    probes: RwLock<Vec<Arc<Registered>>>,
    draining: AtomicBool,
}

/// A probe name that is already registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a health probe named {0:?} is already registered: give each probe its own name")]
pub struct DuplicateProbe(pub String);

/// A deadline that is zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("health check timeout must be greater than zero (for example 5s or 300ms)")]
pub struct ZeroTimeout;

/// Runs registered probes and aggregates their statuses (Piko's health service, with
/// its bugs fixed).
///
/// - Every probe runs concurrently, on its own task, with its own deadline (any
///   `Duration`, sub-second ones included). A probe that misses it is abandoned: the
///   answer comes back on time with that probe UNHEALTHY "timed out after …".
/// - A probe that panics is reported UNHEALTHY with the panic message; nothing else is
///   affected.
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
                probes: RwLock::new(Vec::new()),
                draining: AtomicBool::new(false),
            }),
        })
    }

    /// The top-level name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Registers a probe with the default options.
    pub fn register(&self, probe: impl Probe) -> Result<(), DuplicateProbe> {
        self.register_with(probe, ProbeOptions::default())
    }

    /// Registers a probe.
    pub fn register_with(
        &self,
        probe: impl Probe,
        options: ProbeOptions,
    ) -> Result<(), DuplicateProbe> {
        let mut probes = self.inner.probes.write().unwrap_or_else(|p| p.into_inner());
        let name = Probe::name(&probe).to_string();
        if probes.iter().any(|p| p.probe.name() == name) {
            return Err(DuplicateProbe(name));
        }
        probes.push(Arc::new(Registered {
            probe: Arc::new(probe),
            options,
            slots: Default::default(),
        }));
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
        let probes: Vec<Arc<Registered>> = self
            .inner
            .probes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|p| p.options.kinds[index(kind)])
            .cloned()
            .collect();
        let runs: Vec<_> = probes
            .iter()
            .map(|p| {
                let p = p.clone();
                let timeout = p.options.timeout.unwrap_or(self.inner.default_timeout);
                tokio::spawn(async move {
                    let status = run_one(&p, kind, timeout, started).await;
                    (p.options.critical, status)
                })
            })
            .collect();
        let mut children = Vec::with_capacity(runs.len());
        let mut state = State::Healthy;
        for (run, p) in runs.into_iter().zip(&probes) {
            let (critical, status) = match run.await {
                Ok(r) => r,
                // run_one never panics; a cancelled runtime is the only way here.
                Err(e) => (
                    p.options.critical,
                    Status::unhealthy(p.probe.name(), format!("check did not finish: {e}")),
                ),
            };
            let counted = match (status.state, critical) {
                (State::Unhealthy, false) => State::Degraded,
                (s, _) => s,
            };
            state = state.max(counted);
            children.push(status);
        }
        children.sort_by(|a, b| a.name.cmp(&b.name));
        let message = if state == State::Healthy {
            format!("{} check completed", kind.title())
        } else {
            format!("{} check found issues", kind.title())
        };
        Status {
            name: self.inner.name.clone(),
            state,
            message,
            timestamp: SystemTime::now(),
            duration: started.elapsed(),
            dependencies: children,
        }
    }
}

/// One probe, through its single-flight slot and cache, within its deadline.
async fn run_one(
    p: &Arc<Registered>,
    kind: CheckKind,
    timeout: Duration,
    asked: Instant,
) -> Status {
    let deadline = asked + timeout;
    let name = p.probe.name().to_string();
    let slot = p.slots[index(kind)].clone();
    let work = async {
        let mut slot = slot.lock().await;
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
        let status = run_isolated(p.probe.clone(), kind, deadline, &name, timeout).await;
        slot.last = Some((Instant::now(), status.clone()));
        status
    };
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(status) => status,
        Err(_) => timed_out(&name, timeout, asked),
    }
}

/// Runs the probe on its own task, so that a panic is caught and a probe past its
/// deadline is abandoned (aborted at its next await point).
async fn run_isolated(
    probe: Arc<dyn ErasedProbe>,
    kind: CheckKind,
    deadline: Instant,
    name: &str,
    timeout: Duration,
) -> Status {
    let started = Instant::now();
    let mut task = tokio::spawn(async move { probe.check_boxed(kind, deadline).await });
    match tokio::time::timeout_at(deadline.into(), &mut task).await {
        Ok(Ok(mut status)) => {
            if status.duration.is_zero() {
                status.duration = started.elapsed();
            }
            status
        }
        Ok(Err(e)) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Status::unhealthy(name, format!("probe panicked: {msg}"))
                .with_duration(started.elapsed())
        }
        Ok(Err(e)) => Status::unhealthy(name, format!("probe did not finish: {e}"))
            .with_duration(started.elapsed()),
        Err(_) => {
            task.abort();
            timed_out(name, timeout, started)
        }
    }
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
