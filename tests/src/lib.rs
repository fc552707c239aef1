//! Support for the workspace tests: the fuzzing harness and the helpers that need
//! piko-obs's own types (the shared helpers are `crates/piko-obs-testkit`, a
//! dev-dependency here).

/// The guide `docs/how-to/monitor-production.md`, compiled: each of its Rust blocks is a
/// doctest of this crate (the tests crate, which is never packaged, so no published
/// crate includes a file from outside itself).
#[cfg(doctest)]
#[doc = include_str!("../../docs/how-to/monitor-production.md")]
pub struct MonitorProductionGuide;

/// The reference pages' Rust blocks, compiled as doctests of this crate.
#[cfg(doctest)]
pub mod reference_docs {
    #[doc = include_str!("../../docs/reference/health.md")]
    pub struct Health;
    #[doc = include_str!("../../docs/reference/lifecycle.md")]
    pub struct Lifecycle;
    #[doc = include_str!("../../docs/reference/logger.md")]
    pub struct Logger;
    #[doc = include_str!("../../docs/reference/metrics.md")]
    pub struct Metrics;
    #[doc = include_str!("../../docs/reference/notification.md")]
    pub struct Notification;
    #[doc = include_str!("../../docs/reference/otlp.md")]
    pub struct Otlp;
    #[doc = include_str!("../../docs/reference/sentry.md")]
    pub struct Sentry;
}

/// The README's Rust blocks (the quick start), compiled as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct Readme;

pub mod fuzz;

use std::time::Duration;

/// A health service with five probes that answer at once, as the health benchmarks use.
pub fn five_instant_probes() -> piko_obs::health::HealthService {
    use piko_obs::health::{HealthService, Status, probe_fn};
    let health = HealthService::new("bench", Duration::from_secs(5)).expect("service");
    for name in ["cache", "db", "queue", "search", "storage"] {
        health
            .register(probe_fn(
                name,
                move |_, _| async move { Status::healthy(name) },
            ))
            .expect("probe");
    }
    health
}
