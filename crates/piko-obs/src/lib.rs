//! Production observability for Rust services, set up in one builder chain.
//!
//! `piko-obs` is the facade over the piko-obs crates: it re-exports them and wires them
//! together, and it is the only crate that installs process-wide state (the global log
//! hub, the `log` and `tracing` bridges, the `metrics` recorder, the OpenTelemetry
//! globals and Sentry's main hub). It holds no logic of its own.
//!
//! What it gives today:
//! - [`builder`]: run mode, framework log level, console output, the probe
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
//! use piko_obs::{RunMode, logger::{self, attr}};
//!
//! let _guard = piko_obs::builder()
//!     .with_run_mode(RunMode::Prod)   // JSON lines on stdout
//!     .with_health_probe_port(0)      // probes on a free port (9090 by default)
//!     .with_shutdown_drain_delay(std::time::Duration::ZERO)
//!     .with_log_level("info")
//!     .init()
//!     .expect("observability set up");
//! logger::get_logger("monitor").info("Server started", &[attr::string("mode", "prod")]);
//! ```
//!
//! ## Feature flags
//!
//! The logger is always there. Each subsystem is a feature, all on by default: `health`
//! (probes, warp and hyper), `metrics` (the Prometheus recorder), `otlp` (OpenTelemetry
//! and the `tracing` bridge), `sentry`, `notify` (alerts and the error forwarder); `axum`
//! adds route templates from axum's `MatchedPath`. With `default-features = false` only
//! the logger is compiled: no warp, hyper, tonic, reqwest, sentry or OpenTelemetry crate.

use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

/// Declares [`Builder`] setters that each hand their arguments to a method of the
/// subsystem setup held in one of the builder's fields: `fn with_x(arg: T) => method(arg);`
/// becomes `pub fn with_x(self, arg: T) -> Self`, with the doc comment written above it.
macro_rules! delegate {
    ($field:ident: $(
        $(#[$doc:meta])*
        fn $name:ident $([$($generics:tt)*])? ($($arg:ident: $ty:ty),*) => $method:ident($($value:expr),*);
    )*) => {
        $(
            $(#[$doc])*
            pub fn $name $(<$($generics)*>)? (mut self, $($arg: $ty),*) -> Self {
                self.$field = std::mem::take(&mut self.$field).$method($($value),*);
                self
            }
        )*
    };
}

pub use piko_obs_lifecycle as lifecycle;
use piko_obs_lifecycle::setup::ServiceSetup;
pub use piko_obs_lifecycle::{Lifecycle, ShutdownError, ShutdownErrors, Stack};
use piko_obs_logger::setup::LoggerSetup;

#[cfg(feature = "health")]
pub mod health;
pub mod logger;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "notify")]
pub mod notification;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "sentry")]
pub mod sentry;
pub mod settings;
pub use piko_obs_lifecycle::signal;
mod start;

pub use piko_obs_lifecycle::settings::{ParseRunModeError, RUN_MODE_DEV, RUN_MODE_PROD, RunMode};

pub use piko_obs_logger::setup::PIKO_DISABLE_CONSOLE_LOG;

/// The entry point, `piko_obs::builder()...init()`: [`Builder::new`].
pub fn builder() -> Builder {
    Builder::new()
}

#[cfg(feature = "health")]
pub use health::DEFAULT_HEALTH_RESPONSE_CACHE;

/// Configures and starts piko-obs (Piko's `piko.New(piko.WithLogLevel(..), ...)`).
#[must_use]
#[derive(Default)]
pub struct Builder {
    service: ServiceSetup,
    logger: LoggerSetup,
    #[cfg(feature = "health")]
    health: health::ServerSetup,
    #[cfg(feature = "metrics")]
    metrics: metrics::setup::RecorderSetup,
    #[cfg(feature = "notify")]
    notify: notification::Setup,
    #[cfg(feature = "notify")]
    error_notifications: notification::ForwarderSetup,
    #[cfg(feature = "otlp")]
    otlp: otlp::OtlpSetup,
    #[cfg(feature = "sentry")]
    sentry: sentry::setup::SentrySetup,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("service", &self.service)
            .field("logger", &self.logger)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A builder with the defaults: dev mode, framework level from `PIKO_LOG_LEVEL` or
    /// INFO, a console output, the `log` and `tracing` bridges on, no stack traces on ERROR, the
    /// probe server on `127.0.0.1:9090`. Settings not given in code are read from the
    /// environment first ([`settings`]).
    pub fn new() -> Self {
        Self::default()
    }

    delegate! { service:
        /// Dev (pretty console) or prod (JSON console). Not given, `PIKO_RUN_MODE` (`dev`
        /// or `prod`) sets it, else dev ([`settings`]: code, then environment, then default).
        fn with_run_mode(mode: RunMode) => with_run_mode(mode);
        /// The longest the guard's shutdown may take in all (default 10 s).
        fn with_shutdown_timeout(timeout: Duration) => with_shutdown_timeout(timeout);
        /// The service's name: the top-level name of health statuses (default: the
        /// program's file name).
        fn with_service_name(name: impl Into<String>) => with_service_name(name);
        /// How long shutdown keeps serving after readiness turns UNHEALTHY, so that
        /// Kubernetes stops routing traffic first (default: 5 s in prod, 0 in dev).
        fn with_shutdown_drain_delay(delay: Duration) => with_drain_delay(delay);
        /// The deployment environment, one setting for every signal: Sentry's `environment`,
        /// the OTLP resource's `deployment.environment.name` and the alerts' `environment`.
        /// Unset in code, it is `SENTRY_ENVIRONMENT`, else `deployment.environment.name` in
        /// `OTEL_RESOURCE_ATTRIBUTES`, else `PIKO_ENVIRONMENT`, else `ENVIRONMENT`; unset
        /// everywhere, it is left out (never `""`). A value set in a signal's own settings
        /// (`SentryConfig::with_environment`) wins for that signal.
        fn with_environment(environment: impl Into<String>) => with_environment(environment);

        /// The release (the service's version), one setting for every signal: Sentry's
        /// `release` and the OTLP resource's `service.version`. Unset in code, it is
        /// `SENTRY_RELEASE`, else `service.version` in `OTEL_RESOURCE_ATTRIBUTES`, else
        /// `PIKO_SERVICE_VERSION`; unset everywhere, it is left out. A value set in a signal's
        /// own settings (`SentryConfig::with_release`, `with_otlp_service_version`) wins for
        /// that signal.
        fn with_release(release: impl Into<String>) => with_release(release);
    }

    delegate! { logger:
        /// The framework level, as a level or directives (`info,myapp/db=debug`). Set here,
        /// it wins over `PIKO_LOG_LEVEL`; without either, INFO. Checked by `init()`.
        fn with_log_level(level: impl Into<String>) => with_level(level);
        /// Whether `init()` adds the console output (default: on, unless
        /// `PIKO_DISABLE_CONSOLE_LOG=true`).
        fn with_console_output(on: bool) => with_console(on);
        /// Whether records of the `log` crate go to the outputs (default: on).
        fn with_log_bridge(on: bool) => with_log_bridge(on);
        /// Whether `tracing` events go to the outputs (default: on; when the application
        /// installed its own subscriber first, `init()` says so and leaves it). The bridge
        /// comes with the `otlp` feature; without it this setting has no effect.
        fn with_tracing_bridge(on: bool) => with_tracing_bridge(on);
        /// Whether ERROR records carry a stack trace (default: off). When on, each ERROR call
        /// captures and symbolises its stack on the caller's thread; `docs/reference/logger.md`
        /// gives the cost. A trace of only `<unknown>` frames is left out.
        fn with_error_backtraces(on: bool) => with_error_backtraces(on);
        /// Replaces the patterns of secret keys whose values are masked.
        fn with_secret_keys[I: IntoIterator<Item = S>, S: Into<String>](patterns: I) => with_secret_keys(patterns);
    }

    /// Checks the configuration and starts everything. Bad input fails here, with an
    /// error naming the setting.
    pub fn init(self) -> Result<Guard, InitError> {
        let resolved = self.resolve()?;
        self.start(resolved)
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
    /// The console output could not start (its writer thread, or the hub refused it).
    #[error(transparent)]
    Console(#[from] logger::ConsoleError),
    /// Another `log` logger is installed.
    #[error(transparent)]
    LogBridge(#[from] logger::LogBridgeError),
    /// The probe server could not start (port in use, bad address or path, TLS files,
    #[cfg(feature = "health")]
    /// a zero connection limit).
    #[error(transparent)]
    Health(#[from] health::ServerError),
    #[cfg(feature = "health")]
    /// A probe could not be registered (a name used twice, a zero timeout).
    #[error(transparent)]
    Probe(#[from] health::RegisterError),
    #[cfg(feature = "health")]
    /// The health check timeout is zero.
    #[error("with_health_check_timeout: the timeout must be greater than zero (for example 5s)")]
    HealthTimeout,
    #[cfg(feature = "metrics")]
    /// A metrics setting is not valid (a label or metric name, buckets, a cap).
    #[error("{setting}: {source}")]
    Metrics {
        /// The builder option (`with_metrics_buckets`, ...).
        setting: &'static str,
        /// What is wrong with it.
        source: metrics::MetricsError,
    },
    #[cfg(feature = "metrics")]
    /// Another `metrics` recorder is installed.
    #[error(transparent)]
    MetricsRecorder(#[from] metrics::RecorderInstalledError),
    #[cfg(feature = "notify")]
    /// The notification service could not start: a provider name used twice, a provider
    /// variable that cannot work, a default provider not registered, a dead-letter store
    /// of one's own beside settings of the file, a dead-letter file the user chose that
    /// cannot be opened (the default one falls back to memory and stderr instead:
    /// `notification::MemoryDeadLetterStore`), or its runtime. The message names the
    /// builder option or the variable to change.
    #[error("{}", notification::setup_message(.0))]
    Notification(#[from] notification::SetupError),
    #[cfg(feature = "otlp")]
    /// OTLP could not start: a setting cannot work (the message names it), or the
    /// exporters or the `otlp` log output could not start.
    #[error(transparent)]
    Otlp(#[from] otlp::setup::SetupError),
    #[cfg(feature = "sentry")]
    /// Sentry could not start: a setting cannot work (the DSN, a rate, a bound), or its
    /// log output could not be added.
    #[error(transparent)]
    Sentry(#[from] sentry::setup::SetupError),
    #[cfg(feature = "notify")]
    /// An error-notification setting cannot work.
    #[error("with_error_notifications: {0}")]
    ErrorNotifications(notification::ForwarderConfigError),
    #[cfg(feature = "notify")]
    /// Error notifications name a provider that is not registered.
    #[error(
        "with_error_notifications: provider {0:?} is not registered; register it with with_notification_provider or remove it from with_providers"
    )]
    ErrorNotificationsProvider(String),
    #[cfg(feature = "notify")]
    /// Error notifications need the notification service.
    #[error(
        "with_error_notifications needs notifications: remove with_notifications_enabled(false)"
    )]
    ErrorNotificationsWithoutNotifications,
    /// piko-obs's runtime (or the metrics upkeep's thread) could not start.
    #[error("cannot start the piko-obs runtime: {0}")]
    Runtime(std::io::Error),
    /// An environment variable of [`settings`] is set to a value that cannot work.
    #[error(transparent)]
    Env(#[from] settings::EnvSettingError),
}

/// Shuts piko-obs down when dropped (or at [`Guard::shutdown`]), in this order:
/// readiness turns UNHEALTHY, the drain delay passes, the probe server stops, the error
/// forwarder hands its pending groups over, the notification dispatcher delivers (or
/// dead-letters) what is queued, Sentry sends what is queued, the OpenTelemetry
/// providers flush and stop, and every queued log line is written. It is the [`Stack`]
/// of the parts `init()` started, shut down in reverse order within the shutdown
/// timeout; a failed part is reported. Keep it alive for the life of `main`.
#[must_use = "dropping the guard shuts piko-obs down at once: keep it until main returns"]
#[derive(Debug)]
pub struct Guard {
    shutdown_timeout: Duration,
    #[cfg(feature = "health")]
    server: Option<health::ServingServer>,
    stack: Stack,
}

impl Guard {
    /// The probe server's address, when it runs.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "health")]
        return self.server.as_ref().map(|s| s.addr);
        #[cfg(not(feature = "health"))]
        None
    }

    /// The health service, to add probes later or to signal drain early.
    #[cfg(feature = "health")]
    pub fn health(&self) -> Option<&health::HealthService> {
        self.server.as_ref().map(|s| &s.service)
    }

    /// The started parts, from the one shut down last (the log hub) to the first.
    pub fn parts(&self) -> Vec<&'static str> {
        self.stack.parts()
    }

    /// Shuts down now and reports every part that failed. A second call does nothing.
    pub fn shutdown(&self) -> Result<(), ShutdownErrors> {
        self.stack.shutdown(self.shutdown_timeout)
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
