//! Microsoft Teams: Workflows webhooks with an Adaptive Card, or the legacy
//! Office 365 connector MessageCard.

use piko_obs_notify::{Capabilities, Notification, Notifier, Priority, SendError, truncate};
use serde_json::{Value, json};

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};

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
/// section with the title, message and facts). Messages are cut to 20,000 characters,
/// within Teams' 28 KB limit.
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

fn facts(n: &Notification) -> Vec<(String, String)> {
    let x = &n.context;
    let mut f = vec![("Priority".to_string(), x.priority.as_str().to_string())];
    for (k, v) in [
        ("Source", &x.source),
        ("Environment", &x.environment),
        ("Service", &x.service),
        ("Trace", &x.trace_id),
    ] {
        if !v.is_empty() {
            f.push((k.to_string(), v.clone()));
        }
    }
    f.extend(
        n.content
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    f
}

impl TeamsNotifier {
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

    /// The JSON body for `n` in `format`.
    pub fn body(n: &Notification, format: TeamsFormat) -> Value {
        let c = &n.content;
        let message = truncate(&c.message, MAX_MESSAGE);
        match format {
            TeamsFormat::Workflows => {
                let color = match n.context.priority {
                    Priority::Critical => "Attention",
                    Priority::High => "Warning",
                    _ => "Default",
                };
                let mut body = Vec::new();
                if !c.title.is_empty() {
                    body.push(
                        json!({"type": "TextBlock", "text": c.title, "weight": "Bolder",
                        "size": "Large", "color": color, "wrap": true}),
                    );
                }
                if !message.is_empty() {
                    body.push(json!({"type": "TextBlock", "text": message, "wrap": true}));
                }
                let facts: Vec<Value> = facts(n)
                    .into_iter()
                    .map(|(k, v)| json!({"title": k, "value": v}))
                    .collect();
                body.push(json!({"type": "FactSet", "facts": facts}));
                if !c.image_url.is_empty() {
                    body.push(json!({"type": "Image", "url": c.image_url, "altText": "notification image"}));
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
                    "facts": facts(n).into_iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
                    "markdown": true,
                });
                if !c.title.is_empty() {
                    section["activityTitle"] = c.title.clone().into();
                }
                if !message.is_empty() {
                    section["activitySubtitle"] = message.clone().into_owned().into();
                }
                let mut card = json!({
                    "@type": "MessageCard",
                    "@context": "http://schema.org/extensions",
                    "themeColor": theme,
                    "title": heading,
                    "sections": [section],
                });
                if !c.title.is_empty() {
                    card["summary"] = c.title.clone().into();
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
