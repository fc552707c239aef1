//! Notification providers for piko-obs, each implementing the [`Notifier`] port of
//! `piko-obs-notify`, and the durable dead-letter file.
//!
//! - [`SlackNotifier`] (Block Kit), [`DiscordNotifier`] (embeds, priority colours),
//!   [`PagerDutyNotifier`] (Events API v2: trigger, acknowledge, resolve),
//!   [`TeamsNotifier`] (Workflows Adaptive Card, or the legacy MessageCard),
//!   [`GoogleChatNotifier`] (cardsV2), [`NtfyNotifier`] (token or basic auth, RFC 2047
//!   titles), [`WebhookNotifier`] (JSON, custom headers, Standard Webhooks signing),
//!   [`StdoutNotifier`] (human or JSON);
//! - [`HttpClient`]: one rustls client shared by the HTTP providers, with connect and
//!   total timeouts and a cap on answers;
//! - [`FileDeadLetterStore`]: JSON lines, fsync'd, mode 0600.
//!
//! Every provider cuts text to its platform's documented limits with a visible marker,
//! and keeps its URL, token or routing key out of `Debug` and errors.
//!
//! ```
//! use piko_obs_notify::NotificationService;
//! use piko_obs_notify_providers::{HttpClient, WebhookNotifier};
//! let http = HttpClient::new().unwrap();
//! let hook = WebhookNotifier::new(&http, "https://alerts.example.com/hook")
//!     .unwrap()
//!     .with_header("X-Team", "payments")
//!     .unwrap()
//!     .with_signing_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//!     .unwrap();
//! assert!(!format!("{hook:?}").contains("/hook"));
//! let service = NotificationService::default();
//! service.register("webhook", hook).unwrap();
//! ```
//!
//! Feature flags (all on by default): `slack`, `discord`, `pagerduty`, `teams`,
//! `googlechat`, `ntfy`, `webhook`, `stdout`.

#[cfg(feature = "_http")]
mod http;
#[cfg(feature = "_http")]
pub use http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, HttpClient, MAX_ANSWER_BYTES};

mod dead_letter;
pub use dead_letter::{FileDeadLetterStore, default_dead_letter_path};

#[cfg(feature = "discord")]
mod discord;
#[cfg(feature = "discord")]
pub use discord::DiscordNotifier;
#[cfg(feature = "googlechat")]
mod googlechat;
#[cfg(feature = "googlechat")]
pub use googlechat::GoogleChatNotifier;
#[cfg(feature = "ntfy")]
mod ntfy;
#[cfg(feature = "ntfy")]
pub use ntfy::NtfyNotifier;
#[cfg(feature = "pagerduty")]
mod pagerduty;
#[cfg(feature = "pagerduty")]
pub use pagerduty::{EU_EVENTS_URL, EVENTS_URL, PagerDutyNotifier};
#[cfg(feature = "slack")]
mod slack;
#[cfg(feature = "slack")]
pub use slack::SlackNotifier;
#[cfg(feature = "stdout")]
mod stdout;
#[cfg(feature = "stdout")]
pub use stdout::{StdoutFormat, StdoutNotifier};
#[cfg(feature = "teams")]
mod teams;
#[cfg(feature = "teams")]
pub use teams::{TeamsFormat, TeamsNotifier};
#[cfg(feature = "webhook")]
mod webhook;
#[cfg(feature = "webhook")]
pub use webhook::WebhookNotifier;

pub use piko_obs_notify::Notifier;

/// A provider setting that cannot work; names the setting and how to fix it, and never
/// holds the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl ConfigError {
    #[cfg_attr(not(feature = "_http"), allow(dead_code))]
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }
}

/// The text of a notification's timestamp: RFC 3339 in UTC, to the second.
#[cfg(any(feature = "discord", feature = "pagerduty"))]
pub(crate) fn utc_seconds(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
