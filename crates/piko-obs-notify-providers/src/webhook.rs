//! The generic webhook: Piko's flat JSON body, custom headers checked when they are
//! set, and optional signing in the Standard Webhooks format.

use std::time::SystemTime;

use base64::Engine as _;
use hmac::Mac as _;
use piko_obs_notify::{Capabilities, Notification, Notifier, SendError, provider};

use crate::ConfigError;
use crate::http::{HttpClient, json_headers, parse_url, redacted};

/// Posts each notification as JSON to a URL.
///
/// Body, in order: `timestamp` (RFC 3339, UTC), `priority`, `source`, `environment`,
/// `service` and `trace_id` (left out when empty), `title`, `message`, `fields` (in
/// order; left out when empty), `image_url` (left out when empty). Each request carries
/// `webhook-id` ([`message_id`](WebhookNotifier::message_id)): the same for every
/// attempt at one notification, including retries and replays from the dead-letter
/// file, so a receiver can drop the duplicates of at-least-once delivery. With a
/// signing secret, it also carries `webhook-timestamp` (the time of the attempt) and
/// `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, as the
/// Standard Webhooks format has it. The message is cut to 100,000 characters.
#[derive(Clone)]
pub struct WebhookNotifier {
    http: HttpClient,
    url: reqwest::Url,
    headers: http::HeaderMap,
    secret: Option<Vec<u8>>,
    /// The signing secret as given (and its base64 part), masked in an error's excerpt
    /// should an answer ever carry it; the custom headers are marked sensitive, which
    /// masks them too.
    redact: Vec<String>,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("url", &redacted(&self.url))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

/// The longest message sent.
const MAX_MESSAGE: usize = 100_000;

impl WebhookNotifier {
    /// A webhook to `url` (http or https).
    pub fn new(http: &HttpClient, url: &str) -> Result<WebhookNotifier, ConfigError> {
        Ok(WebhookNotifier {
            http: http.clone(),
            url: parse_url("webhook URL", url)?,
            headers: json_headers(),
            secret: None,
            redact: Vec::new(),
        })
    }

    /// Adds a header to every request (it may replace `Content-Type`). A name or value
    /// that is not valid in HTTP (a line break, say) is an error.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, ConfigError> {
        let name = http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            ConfigError::new(
                "webhook header name",
                "must be a valid HTTP header name (letters, digits, '-')",
            )
        })?;
        let mut value = http::HeaderValue::from_str(value).map_err(|_| {
            ConfigError::new(
                "webhook header value",
                format!("for {name}: must be text without control characters or line breaks"),
            )
        })?;
        value.set_sensitive(true);
        self.headers.insert(name, value);
        Ok(self)
    }

    /// Signs every request with `secret` in the Standard Webhooks format. A secret of
    /// the form `whsec_<base64>` is decoded; any other text is used as bytes.
    pub fn with_signing_secret(mut self, secret: &str) -> Result<Self, ConfigError> {
        let key = match secret.strip_prefix("whsec_") {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| {
                    ConfigError::new(
                        "webhook signing secret",
                        "the part after whsec_ must be base64",
                    )
                })?,
            None => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(ConfigError::new(
                "webhook signing secret",
                "must not be empty",
            ));
        }
        self.secret = Some(key);
        self.redact = std::iter::once(secret)
            .chain(secret.strip_prefix("whsec_"))
            .map(str::to_string)
            .collect();
        Ok(self)
    }

    /// The JSON body for `n`.
    pub fn body(n: &Notification) -> serde_json::Value {
        let c = &n.context;
        let mut m = serde_json::Map::new();
        m.insert(
            "timestamp".into(),
            chrono::DateTime::<chrono::Utc>::from(c.timestamp)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .into(),
        );
        m.insert("priority".into(), c.priority.as_str().into());
        m.insert("source".into(), c.source.clone().into());
        if !c.environment.is_empty() {
            m.insert("environment".into(), c.environment.clone().into());
        }
        if !c.service.is_empty() {
            m.insert("service".into(), c.service.clone().into());
        }
        if !c.trace_id.is_empty() {
            m.insert("trace_id".into(), c.trace_id.clone().into());
        }
        m.insert("title".into(), n.content.title.clone().into());
        m.insert(
            "message".into(),
            piko_obs_notify::truncate(&n.content.message, MAX_MESSAGE)
                .into_owned()
                .into(),
        );
        if !n.content.fields.is_empty() {
            let fields: serde_json::Map<String, serde_json::Value> = n
                .content
                .fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            m.insert("fields".into(), fields.into());
        }
        if !n.content.image_url.is_empty() {
            m.insert("image_url".into(), n.content.image_url.clone().into());
        }
        serde_json::Value::Object(m)
    }

    /// The `webhook-id` of `n`: `msg_` and its [id](piko_obs_notify::Context::id)
    /// (without its `ntf_` prefix), the same on every attempt and after a replay from
    /// the dead-letter file. An id that is not 1 to 200 letters, digits, `_` or `-` is
    /// replaced by the hex SHA-256 of it; an empty one by that of `body`.
    pub fn message_id(n: &Notification, body: &[u8]) -> String {
        use sha2::Digest as _;
        let id = n.context.id.as_str();
        let safe = |s: &str| {
            (1..=200).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        let hex = |bytes: &[u8]| -> String {
            sha2::Sha256::digest(bytes)
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        if safe(id) {
            format!("msg_{}", id.strip_prefix("ntf_").unwrap_or(id))
        } else if id.is_empty() {
            format!("msg_{}", hex(body))
        } else {
            format!("msg_{}", hex(id.as_bytes()))
        }
    }

    /// The Standard Webhooks signature of `body`: `v1,<base64>` (`None` only for a key
    /// HMAC refuses, which it never does).
    pub fn signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> Option<String> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).ok()?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        Some(format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        ))
    }
}

impl Notifier for WebhookNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let body = serde_json::to_vec(&WebhookNotifier::body(n))
            .map_err(|e| SendError::Rejected(format!("webhook: cannot encode: {e}")))?;
        let mut headers = self.headers.clone();
        let id = WebhookNotifier::message_id(n, &body);
        if let Ok(v) = http::HeaderValue::from_str(&id) {
            headers.insert(http::HeaderName::from_static("webhook-id"), v);
        }
        if let Some(key) = &self.secret {
            let ts = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let sig = WebhookNotifier::signature(key, &id, ts, &body)
                .ok_or_else(|| SendError::Rejected("webhook: cannot sign the body".into()))?;
            for (name, value) in [
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", sig),
            ] {
                if let Ok(v) = http::HeaderValue::from_str(&value) {
                    headers.insert(http::HeaderName::from_static(name), v);
                }
            }
        }
        self.http
            .post(provider::WEBHOOK, &self.url, headers, body, &self.redact)
            .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(MAX_MESSAGE).images(true)
    }
}
