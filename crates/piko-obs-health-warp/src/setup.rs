//! The probe server of a process: [`ServerSetup`] holds its settings, resolves its
//! address and paths against the `PIKO_HEALTH_*` variables, and starts the health
//! service, its probes, the server and its drain; [`global`] holds the connection
//! counters of the server the composing program installed last.

use std::net::SocketAddr;
use std::sync::RwLock;
use std::time::Duration;

use piko_obs_health::{Drain, HealthService, Probe, ProbeOptions, ProbePanic, RegisterError};
use piko_obs_lifecycle::Unwind;
use piko_obs_lifecycle::settings::EnvSettingError;

use crate::{
    ConnectionCounters, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    MetricsRender, ProbeServer, RunningServer, ServerBuilder, ServerError, ServerSettings,
    TlsOptions,
};

/// How long the probe server answers a probe path from its last answer
/// ([`ServerSetup::with_response_cache`]): far below any Kubernetes probe period, long
/// enough that a storm of probe requests runs the probes a few times a second at most.
pub const DEFAULT_HEALTH_RESPONSE_CACHE: Duration = Duration::from_millis(250);

type ProbeRegistration = Box<dyn FnOnce(&HealthService) -> Result<(), RegisterError> + Send>;

/// The probe server's settings given in code; [`resolve`](Self::resolve) fills its
/// address and paths from the environment, [`start`](Self::start) starts it.
///
/// ```
/// use std::time::Duration;
/// use piko_obs_health::{Status, probe_fn};
/// use piko_obs_health_warp::setup::ServerSetup;
/// let mut setup = ServerSetup::default()
///     .with_port(0)
///     .with_probe(probe_fn("db", |_, _| async { Status::healthy("db") }), Default::default());
/// let server = setup.resolve(&|_: &str| None).unwrap();
/// let started = setup
///     .start(None, "shop", &server, Duration::ZERO, |_, r| r) // on its own thread
///     .unwrap();
/// assert!(started.running.local_addr().ip().is_loopback());
/// ```
pub struct ServerSetup {
    enabled: bool,
    server: ServerSettings,
    metrics_render: Option<MetricsRender>,
    timeout: Duration,
    tls: Option<TlsOptions>,
    response_cache: Duration,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    own_thread: bool,
    deadline: bool,
    probes: Vec<ProbeRegistration>,
}

impl Default for ServerSetup {
    fn default() -> Self {
        Self {
            enabled: true,
            server: ServerSettings::default(),
            metrics_render: None,
            timeout: Duration::from_secs(5),
            tls: None,
            response_cache: DEFAULT_HEALTH_RESPONSE_CACHE,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            own_thread: true,
            deadline: true,
            probes: Vec::new(),
        }
    }
}

impl std::fmt::Debug for ServerSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSetup")
            .field("enabled", &self.enabled)
            .field("server", &self.server)
            .field("metrics_render", &self.metrics_render.is_some())
            .field("timeout", &self.timeout)
            .field("tls", &self.tls.is_some())
            .field("own_thread", &self.own_thread)
            .field("deadline", &self.deadline)
            .field("probes", &self.probes.len())
            .finish_non_exhaustive()
    }
}

impl ServerSetup {
    /// Whether the probe server runs (default on).
    pub fn with_enabled(self, on: bool) -> Self {
        Self {
            enabled: on,
            ..self
        }
    }
    /// The port (default 9090; 0 picks a free port); not given, `PIKO_HEALTH_PORT`.
    pub fn with_port(mut self, port: u16) -> Self {
        self.server.port = Some(port);
        self
    }
    /// The IP address (default `127.0.0.1`); not given, `PIKO_HEALTH_BIND_ADDRESS`.
    pub fn with_bind_address(mut self, addr: impl Into<String>) -> Self {
        self.server.bind = Some(addr.into());
        self
    }
    /// The liveness path (default `/live`; else `PIKO_HEALTH_LIVE_PATH`).
    pub fn with_live_path(mut self, path: impl Into<String>) -> Self {
        self.server.live = Some(path.into());
        self
    }
    /// The readiness path (default `/ready`; else `PIKO_HEALTH_READY_PATH`).
    pub fn with_ready_path(mut self, path: impl Into<String>) -> Self {
        self.server.ready = Some(path.into());
        self
    }
    /// The startup path (default `/startup`; else `PIKO_HEALTH_STARTUP_PATH`).
    pub fn with_startup_path(mut self, path: impl Into<String>) -> Self {
        self.server.startup = Some(path.into());
        self
    }
    /// The metrics path (default `/metrics`; else `PIKO_HEALTH_METRICS_PATH`).
    pub fn with_metrics_path(mut self, path: impl Into<String>) -> Self {
        self.server.metrics = Some(path.into());
        self
    }
    /// What the metrics path serves, given in code.
    pub fn with_metrics_render(self, render: MetricsRender) -> Self {
        Self {
            metrics_render: Some(render),
            ..self
        }
    }
    /// Each probe's default deadline (default 5 s); zero fails [`start`](Self::start).
    pub fn with_check_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }
    /// [`ServerBuilder::with_response_cache`] (default [`DEFAULT_HEALTH_RESPONSE_CACHE`]).
    pub fn with_response_cache(self, ttl: Duration) -> Self {
        Self {
            response_cache: ttl,
            ..self
        }
    }
    /// [`ServerBuilder::with_header_read_timeout`].
    pub fn with_header_read_timeout(self, timeout: Duration) -> Self {
        Self {
            header_read_timeout: timeout,
            ..self
        }
    }
    /// [`ServerBuilder::with_idle_timeout`].
    pub fn with_idle_timeout(self, timeout: Duration) -> Self {
        Self {
            idle_timeout: timeout,
            ..self
        }
    }
    /// [`ServerBuilder::with_max_connections`].
    pub fn with_max_connections(self, max: usize) -> Self {
        Self {
            max_connections: max,
            ..self
        }
    }
    /// Whether the server runs on a thread of its own (default on:
    /// [`ServerBuilder::start_on_own_thread`]), or on the runtime given to
    /// [`start`](Self::start), beside that runtime's tasks ([`ServerBuilder::start`]).
    pub fn with_own_thread(self, on: bool) -> Self {
        Self {
            own_thread: on,
            ..self
        }
    }
    /// Whether the server's own thread asks for `SCHED_DEADLINE` where the process may
    /// have it (default on: [`ServerBuilder::with_deadline_scheduling`]).
    pub fn with_deadline_scheduling(self, on: bool) -> Self {
        Self {
            deadline: on,
            ..self
        }
    }
    /// Serves the probe paths over TLS.
    pub fn with_tls(self, tls: TlsOptions) -> Self {
        Self {
            tls: Some(tls),
            ..self
        }
    }
    /// Adds a probe with options (deadline, criticality, caching, kinds).
    pub fn with_probe(mut self, probe: impl Probe, options: ProbeOptions) -> Self {
        let register = move |s: &HealthService| s.register_with(probe, options);
        self.probes.push(Box::new(register));
        self
    }
    /// Whether the probe server runs.
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// Whether starting it needs a runtime of the program's: it runs, on that runtime
    /// ([`with_own_thread(false)`](Self::with_own_thread)) rather than its own thread.
    pub fn needs_runtime(&self) -> bool {
        self.enabled && !self.own_thread
    }
    /// Whether the metrics path's render was given in code.
    pub fn has_metrics_render(&self) -> bool {
        self.metrics_render.is_some()
    }
    /// Whether the probe paths are served over TLS.
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }
    /// The address and paths: code, else `env`'s `PIKO_HEALTH_*` variables, else the
    /// defaults.
    pub fn resolve(
        &self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<ProbeServer, EnvSettingError> {
        self.server.clone().resolve(env)
    }

    /// Starts the health service named `service_name` with its probes, then the server
    /// at `server` on its own thread (or on `runtime`, with
    /// [`with_own_thread(false)`](Self::with_own_thread); without a runtime given or
    /// entered, that fails with [`ServerError::NoRuntime`]). `prepare` sees the service before its probes are
    /// registered and gets the render given in code: what it returns is served on the
    /// metrics path. Readiness drains for `drain_delay` at shutdown ([`Drain`]). The
    /// probes move into the service; the other settings stay, to be read.
    pub fn start(
        &mut self,
        runtime: Option<&tokio::runtime::Handle>,
        service_name: &str,
        server: &ProbeServer,
        drain_delay: Duration,
        prepare: impl FnOnce(&HealthService, Option<MetricsRender>) -> Option<MetricsRender>,
    ) -> Result<StartedServer, ServerSetupError> {
        let service = HealthService::new(service_name, self.timeout)
            .map_err(|_| ServerSetupError::ZeroTimeout)?;
        let render = prepare(&service, self.metrics_render.clone());
        for register in std::mem::take(&mut self.probes) {
            register(&service)?;
        }
        let mut builder = ServerBuilder::new(service.clone())
            .with_probe_server(server)
            .with_response_cache(self.response_cache)
            .with_header_read_timeout(self.header_read_timeout)
            .with_idle_timeout(self.idle_timeout)
            .with_max_connections(self.max_connections)
            .with_deadline_scheduling(self.deadline);
        if let Some(tls) = self.tls.clone() {
            builder = builder.with_tls(tls);
        }
        if let Some(render) = render {
            builder = builder.with_metrics(render);
        }
        let running = if self.own_thread {
            builder.start_on_own_thread()?
        } else {
            let _enter = runtime.map(tokio::runtime::Handle::enter);
            builder.start()?
        };
        Ok(StartedServer {
            drain: Drain::new(&service, drain_delay),
            service,
            running,
        })
    }
}

/// What [`ServerSetup::start_parts`] takes from the rest of the program.
pub struct Composition<'a> {
    /// The runtime the server runs on with [`ServerSetup::with_own_thread`]`(false)`
    /// (none is needed on its own thread, the default).
    pub runtime: Option<&'a tokio::runtime::Handle>,
    /// The health service's name (the top-level name of its statuses).
    pub service_name: &'a str,
    /// The address and paths ([`ServerSetup::resolve`]).
    pub server: &'a ProbeServer,
    /// How long readiness drains before the server stops.
    pub drain_delay: Duration,
    /// Whether the metrics path serves anything at all.
    pub metrics_on: bool,
    /// The installed recorder's render, served when no render was given in code.
    pub recorder: Option<MetricsRender>,
    /// Sees every probe panic (the status served says only "probe panicked").
    pub on_probe_panic: Box<dyn Fn(&ProbePanic<'_>) + Send + Sync>,
}

impl std::fmt::Debug for Composition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composition")
            .field("service_name", &self.service_name)
            .field("server", &self.server)
            .field("drain_delay", &self.drain_delay)
            .field("metrics_on", &self.metrics_on)
            .finish_non_exhaustive()
    }
}

impl ServerSetup {
    /// Starts the probe server as [`start`](Self::start) does, when it is
    /// [`enabled`](Self::enabled), and pushes it and its drain on `parts` (the drain
    /// shuts down first). The metrics path serves the render given in code, else
    /// `with.recorder` (whose check durations are then recorded too), nothing when
    /// `with.metrics_on` is false.
    pub fn start_parts(
        &mut self,
        with: Composition<'_>,
        parts: &Unwind,
    ) -> Result<Option<ServingServer>, ServerSetupError> {
        if !self.enabled {
            return Ok(None);
        }
        let Composition {
            runtime,
            service_name,
            server,
            drain_delay,
            metrics_on,
            recorder,
            on_probe_panic,
        } = with;
        let mut metrics_served = false;
        let started = self.start(
            runtime,
            service_name,
            server,
            drain_delay,
            |service, own| {
                service.on_probe_panic(on_probe_panic);
                let render = metrics_render(service, own, metrics_on, recorder);
                metrics_served = render.is_some();
                render
            },
        )?;
        let scheme = if self.has_tls() { "https" } else { "http" };
        let addr = started.running.local_addr();
        let serving = ServingServer {
            service: started.service.clone(),
            addr,
            counters: started.running.counters(),
            probes: format!(
                "{scheme}://{addr} {} {} {}",
                server.live, server.ready, server.startup
            ),
            metrics: metrics_served.then(|| server.metrics.clone()),
            scheduling: started.running.scheduling().clone(),
        };
        parts.push(started.running);
        parts.push(started.drain);
        Ok(Some(serving))
    }
}

/// What the metrics path serves: the render given in code, else the installed
/// recorder's (with the check durations recorded), nothing when metrics are off.
fn metrics_render(
    service: &HealthService,
    own: Option<MetricsRender>,
    metrics_on: bool,
    recorder: Option<MetricsRender>,
) -> Option<MetricsRender> {
    if !metrics_on {
        return None;
    }
    match (own, recorder) {
        (None, Some(installed)) => {
            piko_obs_health::telemetry::observe_metrics(service);
            Some(installed)
        }
        (own, _) => own,
    }
}

/// The probe server [`ServerSetup::start_parts`] started, now serving (its parts are on
/// the stack).
#[derive(Debug, Clone)]
pub struct ServingServer {
    /// The health service, to add probes later or to signal drain early.
    pub service: HealthService,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Where it runs, and the scheduling its own thread got from the kernel.
    pub scheduling: crate::Scheduling,
    counters: ConnectionCounters,
    probes: String,
    metrics: Option<String>,
}

impl ServingServer {
    /// Makes the server's connection counters the process-wide ones of [`global`].
    pub fn install(&self) {
        *global::COUNTERS.write().unwrap_or_else(|p| p.into_inner()) = Some(self.counters.clone());
    }

    /// The server as a start-up summary shows it: `scheme://address live ready startup`,
    /// and the metrics path, or `off` when it serves nothing.
    pub fn shown(&self) -> (String, String) {
        let metrics = self.metrics.clone().unwrap_or_else(|| "off".into());
        (self.probes.clone(), metrics)
    }
}

/// What [`ServerSetup::start`] started: two parts, the server and its drain, which
/// shuts down first.
#[derive(Debug)]
pub struct StartedServer {
    /// The health service.
    pub service: HealthService,
    /// The probe server.
    pub running: RunningServer,
    /// Readiness drained before the server stops.
    pub drain: Drain,
}

impl StartedServer {
    /// Makes the server's connection counters the process-wide ones of [`global`].
    pub fn install(&self) {
        *global::COUNTERS.write().unwrap_or_else(|p| p.into_inner()) =
            Some(self.running.counters());
    }
}

/// Why [`ServerSetup::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerSetupError {
    /// The check timeout is zero.
    #[error("the health check timeout must be greater than zero (for example 5s)")]
    ZeroTimeout,
    /// A probe could not be registered.
    #[error(transparent)]
    Probe(#[from] RegisterError),
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// The connection counters of the probe server installed last.
pub mod global {
    use super::*;

    pub(super) static COUNTERS: RwLock<Option<ConnectionCounters>> = RwLock::new(None);

    /// Records the installed server's connection counters as `metrics` series.
    pub fn record_metrics() {
        let counters = COUNTERS.read().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = counters.as_ref() {
            c.record_metrics();
        }
    }
}
