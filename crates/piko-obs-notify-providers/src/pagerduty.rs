//! PagerDuty Events API v2: trigger, acknowledge and resolve.

use piko_obs_notify::{Capabilities, Notification, Notifier, Priority, SendError, truncate};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};

/// The US events endpoint (the default).
pub const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// The EU events endpoint.
pub const EU_EVENTS_URL: &str = "https://events.eu.pagerduty.com/v2/enqueue";

/// Sends events to PagerDuty.
///
/// The provider options of a notification choose the event: `event_action` (`trigger`,
/// the default, `acknowledge` or `resolve`) and `dedup_key` (default: a SHA-256 of
/// title and source, so the same alert updates one incident). A trigger carries
/// `summary` (title, else message; 1024 characters), `source` (the notification's
/// source, else its service, else `piko-obs`), `severity` (critical, error, warning,
/// info from the priority), `timestamp`, `component`, `custom_details` (message,
/// title, priority, environment, service, trace id, and the fields under `fields`, so
/// none overwrites the others), and the image.
#[derive(Clone)]
pub struct PagerDutyNotifier {
    http: HttpClient,
    url: reqwest::Url,
    routing_key: String,
}

impl std::fmt::Debug for PagerDutyNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutyNotifier")
            .field("url", &redacted(&self.url))
            .field("routing_key", &"<redacted>")
            .finish()
    }
}

impl PagerDutyNotifier {
    /// A notifier for the integration with `routing_key`, to [`EVENTS_URL`].
    pub fn new(http: &HttpClient, routing_key: &str) -> Result<PagerDutyNotifier, ConfigError> {
        let key = routing_key.trim();
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new(
                "pagerduty routing key",
                "must be the 32-character integration key, with no spaces",
            ));
        }
        Ok(PagerDutyNotifier {
            http: http.clone(),
            url: parse_url("pagerduty events URL", EVENTS_URL)?,
            routing_key: key.to_string(),
        })
    }

    /// Sends to another events endpoint ([`EU_EVENTS_URL`], or a proxy).
    pub fn with_events_url(mut self, url: &str) -> Result<Self, ConfigError> {
        self.url = parse_url("pagerduty events URL", url)?;
        Ok(self)
    }

    /// The severity of a priority.
    pub fn severity(p: Priority) -> &'static str {
        match p {
            Priority::Critical => "critical",
            Priority::High => "error",
            Priority::Normal => "warning",
            Priority::Low => "info",
        }
    }

    /// The default dedup key: hex SHA-256 of title and source, 32 characters.
    pub fn dedup_key(n: &Notification) -> String {
        let mut h = sha2::Sha256::new();
        h.update(n.content.title.as_bytes());
        h.update([0x1f]);
        h.update(n.context.source.as_bytes());
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The event for `n`, without the routing key.
    pub fn event(n: &Notification) -> Result<Value, SendError> {
        let action = n.provider_options.get("event_action").unwrap_or("trigger");
        if !matches!(action, "trigger" | "acknowledge" | "resolve") {
            return Err(SendError::Rejected(format!(
                "pagerduty: event_action {action:?} is not trigger, acknowledge or resolve"
            )));
        }
        let dedup = n.provider_options.get("dedup_key").map_or_else(
            || PagerDutyNotifier::dedup_key(n),
            |k| truncate(k, 255).into_owned(),
        );
        let mut event = json!({"event_action": action, "dedup_key": dedup});
        if action != "trigger" {
            return Ok(event);
        }
        let c = &n.content;
        let x = &n.context;
        let summary = if c.title.is_empty() {
            &c.message
        } else {
            &c.title
        };
        let source = [&x.source, &x.service]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or("piko-obs", |s| s.as_str());
        let mut details = serde_json::Map::new();
        for (k, v) in [
            ("title", &c.title),
            ("message", &c.message),
            ("environment", &x.environment),
            ("service", &x.service),
            ("trace_id", &x.trace_id),
        ] {
            if !v.is_empty() {
                details.insert(k.into(), v.clone().into());
            }
        }
        details.insert("priority".into(), x.priority.as_str().into());
        if !c.fields.is_empty() {
            let fields: serde_json::Map<String, Value> = c
                .fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            details.insert("fields".into(), fields.into());
        }
        let mut payload = json!({
            "summary": truncate(summary, 1024),
            "source": truncate(source, 255),
            "severity": PagerDutyNotifier::severity(x.priority),
            "timestamp": crate::utc_seconds(x.timestamp),
            "custom_details": details,
        });
        if !x.source.is_empty() {
            payload["component"] = x.source.clone().into();
        }
        event["payload"] = payload;
        if !c.image_url.is_empty() {
            event["images"] = json!([{"src": c.image_url}]);
        }
        Ok(event)
    }
}

impl Notifier for PagerDutyNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let mut event = PagerDutyNotifier::event(n)?;
        event["routing_key"] = self.routing_key.clone().into();
        self.http.post_json("pagerduty", &self.url, &event).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(1024).images(true)
    }
}
