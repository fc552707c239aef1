//! The names under which piko-obs registers its providers, as in Piko
//! (`notification.ProviderSlack` and its siblings).
//!
//! A provider's name is chosen when it is registered, not by the provider; these are
//! the names the facade uses for the providers it registers itself (from the
//! environment, and the stdout provider), so `to_providers([SLACK, PAGERDUTY])`
//! reaches them without string literals.
//!
//! ```
//! use piko_obs_notify::provider;
//! assert_eq!(provider::GOOGLE_CHAT, "googlechat");
//! assert_eq!(provider::ALL.len(), 9);
//! ```

/// Slack incoming webhooks.
pub const SLACK: &str = "slack";
/// Discord webhooks.
pub const DISCORD: &str = "discord";
/// PagerDuty Events API v2.
pub const PAGERDUTY: &str = "pagerduty";
/// Microsoft Teams webhooks.
pub const TEAMS: &str = "teams";
/// Google Chat space webhooks.
pub const GOOGLE_CHAT: &str = "googlechat";
/// ntfy topics.
pub const NTFY: &str = "ntfy";
/// Any webhook, with a JSON body.
pub const WEBHOOK: &str = "webhook";
/// Lines on the process's standard output.
pub const STDOUT: &str = "stdout";
/// Prometheus Alertmanager's API v2 (not one of Piko's).
pub const ALERTMANAGER: &str = "alertmanager";

/// The names above, in that order: Piko's eight, then Alertmanager.
pub const ALL: [&str; 9] = [
    SLACK,
    DISCORD,
    PAGERDUTY,
    TEAMS,
    GOOGLE_CHAT,
    NTFY,
    WEBHOOK,
    STDOUT,
    ALERTMANAGER,
];
