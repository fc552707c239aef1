//! PagerDuty Events API v2: trigger, acknowledge and resolve.

use piko_obs_notify::{Capabilities, Notification, Notifier, Priority, SendError, provider};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};
use crate::limits;

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
///
/// Limits (Events API v2): `summary` 1024 characters, `dedup_key` 255, and the whole
/// event at most [`MAX_EVENT_BYTES`](PagerDutyNotifier::MAX_EVENT_BYTES) (PagerDuty
/// refuses events over 512 KB). Within it, `source` and `component` are cut to 255
/// characters, title, environment, service and trace id in `custom_details` to 1024,
/// field names to 256 and values to 16,384, and the message to the room left; when the
/// fields do not all fit, the last ones are left out and an entry `… [truncated]: N
/// more fields not shown` says so. An image URL over 2,048 bytes is left out. Every
/// cut ends with `… [truncated]`.
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

const MAX_SUMMARY: usize = 1024;
const MAX_DEDUP_KEY: usize = 255;
const MAX_SOURCE: usize = 255;
const MAX_DETAIL: usize = 1024;
const MAX_FIELD_NAME: usize = 256;
const MAX_FIELD_VALUE: usize = 16_384;
const MAX_IMAGE_URL_BYTES: usize = 2048;
/// What the message keeps at least before fields are left out.
const MESSAGE_FLOOR_BYTES: usize = 64 * 1024;
/// Room left in [`PagerDutyNotifier::event`] for the routing key (255 characters,
/// escaped, and its name).
const ROUTING_KEY_ROOM: usize = 17 + 6 * 255;

impl PagerDutyNotifier {
    /// The most bytes of JSON an event has, routing key included: under the 512 KB
    /// PagerDuty documents as the Events API v2 payload limit, however a KB is counted.
    pub const MAX_EVENT_BYTES: usize = 512_000;

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

    /// The event for `n`, without the routing key: at most
    /// [`MAX_EVENT_BYTES`](Self::MAX_EVENT_BYTES) once a routing key of up to 255
    /// characters is added.
    pub fn event(n: &Notification) -> Result<Value, SendError> {
        PagerDutyNotifier::event_within(n, Self::MAX_EVENT_BYTES - ROUTING_KEY_ROOM)
    }

    /// The event for `n` in at most `budget` bytes of JSON.
    fn event_within(n: &Notification, budget: usize) -> Result<Value, SendError> {
        let action = n.provider_options.get("event_action").unwrap_or("trigger");
        if !matches!(action, "trigger" | "acknowledge" | "resolve") {
            return Err(SendError::Rejected(format!(
                "pagerduty: event_action {action:?} is not trigger, acknowledge or resolve"
            )));
        }
        let dedup = n.provider_options.get("dedup_key").map_or_else(
            || PagerDutyNotifier::dedup_key(n),
            |k| limits::cut(k, MAX_DEDUP_KEY, 4 * MAX_DEDUP_KEY),
        );
        let event = json!({"event_action": action, "dedup_key": dedup});
        if action != "trigger" {
            return Ok(event);
        }
        let message = &n.content.message;
        let body = limits::fit(
            budget,
            message,
            n.content.fields.len(),
            MESSAGE_FLOOR_BYTES,
            |m, k| {
                let mut e = event.clone();
                PagerDutyNotifier::trigger(n, m, k, &mut e);
                e
            },
        );
        Ok(body)
    }

    /// Fills in a trigger's payload and images, with `message` as the message and the
    /// first `k` fields (and a note for the others).
    fn trigger(n: &Notification, message: &str, k: usize, event: &mut Value) {
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
        for (key, v) in [
            ("title", c.title.as_str()),
            ("message", message),
            ("environment", &x.environment),
            ("service", &x.service),
            ("trace_id", &x.trace_id),
        ] {
            if !v.is_empty() {
                let v = if key == "message" {
                    v.to_string()
                } else {
                    limits::cut(v, MAX_DETAIL, 4 * MAX_DETAIL)
                };
                details.insert(key.into(), v.into());
            }
        }
        details.insert("priority".into(), x.priority.as_str().into());
        if !c.fields.is_empty() {
            let mut fields: serde_json::Map<String, Value> = c
                .fields
                .iter()
                .take(k)
                .map(|(k, v)| {
                    (
                        limits::cut(k, MAX_FIELD_NAME, 4 * MAX_FIELD_NAME),
                        limits::cut(v, MAX_FIELD_VALUE, 4 * MAX_FIELD_VALUE).into(),
                    )
                })
                .collect();
            if k < c.fields.len() {
                fields.insert(
                    limits::FIELDS_MARKER.into(),
                    limits::fields_left_out(c.fields.len() - k).into(),
                );
            }
            details.insert("fields".into(), fields.into());
        }
        let mut payload = json!({
            "summary": limits::cut(summary, MAX_SUMMARY, 4 * MAX_SUMMARY),
            "source": limits::cut(source, MAX_SOURCE, 4 * MAX_SOURCE),
            "severity": PagerDutyNotifier::severity(x.priority),
            "timestamp": crate::utc_seconds(x.timestamp),
            "custom_details": details,
        });
        if !x.source.is_empty() {
            payload["component"] = limits::cut(&x.source, MAX_SOURCE, 4 * MAX_SOURCE).into();
        }
        event["payload"] = payload;
        if !c.image_url.is_empty() && limits::json_len(&c.image_url) <= MAX_IMAGE_URL_BYTES {
            event["images"] = json!([{"src": c.image_url}]);
        }
    }
}

impl Notifier for PagerDutyNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        // `,"routing_key":"<key>"` is added to the event.
        let key = 17 + limits::json_len(&self.routing_key);
        let budget = PagerDutyNotifier::MAX_EVENT_BYTES.saturating_sub(key);
        let mut event = PagerDutyNotifier::event_within(n, budget)?;
        event["routing_key"] = self.routing_key.clone().into();
        // The routing key travels in the body: an answer echoing it has it masked.
        self.http
            .post_json(
                provider::PAGERDUTY,
                &self.url,
                &event,
                std::slice::from_ref(&self.routing_key),
            )
            .await
    }

    /// No message limit for the service to cut to: the 1024 characters are the
    /// `summary`'s, which [`event`](PagerDutyNotifier::event) cuts, and the message in
    /// `custom_details` takes the room left in [`MAX_EVENT_BYTES`](Self::MAX_EVENT_BYTES),
    /// which `send` fits it to.
    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(0).images(true)
    }
}
