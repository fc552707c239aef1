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

/// The error forwarder `init()` set up
/// ([`crate::Builder::with_error_notifications`](crate::Builder::with_error_notifications)),
/// if it did.
pub use piko_obs_error_alerts::setup::global::error_forwarder;
pub use piko_obs_error_alerts::setup::{ForwarderSetup, ForwarderSetupError};
pub use piko_obs_error_alerts::*;
pub use piko_obs_notify::{telemetry, *};
pub use piko_obs_notify_providers::setup::global::{builder, service};
pub use piko_obs_notify_providers::{setup, *};

use piko_obs_lifecycle::Unwind;

use crate::start::{Resolved, Started};
use crate::{Builder, InitError, RunMode};

/// The trace id of the current OpenTelemetry span, if one is being recorded.
fn current_trace_id() -> Option<String> {
    #[cfg(feature = "otlp")]
    return crate::otlp::current_span_ids().map(|(trace_id, _)| trace_id);
    #[cfg(not(feature = "otlp"))]
    None
}

/// The message of [`InitError::Notification`]: the setup's error, naming the builder
/// option (or the variable) to change.
pub(crate) fn setup_message(e: &SetupError) -> String {
    let (store, path) = (
        "with_notification_dead_letter_store",
        "with_notification_dead_letter_path",
    );
    match e {
        SetupError::Provider(e) => format!("with_notification_provider: {e}"),
        SetupError::DefaultProvider(e) => format!("with_default_notification_provider: {e}"),
        SetupError::StoreAndFile => format!(
            "{store} replaces the dead-letter file: drop {path} and with_notification_dead_letter_max_bytes, or the store"
        ),
        SetupError::DeadLetterFile {
            in_code,
            path: file,
            source,
        } => {
            let setting = if *in_code {
                path
            } else {
                PIKO_NOTIFICATION_DEAD_LETTER_PATH
            };
            let file = file.display();
            format!(
                "{setting}: notification dead-letter file {file}: {source}; set {setting} to a writable path"
            )
        }
        SetupError::Runtime(e) => format!("cannot start the piko-obs runtime: {e}"),
        e => e.to_string(),
    }
}

impl From<ForwarderSetupError> for InitError {
    fn from(e: ForwarderSetupError) -> Self {
        match e {
            ForwarderSetupError::Config(e) => InitError::ErrorNotifications(e),
            ForwarderSetupError::UnknownProvider(p) => InitError::ErrorNotificationsProvider(p),
            ForwarderSetupError::WithoutNotifications => {
                InitError::ErrorNotificationsWithoutNotifications
            }
            ForwarderSetupError::Output(e) => InitError::Output(e),
        }
    }
}

impl Builder {
    delegate! { notify:
        /// Whether to set up the notification service and its dispatcher (default on).
        fn with_notifications_enabled(on: bool) => with_enabled(on);
        /// Registers a notification provider under `name` (a name used twice fails
        /// `init()`). The first registered is the default, unless
        /// [`with_default_notification_provider`](Self::with_default_notification_provider)
        /// names another; with none at all, `stdout` is registered.
        fn with_notification_provider(name: impl Into<String>, provider: impl Notifier) => with_provider(name, provider);
        /// Also registers a provider for each variable of
        /// [`ENV_PROVIDERS`] that is set; a bad value fails `init()` naming
        /// the variable.
        fn with_notification_providers_from_env() => with_providers_from_env();
        /// The default notification provider (it must be registered).
        fn with_default_notification_provider(name: impl Into<String>) => with_default_provider(name);
        /// The dead-letter file (default: `PIKO_NOTIFICATION_DEAD_LETTER_PATH`, else
        /// [`default_dead_letter_path`]; with neither, `init()` fails rather than
        /// use the working directory). It must be writable: `init()` opens it.
        fn with_notification_dead_letter_path(path: impl Into<std::path::PathBuf>) => with_dead_letter_path(path);
        /// The most bytes the dead-letter file holds (default
        /// [`DEFAULT_MAX_BYTES`], 256 MiB); past it, new dead letters are
        /// refused, counted in `piko_obs_notifications_dead_letter_errors_total` and printed
        /// to stderr, until a replay or an operator empties it.
        fn with_notification_dead_letter_max_bytes(max: std::num::NonZeroU64) => with_dead_letter_max_bytes(max);
        /// A dead-letter store of your own (a database, a queue), in place of the file:
        /// it implements [`DeadLetterStore`]. It cannot be combined with
        /// `with_notification_dead_letter_path` or `with_notification_dead_letter_max_bytes`
        /// (`init()` fails, naming them); `PIKO_NOTIFICATION_DEAD_LETTER_PATH` is then not
        /// read.
        fn with_notification_dead_letter_store(store: impl DeadLetterStore) => with_dead_letter_store(store);
        /// How notifications are retried (default [`RetryPolicy`]).
        fn with_notification_retry_policy(policy: RetryPolicy) => with_retry_policy(policy);
        /// The dispatcher's queue and workers.
        fn with_notification_dispatcher(config: DispatcherConfig) => with_dispatcher(config);
    }
    delegate! { error_notifications:
        /// Forwards log lines at or above the config's threshold (default ERROR) to the
        /// notification service as grouped alerts: one alert per message and call site per
        /// window (default 10 s) with the count, at most a set number of alerts a minute.
        /// Alerts go to every registered provider unless the config names some
        /// ([`ErrorForwarderConfig::with_providers`](ErrorForwarderConfig::with_providers)).
        /// Needs notifications on. Pending groups are sent at shutdown.
        fn with_error_notifications(config: ErrorForwarderConfig) => with_config(config);
    }
}

impl Builder {
    /// The notification service with its dispatcher, and the error forwarder.
    pub(crate) fn start_notifications(
        &mut self,
        r: &Resolved,
        started: &mut Started,
        parts: &Unwind,
    ) -> Result<(), InitError> {
        let Some(rt) = started.runtime.clone().filter(|_| self.notify.enabled()) else {
            return Ok(());
        };
        let format = match r.service.run_mode {
            RunMode::Prod => StdoutFormat::Json,
            RunMode::Dev => StdoutFormat::Human,
        };
        let n = std::mem::take(&mut self.notify)
            .with_service(r.service.service_name.clone())
            .with_environment(r.service.identity.environment.clone())
            .with_stdout_format(format)
            .with_trace_id_source(current_trace_id)
            .start_part(&rt, parts)?;
        started.show("alert_providers", n.service.providers().join(","));
        started.show("dead_letters", n.dead_letters.clone());
        let errors = std::mem::take(&mut self.error_notifications);
        let forwarder = errors.start_part(&rt, &n.service, parts)?;
        started.installs.push(Box::new(move || n.install()));
        if let Some(forwarder) = forwarder {
            started.installs.push(Box::new(move || forwarder.install()));
        }
        Ok(())
    }
}
