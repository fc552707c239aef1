//! Discord webhooks, with an embed coloured by priority.

use piko_obs_notify::{Capabilities, Notification, Notifier, Priority, SendError, truncate};
use serde_json::{Value, json};

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};

/// Posts to a Discord webhook.
///
/// Body: one embed with `title` (256 characters), `description` (the message, 4096),
/// `timestamp`, `color` by priority, the fields as embed fields (25 at most; names 256,
/// values 1024), the image, and a footer with source and environment; the embed stays
/// within Discord's 6000-character total. `allowed_mentions` is empty, so a message
/// cannot ping `@everyone`.
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
        let title = truncate(&c.title, 256).into_owned();
        let footer: Vec<String> = [
            ("Source", &x.source),
            ("Environment", &x.environment),
            ("Service", &x.service),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
        let footer = truncate(&footer.join(" | "), 2048).into_owned();
        // What is left of the 6000-character budget goes to the description, then
        // to the fields.
        let mut budget: usize = 6000 - title.chars().count() - footer.chars().count();
        let description = truncate(&c.message, 4096.min(budget)).into_owned();
        budget -= description.chars().count();
        let mut fields = Vec::new();
        for (k, v) in c.fields.iter().take(25) {
            let name = truncate(k, 256).into_owned();
            let value = truncate(if v.is_empty() { "-" } else { v }, 1024).into_owned();
            let cost = name.chars().count() + value.chars().count();
            if cost > budget {
                break;
            }
            budget -= cost;
            fields.push(json!({"name": name, "value": value, "inline": false}));
        }
        let mut embed = json!({
            "title": title,
            "description": description,
            "timestamp": crate::utc_seconds(x.timestamp),
            "color": DiscordNotifier::color(x.priority),
        });
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
            .post_json("discord", &self.url, &DiscordNotifier::body(n))
            .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(4096)
            .rich_text(true)
            .images(true)
    }
}
