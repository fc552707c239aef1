//! Discord webhooks, with an embed coloured by priority.

use piko_obs_notify::{
    Capabilities, Notification, Notifier, Priority, SendError, provider, truncate,
};
use serde_json::{Value, json};

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};
use crate::limits::{self, BLANK_NAME, BLANK_VALUE, or_blank};

/// Posts to a Discord webhook.
///
/// Body: one embed with `title`, `description` (the message), `timestamp`, `color` by
/// priority, the fields as embed fields, the image, and a footer with source,
/// environment and service. `allowed_mentions` is empty, so a message cannot ping
/// `@everyone`.
///
/// Limits (Discord's embed limits): title 256 characters, description 4096, 25 fields
/// with names of 256 and values of 1024, footer 2048, and 6000 characters in all
/// (title, description, field names and values, footer). The description takes what
/// title and footer leave, the fields what is left then; when they do not all fit, the
/// last ones are left out and a last field `… [truncated]: N more fields not shown`
/// says so. Every cut ends with `… [truncated]`.
///
/// Empty text: Discord wants every field name (1-256 characters) and value (1-1024)
/// non-empty once trimmed. A blank field name is sent as a zero-width space (`U+200B`,
/// Discord's usual blank name: the value shows with no name above it), a blank value
/// as `-`. A blank title or message is left out of the embed rather than sent empty.
#[derive(Clone)]
pub struct DiscordNotifier {
    http: HttpClient,
    url: reqwest::Url,
}

impl std::fmt::Debug for DiscordNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordNotifier")
            .field("url", &redacted(&self.url))
            .finish()
    }
}

const MAX_TITLE: usize = 256;
const MAX_DESCRIPTION: usize = 4096;
const MAX_FIELDS: usize = 25;
const MAX_FIELD_NAME: usize = 256;
const MAX_FIELD_VALUE: usize = 1024;
const MAX_FOOTER: usize = 2048;
const MAX_TOTAL: usize = 6000;
/// The most characters the note for fields left out takes (`… [truncated]` and
/// `<n> more fields not shown`, for any n).
const NOTE_COST: usize = 13 + 20 + 22;

impl DiscordNotifier {
    /// A notifier for the webhook at `url`.
    pub fn new(http: &HttpClient, url: &str) -> Result<DiscordNotifier, ConfigError> {
        Ok(DiscordNotifier {
            http: http.clone(),
            url: parse_url("discord webhook URL", url)?,
        })
    }

    /// The embed colour of a priority (Piko's).
    pub fn color(p: Priority) -> u32 {
        match p {
            Priority::Critical => 15_158_332,
            Priority::High => 15_844_367,
            Priority::Normal => 3_447_003,
            Priority::Low => 9_807_270,
        }
    }

    /// The JSON body for `n`.
    pub fn body(n: &Notification) -> Value {
        let c = &n.content;
        let x = &n.context;
        // Discord refuses empty text: a blank title or message is left out.
        let title = truncate(or_blank(&c.title, ""), MAX_TITLE).into_owned();
        let footer: Vec<String> = [
            ("Source", &x.source),
            ("Environment", &x.environment),
            ("Service", &x.service),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
        let footer = truncate(&footer.join(" | "), MAX_FOOTER).into_owned();
        let chars = |s: &str| s.chars().count();
        // What is left of the 6000-character budget goes to the description, then to
        // the fields, keeping room for the note that counts the fields left out.
        let mut budget: usize = MAX_TOTAL - chars(&title) - chars(&footer);
        let reserve = if c.fields.is_empty() { 0 } else { NOTE_COST };
        let description = truncate(
            or_blank(&c.message, ""),
            MAX_DESCRIPTION.min(budget - reserve),
        )
        .into_owned();
        budget -= chars(&description);
        let total = c.fields.len();
        let mut fields = Vec::new();
        for (i, (k, v)) in c.fields.iter().enumerate() {
            // Room for a note stays while more fields may follow.
            let more = i + 1 < total;
            let (slots, keep) = if more {
                (MAX_FIELDS - 1, NOTE_COST)
            } else {
                (MAX_FIELDS, 0)
            };
            if fields.len() >= slots {
                break;
            }
            let name = truncate(or_blank(k, BLANK_NAME), MAX_FIELD_NAME).into_owned();
            let room = budget.saturating_sub(keep + chars(&name));
            // A value cut to less than this says nothing: the field is left out.
            if room < 40 {
                break;
            }
            let value = truncate(or_blank(v, BLANK_VALUE), MAX_FIELD_VALUE.min(room)).into_owned();
            budget -= chars(&name) + chars(&value);
            fields.push(json!({"name": name, "value": value, "inline": false}));
        }
        if fields.len() < total {
            let note = limits::fields_left_out(total - fields.len());
            fields.push(json!({"name": limits::FIELDS_MARKER, "value": note, "inline": false}));
        }
        let mut embed = json!({
            "timestamp": crate::utc_seconds(x.timestamp),
            "color": DiscordNotifier::color(x.priority),
        });
        if !title.is_empty() {
            embed["title"] = title.into();
        }
        if !description.is_empty() {
            embed["description"] = description.into();
        }
        if !fields.is_empty() {
            embed["fields"] = Value::Array(fields);
        }
        if !c.image_url.is_empty() {
            embed["image"] = json!({"url": c.image_url});
        }
        if !footer.is_empty() {
            embed["footer"] = json!({"text": footer});
        }
        json!({"embeds": [embed], "allowed_mentions": {"parse": []}})
    }
}

impl Notifier for DiscordNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.http
            .post_json(provider::DISCORD, &self.url, &DiscordNotifier::body(n), &[])
            .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(4096)
            .rich_text(true)
            .images(true)
    }
}
