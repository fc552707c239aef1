//! Slack incoming webhooks, with Block Kit.

use piko_obs_notify::{
    Capabilities, Notification, Notifier, Priority, SendError, provider, truncate,
};
use serde_json::{Value, json};

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};
use crate::limits::{BLANK_VALUE, MARKER, blank, or_blank};

/// Posts to a Slack incoming webhook.
///
/// Body: `text` (the title, or the message, as the notification fallback) and `blocks`:
/// a header with the priority's emoji and the title, a section with the message, a
/// section with the fields in order, the image, and a context line with source,
/// environment, service and trace id. Text is escaped (`&`, `<`, `>`), so a message
/// cannot ping `@channel` or forge a link.
///
/// Limits (Block Kit): header text 150 characters, section and context texts 3000
/// (and `text` 3000), image URL 3000, at most 10 context elements and 50 blocks (it
/// uses at most 5 and 5). Text over a limit is cut and ends with `… [truncated]`; an
/// image whose URL is over 3000 characters is left out, and the context line says so.
///
/// Empty text: Slack refuses a `header` or `section` whose text is empty. A blank title
/// leaves the header out (the fallback `text` is then the message), a blank message
/// leaves its section out; a field with a blank name is shown as its value alone, a
/// blank value as `-`, so no line reads `**` or an empty code span.
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

const MAX_HEADER: usize = 150;
const MAX_TEXT: usize = 3000;
const MAX_IMAGE_URL: usize = 3000;

/// The line of one field: the name in bold, then the value as code; the value alone
/// when the name is blank, and `-` for a blank value.
fn field_line(k: &str, v: &str) -> String {
    let v = escape(or_blank(v, BLANK_VALUE));
    if blank(k) {
        format!("`{v}`\n")
    } else {
        format!("*{}*: `{v}`\n", escape(k))
    }
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
        if !blank(&c.title) {
            let header = format!("{} {}", SlackNotifier::emoji(n.context.priority), c.title);
            blocks.push(json!({
                "type": "header",
                "text": {"type": "plain_text", "text": truncate(&header, MAX_HEADER), "emoji": true}
            }));
        }
        if !blank(&c.message) {
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(&escape(&c.message), MAX_TEXT)}
            }));
        }
        if !c.fields.is_empty() {
            let lines: String = c.fields.iter().map(|(k, v)| field_line(k, v)).collect();
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(&lines, MAX_TEXT)}
            }));
        }
        // A cut URL would point elsewhere: one over the limit is left out, and the
        // context line says so.
        let image_fits = c.image_url.chars().count() <= MAX_IMAGE_URL;
        if !c.image_url.is_empty() && image_fits {
            blocks.push(json!({
                "type": "image", "image_url": c.image_url, "alt_text": "notification image"
            }));
        }
        let x = &n.context;
        let mut context: Vec<Value> = x
            .labelled()
            .map(|(k, v)| {
                let text = format!("*{k}:* {}", escape(v));
                json!({"type": "mrkdwn", "text": truncate(&text, MAX_TEXT)})
            })
            .collect();
        if !image_fits {
            context.push(json!({
                "type": "mrkdwn",
                "text": format!("*Image:* {MARKER} (its URL is over {MAX_IMAGE_URL} characters)")
            }));
        }
        if !context.is_empty() {
            blocks.push(json!({"type": "context", "elements": context}));
        }
        let fallback = if blank(&c.title) {
            &c.message
        } else {
            &c.title
        };
        json!({"text": truncate(&escape(fallback), MAX_TEXT), "blocks": blocks})
    }
}

impl Notifier for SlackNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.http
            .post_json(provider::SLACK, &self.url, &SlackNotifier::body(n), &[])
            .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(3000)
            .rich_text(true)
            .images(true)
    }
}
