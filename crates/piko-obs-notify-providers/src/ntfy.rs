//! ntfy: a topic on a server, with title, priority and tags headers.

use base64::Engine as _;
use piko_obs_notify::{
    Capabilities, Notification, Notifier, Priority, SendError, provider, truncate, truncate_bytes,
};

use crate::ConfigError;
use crate::http::{HttpClient, basic_auth, parse_url, redacted};

/// Publishes to an ntfy topic.
///
/// `POST <server>/<topic>` with headers `Title` (RFC 2047-encoded when not ASCII;
/// control characters removed, so a title cannot add a header), `Priority` (urgent,
/// high, default, low), `Tags` (rotating_light,fire / warning / bell), `Attach` (the
/// image), and `Authorization` (a bearer token or basic auth) when set. Body: the
/// message, the fields (`name: value` lines), and source and environment, in at most
/// 4096 bytes (ntfy's documented message limit; it turns longer messages into
/// attachments). The title is cut to 256 characters. Cuts end with `… [truncated]`.
#[derive(Clone)]
pub struct NtfyNotifier {
    http: HttpClient,
    url: reqwest::Url,
    auth: Option<http::HeaderValue>,
    /// The token, or `user:password` and the password, masked in an error's excerpt
    /// (the `Authorization` header itself is masked in any case).
    redact: Vec<String>,
}

impl std::fmt::Debug for NtfyNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtfyNotifier")
            .field("url", &redacted(&self.url))
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

const MAX_BODY: usize = 4096;
/// The longest title sent, in characters (ntfy documents none; a header is best kept
/// short).
const MAX_TITLE: usize = 256;

/// A header value with no control characters, RFC 2047-encoded if not ASCII.
fn header_text(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.is_ascii() {
        clean
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(clean.as_bytes())
        )
    }
}

impl NtfyNotifier {
    /// A notifier for `topic` on the server at `server` (`https://ntfy.sh`).
    pub fn new(http: &HttpClient, server: &str, topic: &str) -> Result<NtfyNotifier, ConfigError> {
        let topic = topic.trim().trim_matches('/');
        if topic.is_empty() || topic.contains('/') {
            return Err(ConfigError::new(
                "ntfy topic",
                "must be one non-empty path segment, such as alerts",
            ));
        }
        let mut url = parse_url("ntfy server URL", server)?;
        url.path_segments_mut()
            .map_err(|()| {
                ConfigError::new("ntfy server URL", "must be an http:// or https:// URL")
            })?
            .pop_if_empty()
            .push(topic);
        Ok(NtfyNotifier {
            http: http.clone(),
            url,
            auth: None,
            redact: Vec::new(),
        })
    }

    /// A notifier from one URL naming server and topic (`https://ntfy.sh/alerts`).
    pub fn from_topic_url(http: &HttpClient, url: &str) -> Result<NtfyNotifier, ConfigError> {
        let parsed = parse_url("ntfy URL", url)?;
        let topic = parsed
            .path_segments()
            .and_then(|mut s| s.rfind(|x| !x.is_empty()).map(str::to_string))
            .ok_or_else(|| {
                ConfigError::new(
                    "ntfy URL",
                    "must end with the topic, as in https://ntfy.sh/alerts",
                )
            })?;
        let mut server = parsed.clone();
        if let Ok(mut segs) = server.path_segments_mut() {
            segs.pop_if_empty().pop();
        }
        NtfyNotifier::new(http, server.as_str(), &topic)
    }

    /// Authenticates with an access token.
    pub fn with_token(mut self, token: &str) -> Result<Self, ConfigError> {
        let mut v =
            http::HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                ConfigError::new(
                    "ntfy token",
                    "must be text without control characters or line breaks",
                )
            })?;
        v.set_sensitive(true);
        self.auth = Some(v);
        self.redact = vec![token.trim().to_string()];
        Ok(self)
    }

    /// Authenticates with a user and password.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Result<Self, ConfigError> {
        let (v, redact) = basic_auth("ntfy basic auth", user, password)?;
        self.auth = Some(v);
        self.redact = redact;
        Ok(self)
    }

    /// The request's headers for `n` (without authentication).
    pub fn headers(n: &Notification) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        let (priority, tags) = match n.context.priority {
            Priority::Critical => ("urgent", "rotating_light,fire"),
            Priority::High => ("high", "warning"),
            Priority::Normal => ("default", "bell"),
            Priority::Low => ("low", "bell"),
        };
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        let title = truncate(&n.content.title, MAX_TITLE);
        if let Ok(v) = http::HeaderValue::from_str(&header_text(&title)) {
            h.insert("Title", v);
        }
        h.insert("Priority", http::HeaderValue::from_static(priority));
        h.insert("Tags", http::HeaderValue::from_static(tags));
        if !n.content.image_url.is_empty()
            && let Ok(v) = http::HeaderValue::from_str(&header_text(&n.content.image_url))
        {
            h.insert("Attach", v);
        }
        h
    }

    /// The request's body for `n`.
    pub fn body(n: &Notification) -> String {
        let mut s = n.content.message.clone();
        if !n.content.fields.is_empty() {
            s.push_str("\n\n");
            for (k, v) in n.content.fields.iter() {
                s.push_str(&format!("{k}: {v}\n"));
            }
        }
        let x = &n.context;
        if !x.source.is_empty() || !x.environment.is_empty() {
            s.push_str("\n---\n");
            if !x.source.is_empty() {
                s.push_str(&format!("Source: {}\n", x.source));
            }
            if !x.environment.is_empty() {
                s.push_str(&format!("Environment: {}\n", x.environment));
            }
        }
        truncate_bytes(&s, MAX_BODY).into_owned()
    }
}

impl Notifier for NtfyNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let mut headers = NtfyNotifier::headers(n);
        if let Some(auth) = &self.auth {
            headers.insert(http::header::AUTHORIZATION, auth.clone());
        }
        self.http
            .post(
                provider::NTFY,
                &self.url,
                headers,
                NtfyNotifier::body(n).into_bytes(),
                &self.redact,
            )
            .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(MAX_BODY).images(true)
    }
}
