//! Microsoft Teams: Workflows webhooks with an Adaptive Card, or the legacy
//! Office 365 connector MessageCard.

use piko_obs_notify::{
    Capabilities, Notification, Notifier, Priority, SendError, provider, truncate,
};
use serde_json::{Value, json};

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};
use crate::limits::{self, BLANK_NAME, BLANK_VALUE, blank, or_blank};

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
///
/// Empty text: a blank title or message is left out (no empty `TextBlock`, no empty
/// `activityTitle` or `activitySubtitle`). A MessageCard always has a `summary`, which
/// connectors require when there is no `text`: the title, or else the message on one
/// line cut to 256 characters (whitespace runs become one space), or else the heading.
/// A blank fact name is sent as a zero-width space (`U+200B`, shown as no name), a
/// blank fact value as `-`.
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

/// The most characters of the MessageCard `summary` taken from the message.
const MAX_SUMMARY: usize = 256;

/// A fact cut to its limits, in characters and in bytes of JSON (four times as many),
/// so that the title, the context facts and the note always fit, whatever the text.
/// Neither name nor value is empty.
fn fact(k: &str, v: &str) -> (String, String) {
    (
        limits::cut(or_blank(k, BLANK_NAME), MAX_FACT_NAME, 4 * MAX_FACT_NAME),
        limits::cut(or_blank(v, BLANK_VALUE), MAX_FACT_VALUE, 4 * MAX_FACT_VALUE),
    )
}

/// The MessageCard `summary` when the title is blank: the message on one line, cut to
/// [`MAX_SUMMARY`] characters (and four times as many bytes of JSON, so that it
/// always fits); empty when the message is blank too.
fn summary_of(message: &str) -> String {
    let mut line = String::new();
    for word in message.split_whitespace() {
        if line.chars().count() > MAX_SUMMARY {
            break;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    limits::cut(&line, MAX_SUMMARY, 4 * MAX_SUMMARY)
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
        let message = truncate(or_blank(&n.content.message, ""), MAX_MESSAGE);
        // From the whole message, once: the message `fit` cuts may end up empty.
        let summary = match format {
            TeamsFormat::MessageCard if blank(&n.content.title) => summary_of(&n.content.message),
            _ => String::new(),
        };
        limits::fit(
            Self::MAX_PAYLOAD_BYTES,
            &message,
            n.content.fields.len(),
            MESSAGE_FLOOR_BYTES,
            |message, k| TeamsNotifier::render(n, format, message, &summary, k),
        )
    }

    /// The body with `message` and the first `k` fields; `summary` is the MessageCard
    /// summary to use when the title is blank.
    fn render(
        n: &Notification,
        format: TeamsFormat,
        message: &str,
        summary: &str,
        k: usize,
    ) -> Value {
        let c = &n.content;
        let title = limits::cut(or_blank(&c.title, ""), MAX_TITLE, 4 * MAX_TITLE);
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
                if !blank(message) {
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
                if !blank(message) {
                    section["activitySubtitle"] = message.into();
                }
                let mut card = json!({
                    "@type": "MessageCard",
                    "@context": "http://schema.org/extensions",
                    "themeColor": theme,
                    "title": heading,
                    "sections": [section],
                });
                // Connectors refuse a card with neither `summary` nor `text`.
                card["summary"] = if !title.is_empty() {
                    title.into()
                } else if !summary.is_empty() {
                    summary.into()
                } else {
                    heading.into()
                };
                card
            }
        }
    }
}

impl Notifier for TeamsNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.http
            .post_json(
                provider::TEAMS,
                &self.url,
                &TeamsNotifier::body(n, self.format),
                &[],
            )
            .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(MAX_MESSAGE)
            .rich_text(true)
            .images(self.format == TeamsFormat::Workflows)
    }
}
