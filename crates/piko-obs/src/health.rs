//! Health probes: the probe domain and the probe server, re-exported.
//!
//! `init()` starts the probe server on its own port (`127.0.0.1:9090` by default) and
//! runs it on a thread of its own (`docs/reference/health.md`, "Threads"), so it works
//! from synchronous and async `main` alike and answers while the application's runtime
//! is busy. The guard drains readiness, waits the drain delay, then stops it.
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

pub use piko_obs_health::*;
use piko_obs_health_warp::setup::Composition;
pub use piko_obs_health_warp::{
    ConnectionCounters, ConnectionStats, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_HEALTH_RESPONSE_CACHE, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, HttpProbe,
    InvalidUrl, MAX_CONNECTION_TIMEOUT, MetricsRender, PROBE_THREAD_PERIOD, PROBE_THREAD_RUNTIME,
    PROBE_THREAD_SLICE, RunningServer, Scheduling, ServerBuilder, ServerError, ServerSetup,
    ServerSetupError, TcpProbe, TlsMinVersion, TlsOptions, setup::ServingServer,
};
use std::time::Duration;

#[cfg(feature = "metrics")]
use std::sync::Arc;

use piko_obs_lifecycle::Unwind;

use crate::start::{Resolved, Started};
use crate::{Builder, InitError};

impl From<ServerSetupError> for InitError {
    fn from(e: ServerSetupError) -> Self {
        match e {
            ServerSetupError::ZeroTimeout => InitError::HealthTimeout,
            ServerSetupError::Probe(e) => InitError::Probe(e),
            ServerSetupError::Server(e) => InitError::Health(e),
        }
    }
}

impl Builder {
    delegate! { health:
        /// Whether the probe server runs (default: on).
        fn with_health_enabled(on: bool) => with_enabled(on);
        /// The probe server's port (default 9090; 0 picks a free port, see
        /// [`crate::Guard::health_addr`]). Not given, `PIKO_HEALTH_PORT` sets it.
        fn with_health_probe_port(port: u16) => with_port(port);
        /// The probe server's IP address (default `127.0.0.1`; `0.0.0.0` exposes it). Not
        /// given, `PIKO_HEALTH_BIND_ADDRESS` sets it.
        fn with_health_bind_address(addr: impl Into<String>) => with_bind_address(addr);
        /// The liveness path (default `/live`; else `PIKO_HEALTH_LIVE_PATH`).
        fn with_health_live_path(path: impl Into<String>) => with_live_path(path);
        /// The readiness path (default `/ready`; else `PIKO_HEALTH_READY_PATH`).
        fn with_health_ready_path(path: impl Into<String>) => with_ready_path(path);
        /// The startup path (default `/startup`; else `PIKO_HEALTH_STARTUP_PATH`).
        fn with_health_startup_path(path: impl Into<String>) => with_startup_path(path);
        /// The metrics path on the probe port (default `/metrics`; else
        /// `PIKO_HEALTH_METRICS_PATH`).
        fn with_health_metrics_path(path: impl Into<String>) => with_metrics_path(path);
        /// What the metrics path serves, instead of piko-obs's Prometheus recorder (which is
        /// then not installed).
        fn with_health_metrics_render(render: MetricsRender) => with_metrics_render(render);
        /// Each probe's default deadline (default 5 s; sub-second values work).
        fn with_health_check_timeout(timeout: Duration) => with_check_timeout(timeout);
        /// Answers each probe path from its last answer while that is younger than `ttl`
        /// (default [`DEFAULT_HEALTH_RESPONSE_CACHE`], 250 ms; zero turns the cache off).
        /// Readiness answers UNHEALTHY at once when the shutdown starts, whatever is cached.
        fn with_health_response_cache(ttl: Duration) => with_response_cache(ttl);

        /// How long a client of the probe port may take to send a request's header (default
        /// 5 s); past it the connection is closed. Zero fails `init()`; more than an hour is
        /// cut to an hour.
        fn with_health_header_read_timeout(timeout: Duration) => with_header_read_timeout(timeout);

        /// How long a probe-port connection may stay open with no request in flight once it
        /// has served one (default 90 s). Zero fails `init()`; more than an hour is cut to an
        /// hour.
        fn with_health_idle_timeout(timeout: Duration) => with_idle_timeout(timeout);

        /// The most connections the probe server holds at once (default 256). Past it the
        /// oldest connection with no request in flight is closed to make room, or, when
        /// every one is busy, the new connection is closed at once; both are counted on
        /// `/metrics` (`piko_obs_health_connections_closed_total`). Zero fails `init()`.
        fn with_health_max_connections(max: usize) => with_max_connections(max);

        /// Serves the probe paths over TLS.
        fn with_health_tls(tls: TlsOptions) => with_tls(tls);
        /// Whether the probe server's thread runs under `SCHED_DEADLINE` where the process
        /// has `CAP_SYS_NICE` (default: on; [`Scheduling::Deadline`]). Off, or refused, it
        /// asks for a short time slice ([`PROBE_THREAD_SLICE`]).
        fn with_health_deadline_scheduling(on: bool) => with_deadline_scheduling(on);
        /// Adds a probe for the service's dependencies. It answers readiness and startup,
        /// not liveness: a dependency's outage takes the pod out of the endpoints instead of
        /// making Kubernetes restart every pod ([`ProbeKinds`];
        /// `ProbeOptions::default().with_liveness()` opts in).
        fn with_custom_health_probe(probe: impl Probe) => with_probe(probe, ProbeOptions::default());
        /// Adds a probe with options (deadline, criticality, caching, kinds).
        fn with_custom_health_probe_options(probe: impl Probe, options: ProbeOptions) => with_probe(probe, options);
    }
}

impl Builder {
    /// The health service, its probes and the probe server, then the drain.
    pub(crate) fn start_health(
        &mut self,
        r: &Resolved,
        started: &mut Started,
        parts: &Unwind,
    ) -> Result<(), InitError> {
        let with = Composition {
            runtime: started.runtime.as_ref(),
            service_name: &r.service.service_name,
            server: &r.probe_server,
            drain_delay: r.service.drain_delay,
            #[cfg(feature = "metrics")]
            metrics_on: self.metrics.enabled(),
            #[cfg(not(feature = "metrics"))]
            metrics_on: true,
            #[cfg(feature = "metrics")]
            recorder: started
                .recorder
                .map(|installed| Arc::new(move || installed.render()) as _),
            #[cfg(not(feature = "metrics"))]
            recorder: None,
            on_probe_panic: Box::new(log_probe_panic),
        };
        let server = self.health.start_parts(with, parts)?;
        if let Some(server) = &server {
            server.install();
            let (probes, metrics) = server.shown();
            started.show("probes", probes);
            started.show("metrics", metrics);
            let scheduling = server.scheduling.to_string();
            crate::logger::get_logger("piko-obs/health").debug(
                "probe server started",
                &[crate::logger::attr::string("scheduling", &scheduling)],
            );
        }
        started.health = server;
        Ok(())
    }
}

/// Logs a probe panic at WARN under `piko-obs/health`, with the probe, the kind and the
/// panic's message (the status served says only "probe panicked").
fn log_probe_panic(p: &ProbePanic<'_>) {
    crate::logger::get_logger("piko-obs/health").warn(
        "health probe panicked",
        &[
            crate::logger::attr::string("probe", p.probe),
            crate::logger::attr::string("kind", p.kind.as_str()),
            crate::logger::attr::string("panic", p.message),
        ],
    )
}
