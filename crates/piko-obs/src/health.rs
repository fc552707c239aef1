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
use std::time::Duration;

#[cfg(feature = "metrics")]
use std::sync::Arc;

use piko_obs_lifecycle::Unwind;

use crate::start::{Resolved, Started};
use crate::{Builder, InitError};

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
#[cfg(feature = "metrics")]
pub(crate) fn record_metrics() {
    if let Some(c) = SERVER_COUNTERS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        c.record_metrics();
    }
}

/// The probe server's settings given to the builder.
pub(crate) struct InCode {
    pub(crate) enabled: bool,
    /// Given in code; the environment and the defaults fill the rest at `init()`.
    pub(crate) server: piko_obs_health_warp::ServerSettings,
    pub(crate) metrics_render: Option<MetricsRender>,
    pub(crate) timeout: Duration,
    pub(crate) tls: Option<TlsOptions>,
    pub(crate) response_cache: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) probes: Vec<ProbeRegistration>,
}

impl Default for InCode {
    fn default() -> Self {
        Self {
            enabled: true,
            server: piko_obs_health_warp::ServerSettings::default(),
            metrics_render: None,
            timeout: Duration::from_secs(5),
            tls: None,
            response_cache: DEFAULT_HEALTH_RESPONSE_CACHE,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            probes: Vec::new(),
        }
    }
}

type ProbeRegistration = Box<dyn FnOnce(&HealthService) -> Result<(), RegisterError> + Send>;

/// How long the probe server answers a probe path from its last answer
/// ([`crate::Builder::with_health_response_cache`]): far below any Kubernetes probe period, long
/// enough that a storm of probe requests runs the probes a few times a second at most.
pub const DEFAULT_HEALTH_RESPONSE_CACHE: Duration = Duration::from_millis(250);

impl Builder {
    /// Whether the probe server runs (default: on).
    pub fn with_health_enabled(mut self, on: bool) -> Self {
        self.health.enabled = on;
        self
    }
    /// The probe server's port (default 9090; 0 picks a free port, see
    /// [`crate::Guard::health_addr`]). Not given, `PIKO_HEALTH_PORT` sets it.
    pub fn with_health_probe_port(mut self, port: u16) -> Self {
        self.health.server.port = Some(port);
        self
    }
    /// The probe server's IP address (default `127.0.0.1`; `0.0.0.0` exposes it). Not
    /// given, `PIKO_HEALTH_BIND_ADDRESS` sets it.
    pub fn with_health_bind_address(mut self, addr: impl Into<String>) -> Self {
        self.health.server.bind = Some(addr.into());
        self
    }
    /// The liveness path (default `/live`; else `PIKO_HEALTH_LIVE_PATH`).
    pub fn with_health_live_path(mut self, path: impl Into<String>) -> Self {
        self.health.server.live = Some(path.into());
        self
    }
    /// The readiness path (default `/ready`; else `PIKO_HEALTH_READY_PATH`).
    pub fn with_health_ready_path(mut self, path: impl Into<String>) -> Self {
        self.health.server.ready = Some(path.into());
        self
    }
    /// The startup path (default `/startup`; else `PIKO_HEALTH_STARTUP_PATH`).
    pub fn with_health_startup_path(mut self, path: impl Into<String>) -> Self {
        self.health.server.startup = Some(path.into());
        self
    }
    /// The metrics path on the probe port (default `/metrics`; else
    /// `PIKO_HEALTH_METRICS_PATH`).
    pub fn with_health_metrics_path(mut self, path: impl Into<String>) -> Self {
        self.health.server.metrics = Some(path.into());
        self
    }
    /// What the metrics path serves, instead of piko-obs's Prometheus recorder (which is
    /// then not installed).
    pub fn with_health_metrics_render(mut self, render: MetricsRender) -> Self {
        self.health.metrics_render = Some(render);
        self
    }
    /// Each probe's default deadline (default 5 s; sub-second values work).
    pub fn with_health_check_timeout(mut self, timeout: Duration) -> Self {
        self.health.timeout = timeout;
        self
    }
    /// Answers each probe path from its last answer while that is younger than `ttl`
    /// (default [`DEFAULT_HEALTH_RESPONSE_CACHE`], 250 ms; zero turns the cache off).
    /// Readiness answers UNHEALTHY at once when the shutdown starts, whatever is cached.
    pub fn with_health_response_cache(mut self, ttl: Duration) -> Self {
        self.health.response_cache = ttl;
        self
    }

    /// How long a client of the probe port may take to send a request's header (default
    /// 5 s); past it the connection is closed. Zero fails `init()`; more than an hour is
    /// cut to an hour.
    pub fn with_health_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.health.header_read_timeout = timeout;
        self
    }

    /// How long a probe-port connection may stay open with no request in flight once it
    /// has served one (default 90 s). Zero fails `init()`; more than an hour is cut to an
    /// hour.
    pub fn with_health_idle_timeout(mut self, timeout: Duration) -> Self {
        self.health.idle_timeout = timeout;
        self
    }

    /// The most connections the probe server holds at once (default 256). Past it the
    /// oldest connection with no request in flight is closed to make room, or, when
    /// every one is busy, the new connection is closed at once; both are counted on
    /// `/metrics` (`piko_obs_health_connections_closed_total`). Zero fails `init()`.
    pub fn with_health_max_connections(mut self, max: usize) -> Self {
        self.health.max_connections = max;
        self
    }

    /// Serves the probe paths over TLS.
    pub fn with_health_tls(mut self, tls: TlsOptions) -> Self {
        self.health.tls = Some(tls);
        self
    }
    /// Adds a probe for the service's dependencies. It answers readiness and startup,
    /// not liveness: a dependency's outage takes the pod out of the endpoints instead of
    /// making Kubernetes restart every pod ([`ProbeKinds`];
    /// `ProbeOptions::default().with_liveness()` opts in).
    pub fn with_custom_health_probe(self, probe: impl Probe) -> Self {
        self.with_custom_health_probe_options(probe, ProbeOptions::default())
    }
    /// Adds a probe with options (deadline, criticality, caching, kinds).
    pub fn with_custom_health_probe_options(
        mut self,
        probe: impl Probe,
        options: ProbeOptions,
    ) -> Self {
        self.health
            .probes
            .push(Box::new(move |s| s.register_with(probe, options)));
        self
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
        let Some(rt) = started.runtime.clone().filter(|_| self.health.enabled) else {
            return Ok(());
        };
        let service = HealthService::new(r.service_name.clone(), self.health.timeout)
            .map_err(|_| InitError::HealthTimeout)?;
        log_probe_panics(&service);
        for register in std::mem::take(&mut self.health.probes) {
            register(&service)?;
        }
        let mut server = ServerBuilder::new(service.clone())
            .with_probe_server(&r.probe_server)
            .with_response_cache(self.health.response_cache)
            .with_header_read_timeout(self.health.header_read_timeout)
            .with_idle_timeout(self.health.idle_timeout)
            .with_max_connections(self.health.max_connections);
        if let Some(tls) = self.health.tls.clone() {
            server = server.with_tls(tls);
        }
        if let Some(render) = self.metrics_render(&service, started) {
            server = server.with_metrics(render);
        }
        let running = {
            let _enter = rt.enter();
            server.start()?
        };
        set_server_counters(running.counters());
        started.health = Some((service.clone(), running.local_addr()));
        parts.push(running);
        parts.push(Drain::new(&service, r.drain_delay));
        Ok(())
    }
    /// What `/metrics` serves: the application's render, or the installed recorder's.
    fn metrics_render(&self, service: &HealthService, started: &Started) -> Option<MetricsRender> {
        let _ = (service, started);
        #[cfg(feature = "metrics")]
        {
            if !self.metrics.enabled {
                return None;
            }
            if let (None, Some(installed)) = (&self.health.metrics_render, started.recorder) {
                piko_obs_health::telemetry::observe_metrics(service);
                return Some(Arc::new(move || installed.render()) as _);
            }
        }
        self.health.metrics_render.clone()
    }
}
