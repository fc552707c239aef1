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

/// The error forwarder `init()` set up ([`Builder::with_error_notifications`](crate::Builder::with_error_notifications)), if it did.
pub fn error_forwarder() -> Option<ErrorForwarder> {
    FORWARDER.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Records the counters of the service, dispatcher, providers, error forwarder and
/// in-memory dead-letter store `init()` set up.
pub(crate) fn record_metrics() {
    if let Some(s) = service() {
        telemetry::record_metrics(&s);
    }
    if let Some(f) = error_forwarder() {
        telemetry::record_forwarder_metrics(&f);
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
    crate::otlp::current_span_ids().map(|(trace_id, _)| trace_id)
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
