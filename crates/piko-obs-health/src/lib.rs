//! Health probes for piko-obs: the domain, with no HTTP in it.
//!
//! - [`Probe`]: the port a dependency check implements (liveness, readiness, startup);
//!   [`probe_fn`] makes one from a closure;
//! - [`Status`], [`State`], [`CheckKind`]: Piko's status tree and JSON shape
//!   (`name`, `state` in upper case, `message`, `timestamp`, `duration`, `dependencies`);
//! - [`ProbeOptions`], [`ProbeKinds`]: how a probe runs, and which checks it answers
//!   (readiness and startup by default; liveness is opt-in);
//! - [`HealthService`]: runs probes concurrently with per-probe deadlines, isolates
//!   panics, aggregates worst-of, caches and shares runs, and drains on shutdown.
//!
//! The HTTP server is in `piko-obs-health-warp`; the `piko-obs` facade wires both.
//!
//! ```
//! use std::time::Duration;
//! use piko_obs_health::{CheckKind, HealthService, ProbeOptions, State, Status, probe_fn};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let health = HealthService::new("shop", Duration::from_millis(300)).unwrap();
//! health.register(probe_fn("db", |_, _| async { Status::healthy("db") })).unwrap();
//! health
//!     .register_with(
//!         probe_fn("recommendations", |_, _| async {
//!             Status::unhealthy("recommendations", "upstream 502")
//!         }),
//!         ProbeOptions::default().non_critical(),
//!     )
//!     .unwrap();
//! let ready = health.check(CheckKind::Readiness).await;
//! assert_eq!(ready.state, State::Degraded); // non-critical: degraded, still serving
//! health.signal_drain();
//! assert_eq!(health.check(CheckKind::Readiness).await.state, State::Unhealthy);
//! // Probes answer readiness and startup unless `with_liveness()`: a dependency's
//! // outage must not make Kubernetes restart every pod.
//! assert_eq!(health.check(CheckKind::Liveness).await.state, State::Healthy);
//! # });
//! ```
//!
//! No feature flags.

mod lifecycle;
mod probe;
mod service;
mod status;
pub mod telemetry;

pub use lifecycle::Drain;
pub use probe::{FnProbe, Probe, probe_fn};
pub use service::{
    HealthService, PROBE_PANICKED, ProbeKinds, ProbeOptions, ProbePanic, RegisterError, ZeroTimeout,
};
pub use status::{CheckKind, State, Status, duration_text, rfc3339};
