//! Google Chat incoming webhooks, with a cardsV2 card.

use piko_obs_notify::{Capabilities, Notification, Notifier, SendError, truncate};
use serde_json::{Value, json};

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};

/// Posts to a Google Chat space webhook.
///
/// Body: `text` (the title, as the notification text) and one `cardsV2` card: a header
/// (title, subtitle `<priority> priority`), then one section of widgets: the message
/// as `textParagraph` (4096 characters), each field, source, environment, service and
/// trace id as `decoratedText` (`topLabel` and `text`), and the image.
#[derive(Clone)]
pub struct GoogleChatNotifier {
    http: HttpClient,
    url: reqwest::Url,
}

impl std::fmt::Debug for GoogleChatNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleChatNotifier")
            .field("url", &redacted(&self.url))
            .finish()
    }
}

impl GoogleChatNotifier {
    /// A notifier for the webhook at `url`.
    pub fn new(http: &HttpClient, url: &str) -> Result<GoogleChatNotifier, ConfigError> {
        Ok(GoogleChatNotifier {
            http: http.clone(),
            url: parse_url("google chat webhook URL", url)?,
        })
    }

    /// The JSON body for `n`.
    pub fn body(n: &Notification) -> Value {
        let c = &n.content;
        let x = &n.context;
        let mut widgets = Vec::new();
        if !c.message.is_empty() {
            widgets.push(json!({"textParagraph": {"text": truncate(&c.message, 4096)}}));
        }
        let labelled = c
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(
                [
                    ("Source", &x.source),
                    ("Environment", &x.environment),
                    ("Service", &x.service),
                    ("Trace", &x.trace_id),
                ]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.clone())),
            );
        for (k, v) in labelled {
            widgets.push(json!({"decoratedText": {"topLabel": k, "text": v}}));
        }
        if !c.image_url.is_empty() {
            widgets
                .push(json!({"image": {"imageUrl": c.image_url, "altText": "notification image"}}));
        }
        let mut priority = x.priority.as_str().to_string();
        if let Some(first) = priority.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        json!({
            "text": truncate(&c.title, 4096),
            "cardsV2": [{
                "cardId": "notification-card",
                "card": {
                    "header": {"title": c.title, "subtitle": format!("{priority} priority")},
                    "sections": [{"widgets": widgets}],
                }
            }]
        })
    }
}

impl Notifier for GoogleChatNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.http
            .post_json("googlechat", &self.url, &GoogleChatNotifier::body(n))
            .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(4096)
            .rich_text(true)
            .images(true)
    }
}
