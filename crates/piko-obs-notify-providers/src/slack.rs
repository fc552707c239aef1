//! Slack incoming webhooks, with Block Kit.

use piko_obs_notify::{Capabilities, Notification, Notifier, Priority, SendError, truncate};
use serde_json::{Value, json};

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};

/// Posts to a Slack incoming webhook.
///
/// Body: `text` (the title, or the message, as the notification fallback) and `blocks`:
/// a header with the priority's emoji and the title (at most 150 characters), a
/// section with the message (3000), a section with the fields in order (3000), the
/// image, and a context line with source, environment, service and trace id. Text is
/// escaped (`&`, `<`, `>`), so a message cannot ping `@channel` or forge a link.
#[derive(Clone)]
pub struct SlackNotifier {
    http: HttpClient,
    url: reqwest::Url,
}

impl std::fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("url", &redacted(&self.url))
            .finish()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl SlackNotifier {
    /// A notifier for the incoming webhook at `url`.
    pub fn new(http: &HttpClient, url: &str) -> Result<SlackNotifier, ConfigError> {
        Ok(SlackNotifier {
            http: http.clone(),
            url: parse_url("slack webhook URL", url)?,
        })
    }

    /// The emoji of a priority.
    pub fn emoji(p: Priority) -> &'static str {
        match p {
            Priority::Critical => ":rotating_light:",
            Priority::High => ":warning:",
            Priority::Normal => ":information_source:",
            Priority::Low => ":bulb:",
        }
    }

    /// The JSON body for `n`.
    pub fn body(n: &Notification) -> Value {
        let c = &n.content;
        let mut blocks = Vec::new();
        if !c.title.is_empty() {
            let header = format!("{} {}", SlackNotifier::emoji(n.context.priority), c.title);
            blocks.push(json!({
                "type": "header",
                "text": {"type": "plain_text", "text": truncate(&header, 150), "emoji": true}
            }));
        }
        if !c.message.is_empty() {
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(&escape(&c.message), 3000)}
            }));
        }
        if !c.fields.is_empty() {
            let lines: String = c
                .fields
                .iter()
                .map(|(k, v)| format!("*{}*: `{}`\n", escape(k), escape(v)))
                .collect();
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(&lines, 3000)}
            }));
        }
        if !c.image_url.is_empty() {
            blocks.push(json!({
                "type": "image", "image_url": c.image_url, "alt_text": "notification image"
            }));
        }
        let x = &n.context;
        let context: Vec<Value> = [
            ("Source", &x.source),
            ("Environment", &x.environment),
            ("Service", &x.service),
            ("Trace", &x.trace_id),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}:* {}", escape(v))}))
        .collect();
        if !context.is_empty() {
            blocks.push(json!({"type": "context", "elements": context}));
        }
        let fallback = if c.title.is_empty() {
            &c.message
        } else {
            &c.title
        };
        json!({"text": truncate(&escape(fallback), 3000), "blocks": blocks})
    }
}

impl Notifier for SlackNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.http
            .post_json("slack", &self.url, &SlackNotifier::body(n))
            .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(3000)
            .rich_text(true)
            .images(true)
    }
}
