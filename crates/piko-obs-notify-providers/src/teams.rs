//! Microsoft Teams: Workflows webhooks with an Adaptive Card, or the legacy
//! Office 365 connector MessageCard.

use piko_obs_notify::{Capabilities, Notification, Notifier, Priority, SendError, truncate};
use serde_json::{Value, json};

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};
use crate::limits;

/// Which Teams webhook the URL is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TeamsFormat {
    /// A Power Automate Workflows webhook: an Adaptive Card (the default; Microsoft
    /// retired the connectors).
    #[default]
    Workflows,
    /// A legacy Office 365 connector: a MessageCard.
    MessageCard,
}

/// Posts to a Teams webhook. Any 2xx is success (Workflows answer 202).
///
/// Adaptive Card (version 1.4): the title (bold, coloured by priority), the message,
/// a fact set (priority, source, environment, service, trace id, then the fields in
/// order) and the image. MessageCard: Piko's layout (theme colour by priority, one
/// section with the title, message and facts).
///
/// Limits: Teams refuses a message over 28 KB, so the whole JSON body is kept within
/// [`MAX_PAYLOAD_BYTES`](TeamsNotifier::MAX_PAYLOAD_BYTES) (27,000 bytes, counted
/// after JSON escaping). Within it, the title is cut to 256 characters, fact names to
/// 256 and values to 1,024, the message to 20,000 characters and then to the room
/// left; when the fields do not all fit, the last ones are left out and a fact
/// `… [truncated]: N more fields not shown` says so. An image URL over 2,048 bytes is
/// left out (a cut URL would point elsewhere). Every cut ends with `… [truncated]`.
#[derive(Clone)]
pub struct TeamsNotifier {
    http: HttpClient,
    url: reqwest::Url,
    format: TeamsFormat,
}

impl std::fmt::Debug for TeamsNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamsNotifier")
            .field("url", &redacted(&self.url))
            .field("format", &self.format)
            .finish()
    }
}

const MAX_MESSAGE: usize = 20_000;
const MAX_TITLE: usize = 256;
const MAX_FACT_NAME: usize = 256;
const MAX_FACT_VALUE: usize = 1024;
const MAX_IMAGE_URL_BYTES: usize = 2048;
/// What the message keeps at least before fields are left out.
const MESSAGE_FLOOR_BYTES: usize = 8_000;

/// A fact cut to its limits, in characters and in bytes of JSON (four times as many),
/// so that the title, the context facts and the note always fit, whatever the text.
fn fact(k: &str, v: &str) -> (String, String) {
    (
        limits::cut(k, MAX_FACT_NAME, 4 * MAX_FACT_NAME),
        limits::cut(v, MAX_FACT_VALUE, 4 * MAX_FACT_VALUE),
    )
}

/// The context facts, then the first `k` fields, then the note for the others.
fn facts(n: &Notification, k: usize) -> Vec<(String, String)> {
    let x = &n.context;
    let mut f = vec![fact("Priority", x.priority.as_str())];
    f.extend(x.labelled().map(|(name, v)| fact(name, v)));
    f.extend(n.content.fields.iter().take(k).map(|(k, v)| fact(k, v)));
    let total = n.content.fields.len();
    if k < total {
        f.push((
            limits::FIELDS_MARKER.to_string(),
            limits::fields_left_out(total - k),
        ));
    }
    f
}

impl TeamsNotifier {
    /// The most bytes of JSON a body has: under Teams' documented 28 KB per message,
    /// with room to spare for what Teams adds.
    pub const MAX_PAYLOAD_BYTES: usize = 27_000;

    /// A notifier for the webhook at `url`, in `format`.
    pub fn new(
        http: &HttpClient,
        url: &str,
        format: TeamsFormat,
    ) -> Result<TeamsNotifier, ConfigError> {
        Ok(TeamsNotifier {
            http: http.clone(),
            url: parse_url("teams webhook URL", url)?,
            format,
        })
    }

    /// The JSON body for `n` in `format`, at most
    /// [`MAX_PAYLOAD_BYTES`](Self::MAX_PAYLOAD_BYTES) long.
    pub fn body(n: &Notification, format: TeamsFormat) -> Value {
        let message = truncate(&n.content.message, MAX_MESSAGE);
        limits::fit(
            Self::MAX_PAYLOAD_BYTES,
            &message,
            n.content.fields.len(),
            MESSAGE_FLOOR_BYTES,
            |message, k| TeamsNotifier::render(n, format, message, k),
        )
    }

    fn render(n: &Notification, format: TeamsFormat, message: &str, k: usize) -> Value {
        let c = &n.content;
        let title = limits::cut(&c.title, MAX_TITLE, 4 * MAX_TITLE);
        let image = (!c.image_url.is_empty()
            && limits::json_len(&c.image_url) <= MAX_IMAGE_URL_BYTES)
            .then_some(c.image_url.as_str());
        match format {
            TeamsFormat::Workflows => {
                let color = match n.context.priority {
                    Priority::Critical => "Attention",
                    Priority::High => "Warning",
                    _ => "Default",
                };
                let mut body = Vec::new();
                if !title.is_empty() {
                    body.push(
                        json!({"type": "TextBlock", "text": title, "weight": "Bolder",
                        "size": "Large", "color": color, "wrap": true}),
                    );
                }
                if !message.is_empty() {
                    body.push(json!({"type": "TextBlock", "text": message, "wrap": true}));
                }
                let facts: Vec<Value> = facts(n, k)
                    .into_iter()
                    .map(|(k, v)| json!({"title": k, "value": v}))
                    .collect();
                body.push(json!({"type": "FactSet", "facts": facts}));
                if let Some(url) = image {
                    body.push(
                        json!({"type": "Image", "url": url, "altText": "notification image"}),
                    );
                }
                json!({
                    "type": "message",
                    "attachments": [{
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": null,
                        "content": {
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard",
                            "version": "1.4",
                            "body": body,
                        }
                    }]
                })
            }
            TeamsFormat::MessageCard => {
                let (theme, heading) = match n.context.priority {
                    Priority::Critical => ("FF0000", "🚨 Critical Notification"),
                    Priority::High => ("FFA500", "⚠️ High Priority Notification"),
                    Priority::Normal => ("0078D4", "📢 Notification"),
                    Priority::Low => ("808080", "📢 Notification"),
                };
                let mut section = json!({
                    "facts": facts(n, k).into_iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                    "markdown": true,
                });
                if !title.is_empty() {
                    section["activityTitle"] = title.clone().into();
                }
                if !message.is_empty() {
                    section["activitySubtitle"] = message.into();
                }
                let mut card = json!({
                    "@type": "MessageCard",
                    "@context": "http://schema.org/extensions",
                    "themeColor": theme,
                    "title": heading,
                    "sections": [section],
                });
                if !title.is_empty() {
                    card["summary"] = title.into();
                }
                card
            }
        }
    }
}

impl Notifier for TeamsNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.http
            .post_json("teams", &self.url, &TeamsNotifier::body(n, self.format))
            .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(MAX_MESSAGE)
            .rich_text(true)
            .images(self.format == TeamsFormat::Workflows)
    }
}
