//! The `Probe` port and the closure probe.

use std::future::Future;
use std::time::Instant;

use crate::status::{CheckKind, Status};

/// A dependency check: the port users implement for their databases, caches, queues.
///
/// Contract: `check` answers for `kind` and should finish before `deadline`; the service
/// abandons it at the deadline in any case, and reports a panic as UNHEALTHY. A probe
/// never fails with an error: it reports failure as a state. Probes run concurrently,
/// also with themselves (unless cached), so they must be safe to call from several
/// tasks.
///
/// ```
/// use std::time::Instant;
/// use piko_obs_health::{CheckKind, Probe, Status};
///
/// struct Queue { depth: fn() -> usize }
///
/// impl Probe for Queue {
///     fn name(&self) -> &str { "queue" }
///     async fn check(&self, _kind: CheckKind, _deadline: Instant) -> Status {
///         match (self.depth)() {
///             d if d > 10_000 => Status::degraded("queue", format!("{d} messages waiting")),
///             _ => Status::healthy("queue"),
///         }
///     }
/// }
/// ```
pub trait Probe: Send + Sync + 'static {
    /// The name the probe reports under.
    fn name(&self) -> &str;
    /// Checks once.
    fn check(&self, kind: CheckKind, deadline: Instant) -> impl Future<Output = Status> + Send;
}

/// A probe from a name and a closure returning a future (see [`probe_fn`]).
pub struct FnProbe<F> {
    name: String,
    f: F,
}

impl<F> std::fmt::Debug for FnProbe<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnProbe")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A probe from a closure: `probe_fn("cache", |kind, deadline| async move { ... })`.
pub fn probe_fn<F, Fut>(name: impl Into<String>, f: F) -> FnProbe<F>
where
    F: Fn(CheckKind, Instant) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Status> + Send + 'static,
{
    FnProbe {
        name: name.into(),
        f,
    }
}

impl<F, Fut> Probe for FnProbe<F>
where
    F: Fn(CheckKind, Instant) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Status> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn check(&self, kind: CheckKind, deadline: Instant) -> impl Future<Output = Status> + Send {
        (self.f)(kind, deadline)
    }
}
