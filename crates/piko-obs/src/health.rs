//! Health probes: the probe domain and the probe server, re-exported.
//!
//! `init()` starts the probe server on its own port (`127.0.0.1:9090` by default) and
//! runs it on piko-obs's own small runtime, so it works from synchronous and async
//! `main` alike. The guard drains readiness, waits the drain delay, then stops it.
//!
//! ```
//! use std::time::Duration;
//! use piko_obs::health::{Status, probe_fn};
//!
//! let guard = piko_obs::builder()
//!     .with_console_output(false)
//!     .with_health_probe_port(0) // any free port, for this example
//!     .with_custom_health_probe(probe_fn("db", |_, _| async { Status::healthy("db") }))
//!     .init()
//!     .unwrap();
//! let addr = guard.health_addr().unwrap();
//! assert!(addr.ip().is_loopback());
//! guard.shutdown().unwrap();
//! ```

use std::sync::RwLock;

pub use piko_obs_health::*;
pub use piko_obs_health_warp::{
    ConnectionCounters, ConnectionStats, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, HttpProbe, InvalidUrl, MAX_CONNECTION_TIMEOUT, MetricsRender,
    RunningServer, ServerBuilder, ServerError, TcpProbe, TlsMinVersion, TlsOptions,
};

/// Logs every probe panic at WARN under `piko-obs/health`, with the probe, the kind
/// and the panic's message (the status served says only "probe panicked").
pub(crate) fn log_probe_panics(service: &HealthService) {
    service.on_probe_panic(|p| {
        crate::logger::get_logger("piko-obs/health").warn(
            "health probe panicked",
            &[
                piko_obs_logger::attr::string("probe", p.probe),
                piko_obs_logger::attr::string("kind", p.kind.as_str()),
                piko_obs_logger::attr::string("panic", p.message),
            ],
        )
    });
}

/// The connection counters of the probe server `init()` started last.
static SERVER_COUNTERS: RwLock<Option<ConnectionCounters>> = RwLock::new(None);

pub(crate) fn set_server_counters(counters: ConnectionCounters) {
    *SERVER_COUNTERS.write().unwrap_or_else(|p| p.into_inner()) = Some(counters);
}

/// Records the connection counters of the probe server `init()` started last.
pub(crate) fn record_metrics() {
    if let Some(c) = SERVER_COUNTERS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        c.record_metrics();
    }
}
