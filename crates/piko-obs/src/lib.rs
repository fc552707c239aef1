//! Production observability for Rust services, set up in one builder chain.
//!
//! `piko-obs` is the facade over the piko-obs crates: it re-exports them and wires them
//! together, and it is the only crate that installs process-wide state (the global log
//! hub, the `log` and `tracing` bridges, the `metrics` recorder, the OpenTelemetry
//! globals and Sentry's main hub). It holds no logic of its own.
//!
//! What it gives today:
//! - [`PikoObs::builder`]: run mode, framework log level, console output, the probe
//!   server's options; `init()` returns a [`Guard`] that shuts every part down in order,
//!   within a bound, when dropped;
//! - [`logger`]: Piko's structured logger (`get_logger`, `add_json_output`,
//!   `add_pretty_output`, `add_file_output`, typed attributes, levels);
//! - [`health`]: Kubernetes liveness, readiness and startup probes on their own port;
//! - [`metrics`]: the Prometheus recorder behind the probe port's `/metrics`;
//! - [`otlp`]: OpenTelemetry traces, metrics and logs over OTLP;
//! - [`notification`]: alerts to chat and incident tools, sent now with retries or
//!   queued, delivered or kept in a dead-letter file; ERROR log lines forwarded as
//!   grouped alerts ([`Builder::with_error_notifications`]);
//! - [`sentry`]: ERROR log lines as Sentry events with their error chain and trace
//!   context;
//! - [`signal`]: waiting for SIGTERM or SIGINT to run the shutdown.
//!
//! ```
//! use piko_obs::{PikoObs, RunMode, logger::{self, attr}};
//!
//! let _guard = PikoObs::builder()
//!     .with_run_mode(RunMode::Prod)   // JSON lines on stdout
//!     .with_health_probe_port(0)      // probes on a free port (9090 by default)
//!     .with_shutdown_drain_delay(std::time::Duration::ZERO)
//!     .with_log_level("info")
//!     .init()
//!     .expect("observability set up");
//! logger::get_logger("monitor").info("Server started", &[attr::string("mode", "prod")]);
//! ```
//!
//! No feature flags.

use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod health;
pub mod logger;
pub mod metrics;
pub mod notification;
pub mod otlp;
pub mod sentry;
pub mod settings;
pub mod signal;

/// How the service runs: decides the console format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// Development: pretty, coloured console lines.
    #[default]
    Dev,
    /// Production: JSON lines.
    Prod,
}

/// Piko's `RunModeDev`.
pub const RUN_MODE_DEV: RunMode = RunMode::Dev;
/// Piko's `RunModeProd`.
pub const RUN_MODE_PROD: RunMode = RunMode::Prod;

impl RunMode {
    /// `dev` or `prod`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Dev => "dev",
            RunMode::Prod => "prod",
        }
    }
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not a run mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run mode {0:?}: use dev or prod")]
pub struct ParseRunModeError(pub String);

impl FromStr for RunMode {
    type Err = ParseRunModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dev" | "development" => Ok(RunMode::Dev),
            "prod" | "production" => Ok(RunMode::Prod),
            _ => Err(ParseRunModeError(s.to_string())),
        }
    }
}

/// Environment variable that, set to `true`, turns the console output off (as in Piko).
pub const PIKO_DISABLE_CONSOLE_LOG: &str = "PIKO_DISABLE_CONSOLE_LOG";

/// The entry point: `PikoObs::builder()...init()`.
#[derive(Debug)]
pub struct PikoObs;

impl PikoObs {
    /// A builder with the defaults: dev mode, framework level from `PIKO_LOG_LEVEL` or
    /// INFO, a console output, the `log` and `tracing` bridges on, no stack traces on ERROR, the
    /// probe server on `127.0.0.1:9090`. Settings not given in code are read from the
    /// environment first ([`settings`]).
    pub fn builder() -> Builder {
        Builder::default()
    }
}

type ProbeRegistration =
    Box<dyn FnOnce(&health::HealthService) -> Result<(), health::RegisterError> + Send>;

/// How long the probe server answers a probe path from its last answer
/// ([`Builder::with_health_response_cache`]): far below any Kubernetes probe period, long
/// enough that a storm of probe requests runs the probes a few times a second at most.
pub const DEFAULT_HEALTH_RESPONSE_CACHE: Duration = Duration::from_millis(250);

/// Configures and starts piko-obs (Piko's `piko.New(piko.WithLogLevel(..), ...)`).
#[must_use]
pub struct Builder {
    run_mode: Option<RunMode>,
    service_name: Option<String>,
    log_level: Option<String>,
    console: Option<bool>,
    log_bridge: bool,
    tracing_bridge: bool,
    error_backtraces: bool,
    secret_keys: Option<Vec<String>>,
    shutdown_timeout: Duration,
    drain_delay: Option<Duration>,
    health_enabled: bool,
    /// Given in code; the environment and the defaults fill the rest at `init()`.
    health_server: settings::ProbeServerInCode,
    health_metrics_enabled: bool,
    health_metrics_render: Option<health::MetricsRender>,
    metrics_labels: Vec<(String, String)>,
    metrics_cardinality: Option<usize>,
    metrics_cardinality_for: Vec<(String, usize)>,
    metrics_buckets: Vec<(String, Vec<f64>)>,
    health_timeout: Duration,
    health_tls: Option<health::TlsOptions>,
    health_response_cache: Duration,
    health_header_read_timeout: Duration,
    health_idle_timeout: Duration,
    health_max_connections: usize,
    probes: Vec<ProbeRegistration>,
    notifications_enabled: bool,
    notification_providers: Vec<notification::Registration>,
    notification_providers_from_env: bool,
    notification_default: Option<String>,
    notification_dead_letter_path: Option<std::path::PathBuf>,
    notification_dead_letter_max_bytes: Option<std::num::NonZeroU64>,
    notification_dead_letter_store: Option<Arc<dyn notification::DeadLetterStore>>,
    notification_retry: Option<notification::RetryPolicy>,
    notification_dispatcher: notification::DispatcherConfig,
    environment: Option<String>,
    release: Option<String>,
    otlp_config: otlp::OtlpConfig,
    otlp_protocol: Option<String>,
    otlp_span_events: bool,
    sentry: Option<sentry::SentryConfig>,
    sentry_from_env: bool,
    sentry_before_send: Option<sentry::BeforeSend>,
    sentry_before_breadcrumb: Option<sentry::BeforeBreadcrumb>,
    error_notifications: Option<notification::ErrorForwarderConfig>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("run_mode", &self.run_mode)
            .field("service_name", &self.service_name)
            .field("log_level", &self.log_level)
            .field("health_enabled", &self.health_enabled)
            .field("health_server", &self.health_server)
            .field("probes", &self.probes.len())
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            run_mode: None,
            service_name: None,
            log_level: None,
            console: None,
            log_bridge: true,
            tracing_bridge: true,
            error_backtraces: false,
            secret_keys: None,
            shutdown_timeout: Duration::from_secs(10),
            drain_delay: None,
            health_enabled: true,
            health_server: settings::ProbeServerInCode::default(),
            health_metrics_enabled: true,
            health_metrics_render: None,
            metrics_labels: Vec::new(),
            metrics_cardinality: None,
            metrics_cardinality_for: Vec::new(),
            metrics_buckets: Vec::new(),
            health_timeout: Duration::from_secs(5),
            health_tls: None,
            health_response_cache: DEFAULT_HEALTH_RESPONSE_CACHE,
            health_header_read_timeout: health::DEFAULT_HEADER_READ_TIMEOUT,
            health_idle_timeout: health::DEFAULT_IDLE_TIMEOUT,
            health_max_connections: health::DEFAULT_MAX_CONNECTIONS,
            probes: Vec::new(),
            notifications_enabled: true,
            notification_providers: Vec::new(),
            notification_providers_from_env: false,
            notification_default: None,
            notification_dead_letter_path: None,
            notification_dead_letter_max_bytes: None,
            notification_dead_letter_store: None,
            notification_retry: None,
            notification_dispatcher: notification::DispatcherConfig::default(),
            environment: None,
            release: None,
            otlp_config: otlp::OtlpConfig::default(),
            otlp_protocol: None,
            otlp_span_events: true,
            sentry: None,
            sentry_from_env: false,
            sentry_before_send: None,
            sentry_before_breadcrumb: None,
            error_notifications: None,
        }
    }
}

impl Builder {
    /// Dev (pretty console) or prod (JSON console). Not given, `PIKO_RUN_MODE` (`dev`
    /// or `prod`) sets it, else dev ([`settings`]: code, then environment, then default).
    pub fn with_run_mode(mut self, mode: RunMode) -> Self {
        self.run_mode = Some(mode);
        self
    }
    /// The framework level, as a level or directives (`info,myapp/db=debug`). Set here,
    /// it wins over `PIKO_LOG_LEVEL`; without either, INFO. Checked by `init()`.
    pub fn with_log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = Some(level.into());
        self
    }
    /// Whether `init()` adds the console output (default: on, unless
    /// `PIKO_DISABLE_CONSOLE_LOG=true`).
    pub fn with_console_output(mut self, on: bool) -> Self {
        self.console = Some(on);
        self
    }
    /// Whether records of the `log` crate go to the outputs (default: on).
    pub fn with_log_bridge(mut self, on: bool) -> Self {
        self.log_bridge = on;
        self
    }
    /// Whether `tracing` events go to the outputs (default: on; `init()` fails if another
    /// global `tracing` subscriber is installed).
    pub fn with_tracing_bridge(mut self, on: bool) -> Self {
        self.tracing_bridge = on;
        self
    }
    /// Whether ERROR records carry a stack trace (default: off). When on, each ERROR call
    /// captures and symbolises its stack on the caller's thread; `docs/reference/logger.md`
    /// gives the cost. A trace of only `<unknown>` frames is left out.
    pub fn with_error_backtraces(mut self, on: bool) -> Self {
        self.error_backtraces = on;
        self
    }
    /// Replaces the patterns of secret keys whose values are masked.
    pub fn with_secret_keys<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.secret_keys = Some(patterns.into_iter().map(Into::into).collect());
        self
    }
    /// The longest the guard's shutdown may take in all (default 10 s).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
    /// The service's name: the top-level name of health statuses (default: the
    /// program's file name).
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }
    /// How long shutdown keeps serving after readiness turns UNHEALTHY, so that
    /// Kubernetes stops routing traffic first (default: 5 s in prod, 0 in dev).
    pub fn with_shutdown_drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = Some(delay);
        self
    }
    /// Whether the probe server runs (default: on).
    pub fn with_health_enabled(mut self, on: bool) -> Self {
        self.health_enabled = on;
        self
    }
    /// The probe server's port (default 9090; 0 picks a free port, see
    /// [`Guard::health_addr`]). Not given, `PIKO_HEALTH_PORT` sets it.
    pub fn with_health_probe_port(mut self, port: u16) -> Self {
        self.health_server.port = Some(port);
        self
    }
    /// The probe server's IP address (default `127.0.0.1`; `0.0.0.0` exposes it). Not
    /// given, `PIKO_HEALTH_BIND_ADDRESS` sets it.
    pub fn with_health_bind_address(mut self, addr: impl Into<String>) -> Self {
        self.health_server.bind = Some(addr.into());
        self
    }
    /// The liveness path (default `/live`; else `PIKO_HEALTH_LIVE_PATH`).
    pub fn with_health_live_path(mut self, path: impl Into<String>) -> Self {
        self.health_server.live = Some(path.into());
        self
    }
    /// The readiness path (default `/ready`; else `PIKO_HEALTH_READY_PATH`).
    pub fn with_health_ready_path(mut self, path: impl Into<String>) -> Self {
        self.health_server.ready = Some(path.into());
        self
    }
    /// The startup path (default `/startup`; else `PIKO_HEALTH_STARTUP_PATH`).
    pub fn with_health_startup_path(mut self, path: impl Into<String>) -> Self {
        self.health_server.startup = Some(path.into());
        self
    }
    /// The metrics path on the probe port (default `/metrics`; else
    /// `PIKO_HEALTH_METRICS_PATH`).
    pub fn with_health_metrics_path(mut self, path: impl Into<String>) -> Self {
        self.health_server.metrics = Some(path.into());
        self
    }
    /// Whether the probe port serves metrics on the metrics path and `init()` installs
    /// piko-obs's `metrics` recorder (default on). Off, the metrics path answers 404 and
    /// no recorder is installed.
    pub fn with_health_metrics_enabled(mut self, on: bool) -> Self {
        self.health_metrics_enabled = on;
        self
    }
    /// What the metrics path serves, instead of piko-obs's Prometheus recorder (which is
    /// then not installed).
    pub fn with_health_metrics_render(mut self, render: health::MetricsRender) -> Self {
        self.health_metrics_render = Some(render);
        self
    }
    /// A label added to every metric series (for example `environment`); checked by
    /// `init()`. Labels apply when the recorder is installed, at the first `init()`.
    pub fn with_metrics_global_label(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.metrics_labels.push((name.into(), value.into()));
        self
    }
    /// The cap on label sets per metric name (default 1000; at least 1, checked by
    /// `init()`). Series past it are not recorded, are counted in
    /// `piko_obs_metrics_series_refused_total`, and the first refusal of each metric is
    /// logged as a warning; so are series with names Prometheus cannot take.
    pub fn with_metrics_cardinality_limit(mut self, limit: usize) -> Self {
        self.metrics_cardinality = Some(limit);
        self
    }
    /// The cap on label sets of one metric, instead of the cap of
    /// [`with_metrics_cardinality_limit`](Self::with_metrics_cardinality_limit) (a valid
    /// metric name and at least 1, checked by `init()`). Like the global labels, caps
    /// apply when the recorder is installed, at the first `init()`.
    pub fn with_metrics_cardinality_limit_for(
        mut self,
        metric: impl Into<String>,
        limit: usize,
    ) -> Self {
        self.metrics_cardinality_for.push((metric.into(), limit));
        self
    }
    /// Histogram buckets (upper bounds) for the metric named `metric`, so that its
    /// `metrics::histogram!` renders as a Prometheus histogram with these `le` values;
    /// a histogram without buckets renders as a summary. The name is matched whole.
    /// `http_server_request_duration_seconds` has the OpenTelemetry buckets unless set
    /// here. `init()` checks the name and the buckets (non-empty, finite, increasing);
    /// they apply when the recorder is installed, at the first `init()`.
    ///
    /// ```
    /// let guard = piko_obs::PikoObs::builder()
    ///     .with_console_output(false)
    ///     .with_health_probe_port(0)
    ///     .with_metrics_buckets("payment_duration_seconds", &[0.1, 0.5, 1.0, 5.0])
    ///     .init()
    ///     .unwrap();
    /// metrics::histogram!("payment_duration_seconds").record(0.42);
    /// let text = piko_obs::metrics::render().unwrap();
    /// assert!(text.contains(r#"payment_duration_seconds_bucket{le="0.5"} 1"#));
    /// guard.shutdown().unwrap();
    /// ```
    pub fn with_metrics_buckets(mut self, metric: impl Into<String>, buckets: &[f64]) -> Self {
        self.metrics_buckets.push((metric.into(), buckets.to_vec()));
        self
    }
    /// The recorder's settings, checked: an error names the builder option.
    fn metrics_builder(&self) -> Result<metrics::MetricsBuilder, InitError> {
        let setting = |setting: &'static str| {
            move |source: metrics::MetricsError| InitError::Metrics { setting, source }
        };
        let mut builder = metrics::PrometheusMetrics::builder();
        for (name, value) in &self.metrics_labels {
            builder = builder
                .with_global_label(name, value)
                .map_err(setting("with_metrics_global_label"))?;
        }
        if let Some(limit) = self.metrics_cardinality {
            builder = builder
                .with_cardinality_limit(limit)
                .map_err(setting("with_metrics_cardinality_limit"))?;
        }
        for (metric, limit) in &self.metrics_cardinality_for {
            builder = builder
                .with_cardinality_limit_for(metric, *limit)
                .map_err(setting("with_metrics_cardinality_limit_for"))?;
        }
        for (metric, buckets) in &self.metrics_buckets {
            builder = builder
                .with_buckets(metric, buckets)
                .map_err(setting("with_metrics_buckets"))?;
        }
        Ok(builder)
    }
    /// Each probe's default deadline (default 5 s; sub-second values work).
    pub fn with_health_check_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }
    /// Answers each probe path from its last answer while that is younger than `ttl`
    /// (default [`DEFAULT_HEALTH_RESPONSE_CACHE`], 250 ms; zero turns the cache off).
    /// Readiness answers UNHEALTHY at once when the shutdown starts, whatever is cached.
    pub fn with_health_response_cache(mut self, ttl: Duration) -> Self {
        self.health_response_cache = ttl;
        self
    }

    /// How long a client of the probe port may take to send a request's header (default
    /// 5 s); past it the connection is closed. Zero fails `init()`; more than an hour is
    /// cut to an hour.
    pub fn with_health_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.health_header_read_timeout = timeout;
        self
    }

    /// How long a probe-port connection may stay open with no request in flight once it
    /// has served one (default 90 s). Zero fails `init()`; more than an hour is cut to an
    /// hour.
    pub fn with_health_idle_timeout(mut self, timeout: Duration) -> Self {
        self.health_idle_timeout = timeout;
        self
    }

    /// The most connections the probe server holds at once (default 256). Past it the
    /// oldest connection with no request in flight is closed to make room, or, when
    /// every one is busy, the new connection is closed at once; both are counted on
    /// `/metrics` (`piko_obs_health_connections_closed_total`). Zero fails `init()`.
    pub fn with_health_max_connections(mut self, max: usize) -> Self {
        self.health_max_connections = max;
        self
    }

    /// Serves the probe paths over TLS.
    pub fn with_health_tls(mut self, tls: health::TlsOptions) -> Self {
        self.health_tls = Some(tls);
        self
    }
    /// Adds a probe for the service's dependencies. It answers readiness and startup,
    /// not liveness: a dependency's outage takes the pod out of the endpoints instead of
    /// making Kubernetes restart every pod ([`health::ProbeKinds`];
    /// `ProbeOptions::default().with_liveness()` opts in).
    pub fn with_custom_health_probe(self, probe: impl health::Probe) -> Self {
        self.with_custom_health_probe_options(probe, health::ProbeOptions::default())
    }
    /// Adds a probe with options (deadline, criticality, caching, kinds).
    pub fn with_custom_health_probe_options(
        mut self,
        probe: impl health::Probe,
        options: health::ProbeOptions,
    ) -> Self {
        self.probes
            .push(Box::new(move |s| s.register_with(probe, options)));
        self
    }

    /// Whether to set up the notification service and its dispatcher (default on).
    pub fn with_notifications_enabled(mut self, on: bool) -> Self {
        self.notifications_enabled = on;
        self
    }
    /// Registers a notification provider under `name` (a name used twice fails
    /// `init()`). The first registered is the default, unless
    /// [`with_default_notification_provider`](Self::with_default_notification_provider)
    /// names another; with none at all, `stdout` is registered.
    pub fn with_notification_provider(
        mut self,
        name: impl Into<String>,
        provider: impl notification::Notifier,
    ) -> Self {
        let name = name.into();
        self.notification_providers
            .push(Box::new(move |s: &notification::NotificationService| {
                s.register(name, provider)
            }));
        self
    }
    /// Also registers a provider for each variable of
    /// [`notification::ENV_PROVIDERS`] that is set; a bad value fails `init()` naming
    /// the variable.
    pub fn with_notification_providers_from_env(mut self) -> Self {
        self.notification_providers_from_env = true;
        self
    }
    /// The default notification provider (it must be registered).
    pub fn with_default_notification_provider(mut self, name: impl Into<String>) -> Self {
        self.notification_default = Some(name.into());
        self
    }
    /// The dead-letter file (default: `PIKO_NOTIFICATION_DEAD_LETTER_PATH`, else
    /// [`notification::default_dead_letter_path`]; with neither, `init()` fails rather than
    /// use the working directory). It must be writable: `init()` opens it.
    pub fn with_notification_dead_letter_path(
        mut self,
        path: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.notification_dead_letter_path = Some(path.into());
        self
    }
    /// The most bytes the dead-letter file holds (default
    /// [`notification::DEFAULT_MAX_BYTES`], 256 MiB); past it, new dead letters are
    /// refused, counted in `piko_obs_notifications_dead_letter_errors_total` and printed
    /// to stderr, until a replay or an operator empties it.
    pub fn with_notification_dead_letter_max_bytes(mut self, max: std::num::NonZeroU64) -> Self {
        self.notification_dead_letter_max_bytes = Some(max);
        self
    }
    /// A dead-letter store of your own (a database, a queue), in place of the file:
    /// it implements [`notification::DeadLetterStore`]. It cannot be combined with
    /// `with_notification_dead_letter_path` or `with_notification_dead_letter_max_bytes`
    /// (`init()` fails, naming them); `PIKO_NOTIFICATION_DEAD_LETTER_PATH` is then not
    /// read.
    pub fn with_notification_dead_letter_store(
        mut self,
        store: impl notification::DeadLetterStore,
    ) -> Self {
        self.notification_dead_letter_store = Some(Arc::new(store));
        self
    }
    /// How notifications are retried (default [`notification::RetryPolicy`]).
    pub fn with_notification_retry_policy(mut self, policy: notification::RetryPolicy) -> Self {
        self.notification_retry = Some(policy);
        self
    }
    /// The dispatcher's queue and workers.
    pub fn with_notification_dispatcher(mut self, config: notification::DispatcherConfig) -> Self {
        self.notification_dispatcher = config;
        self
    }
    /// The deployment environment, one setting for every signal: Sentry's `environment`,
    /// the OTLP resource's `deployment.environment.name` and the alerts' `environment`.
    /// Unset in code, it is `SENTRY_ENVIRONMENT`, else `deployment.environment.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, else `PIKO_ENVIRONMENT`, else `ENVIRONMENT`; unset
    /// everywhere, it is left out (never `""`). A value set in a signal's own settings
    /// (`SentryConfig::with_environment`) wins for that signal.
    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// The release (the service's version), one setting for every signal: Sentry's
    /// `release` and the OTLP resource's `service.version`. Unset in code, it is
    /// `SENTRY_RELEASE`, else `service.version` in `OTEL_RESOURCE_ATTRIBUTES`, else
    /// `PIKO_SERVICE_VERSION`; unset everywhere, it is left out. A value set in a signal's
    /// own settings (`SentryConfig::with_release`, `with_otlp_service_version`) wins for
    /// that signal.
    pub fn with_release(mut self, release: impl Into<String>) -> Self {
        self.release = Some(release.into());
        self
    }

    /// All OTLP settings at once (Piko's `WithOTLP`); the `with_otlp_*` options after it
    /// change single fields.
    pub fn with_otlp(mut self, config: otlp::OtlpConfig) -> Self {
        self.otlp_config = config;
        self
    }
    /// Turns OTLP export on or off (default: on when an endpoint is set, in code or in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or a signal's `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`).
    /// `OTEL_SDK_DISABLED=true` turns it off whatever this says.
    pub fn with_otlp_enabled(mut self, on: bool) -> Self {
        self.otlp_config.enabled = Some(on);
        self
    }
    /// The collector: `http://host:port` (plaintext), `https://host:port` (TLS with the
    /// system's roots), or `host:port` (TLS unless insecure); checked by `init()`.
    pub fn with_otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp_config.endpoint = Some(endpoint.into());
        self
    }
    /// `http/protobuf` (default, as the OpenTelemetry specification says; `http` too;
    /// port 4318), `http/json` (port 4318) or `grpc` (port 4317); checked by `init()`.
    pub fn with_otlp_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.otlp_protocol = Some(protocol.into());
        self
    }
    /// Headers sent with every export (`authorization`, say); they win over
    /// `OTEL_EXPORTER_OTLP_HEADERS` for the same name. Checked by `init()`.
    pub fn with_otlp_headers<K: Into<String>, V: Into<String>>(
        mut self,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.otlp_config
            .headers
            .extend(headers.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }
    /// Plaintext for an endpoint given as `host:port` (no scheme). It never turns off
    /// certificate verification, and conflicts with an `https://` endpoint.
    pub fn with_otlp_insecure_tls(mut self, insecure: bool) -> Self {
        self.otlp_config.insecure = Some(insecure);
        self
    }
    /// The share of root traces sampled, 0 to 1 (checked by `init()`); child spans follow
    /// their parent.
    pub fn with_otlp_trace_sample_rate(mut self, rate: f64) -> Self {
        self.otlp_config.sample_rate = Some(rate);
        self
    }
    /// `service.version` of the resource.
    pub fn with_otlp_service_version(mut self, version: impl Into<String>) -> Self {
        self.otlp_config.service_version = Some(version.into());
        self
    }
    /// The bound on one export (default 10 s).
    pub fn with_otlp_timeout(mut self, timeout: Duration) -> Self {
        self.otlp_config.timeout = Some(timeout);
        self
    }
    /// gzip or none (default none).
    pub fn with_otlp_compression(mut self, compression: otlp::Compression) -> Self {
        self.otlp_config.compression = Some(compression);
        self
    }
    /// How often metrics are exported (default 60 s).
    pub fn with_otlp_metric_interval(mut self, interval: Duration) -> Self {
        self.otlp_config.metric_interval = Some(interval);
        self
    }
    /// Whether a log line written inside a recording span is also added to the span as
    /// an event, and an ERROR line sets the span's status to ERROR (default on). Off,
    /// the line is still exported as a log record carrying the span's ids.
    pub fn with_otlp_span_events(mut self, on: bool) -> Self {
        self.otlp_span_events = on;
        self
    }
    /// A PEM file of CA certificates to trust besides the system's roots.
    pub fn with_otlp_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.otlp_config.tls.ca_file = Some(path.into());
        self
    }
    /// A client certificate and key (PEM files) for mutual TLS.
    pub fn with_otlp_client_certificate(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.otlp_config.tls.client_cert = Some(cert.into());
        self.otlp_config.tls.client_key = Some(key.into());
        self
    }

    /// Sends ERROR log lines to Sentry as events (and lower ones as breadcrumbs), with
    /// these settings. An invalid DSN fails `init()`.
    pub fn with_sentry(mut self, config: sentry::SentryConfig) -> Self {
        self.sentry = Some(config);
        self
    }

    /// Sends ERROR log lines to Sentry when `SENTRY_DSN` is set, with the other
    /// `SENTRY_*` variables (see [`sentry::SentryConfig::from_env`]). A setting given
    /// with [`with_sentry`](Self::with_sentry) wins.
    pub fn with_sentry_from_env(mut self) -> Self {
        self.sentry_from_env = true;
        self
    }

    /// Runs `f` on each Sentry event after piko-obs has scrubbed its secrets, as Sentry's
    /// `before_send` (return `None` to drop the event), whether Sentry's settings come
    /// from [`with_sentry`](Self::with_sentry) or the environment.
    pub fn with_sentry_before_send(
        mut self,
        f: impl Fn(::sentry::protocol::Event<'static>) -> Option<::sentry::protocol::Event<'static>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.sentry_before_send = Some(Arc::new(f));
        self
    }

    /// Runs `f` on each Sentry breadcrumb after piko-obs has scrubbed its secrets, as
    /// Sentry's `before_breadcrumb` (return `None` to drop it).
    pub fn with_sentry_before_breadcrumb(
        mut self,
        f: impl Fn(::sentry::protocol::Breadcrumb) -> Option<::sentry::protocol::Breadcrumb>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.sentry_before_breadcrumb = Some(Arc::new(f));
        self
    }

    /// Forwards log lines at or above the config's threshold (default ERROR) to the
    /// notification service as grouped alerts: one alert per message and call site per
    /// window (default 10 s) with the count, at most a set number of alerts a minute.
    /// Alerts go to every registered provider unless the config names some
    /// ([`ErrorForwarderConfig::with_providers`](notification::ErrorForwarderConfig::with_providers)).
    /// Needs notifications on. Pending groups are sent at shutdown.
    pub fn with_error_notifications(mut self, config: notification::ErrorForwarderConfig) -> Self {
        self.error_notifications = Some(config);
        self
    }

    /// Checks the configuration and starts everything. Bad input fails here, with an
    /// error naming the setting.
    pub fn init(self) -> Result<Guard, InitError> {
        let env = |k: &str| std::env::var(k).ok();
        // Code, then environment, then default, for every setting (see `settings`).
        let run_mode = settings::run_mode(self.run_mode, &env)?;
        let probe_server = self.health_server.clone().resolve(&env)?;
        let (probes_over_tls, custom_metrics) = (
            self.health_tls.is_some(),
            self.health_metrics_enabled && self.health_metrics_render.is_some(),
        );
        let level = logger::resolve_directives(
            self.log_level.as_deref().map(|l| ("with_log_level", l)),
            logger::PIKO_LOG_LEVEL,
            env,
        )?;
        let mut otlp_config = self.otlp_config.clone();
        // One environment and one release for every signal.
        let (environment, release) = identity(self.environment.clone(), self.release.clone(), env);
        if otlp_config.environment.is_none() {
            otlp_config.environment.clone_from(&environment);
        }
        if otlp_config.service_version.is_none() {
            otlp_config.service_version.clone_from(&release);
        }
        if let Some(text) = &self.otlp_protocol {
            otlp_config.protocol = Some(otlp::Protocol::parse(text).ok_or_else(|| {
                InitError::Otlp(format!(
                    "with_otlp_protocol: unknown protocol {:?}; use grpc, http/protobuf or http/json",
                    text.trim()
                ))
            })?);
        }
        let otlp_settings = otlp_config
            .resolve(env, &self.service_name.clone().unwrap_or_else(program_name))
            .map_err(|e| InitError::Otlp(e.to_string()))?;
        // Checked whether or not the recorder is installed by this call.
        let metrics_builder = self.metrics_builder()?;
        let mut sentry_config = match self.sentry.clone() {
            Some(c) => {
                c.validate().map_err(InitError::Sentry)?;
                Some(c)
            }
            None if self.sentry_from_env => {
                sentry::SentryConfig::from_env().map_err(InitError::Sentry)?
            }
            None => None,
        };
        if let Some(config) = &mut sentry_config {
            if config.environment.is_none() {
                config.environment.clone_from(&environment);
            }
            if config.release.is_none() {
                config.release.clone_from(&release);
            }
            if self.sentry_before_send.is_some() {
                config.before_send.clone_from(&self.sentry_before_send);
            }
            if self.sentry_before_breadcrumb.is_some() {
                config
                    .before_breadcrumb
                    .clone_from(&self.sentry_before_breadcrumb);
            }
        }
        if let Some(c) = &self.error_notifications {
            c.validate().map_err(InitError::ErrorNotifications)?;
            if !self.notifications_enabled {
                return Err(InitError::ErrorNotificationsWithoutNotifications);
            }
        }
        let hub = logger::hub();
        hub.set_error_backtraces(self.error_backtraces);
        if let Some(keys) = &self.secret_keys {
            hub.set_secret_keys(logger::SecretKeys::new(keys));
        }
        let console = self
            .console
            .unwrap_or_else(|| env(PIKO_DISABLE_CONSOLE_LOG).as_deref() != Some("true"));
        // Outputs added from here on are removed again if init() fails.
        let mut added = Rollback::default();
        logger::set_framework_level(level.clone());
        if console {
            // None when the program added a stdout output of its own before init().
            let id = match run_mode {
                RunMode::Prod => logger::add_console(
                    level.clone(),
                    logger::JsonOutput::stdout()
                        .build()
                        .map_err(InitError::Console)?,
                )?,
                RunMode::Dev => logger::add_console(
                    level.clone(),
                    logger::PrettyOutput::stdout()
                        .build()
                        .map_err(InitError::Console)?,
                )?,
            };
            added.outputs.extend(id);
        }
        if self.log_bridge {
            logger::install_log_bridge()?;
        }
        if self.tracing_bridge {
            // Said when the application's own subscriber was there first.
            let route = logger::install_tracing_bridge();
            let said = logger::get_logger("piko-obs/logger");
            match route {
                logger::TracingRoute::Installed => {}
                logger::TracingRoute::ApplicationLayer => said.info(route.describe(), &[]),
                _ => said.notice(route.describe(), &[]),
            }
        }
        let drain_delay = self.drain_delay.unwrap_or(match run_mode {
            RunMode::Prod => Duration::from_secs(5),
            RunMode::Dev => Duration::ZERO,
        });
        // The guard is made last: a guard dropped on an error path would shut down the
        // process-wide logger.
        // piko-obs's runtime, for the probe server, the dispatcher and the OTLP exporters;
        // shut down in the background if init() fails below (dropping a runtime inside an
        // async caller would panic), handed to the guard otherwise.
        let mut spare = SpareRuntime(
            if self.health_enabled
                || self.notifications_enabled
                || otlp_settings.enabled
                || sentry_config.is_some()
            {
                Some(piko_runtime()?)
            } else {
                None
            },
        );
        let mut otlp_pipeline = None;
        if otlp_settings.enabled
            && let Some(rt) = spare.0.as_ref()
        {
            let p = otlp::start(&otlp_settings, rt, metrics_builder.buckets())
                .map_err(|e| InitError::Otlp(e.to_string()))?;
            added.pipeline = Some(p.clone());
            let id = logger::add_output(
                "otlp",
                level.clone(),
                otlp::OtelLogOutput::new(&p.logger_provider)
                    .with_span_events(self.otlp_span_events),
            )?;
            added.outputs.push(id);
            otlp_pipeline = Some(p);
        } else if env("OTEL_PROPAGATORS").is_some() {
            // Export off (no endpoint, or `OTEL_SDK_DISABLED`): context still propagates
            // as the variable says; without it, the global propagator is left as it is.
            otlp::install_propagators(&otlp_settings);
        }
        let mut sentry_client = None;
        if let (Some(config), Some(rt)) = (&sentry_config, spare.0.as_ref()) {
            let (client, id) = sentry::start(config, rt.handle())?;
            added.outputs.push(id);
            added.sentry = Some(client.clone());
            sentry_client = Some(client);
        }
        // The `metrics` recorder: served on the health server's `/metrics`, and, with
        // OTLP on, exported over OTLP too, with or without the health server.
        let mut installed_metrics = None;
        if self.health_metrics_enabled
            && self.health_metrics_render.is_none()
            && (self.health_enabled || otlp_pipeline.is_some())
            && let Some(runtime) = spare.0.as_ref()
        {
            // The same buckets over OTLP as on `/metrics`: the pipeline has a view for
            // each (`otlp::start` above).
            let mut builder = metrics_builder;
            if otlp_pipeline.is_some() {
                // The recorder is installed once per process; the slot in it takes the
                // recorder of each pipeline started, this one's below.
                builder = builder.with_extra_recorder(otlp::metrics_slot().clone());
            }
            let (installed, fresh) = metrics::install(builder)?;
            if fresh && otlp_pipeline.is_some() {
                otlp::slot_installed();
            }
            if let Some(p) = &otlp_pipeline {
                use opentelemetry::metrics::MeterProvider as _;
                if otlp::slot_in_recorder() {
                    otlp::metrics_slot().set(Some(otlp::OtelRecorder::new(
                        p.meter_provider.meter("piko-obs"),
                    )));
                } else {
                    logger::get_logger("piko-obs/otlp").warn(
                        "metrics recorded with the `metrics` macros are not exported over OTLP: \
                         an earlier init() in this process installed the recorder without OTLP",
                        &[],
                    );
                }
            }
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    installed.run_upkeep();
                }
            });
            installed_metrics = Some(installed);
        }
        let mut health_parts = None;
        if self.health_enabled
            && let Some(runtime) = spare.0.as_ref()
        {
            let name = self.service_name.clone().unwrap_or_else(program_name);
            let service = health::HealthService::new(name, self.health_timeout)
                .map_err(|_| InitError::HealthTimeout)?;
            health::log_probe_panics(&service);
            for register in self.probes {
                register(&service)?;
            }
            let mut server = health::HealthServer::builder(service.clone())
                .with_bind_address(probe_server.bind.clone())
                .with_port(probe_server.port)
                .with_live_path(probe_server.live.clone())
                .with_ready_path(probe_server.ready.clone())
                .with_startup_path(probe_server.startup.clone())
                .with_metrics_path(probe_server.metrics.clone());
            if let Some(tls) = self.health_tls {
                server = server.with_tls(tls);
            }
            server = server
                .with_response_cache(self.health_response_cache)
                .with_header_read_timeout(self.health_header_read_timeout)
                .with_idle_timeout(self.health_idle_timeout)
                .with_max_connections(self.health_max_connections);
            if self.health_metrics_enabled {
                let render = match (self.health_metrics_render, installed_metrics) {
                    (Some(render), _) => Some(render),
                    (None, Some(installed)) => {
                        metrics::observe_health(&service);
                        Some(Arc::new(move || installed.render()) as _)
                    }
                    (None, None) => None,
                };
                if let Some(render) = render {
                    server = server.with_metrics(render);
                }
            }
            let running = {
                let _enter = runtime.enter();
                server.start()?
            };
            health::set_server_counters(running.counters());
            health_parts = Some((service, running));
        }
        let (health, health_addr, server) = match health_parts {
            Some((service, running)) => (Some(service), Some(running.local_addr()), Some(running)),
            None => (None, None, None),
        };
        let mut notifications = None;
        let mut dead_letters = "off (notifications off)".to_string();
        if self.notifications_enabled
            && let Some(rt) = spare.0.as_ref()
        {
            let setup = NotificationSetup {
                providers: self.notification_providers,
                from_env: self.notification_providers_from_env,
                default: self.notification_default,
                dead_letter_path: self.notification_dead_letter_path,
                dead_letter_max_bytes: self.notification_dead_letter_max_bytes,
                dead_letter_store: self.notification_dead_letter_store,
                retry: self.notification_retry,
                dispatcher: self.notification_dispatcher,
                environment,
                service_name: self.service_name.clone().unwrap_or_else(program_name),
                run_mode,
            };
            let (service, dispatcher, location) = setup.start(rt.handle())?;
            dead_letters = location;
            notifications = Some((service, dispatcher));
        }
        let mut forwarder = None;
        if let (Some(config), Some((service, _)), Some(rt)) = (
            self.error_notifications,
            notifications.as_ref(),
            spare.0.as_ref(),
        ) {
            let threshold = config.threshold;
            // Alerts go to every provider unless the config names some.
            let config = if config.providers.is_empty() {
                config.with_providers(service.providers())
            } else {
                if let Some(unknown) = config.providers.iter().find(|p| !service.has_provider(p)) {
                    return Err(InitError::ErrorNotificationsProvider(unknown.clone()));
                }
                config
            };
            let f = notification::ErrorForwarder::start(rt.handle(), service.clone(), config)
                .map_err(InitError::ErrorNotifications)?;
            let id =
                logger::add_output(notification::ERROR_FORWARDER_OUTPUT, threshold, f.clone())?;
            added.outputs.push(id);
            notification::install_forwarder(f.clone());
            forwarder = Some(f);
        }
        added.keep = true;
        // One line that says what started (never a secret: no DSN, header or URL
        // credentials).
        let otlp_shown = |signal: &str| {
            if otlp_pipeline.is_some() {
                otlp_settings.shown(signal, settings::shown_url)
            } else {
                settings::otlp_off_reason(self.otlp_config.enabled, &env).to_string()
            }
        };
        let (probes, metrics_path) = match health_addr {
            Some(addr) => (
                format!(
                    "{}://{addr} {} {} {}",
                    if probes_over_tls { "https" } else { "http" },
                    probe_server.live,
                    probe_server.ready,
                    probe_server.startup
                ),
                if (self.health_metrics_enabled && installed_metrics.is_some()) || custom_metrics {
                    probe_server.metrics.clone()
                } else {
                    "off".into()
                },
            ),
            None => ("off".into(), "off".into()),
        };
        let providers = notifications
            .as_ref()
            .map(|(service, _)| service.providers().join(","))
            .unwrap_or_else(|| "off".into());
        let (traces, otlp_metrics, logs) = (
            otlp_shown("traces"),
            otlp_shown("metrics"),
            otlp_shown("logs"),
        );
        logger::get_logger("piko-obs").notice(
            "piko-obs started",
            &[
                logger::attr::string("mode", run_mode.as_str()),
                logger::attr::string("probes", &probes),
                logger::attr::string("metrics", &metrics_path),
                logger::attr::string("otlp_traces", &traces),
                logger::attr::string("otlp_metrics", &otlp_metrics),
                logger::attr::string("otlp_logs", &logs),
                logger::attr::string("sentry", if sentry_client.is_some() { "on" } else { "off" }),
                logger::attr::string("alert_providers", &providers),
                logger::attr::string("dead_letters", &dead_letters),
            ],
        );
        Ok(Guard {
            shutdown_timeout: self.shutdown_timeout,
            drain_delay,
            done: AtomicBool::new(false),
            health,
            health_addr,
            server: Mutex::new(server),
            runtime: Mutex::new(spare.0.take()),
            notifications,
            forwarder,
            sentry: sentry_client,
            otlp: otlp_pipeline,
        })
    }
}

/// What a failing `init()` undoes: the log outputs it added, and the OTLP providers it
/// started (flushed and stopped on a thread of their own, within a second).
#[derive(Default)]
struct Rollback {
    outputs: Vec<piko_obs_logger::OutputId>,
    pipeline: Option<otlp::Pipeline>,
    sentry: Option<Arc<sentry::Sentry>>,
    keep: bool,
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for id in self.outputs.drain(..) {
            let _ = logger::hub().remove_output(id, Duration::from_millis(200));
        }
        if let Some(p) = self.pipeline.take() {
            std::thread::spawn(move || {
                let _ = p.shutdown(Duration::from_secs(1));
            });
        }
        if let Some(s) = self.sentry.take() {
            sentry::stop(&s, Duration::from_millis(200));
        }
    }
}

/// A runtime not yet handed to the guard: shut down in the background if dropped.
struct SpareRuntime(Option<tokio::runtime::Runtime>);

impl Drop for SpareRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The environment and the release every signal names, in the one documented order:
/// code, then Sentry's variables, then `OTEL_RESOURCE_ATTRIBUTES`, then piko-obs's own
/// (`PIKO_ENVIRONMENT`, `ENVIRONMENT`; `PIKO_SERVICE_VERSION`). Blank counts as unset.
fn identity(
    environment: Option<String>,
    release: Option<String>,
    env: impl Fn(&str) -> Option<String> + Copy,
) -> (Option<String>, Option<String>) {
    let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let environment = set(environment)
        .or_else(|| set(env("SENTRY_ENVIRONMENT")))
        .or_else(|| set(otlp::resource_attribute(env, "deployment.environment.name")))
        .or_else(|| set(env("PIKO_ENVIRONMENT")))
        .or_else(|| set(env("ENVIRONMENT")));
    let release = set(release)
        .or_else(|| set(env("SENTRY_RELEASE")))
        .or_else(|| set(otlp::resource_attribute(env, "service.version")))
        .or_else(|| set(env("PIKO_SERVICE_VERSION")));
    (environment, release)
}

fn piko_runtime() -> Result<tokio::runtime::Runtime, InitError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("piko-obs-runtime")
        .enable_all()
        .build()
        .map_err(InitError::Runtime)
}

/// The notification settings of the builder, applied by `init()`.
struct NotificationSetup {
    providers: Vec<notification::Registration>,
    from_env: bool,
    default: Option<String>,
    dead_letter_path: Option<std::path::PathBuf>,
    dead_letter_max_bytes: Option<std::num::NonZeroU64>,
    dead_letter_store: Option<Arc<dyn notification::DeadLetterStore>>,
    retry: Option<notification::RetryPolicy>,
    dispatcher: notification::DispatcherConfig,
    environment: Option<String>,
    service_name: String,
    run_mode: RunMode,
}

impl NotificationSetup {
    fn start(
        self,
        runtime: &tokio::runtime::Handle,
    ) -> Result<
        (
            notification::NotificationService,
            notification::Dispatcher,
            String,
        ),
        InitError,
    > {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut builder = notification::NotificationService::builder()
            .with_source(self.service_name.clone())
            .with_service(self.service_name)
            .with_trace_id_source(notification::current_trace_id)
            .with_runtime(runtime.clone());
        if let Some(e) = self.environment {
            builder = builder.with_environment(e);
        }
        if let Some(policy) = self.retry {
            builder = builder.with_retry_policy(policy);
        }
        let service = builder.build();
        for register in self.providers {
            register(&service).map_err(InitError::NotificationProvider)?;
        }
        if self.from_env {
            for register in notification::providers_from_env(env)? {
                register(&service).map_err(InitError::NotificationProvider)?;
            }
        }
        if service.providers().is_empty() {
            let format = match self.run_mode {
                RunMode::Prod => notification::StdoutFormat::Json,
                RunMode::Dev => notification::StdoutFormat::Human,
            };
            service
                .register(
                    notification::provider::STDOUT,
                    notification::StdoutNotifier::new(format),
                )
                .map_err(InitError::NotificationProvider)?;
        }
        if let Some(name) = &self.default {
            service
                .set_default(name)
                .map_err(InitError::DefaultNotificationProvider)?;
        }
        let (store, location): (Arc<dyn notification::DeadLetterStore>, String) = match self
            .dead_letter_store
        {
            Some(_) if self.dead_letter_path.is_some() || self.dead_letter_max_bytes.is_some() => {
                return Err(InitError::DeadLetterStoreAndFile);
            }
            Some(store) => (store, "a store of the application's own".into()),
            None => {
                // A path the user set must be writable; the default may not be (a
                // read-only root file system or HOME), or there may be none (no absolute
                // XDG_STATE_HOME or HOME; the working directory is never used): then dead
                // letters are kept in memory and printed to stderr (`MemoryDeadLetterStore`).
                let chosen = match (
                    self.dead_letter_path,
                    env(notification::PIKO_NOTIFICATION_DEAD_LETTER_PATH),
                ) {
                    (Some(p), _) => Ok((p, Some("with_notification_dead_letter_path"))),
                    (None, Some(p)) => Ok((
                        p.into(),
                        Some(notification::PIKO_NOTIFICATION_DEAD_LETTER_PATH),
                    )),
                    (None, None) => notification::default_dead_letter_path()
                        .map(|p| (p, None))
                        .ok_or_else(|| {
                            std::io::Error::new(
                                std::io::ErrorKind::NotFound,
                                "neither XDG_STATE_HOME nor HOME is set to an absolute folder",
                            )
                        }),
                };
                let opened = chosen.map(|(path, setting)| {
                    (
                        notification::FileDeadLetterStore::open(&path),
                        path,
                        setting,
                    )
                });
                match opened {
                    Err(source) => (
                        notification::memory_dead_letters(
                            std::path::Path::new("(no default path)"),
                            &source,
                        ),
                        format!("memory and stderr (no default file: {source})"),
                    ),
                    Ok((Ok(mut store), path, _)) => {
                        if let Some(max) = self.dead_letter_max_bytes {
                            store = store.with_max_bytes(max);
                        }
                        (Arc::new(store), path.display().to_string())
                    }
                    Ok((Err(source), path, Some(setting))) => {
                        return Err(InitError::DeadLetterFile {
                            setting,
                            path,
                            source,
                        });
                    }
                    Ok((Err(source), path, None)) => {
                        let memory = notification::memory_dead_letters(&path, &source);
                        (
                            memory,
                            // The error names the file.
                            format!("memory and stderr (default file not writable: {source})"),
                        )
                    }
                }
            }
        };
        let dispatcher = notification::Dispatcher::start(runtime, &service, store, self.dispatcher)
            .map_err(InitError::Runtime)?;
        let _ = service.attach_dispatcher(dispatcher.clone());
        notification::install(service.clone());
        Ok((service, dispatcher, location))
    }
}

/// `init()` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A level setting is not valid.
    #[error(transparent)]
    LogLevel(#[from] logger::LevelSettingError),
    /// An output could not be added.
    #[error(transparent)]
    Output(#[from] logger::AddOutputError),
    /// The console writer thread could not start.
    #[error("cannot start the console log output: {0}")]
    Console(std::io::Error),
    /// Another `log` logger is installed.
    #[error(transparent)]
    LogBridge(#[from] logger::LogBridgeError),
    /// The probe server could not start (port in use, bad address or path, TLS files,
    /// a zero connection limit).
    #[error(transparent)]
    Health(#[from] health::ServerError),
    /// A probe could not be registered (a name used twice, a zero timeout).
    #[error(transparent)]
    Probe(#[from] health::RegisterError),
    /// The health check timeout is zero.
    #[error("with_health_check_timeout: the timeout must be greater than zero (for example 5s)")]
    HealthTimeout,
    /// A metrics setting is not valid (a label or metric name, buckets, a cap).
    #[error("{setting}: {source}")]
    Metrics {
        /// The builder option (`with_metrics_buckets`, ...).
        setting: &'static str,
        /// What is wrong with it.
        source: metrics::MetricsError,
    },
    /// Another `metrics` recorder is installed.
    #[error(transparent)]
    MetricsRecorder(#[from] metrics::RecorderInstalledError),
    /// A notification provider could not be registered (a name used twice).
    #[error("with_notification_provider: {0}")]
    NotificationProvider(notification::RegisterError),
    /// A provider variable is set to something that cannot work.
    #[error(transparent)]
    NotificationEnv(#[from] notification::EnvProviderError),
    /// The default notification provider is not registered.
    #[error("with_default_notification_provider: {0}")]
    DefaultNotificationProvider(notification::UnknownProvider),
    /// A dead-letter store of one's own and settings of the file were both given.
    #[error(
        "with_notification_dead_letter_store replaces the dead-letter file: drop with_notification_dead_letter_path and with_notification_dead_letter_max_bytes, or the store"
    )]
    DeadLetterStoreAndFile,
    /// The dead-letter file the user chose cannot be opened. (The default one falls back
    /// to memory and stderr instead: `notification::MemoryDeadLetterStore`.)
    #[error(
        "{setting}: notification dead-letter file {}: {source}; set {setting} to a writable path",
        .path.display()
    )]
    DeadLetterFile {
        /// The setting that chose the path: `with_notification_dead_letter_path` or
        /// `PIKO_NOTIFICATION_DEAD_LETTER_PATH`.
        setting: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An OTLP setting cannot work (the message names it), or the exporters could not
    /// start.
    #[error("{0}")]
    Otlp(String),
    /// A Sentry setting cannot work (the DSN, a rate, a bound).
    #[error("{0}")]
    Sentry(sentry::SentryConfigError),
    /// An error-notification setting cannot work.
    #[error("with_error_notifications: {0}")]
    ErrorNotifications(notification::ForwarderConfigError),
    /// Error notifications name a provider that is not registered.
    #[error(
        "with_error_notifications: provider {0:?} is not registered; register it with with_notification_provider or remove it from with_providers"
    )]
    ErrorNotificationsProvider(String),
    /// Error notifications need the notification service.
    #[error(
        "with_error_notifications needs notifications: remove with_notifications_enabled(false)"
    )]
    ErrorNotificationsWithoutNotifications,
    /// piko-obs's runtime could not start.
    #[error("cannot start the piko-obs runtime: {0}")]
    Runtime(std::io::Error),
    /// An environment variable of [`settings`] is set to a value that cannot work.
    #[error(transparent)]
    Env(#[from] settings::EnvSettingError),
}

fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "piko-obs".into())
}

/// Steps of the shutdown that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shutdown: {}", .failures.iter().map(|(step, e)| format!("{step}: {e}")).collect::<Vec<_>>().join("; "))]
pub struct ShutdownError {
    /// Each failed step and why.
    pub failures: Vec<(&'static str, String)>,
}

/// Shuts piko-obs down when dropped (or at [`Guard::shutdown`]), in this order:
/// readiness turns UNHEALTHY, the drain delay passes, the probe server stops, the error
/// forwarder hands its pending groups over, the notification dispatcher delivers (or
/// dead-letters) what is queued, Sentry sends what is queued, the OpenTelemetry
/// providers flush and stop, and every queued log line is written. Each step is bounded
/// and the whole takes at most the shutdown timeout; a failed step is reported. Keep it
/// alive for the life of `main`.
#[must_use = "dropping the guard shuts piko-obs down at once: keep it until main returns"]
pub struct Guard {
    shutdown_timeout: Duration,
    drain_delay: Duration,
    done: AtomicBool,
    health: Option<health::HealthService>,
    health_addr: Option<SocketAddr>,
    server: Mutex<Option<health::RunningServer>>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    notifications: Option<(notification::NotificationService, notification::Dispatcher)>,
    forwarder: Option<notification::ErrorForwarder>,
    sentry: Option<Arc<sentry::Sentry>>,
    otlp: Option<otlp::Pipeline>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("health_addr", &self.health_addr)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("drain_delay", &self.drain_delay)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// The probe server's address, when it runs.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// The health service, to add probes later or to signal drain early.
    pub fn health(&self) -> Option<&health::HealthService> {
        self.health.as_ref()
    }

    /// Shuts down now and reports what failed. A second call does nothing.
    pub fn shutdown(&self) -> Result<(), ShutdownError> {
        if self.done.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let deadline = Instant::now() + self.shutdown_timeout.min(LONGEST_WAIT);
        let left = || deadline.saturating_duration_since(Instant::now());
        let mut failures = Vec::new();
        if let Some(h) = &self.health {
            h.signal_drain();
            std::thread::sleep(self.drain_delay.min(left()));
        }
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(runtime) = runtime {
            // Each step runs on piko-obs's runtime while this thread waits on a channel:
            // bounded, and safe to call from inside another runtime.
            let run = |step: &'static str,
                       budget: Duration,
                       fut: std::pin::Pin<
                Box<dyn std::future::Future<Output = Option<String>> + Send>,
            >|
             -> Option<(&'static str, String)> {
                let (tx, rx) = std::sync::mpsc::channel();
                runtime.spawn(async move {
                    let _ = tx.send(fut.await);
                });
                match rx.recv_timeout(budget.saturating_add(Duration::from_millis(200))) {
                    Ok(None) => None,
                    Ok(Some(problem)) => Some((step, problem)),
                    Err(_) => Some((step, format!("not finished after {budget:?}"))),
                }
            };
            if let Some(server) = server {
                let budget = left().min(Duration::from_secs(5));
                failures.extend(run(
                    "stop the health server",
                    budget,
                    Box::pin(async move {
                        server.shutdown(budget).await;
                        None
                    }),
                ));
            }
            // What the later steps need, kept back from the dispatcher's budget.
            let logs_reserve = Duration::from_millis(300);
            let otlp_reserve = if self.otlp.is_some() {
                Duration::from_secs(1)
            } else {
                Duration::ZERO
            };
            let sentry_reserve = match &self.sentry {
                Some(s) => s.shutdown_timeout().min(Duration::from_secs(1)),
                None => Duration::ZERO,
            };
            if self.forwarder.is_some() {
                // Pending error groups go to the dispatcher's queue before it is flushed.
                let budget = left()
                    .saturating_sub(logs_reserve + otlp_reserve + sentry_reserve)
                    .max(Duration::from_millis(100));
                if let Some(o) = logger::hub()
                    .outputs()
                    .into_iter()
                    .find(|o| o.name == notification::ERROR_FORWARDER_OUTPUT)
                    && let Err(e) = logger::hub().remove_output(o.id, budget)
                {
                    failures.push(("flush the error notifications", e.to_string()));
                }
            }
            if let Some((service, dispatcher)) = &self.notifications {
                let budget = left().saturating_sub(logs_reserve + otlp_reserve + sentry_reserve);
                let (service, dispatcher) = (service.clone(), dispatcher.clone());
                failures.extend(run(
                    "flush the notification dispatcher",
                    budget,
                    Box::pin(async move {
                        let report = dispatcher.shutdown(budget).await;
                        service.close().await;
                        let s = report.stats;
                        let mut problems = Vec::new();
                        if !report.within_bound {
                            problems.push(
                                "bound reached: what was left was handed to the dead-letter writer"
                                    .to_string(),
                            );
                        }
                        if s.dead_letter_pending > 0 {
                            problems.push(format!(
                                "{} dead letter(s) not yet written to the dead-letter store: \
                                 the writer thread keeps writing them while the process lives",
                                s.dead_letter_pending
                            ));
                        }
                        if s.dropped + s.dead_letter_errors > 0 {
                            problems.push(format!(
                                "{} notification(s) could not be written to the dead-letter file",
                                s.dropped + s.dead_letter_errors
                            ));
                        }
                        (!problems.is_empty()).then(|| problems.join("; "))
                    }),
                ));
            }
            if let Some(s) = &self.sentry {
                let budget = s
                    .shutdown_timeout()
                    .min(left().saturating_sub(logs_reserve + otlp_reserve))
                    .max(Duration::from_millis(50));
                let s = s.clone();
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(sentry::stop(&s, budget));
                });
                match rx.recv_timeout(budget.saturating_add(Duration::from_millis(200))) {
                    Ok(true) => {}
                    Ok(false) | Err(_) => failures.push((
                        "flush Sentry",
                        format!("events still queued after {budget:?} were dropped"),
                    )),
                }
            }
            if let Some(pipeline) = &self.otlp {
                // New series go nowhere once this pipeline stops (a later init() puts
                // its own recorder in).
                otlp::metrics_slot().set(None);
                // Lines logged from here on stay local; the providers flush and stop,
                // on a thread of their own, while the runtime their gRPC connections
                // use is still up.
                if let Some(o) = logger::hub()
                    .outputs()
                    .into_iter()
                    .find(|o| o.name == "otlp")
                {
                    let _ = logger::hub().remove_output(o.id, Duration::from_millis(100));
                }
                otlp::use_tracer_provider(None);
                let budget = left()
                    .saturating_sub(Duration::from_millis(300))
                    .max(Duration::from_millis(100));
                let pipeline = pipeline.clone();
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(pipeline.shutdown(budget));
                });
                match rx.recv_timeout(budget.saturating_add(Duration::from_millis(200))) {
                    Ok(problems) if problems.is_empty() => {}
                    Ok(problems) => failures.push((
                        "shut the OpenTelemetry providers down",
                        problems
                            .iter()
                            .map(|(signal, e)| format!("{signal}: {e}"))
                            .collect::<Vec<_>>()
                            .join("; "),
                    )),
                    Err(_) => failures.push((
                        "shut the OpenTelemetry providers down",
                        format!("not finished after {budget:?}"),
                    )),
                }
            }
            runtime.shutdown_background();
        }
        if let Err(e) = logger::hub().shutdown(left().max(Duration::from_millis(100))) {
            failures.push(("flush the logs", e.to_string()));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError { failures })
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Not `eprintln!`, which panics when stderr is closed: in a drop, that aborts
        // a process already unwinding.
        if let Err(e) = self.shutdown() {
            let _ = writeln!(std::io::stderr(), "piko-obs: {e}");
        }
    }
}

/// The longest wait taken as given: a longer one (up to `Duration::MAX`) is a century,
/// as `Instant` cannot add more.
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[cfg(test)]
mod identity_tests {
    use super::identity;

    #[test]
    fn code_then_sentry_then_otel_resource_then_piko_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_string())
            }
        };
        let all = vars(&[
            ("SENTRY_ENVIRONMENT", "sentry-env"),
            ("SENTRY_RELEASE", "sentry-rel"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=otel-env,service.version=otel-rel",
            ),
            ("PIKO_ENVIRONMENT", "piko-env"),
            ("ENVIRONMENT", "plain-env"),
            ("PIKO_SERVICE_VERSION", "piko-rel"),
        ]);
        assert_eq!(
            identity(Some("code".into()), Some("1.0".into()), all),
            (Some("code".into()), Some("1.0".into()))
        );
        assert_eq!(
            identity(None, None, all),
            (Some("sentry-env".into()), Some("sentry-rel".into()))
        );
        let otel = vars(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=otel-env,service.version=otel-rel",
            ),
            ("ENVIRONMENT", "plain-env"),
        ]);
        assert_eq!(
            identity(None, None, otel),
            (Some("otel-env".into()), Some("otel-rel".into()))
        );
        let plain = vars(&[("ENVIRONMENT", "plain-env"), ("SENTRY_ENVIRONMENT", " ")]);
        assert_eq!(
            identity(None, None, plain),
            (Some("plain-env".into()), None)
        );
        assert_eq!(identity(Some("".into()), None, vars(&[])), (None, None));
    }
}
