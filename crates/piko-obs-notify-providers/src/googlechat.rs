//! Google Chat incoming webhooks, with a cardsV2 card.

use piko_obs_notify::{Capabilities, Notification, Notifier, SendError, provider, truncate};
use serde_json::{Value, json};

use crate::ConfigError;
use crate::http::{HttpClient, parse_url, redacted};
use crate::limits::{self, BLANK_VALUE, blank, or_blank};

/// Posts to a Google Chat space webhook.
///
/// Body: `text` (the title, as the notification text) and one `cardsV2` card: a header
/// (title, subtitle `<priority> priority`), then one section of widgets: the message
/// as `textParagraph`, each field, source, environment, service and trace id as
/// `decoratedText` (`topLabel` and `text`), and the image.
///
/// Limits: Google Chat takes at most 32,000 bytes per message, text and cards
/// included, and shows at most 100 widgets per card. The whole JSON body is kept
/// within [`MAX_MESSAGE_BYTES`](GoogleChatNotifier::MAX_MESSAGE_BYTES) and 100
/// widgets; the title is cut to 256 characters, labels to 256 and values to 1,024,
/// the message to 4,096 characters and then to the room left; when the fields do not
/// all fit, the last ones are left out and a widget `… [truncated]: N more fields not
/// shown` says so. An image URL over 2,048 bytes is left out. Every cut ends with
/// `… [truncated]`.
///
/// Empty text: Google Chat requires a card header's `title`, a `decoratedText`'s
/// `text` and at least one widget in a section. With a blank title the header reads
/// `Notification` (the subtitle still gives the priority) and the top-level `text` is
/// left out (the card carries the message); a blank field name leaves `topLabel` out,
/// a blank value is sent as `-`; a card with no widget has no section.
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

const MAX_MESSAGE: usize = 4096;
const MAX_TITLE: usize = 256;
const MAX_LABEL: usize = 256;
const MAX_VALUE: usize = 1024;
const MAX_WIDGETS: usize = 100;
const MAX_IMAGE_URL_BYTES: usize = 2048;
const MESSAGE_FLOOR_BYTES: usize = 8_000;
/// The header's title when the notification has none (Google Chat requires one).
const UNTITLED: &str = "Notification";

/// A `decoratedText` widget cut to its limits, in characters and in bytes of JSON: no
/// `topLabel` (it is optional) when `k` is blank, and `-` when `v` is.
fn labelled(k: &str, v: &str) -> Value {
    let v = or_blank(v, BLANK_VALUE);
    let mut d = serde_json::Map::new();
    if !blank(k) {
        d.insert(
            "topLabel".into(),
            limits::cut(k, MAX_LABEL, 4 * MAX_LABEL).into(),
        );
    }
    d.insert(
        "text".into(),
        limits::cut(v, MAX_VALUE, 4 * MAX_VALUE).into(),
    );
    json!({ "decoratedText": d })
}

impl GoogleChatNotifier {
    /// The most bytes of JSON a body has: Google Chat's documented maximum message
    /// size, text and cards included.
    pub const MAX_MESSAGE_BYTES: usize = 32_000;

    /// A notifier for the webhook at `url`.
    pub fn new(http: &HttpClient, url: &str) -> Result<GoogleChatNotifier, ConfigError> {
        Ok(GoogleChatNotifier {
            http: http.clone(),
            url: parse_url("google chat webhook URL", url)?,
        })
    }

    /// The JSON body for `n`, within Google Chat's limits.
    pub fn body(n: &Notification) -> Value {
        let c = &n.content;
        let x = &n.context;
        let context = x.labelled().count();
        let image =
            !c.image_url.is_empty() && limits::json_len(&c.image_url) <= MAX_IMAGE_URL_BYTES;
        // Widgets for the fields: what the message, the context and the image leave,
        // less one for the note when they do not all fit.
        let slots = MAX_WIDGETS - usize::from(!blank(&c.message)) - context - usize::from(image);
        let total = c.fields.len();
        let k = if total > slots { slots - 1 } else { total };
        let message = truncate(or_blank(&c.message, ""), MAX_MESSAGE);
        limits::fit(
            Self::MAX_MESSAGE_BYTES,
            &message,
            k,
            MESSAGE_FLOOR_BYTES,
            |m, k| GoogleChatNotifier::render(n, m, k, image),
        )
    }

    /// The body with `message`, the first `k` fields, and the image when `image`.
    fn render(n: &Notification, message: &str, k: usize, image: bool) -> Value {
        let c = &n.content;
        let x = &n.context;
        let mut widgets = Vec::new();
        if !blank(message) {
            widgets.push(json!({"textParagraph": {"text": message}}));
        }
        widgets.extend(c.fields.iter().take(k).map(|(k, v)| labelled(k, v)));
        if k < c.fields.len() {
            widgets.push(labelled(
                limits::FIELDS_MARKER,
                &limits::fields_left_out(c.fields.len() - k),
            ));
        }
        widgets.extend(x.labelled().map(|(k, v)| labelled(k, v)));
        if image {
            widgets
                .push(json!({"image": {"imageUrl": c.image_url, "altText": "notification image"}}));
        }
        let mut priority = x.priority.as_str().to_string();
        if let Some(first) = priority.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        let title = (!blank(&c.title)).then(|| limits::cut(&c.title, MAX_TITLE, 4 * MAX_TITLE));
        let mut card = json!({
            "header": {
                "title": title.as_deref().unwrap_or(UNTITLED),
                "subtitle": format!("{priority} priority"),
            },
        });
        // A section needs at least one widget.
        if !widgets.is_empty() {
            card["sections"] = json!([{"widgets": widgets}]);
        }
        let mut body = json!({});
        if let Some(title) = title {
            body["text"] = title.into();
        }
        body["cardsV2"] = json!([{"cardId": "notification-card", "card": card}]);
        body
    }
}

impl Notifier for GoogleChatNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.http
            .post_json(
                provider::GOOGLE_CHAT,
                &self.url,
                &GoogleChatNotifier::body(n),
                &[],
            )
            .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(4096)
            .rich_text(true)
            .images(true)
    }
}
