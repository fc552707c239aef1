//! Notifications: alerts to Slack, Discord, PagerDuty, Teams, Google Chat, ntfy, any
//! webhook, Prometheus Alertmanager or stdout, sent now with retries or queued to the dispatcher, so that each
//! is delivered or kept in the dead-letter file.
//!
//! `init()` builds the process's notification service: the providers given with
//! `with_notification_provider` (and, with `with_notification_providers_from_env`, one
//! for each variable of [`ENV_PROVIDERS`] that is set), stdout when there is none, and
//! a dispatcher whose dead letters go to a JSON-lines file
//! ([`default_dead_letter_path`], or `with_notification_dead_letter_path`). The trace id
//! of a notification without one is taken from the current OpenTelemetry span.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use piko_obs::notification::{self, Priority, StdoutFormat, StdoutNotifier};
//! let dir = tempfile::tempdir().unwrap();
//! let guard = piko_obs::builder()
//!     .with_console_output(false)
//!     .with_health_enabled(false)
//!     .with_notification_provider("ops", StdoutNotifier::new(StdoutFormat::Json))
//!     .with_notification_dead_letter_path(dir.path().join("dead-letters.jsonl"))
//!     .init()
//!     .unwrap();
//! notification::builder()
//!     .title("Deploy finished")
//!     .message("v1.4.2 is live")
//!     .priority(Priority::Low)
//!     .enqueue()
//!     .unwrap();
//! guard.shutdown().unwrap();
//! # });
//! ```

use std::sync::RwLock;

pub use piko_obs_error_alerts::{
    ALERT_TITLE_SUFFIX, ERROR_FORWARDER_OUTPUT, ErrorForwarder, ErrorForwarderConfig,
    ForwarderConfigError, ForwarderStats, MAX_ALERT_FIELD_CHARS, MAX_ALERT_FIELDS,
    priority_for_level,
};
pub use piko_obs_notify::*;
pub use piko_obs_notify_providers::{
    ALERTMANAGER, AlertmanagerNotifier, ConfigError, DEFAULT_LEASE, DEFAULT_MAX_BYTES,
    DEFAULT_MEMORY_ENTRIES, DiscordNotifier, EU_EVENTS_URL, EVENTS_URL, FileDeadLetterStore,
    GoogleChatNotifier, HttpClient, MemoryDeadLetterStore, NtfyNotifier, PagerDutyNotifier,
    SlackNotifier, StdoutFormat, StdoutNotifier, TeamsFormat, TeamsNotifier, WebhookNotifier,
    default_dead_letter_path,
};

pub use piko_obs_notify_providers::{
    ENV_PROVIDERS, ENV_VARIABLES, EnvProviderError, Registration, providers_from_env,
};
use std::sync::Arc;
use std::time::Duration;

use piko_obs_lifecycle::Unwind;
use piko_obs_logger::AddedOutput;

use crate::start::{Resolved, Started};
use crate::{Builder, InitError, RunMode, logger};

/// The dead-letter file's path, from the environment when `with_*` did not set it.
pub const PIKO_NOTIFICATION_DEAD_LETTER_PATH: &str = "PIKO_NOTIFICATION_DEAD_LETTER_PATH";

static INSTALLED: RwLock<Option<NotificationService>> = RwLock::new(None);

pub(crate) fn install(service: NotificationService) {
    *INSTALLED.write().unwrap_or_else(|p| p.into_inner()) = Some(service);
}

static FORWARDER: RwLock<Option<ErrorForwarder>> = RwLock::new(None);

pub(crate) fn install_forwarder(forwarder: ErrorForwarder) {
    *FORWARDER.write().unwrap_or_else(|p| p.into_inner()) = Some(forwarder);
}

/// The error forwarder `init()` set up ([`crate::Builder::with_error_notifications`](crate::Builder::with_error_notifications)), if it did.
pub fn error_forwarder() -> Option<ErrorForwarder> {
    FORWARDER.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Records the counters of the service, dispatcher, providers, error forwarder and
/// in-memory dead-letter store `init()` set up.
#[cfg(feature = "metrics")]
pub(crate) fn record_metrics() {
    if let Some(s) = service() {
        telemetry::record_metrics(&s);
    }
    if let Some(f) = error_forwarder() {
        piko_obs_error_alerts::telemetry::record_metrics(&f);
    }
    if let Some(m) = MEMORY_DEAD_LETTERS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        m.record_metrics();
    }
}

/// The in-memory dead-letter store `init()` fell back to, when the default file could
/// not be opened.
static MEMORY_DEAD_LETTERS: RwLock<Option<std::sync::Arc<MemoryDeadLetterStore>>> =
    RwLock::new(None);

/// The in-memory store used when the default dead-letter file cannot be opened: warns
/// once (naming the file, the reason and the fix) and makes its size visible on
/// `/metrics` (`piko_obs_notifications_dead_letter_in_memory`).
pub(crate) fn memory_dead_letters(
    default_path: &std::path::Path,
    why: &std::io::Error,
) -> std::sync::Arc<dyn DeadLetterStore> {
    let store = std::sync::Arc::new(MemoryDeadLetterStore::new(DEFAULT_MEMORY_ENTRIES));
    *MEMORY_DEAD_LETTERS
        .write()
        .unwrap_or_else(|p| p.into_inner()) = Some(store.clone());
    let path = default_path.display().to_string();
    let why = why.to_string();
    crate::logger::get_logger("piko-obs/notification").warn(
        "dead letters kept in memory and printed to stderr: the default dead-letter file is not writable; set PIKO_NOTIFICATION_DEAD_LETTER_PATH to a writable volume to keep them across restarts",
        &[
            crate::logger::attr::string("path", &path),
            crate::logger::attr::string("error", &why),
            crate::logger::attr::uint("max_entries", DEFAULT_MEMORY_ENTRIES.get() as u64),
        ],
    );
    store
}

/// The notification service `init()` set up, if it did.
pub fn service() -> Option<NotificationService> {
    INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A notification builder on the service `init()` set up (Piko's
/// `NewNotificationBuilderFromDefault`). Before `init()` it has no provider: sending
/// fails with an error saying so, and `enqueue` with `NoDispatcher`.
pub fn builder() -> NotificationBuilder {
    service().unwrap_or_default().notification()
}

/// The trace id of the current OpenTelemetry span, if one is being recorded.
pub(crate) fn current_trace_id() -> Option<String> {
    #[cfg(feature = "otlp")]
    return crate::otlp::current_span_ids().map(|(trace_id, _)| trace_id);
    #[cfg(not(feature = "otlp"))]
    None
}

/// The notification settings given to the builder.
pub(crate) struct InCode {
    pub(crate) enabled: bool,
    pub(crate) providers: Vec<Registration>,
    pub(crate) providers_from_env: bool,
    pub(crate) default: Option<String>,
    pub(crate) dead_letter_path: Option<std::path::PathBuf>,
    pub(crate) dead_letter_max_bytes: Option<std::num::NonZeroU64>,
    pub(crate) dead_letter_store: Option<std::sync::Arc<dyn DeadLetterStore>>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) dispatcher: DispatcherConfig,
    pub(crate) error_notifications: Option<ErrorForwarderConfig>,
}

impl Default for InCode {
    fn default() -> Self {
        Self {
            enabled: true,
            providers: Vec::new(),
            providers_from_env: false,
            default: None,
            dead_letter_path: None,
            dead_letter_max_bytes: None,
            dead_letter_store: None,
            retry: None,
            dispatcher: DispatcherConfig::default(),
            error_notifications: None,
        }
    }
}

/// The notification settings of the builder, applied by `init()`.
pub(crate) struct NotificationSetup {
    pub(crate) providers: Vec<Registration>,
    pub(crate) from_env: bool,
    pub(crate) default: Option<String>,
    pub(crate) dead_letter_path: Option<std::path::PathBuf>,
    pub(crate) dead_letter_max_bytes: Option<std::num::NonZeroU64>,
    pub(crate) dead_letter_store: Option<Arc<dyn DeadLetterStore>>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) dispatcher: DispatcherConfig,
    pub(crate) environment: Option<String>,
    pub(crate) service_name: String,
    pub(crate) run_mode: RunMode,
}

impl NotificationSetup {
    pub(crate) fn start(
        self,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(NotificationService, Dispatcher, String), InitError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut builder = NotificationService::builder()
            .with_source(self.service_name.clone())
            .with_service(self.service_name)
            .with_trace_id_source(current_trace_id)
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
            for register in providers_from_env(env)? {
                register(&service).map_err(InitError::NotificationProvider)?;
            }
        }
        if service.providers().is_empty() {
            let format = match self.run_mode {
                RunMode::Prod => StdoutFormat::Json,
                RunMode::Dev => StdoutFormat::Human,
            };
            service
                .register(provider::STDOUT, StdoutNotifier::new(format))
                .map_err(InitError::NotificationProvider)?;
        }
        if let Some(name) = &self.default {
            service
                .set_default(name)
                .map_err(InitError::DefaultNotificationProvider)?;
        }
        let (store, location) = dead_letter_store(
            self.dead_letter_store,
            self.dead_letter_path,
            self.dead_letter_max_bytes,
        )?;
        let dispatcher = Dispatcher::start(runtime, &service, store, self.dispatcher)
            .map_err(InitError::Runtime)?;
        let _ = service.attach_dispatcher(dispatcher.clone());
        Ok((service, dispatcher, location))
    }
}

/// The dead-letter store and where it is, for the start-up line: the application's own,
/// else the file set in code or by `PIKO_NOTIFICATION_DEAD_LETTER_PATH` (which must be
/// writable), else the default file, else memory and stderr.
fn dead_letter_store(
    store: Option<Arc<dyn DeadLetterStore>>,
    path: Option<std::path::PathBuf>,
    max_bytes: Option<std::num::NonZeroU64>,
) -> Result<(Arc<dyn DeadLetterStore>, String), InitError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    Ok(match store {
        Some(_) if path.is_some() || max_bytes.is_some() => {
            return Err(InitError::DeadLetterStoreAndFile);
        }
        Some(store) => (store, "a store of the application's own".into()),
        None => {
            // A path the user set must be writable; the default may not be (a
            // read-only root file system or HOME), or there may be none (no absolute
            // XDG_STATE_HOME or HOME; the working directory is never used): then dead
            // letters are kept in memory and printed to stderr (`MemoryDeadLetterStore`).
            let chosen = match (path, env(PIKO_NOTIFICATION_DEAD_LETTER_PATH)) {
                (Some(p), _) => Ok((p, Some("with_notification_dead_letter_path"))),
                (None, Some(p)) => Ok((p.into(), Some(PIKO_NOTIFICATION_DEAD_LETTER_PATH))),
                (None, None) => default_dead_letter_path()
                    .map(|p| (p, None))
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "neither XDG_STATE_HOME nor HOME is set to an absolute folder",
                        )
                    }),
            };
            let opened =
                chosen.map(|(path, setting)| (FileDeadLetterStore::open(&path), path, setting));
            match opened {
                Err(source) => (
                    memory_dead_letters(std::path::Path::new("(no default path)"), &source),
                    format!("memory and stderr (no default file: {source})"),
                ),
                Ok((Ok(mut store), path, _)) => {
                    if let Some(max) = max_bytes {
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
                    let memory = memory_dead_letters(&path, &source);
                    (
                        memory,
                        // The error names the file.
                        format!("memory and stderr (default file not writable: {source})"),
                    )
                }
            }
        }
    })
}

impl Builder {
    /// Whether to set up the notification service and its dispatcher (default on).
    pub fn with_notifications_enabled(mut self, on: bool) -> Self {
        self.notify.enabled = on;
        self
    }
    /// Registers a notification provider under `name` (a name used twice fails
    /// `init()`). The first registered is the default, unless
    /// [`with_default_notification_provider`](Self::with_default_notification_provider)
    /// names another; with none at all, `stdout` is registered.
    pub fn with_notification_provider(
        mut self,
        name: impl Into<String>,
        provider: impl Notifier,
    ) -> Self {
        let name = name.into();
        self.notify
            .providers
            .push(Box::new(move |s: &NotificationService| {
                s.register(name, provider)
            }));
        self
    }
    /// Also registers a provider for each variable of
    /// [`ENV_PROVIDERS`] that is set; a bad value fails `init()` naming
    /// the variable.
    pub fn with_notification_providers_from_env(mut self) -> Self {
        self.notify.providers_from_env = true;
        self
    }
    /// The default notification provider (it must be registered).
    pub fn with_default_notification_provider(mut self, name: impl Into<String>) -> Self {
        self.notify.default = Some(name.into());
        self
    }
    /// The dead-letter file (default: `PIKO_NOTIFICATION_DEAD_LETTER_PATH`, else
    /// [`default_dead_letter_path`]; with neither, `init()` fails rather than
    /// use the working directory). It must be writable: `init()` opens it.
    pub fn with_notification_dead_letter_path(
        mut self,
        path: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.notify.dead_letter_path = Some(path.into());
        self
    }
    /// The most bytes the dead-letter file holds (default
    /// [`DEFAULT_MAX_BYTES`], 256 MiB); past it, new dead letters are
    /// refused, counted in `piko_obs_notifications_dead_letter_errors_total` and printed
    /// to stderr, until a replay or an operator empties it.
    pub fn with_notification_dead_letter_max_bytes(mut self, max: std::num::NonZeroU64) -> Self {
        self.notify.dead_letter_max_bytes = Some(max);
        self
    }
    /// A dead-letter store of your own (a database, a queue), in place of the file:
    /// it implements [`DeadLetterStore`]. It cannot be combined with
    /// `with_notification_dead_letter_path` or `with_notification_dead_letter_max_bytes`
    /// (`init()` fails, naming them); `PIKO_NOTIFICATION_DEAD_LETTER_PATH` is then not
    /// read.
    pub fn with_notification_dead_letter_store(mut self, store: impl DeadLetterStore) -> Self {
        self.notify.dead_letter_store = Some(Arc::new(store));
        self
    }
    /// How notifications are retried (default [`RetryPolicy`]).
    pub fn with_notification_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.notify.retry = Some(policy);
        self
    }
    /// The dispatcher's queue and workers.
    pub fn with_notification_dispatcher(mut self, config: DispatcherConfig) -> Self {
        self.notify.dispatcher = config;
        self
    }

    /// Forwards log lines at or above the config's threshold (default ERROR) to the
    /// notification service as grouped alerts: one alert per message and call site per
    /// window (default 10 s) with the count, at most a set number of alerts a minute.
    /// Alerts go to every registered provider unless the config names some
    /// ([`ErrorForwarderConfig::with_providers`](ErrorForwarderConfig::with_providers)).
    /// Needs notifications on. Pending groups are sent at shutdown.
    pub fn with_error_notifications(mut self, config: ErrorForwarderConfig) -> Self {
        self.notify.error_notifications = Some(config);
        self
    }
}

impl Builder {
    /// Error notifications need the notification service, and valid settings.
    pub(crate) fn check_error_notifications(&self) -> Result<(), InitError> {
        if let Some(c) = &self.notify.error_notifications {
            c.validate().map_err(InitError::ErrorNotifications)?;
            if !self.notify.enabled {
                return Err(InitError::ErrorNotificationsWithoutNotifications);
            }
        }
        Ok(())
    }

    /// The notification service with its dispatcher, and the error forwarder.
    pub(crate) fn start_notifications(
        &mut self,
        r: &Resolved,
        started: &mut Started,
        parts: &Unwind,
    ) -> Result<(), InitError> {
        let Some(rt) = started.runtime.clone().filter(|_| self.notify.enabled) else {
            return Ok(());
        };
        let setup = NotificationSetup {
            providers: std::mem::take(&mut self.notify.providers),
            from_env: self.notify.providers_from_env,
            default: self.notify.default.take(),
            dead_letter_path: self.notify.dead_letter_path.take(),
            dead_letter_max_bytes: self.notify.dead_letter_max_bytes,
            dead_letter_store: self.notify.dead_letter_store.take(),
            retry: self.notify.retry.take(),
            dispatcher: self.notify.dispatcher,
            environment: r.environment.clone(),
            service_name: r.service_name.clone(),
            run_mode: r.run_mode,
        };
        let (service, dispatcher, location) = setup.start(&rt)?;
        parts.push(Delivery::new(&service, &dispatcher, &rt));
        started.dead_letters = location;
        if let Some(config) = self.notify.error_notifications.take() {
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
            let f = ErrorForwarder::start(&rt, service.clone(), config)
                .map_err(InitError::ErrorNotifications)?;
            let id = logger::add_output(ERROR_FORWARDER_OUTPUT, threshold, f.clone())?;
            // Closing its output hands the pending groups to the dispatcher.
            parts.push(
                AddedOutput::new(logger::hub(), id, "error forwarder")
                    .with_floor(Duration::from_millis(100)),
            );
            started.forwarder = Some(f);
        }
        started.notifications = Some(service);
        Ok(())
    }
}

impl Started {
    /// Makes the service and the forwarder `init()` started the process-wide ones.
    pub(crate) fn install_notifications(&self) {
        if let Some(s) = &self.notifications {
            install(s.clone());
        }
        if let Some(f) = &self.forwarder {
            install_forwarder(f.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_come_from_the_variables_that_are_set() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(providers_from_env(env(&[])).unwrap().is_empty());
        let regs = providers_from_env(env(&[
            ("WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("NTFY_URL", "http://127.0.0.1:9/alerts"),
            ("SLACK_WEBHOOK_URL", " "),
            (
                "ALERTMANAGER_URL",
                "http://127.0.0.1:9, http://127.0.0.1:10/am/",
            ),
            ("ALERTMANAGER_INSTANCE", "pod-1"),
        ]))
        .unwrap();
        let s = NotificationService::default();
        for r in regs {
            r(&s).unwrap();
        }
        assert_eq!(s.providers(), ["alertmanager", "ntfy", "webhook"]);
        let e = match providers_from_env(env(&[
            ("ALERTMANAGER_URL", "http://127.0.0.1:9"),
            ("ALERTMANAGER_TOKEN", "tok\nSECRET"),
        ])) {
            Err(e) => e,
            Ok(_) => panic!("a bad token is an error"),
        };
        assert_eq!(e.variable, "ALERTMANAGER_TOKEN");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = match providers_from_env(env(&[("ALERTMANAGER_URL", " , ")])) {
            Err(e) => e,
            Ok(_) => panic!("an empty list is an error"),
        };
        assert_eq!(e.variable, "ALERTMANAGER_URL");
        let e = match providers_from_env(env(&[
            ("ALERTMANAGER_URL", "https://127.0.0.1:9"),
            ("ALERTMANAGER_CA_FILE", "/nonexistent/ca.pem"),
        ])) {
            Err(e) => e,
            Ok(_) => panic!("a missing CA file is an error"),
        };
        assert_eq!(e.variable, "ALERTMANAGER_CA_FILE");
        let Err(e) = providers_from_env(env(&[("SLACK_WEBHOOK_URL", "not a url/T0/SECRET")]))
        else {
            panic!("a bad URL is an error");
        };
        assert!(
            e.to_string()
                .starts_with("SLACK_WEBHOOK_URL: slack webhook URL:"),
            "{e}"
        );
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = match providers_from_env(env(&[
            ("TEAMS_WEBHOOK_URL", "https://x.example/hook"),
            ("TEAMS_WEBHOOK_FORMAT", "card"),
        ])) {
            Err(e) => e,
            Ok(_) => panic!("a bad format is an error"),
        };
        assert_eq!(e.variable, "TEAMS_WEBHOOK_FORMAT");
    }
}
