//! Each provider against a webhook sink on loopback: method, path, headers and body,
//! field by field, against the platform's documented payload.

mod support;

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use hmac::Mac as _;
use piko_obs_notify::{
    DeliveryError, DispatcherConfig, Notification, NotificationService, Notifier, Priority,
    RetryPolicy, SendError, provider,
};
use piko_obs_notify_providers::{
    DiscordNotifier, GoogleChatNotifier, HttpClient, MAX_ANSWER_BYTES, NtfyNotifier,
    PagerDutyNotifier, SlackNotifier, StdoutFormat, StdoutNotifier, TeamsFormat, TeamsNotifier,
    WebhookNotifier,
};
use piko_obs_testkit::Capture;
use piko_obs_testkit::sink::{Recorded, Reply, Sink};

fn sample() -> Notification {
    let mut n = Notification::new("Disk almost full", "95% used on /var <@here> & more");
    n.content.fields.insert("host", "db-1");
    n.content.fields.insert("mount", "/var");
    n.content.image_url = "https://example.com/graph.png".into();
    n.context.priority = Priority::High;
    n.context.source = "disk-monitor".into();
    n.context.environment = "production".into();
    n.context.service = "orders".into();
    n.context.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".into();
    n.context.timestamp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    n
}

async fn deliver(n: impl Notifier, sink: &Sink) -> Recorded {
    n.send(&sample()).await.expect("delivered");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    got[0].clone()
}

fn http() -> HttpClient {
    HttpClient::new().unwrap()
}

#[tokio::test]
async fn slack_posts_block_kit() {
    let sink = Sink::start();
    let url = sink.url("/services/T000/B000/XXXX");
    let r = deliver(SlackNotifier::new(&http(), &url).unwrap(), &sink).await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/services/T000/B000/XXXX");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = r.json();
    assert_eq!(b["text"], "Disk almost full");
    let blocks = b["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[0]["text"]["text"], ":warning: Disk almost full");
    assert_eq!(blocks[0]["text"]["emoji"], true);
    assert_eq!(blocks[1]["type"], "section");
    assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
    assert_eq!(
        blocks[1]["text"]["text"],
        "95% used on /var &lt;@here&gt; &amp; more"
    );
    assert_eq!(
        blocks[2]["text"]["text"],
        "*host*: `db-1`\n*mount*: `/var`\n"
    );
    assert_eq!(blocks[3]["type"], "image");
    assert_eq!(blocks[3]["image_url"], "https://example.com/graph.png");
    assert_eq!(blocks[3]["alt_text"], "notification image");
    assert_eq!(blocks[4]["type"], "context");
    let ctx: Vec<&str> = blocks[4]["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        ctx,
        [
            "*Source:* disk-monitor",
            "*Environment:* production",
            "*Service:* orders",
            "*Trace:* 4bf92f3577b34da6a3ce929d0e0e4736"
        ]
    );
}

#[tokio::test]
async fn discord_posts_an_embed_with_the_priority_colour() {
    let sink = Sink::with_default(Reply::status(204));
    let r = deliver(
        DiscordNotifier::new(&http(), &sink.url("/api/webhooks/1/tok")).unwrap(),
        &sink,
    )
    .await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/webhooks/1/tok");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = r.json();
    let e = &b["embeds"][0];
    assert_eq!(e["title"], "Disk almost full");
    assert_eq!(e["description"], "95% used on /var <@here> & more");
    assert_eq!(e["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(e["color"], 15_844_367);
    assert_eq!(e["fields"][0]["name"], "host");
    assert_eq!(e["fields"][0]["value"], "db-1");
    assert_eq!(e["fields"][1]["name"], "mount");
    assert_eq!(e["image"]["url"], "https://example.com/graph.png");
    assert_eq!(
        e["footer"]["text"],
        "Source: disk-monitor | Environment: production | Service: orders"
    );
    assert_eq!(b["allowed_mentions"]["parse"], serde_json::json!([]));
    assert!(b.get("content").is_none());
}

#[tokio::test]
async fn pagerduty_triggers_acknowledges_and_resolves() {
    let sink = Sink::with_default(Reply::status(202));
    let pd = PagerDutyNotifier::new(&http(), "R0UT1NGKEY0000000000000000000000")
        .unwrap()
        .with_events_url(&sink.url("/v2/enqueue"))
        .unwrap();
    assert!(!format!("{pd:?}").contains("R0UT1NG"));
    let r = deliver(pd.clone(), &sink).await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v2/enqueue");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = r.json();
    assert_eq!(b["routing_key"], "R0UT1NGKEY0000000000000000000000");
    assert_eq!(b["event_action"], "trigger");
    let dedup = b["dedup_key"].as_str().unwrap().to_string();
    assert_eq!(dedup.len(), 32);
    let p = &b["payload"];
    assert_eq!(p["summary"], "Disk almost full");
    assert_eq!(p["source"], "disk-monitor");
    assert_eq!(p["severity"], "error");
    assert_eq!(p["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(p["component"], "disk-monitor");
    let d = &p["custom_details"];
    assert_eq!(d["message"], "95% used on /var <@here> & more");
    assert_eq!(d["title"], "Disk almost full");
    assert_eq!(d["service"], "orders");
    assert_eq!(d["priority"], "high");
    assert_eq!(d["environment"], "production");
    assert_eq!(d["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(d["fields"]["host"], "db-1");
    assert_eq!(b["images"][0]["src"], "https://example.com/graph.png");

    let mut resolve = sample();
    resolve.provider_options.insert("event_action", "resolve");
    pd.send(&resolve).await.unwrap();
    let got = sink.wait_for(2, Duration::from_secs(5));
    let b = got[1].json();
    assert_eq!(b["event_action"], "resolve");
    assert_eq!(
        b["dedup_key"],
        dedup.as_str(),
        "the same alert resolves the same incident"
    );
    assert!(b.get("payload").is_none());
    assert!(b.get("images").is_none());
    assert_eq!(b["routing_key"], "R0UT1NGKEY0000000000000000000000");

    let mut ack = sample();
    ack.provider_options.insert("event_action", "acknowledge");
    pd.send(&ack).await.unwrap();
    let got = sink.wait_for(3, Duration::from_secs(5));
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].method, "POST");
    assert_eq!(got[2].path, "/v2/enqueue");
    assert_eq!(got[2].header("content-type"), Some("application/json"));
    let b = got[2].json();
    assert_eq!(
        b,
        serde_json::json!({
            "event_action": "acknowledge",
            "dedup_key": dedup,
            "routing_key": "R0UT1NGKEY0000000000000000000000",
        }),
        "an acknowledge is the action, the incident's dedup key and the routing key only"
    );
    // A dedup key given as an option replaces the default one.
    let mut ack = sample();
    ack.provider_options.insert("event_action", "acknowledge");
    ack.provider_options.insert("dedup_key", "incident-42");
    pd.send(&ack).await.unwrap();
    let got = sink.wait_for(4, Duration::from_secs(5));
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].json()["dedup_key"], "incident-42");

    let mut bad = sample();
    bad.provider_options.insert("event_action", "snooze");
    let e = pd.send(&bad).await.unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(sink.requests().len(), 4, "a bad action is not sent");
}

#[tokio::test]
async fn teams_posts_an_adaptive_card_or_a_message_card() {
    let sink = Sink::with_default(Reply::status(202));
    let r = deliver(
        TeamsNotifier::new(&http(), &sink.url("/workflows/abc"), TeamsFormat::Workflows).unwrap(),
        &sink,
    )
    .await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/workflows/abc");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = r.json();
    assert_eq!(b["type"], "message");
    let a = &b["attachments"][0];
    assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &a["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(card["body"][0]["text"], "Disk almost full");
    assert_eq!(card["body"][0]["color"], "Warning");
    assert_eq!(card["body"][1]["text"], "95% used on /var <@here> & more");
    let facts = card["body"][2]["facts"].as_array().unwrap();
    assert_eq!(
        facts[0],
        serde_json::json!({"title": "Priority", "value": "high"})
    );
    assert_eq!(
        facts[1],
        serde_json::json!({"title": "Source", "value": "disk-monitor"})
    );
    assert_eq!(
        facts.last().unwrap(),
        &serde_json::json!({"title": "mount", "value": "/var"})
    );
    assert_eq!(card["body"][3]["type"], "Image");
    assert_eq!(card["body"][3]["url"], "https://example.com/graph.png");

    let legacy = Sink::start();
    let r = deliver(
        TeamsNotifier::new(
            &http(),
            &legacy.url("/webhookb2/x"),
            TeamsFormat::MessageCard,
        )
        .unwrap(),
        &legacy,
    )
    .await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/webhookb2/x");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = r.json();
    assert_eq!(b["@type"], "MessageCard");
    assert_eq!(b["@context"], "http://schema.org/extensions");
    assert_eq!(b["themeColor"], "FFA500");
    assert_eq!(b["title"], "⚠️ High Priority Notification");
    assert_eq!(b["summary"], "Disk almost full");
    assert_eq!(b["sections"][0]["activityTitle"], "Disk almost full");
    assert_eq!(
        b["sections"][0]["activitySubtitle"],
        "95% used on /var <@here> & more"
    );
    assert_eq!(
        b["sections"][0]["facts"][0],
        serde_json::json!({"name": "Priority", "value": "high"})
    );
    assert_eq!(
        b["sections"][0]["facts"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        &serde_json::json!({"name": "mount", "value": "/var"})
    );
    assert_eq!(b["sections"][0]["markdown"], true);
}

#[tokio::test]
async fn google_chat_posts_cards_v2_with_decorated_text() {
    let sink = Sink::start();
    let r = deliver(
        GoogleChatNotifier::new(&http(), &sink.url("/v1/spaces/AAA/messages?key=k&token=t"))
            .unwrap(),
        &sink,
    )
    .await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/spaces/AAA/messages?key=k&token=t");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = r.json();
    assert_eq!(b["text"], "Disk almost full");
    let card = &b["cardsV2"][0];
    assert_eq!(card["cardId"], "notification-card");
    assert_eq!(card["card"]["header"]["title"], "Disk almost full");
    assert_eq!(card["card"]["header"]["subtitle"], "High priority");
    let w = card["card"]["sections"][0]["widgets"].as_array().unwrap();
    assert_eq!(
        w[0]["textParagraph"]["text"],
        "95% used on /var <@here> & more"
    );
    assert_eq!(
        w[1]["decoratedText"],
        serde_json::json!({"topLabel": "host", "text": "db-1"})
    );
    assert_eq!(w[3]["decoratedText"]["topLabel"], "Source");
    assert_eq!(
        w.last().unwrap()["image"]["imageUrl"],
        "https://example.com/graph.png"
    );
}

#[tokio::test]
async fn ntfy_publishes_with_headers_auth_and_encoded_titles() {
    let sink = Sink::start();
    let ntfy = NtfyNotifier::from_topic_url(&http(), &sink.url("/alerts"))
        .unwrap()
        .with_token("tk_secret")
        .unwrap();
    assert!(!format!("{ntfy:?}").contains("tk_secret"));
    let r = deliver(ntfy.clone(), &sink).await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/alerts");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("title"), Some("Disk almost full"));
    assert_eq!(r.header("priority"), Some("high"));
    assert_eq!(r.header("tags"), Some("warning"));
    assert_eq!(r.header("attach"), Some("https://example.com/graph.png"));
    assert_eq!(r.header("authorization"), Some("Bearer tk_secret"));
    assert_eq!(
        r.text(),
        "95% used on /var <@here> & more\n\nhost: db-1\nmount: /var\n\n---\nSource: disk-monitor\nEnvironment: production\n"
    );
    // A non-ASCII title is RFC 2047-encoded; a line break cannot add a header.
    let mut n = sample();
    n.content.title = "Échec\r\nX-Injected: yes".into();
    ntfy.send(&n).await.unwrap();
    let got = sink.wait_for(2, Duration::from_secs(5));
    let title = got[1].header("title").unwrap();
    assert!(title.starts_with("=?UTF-8?B?"), "{title}");
    let b64 = title
        .trim_start_matches("=?UTF-8?B?")
        .trim_end_matches("?=");
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(decoded, "Échec  X-Injected: yes");
    assert!(got[1].header("x-injected").is_none());
    let basic = NtfyNotifier::new(&http(), &sink.url("/"), "ops")
        .unwrap()
        .with_basic_auth("u", "p")
        .unwrap();
    basic.send(&sample()).await.unwrap();
    let got = sink.wait_for(3, Duration::from_secs(5));
    assert_eq!(got[2].path, "/ops");
    assert_eq!(got[2].header("authorization"), Some("Basic dTpw"));
}

#[tokio::test]
async fn webhooks_post_flat_json_with_headers_and_a_verifiable_signature() {
    let sink = Sink::start();
    let secret_b64 =
        base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdef0123456789abcdef");
    let hook = WebhookNotifier::new(&http(), &sink.url("/hooks/alerts"))
        .unwrap()
        .with_header("X-Team", "payments")
        .unwrap()
        .with_signing_secret(&format!("whsec_{secret_b64}"))
        .unwrap();
    let n = sample();
    hook.send(&n).await.expect("delivered");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let r = got[0].clone();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/alerts");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-team"), Some("payments"));
    let b = r.json();
    let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "timestamp",
            "priority",
            "source",
            "environment",
            "service",
            "trace_id",
            "title",
            "message",
            "fields",
            "image_url"
        ]
    );
    assert_eq!(b["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(b["priority"], "high");
    assert_eq!(b["source"], "disk-monitor");
    assert_eq!(b["environment"], "production");
    assert_eq!(b["service"], "orders");
    assert_eq!(b["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(b["title"], "Disk almost full");
    assert_eq!(b["message"], "95% used on /var <@here> & more");
    assert_eq!(
        b["fields"],
        serde_json::json!({"host": "db-1", "mount": "/var"})
    );
    assert_eq!(b["image_url"], "https://example.com/graph.png");
    // The webhook-id is the notification's own id.
    let id = r.header("webhook-id").unwrap();
    assert_eq!(
        id,
        format!("msg_{}", n.context.id.trim_start_matches("ntf_"))
    );
    verify_signature(&r, SECRET);
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// Standard Webhooks: HMAC-SHA256 over "id.timestamp.body", base64, prefixed v1, with a
/// timestamp of now (within a minute).
fn verify_signature(r: &Recorded, key: &[u8]) {
    let id = r.header("webhook-id").expect("webhook-id");
    let ts = r.header("webhook-timestamp").expect("webhook-timestamp");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts.parse().unwrap()) < 60);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.header("webhook-signature"), Some(expected.as_str()));
}

fn signed_hook(sink: &Sink) -> WebhookNotifier {
    let secret_b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
    WebhookNotifier::new(&http(), &sink.url("/hooks/alerts"))
        .unwrap()
        .with_signing_secret(&format!("whsec_{secret_b64}"))
        .unwrap()
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_retries(3)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(100), 2.0)
        .unwrap()
}

#[tokio::test]
async fn a_retry_sends_the_same_webhook_id_with_a_valid_signature() {
    let sink = Sink::start();
    sink.script([Reply::status(500)]);
    let service = NotificationService::builder()
        .with_retry_policy(fast_retries())
        .build();
    service.register("webhook", signed_hook(&sink)).unwrap();
    let n = sample();
    service
        .send_with_retries(n.clone())
        .await
        .expect("delivered on retry");
    let got = sink.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].status, got[1].status), (500, 200));
    let first = got[0].header("webhook-id").unwrap();
    assert_eq!(
        first,
        format!("msg_{}", n.context.id.trim_start_matches("ntf_"))
    );
    assert_eq!(
        got[1].header("webhook-id"),
        Some(first),
        "a resend keeps its id"
    );
    assert_eq!(got[0].body, got[1].body);
    for r in &got {
        verify_signature(r, SECRET);
    }
    // Another notification with the same content is a new message.
    service.send_with_retries(sample()).await.unwrap();
    let got = sink.wait_for(3, Duration::from_secs(5));
    assert_eq!(got.len(), 3);
    assert_ne!(got[2].header("webhook-id"), Some(first));
}

#[tokio::test]
async fn an_unset_environment_is_left_out_never_sent_empty() {
    let sink = Sink::start();
    let service = NotificationService::builder().build();
    service
        .register(
            provider::WEBHOOK,
            WebhookNotifier::new(&http(), &sink.url("/hook")).unwrap(),
        )
        .unwrap();
    let report = service
        .notification()
        .title("no environment")
        .send_once()
        .await
        .unwrap();
    assert!(report.all_delivered());
    let set = NotificationService::builder()
        .with_environment("staging")
        .build();
    set.register(
        provider::WEBHOOK,
        WebhookNotifier::new(&http(), &sink.url("/hook")).unwrap(),
    )
    .unwrap();
    set.notification()
        .title("staging")
        .send_once()
        .await
        .unwrap();
    let got = sink.wait_for(2, Duration::from_secs(5));
    assert!(
        got[0].json().get("environment").is_none(),
        "{}",
        got[0].text()
    );
    assert_eq!(got[1].json()["environment"], "staging");
    // The notification's own JSON (the stdout provider's, the dead-letter file's).
    let n = Notification::new("t", "m");
    let json = serde_json::to_value(&n).unwrap();
    assert!(json["context"].get("environment").is_none(), "{json}");
}

#[tokio::test]
async fn send_once_makes_one_attempt_per_provider_and_reports_each() {
    let (up, down) = (Sink::start(), Sink::with_default(Reply::status(500)));
    // A retry policy that would try four times: send_once must not use it.
    let service = NotificationService::builder()
        .with_retry_policy(fast_retries())
        .build();
    service
        .register(
            provider::WEBHOOK,
            WebhookNotifier::new(&http(), &up.url("/up")).unwrap(),
        )
        .unwrap();
    service
        .register(
            provider::SLACK,
            SlackNotifier::new(&http(), &down.url("/services/T0/B0/x")).unwrap(),
        )
        .unwrap();
    let report = service
        .notification()
        .title("deploy finished")
        .to_providers([provider::WEBHOOK, provider::SLACK])
        .send_once()
        .await
        .expect("both were attempted");
    assert!(!report.all_delivered());
    assert_eq!(report.delivered().collect::<Vec<_>>(), [provider::WEBHOOK]);
    let failed: Vec<(&str, String)> = report.failed().map(|(p, e)| (p, e.to_string())).collect();
    assert_eq!(failed.len(), 1, "{report:?}");
    assert_eq!(failed[0].0, provider::SLACK);
    assert!(failed[0].1.contains("500"), "{}", failed[0].1);
    // One request each, and no retry afterwards.
    assert_eq!(up.wait_for(1, Duration::from_secs(5)).len(), 1);
    assert_eq!(down.wait_for(1, Duration::from_secs(5)).len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(down.requests().len(), 1, "send_once retried");
    // Nothing to attempt is an error, not a report.
    assert!(matches!(
        service.notification().send_once().await,
        Err(DeliveryError::Empty)
    ));
}

// Multi-threaded: the dispatcher's workers run while the test waits for the sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_and_a_replay_keep_the_webhook_id() {
    let sink = Sink::start();
    sink.script([Reply::status(503), Reply::status(500)]);
    let service = NotificationService::builder()
        .with_retry_policy(fast_retries())
        .build();
    service.register("webhook", signed_hook(&sink)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (d, _) = support::attach_file_dispatcher(
        &service,
        &dir.path().join("dlq.jsonl"),
        DispatcherConfig::default(),
    );
    let n = sample();
    service.enqueue(n.clone()).unwrap();
    let got = sink.wait_for(3, Duration::from_secs(10));
    assert_eq!(got.len(), 3, "two failures, then delivered");
    let expected = format!("msg_{}", n.context.id.trim_start_matches("ntf_"));
    for r in &got {
        assert_eq!(r.header("webhook-id"), Some(expected.as_str()));
        verify_signature(r, SECRET);
    }
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.stats.delivered, 1);
    // A notification written to the dead-letter file and read back keeps its id.
    let line = serde_json::to_string(&n).unwrap();
    let replayed: Notification = serde_json::from_str(&line).unwrap();
    signed_hook(&sink).send(&replayed).await.unwrap();
    let got = sink.wait_for(4, Duration::from_secs(5));
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].header("webhook-id"), Some(expected.as_str()));
    verify_signature(&got[3], SECRET);
}

#[test]
fn bad_provider_settings_are_clear_errors_without_the_secret() {
    let http = http();
    let e = SlackNotifier::new(&http, "hooks.slack.com/services/SECRET").unwrap_err();
    assert!(e.to_string().starts_with("slack webhook URL:"), "{e}");
    assert!(!e.to_string().contains("SECRET"), "{e}");
    let e = WebhookNotifier::new(&http, "ftp://x/SECRET").unwrap_err();
    assert!(!e.to_string().contains("SECRET"), "{e}");
    let e = WebhookNotifier::new(&http, "http://127.0.0.1/h")
        .unwrap()
        .with_header("X-Evil", "a\r\nInjected: 1")
        .unwrap_err();
    assert!(e.to_string().contains("webhook header value"), "{e}");
    assert!(PagerDutyNotifier::new(&http, "has space").is_err());
    assert!(NtfyNotifier::new(&http, "https://ntfy.sh", "").is_err());
    assert!(
        WebhookNotifier::new(&http, "http://127.0.0.1/h")
            .unwrap()
            .with_signing_secret("whsec_!!")
            .is_err()
    );
}

#[tokio::test]
async fn stdout_prints_piko_blocks_or_json_lines() {
    let cap = Capture::new();
    let human = StdoutNotifier::with_writer(StdoutFormat::Human, cap.clone());
    human.send(&sample()).await.unwrap();
    assert_eq!(
        cap.text(),
        "=== NOTIFICATION ===\nPriority: high\nSource: disk-monitor\nEnvironment: production\nService: orders\nTrace: 4bf92f3577b34da6a3ce929d0e0e4736\nTitle: Disk almost full\nMessage: 95% used on /var <@here> & more\nFields:\n  host: db-1\n  mount: /var\n===================\n"
    );
    let cap = Capture::new();
    let json = StdoutNotifier::with_writer(StdoutFormat::Json, cap.clone());
    let service = NotificationService::default();
    service.register("stdout", json).unwrap();
    let results = service
        .send_bulk(None, vec![sample(), sample()])
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok));
    let lines = cap.json_lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["notification"]["content"]["title"],
        "Disk almost full"
    );
}

#[tokio::test]
async fn long_text_is_cut_to_the_platform_limit_with_a_marker() {
    let sink = Sink::start();
    let service = NotificationService::default();
    service
        .register(
            "slack",
            SlackNotifier::new(&http(), &sink.url("/s")).unwrap(),
        )
        .unwrap();
    service
        .register(
            "discord",
            DiscordNotifier::new(&http(), &sink.url("/d")).unwrap(),
        )
        .unwrap();
    let mut n = Notification::new("t".repeat(400), "m".repeat(10_000));
    for i in 0..40 {
        n.content.fields.insert(format!("f{i}"), "v".repeat(2000));
    }
    service.multicast(n, &["slack", "discord"]).await.unwrap();
    let got = sink.wait_for(2, Duration::from_secs(5));
    for r in got {
        let b = r.json();
        if r.path == "/s" {
            let header = b["blocks"][0]["text"]["text"].as_str().unwrap();
            assert_eq!(header.chars().count(), 150);
            assert!(header.ends_with("… [truncated]"));
            let message = b["blocks"][1]["text"]["text"].as_str().unwrap();
            assert_eq!(message.chars().count(), 3000);
        } else {
            let e = &b["embeds"][0];
            assert_eq!(e["title"].as_str().unwrap().chars().count(), 256);
            assert!(
                e["description"]
                    .as_str()
                    .unwrap()
                    .ends_with("… [truncated]")
            );
            let total: usize = ["title", "description"]
                .iter()
                .map(|k| e[k].as_str().unwrap().chars().count())
                .sum::<usize>()
                + e["fields"].as_array().map_or(0, |f| {
                    f.iter()
                        .map(|x| {
                            x["name"].as_str().unwrap().chars().count()
                                + x["value"].as_str().unwrap().chars().count()
                        })
                        .sum()
                })
                + e["footer"]["text"]
                    .as_str()
                    .map_or(0, |t| t.chars().count());
            assert!(total <= 6000, "{total}");
        }
    }
}

const MARKER: &str = "… [truncated]";

/// A notification over every platform's limits: a long title and message with
/// characters JSON escapes or UTF-8 spreads over several bytes, 300 long fields, an
/// image URL of 5,000 characters, and long context values.
fn oversized() -> Notification {
    let mut n = Notification::new("Tï\"".repeat(400), "m\"é\n".repeat(60_000));
    for i in 0..300 {
        n.content.fields.insert(
            format!("field-{i:03}-{}", "n".repeat(300)),
            "v\"".repeat(1500),
        );
    }
    n.content.image_url = format!("https://example.com/{}", "a".repeat(5000));
    n.context.priority = Priority::Critical;
    n.context.source = "s".repeat(4000);
    n.context.environment = "e".repeat(4000);
    n.context.service = "v".repeat(4000);
    n.context.trace_id = "t".repeat(4000);
    n.context.timestamp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    n
}

/// Sends `n` through `notifier` to `sink`; the one request that arrived.
async fn deliver_one(notifier: impl Notifier, n: &Notification, sink: &Sink) -> Recorded {
    notifier.send(n).await.expect("delivered");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    got[0].clone()
}

fn chars(v: &serde_json::Value) -> usize {
    v.as_str().expect("text").chars().count()
}

fn cut_to(v: &serde_json::Value, max: usize) {
    let text = v.as_str().expect("text");
    assert!(
        text.chars().count() <= max,
        "{} > {max}",
        text.chars().count()
    );
    assert!(
        text.ends_with(MARKER),
        "no marker: …{}",
        &text[text.len().saturating_sub(40)..]
    );
}

#[tokio::test]
async fn slack_stays_within_block_kit_limits() {
    let sink = Sink::start();
    let n = oversized();
    let r = deliver_one(
        SlackNotifier::new(&http(), &sink.url("/s")).unwrap(),
        &n,
        &sink,
    )
    .await;
    let b = r.json();
    // The fallback is the title, escaped: within 3000 characters, not cut.
    assert_eq!(chars(&b["text"]), 1200);
    let blocks = b["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50);
    assert_eq!(blocks[0]["type"], "header");
    cut_to(&blocks[0]["text"]["text"], 150);
    cut_to(&blocks[1]["text"]["text"], 3000);
    cut_to(&blocks[2]["text"]["text"], 3000);
    assert!(
        blocks.iter().all(|b| b["type"] != "image"),
        "an image URL over 3000 characters is left out"
    );
    let context = blocks.last().unwrap();
    assert_eq!(context["type"], "context");
    let elements = context["elements"].as_array().unwrap();
    assert!(elements.len() <= 10);
    for e in &elements[..4] {
        cut_to(&e["text"], 3000);
    }
    let note = elements[4]["text"].as_str().unwrap();
    assert!(note.starts_with("*Image:* … [truncated]"), "{note}");
}

#[tokio::test]
async fn discord_stays_within_embed_limits() {
    let sink = Sink::with_default(Reply::status(204));
    let n = oversized();
    let r = deliver_one(
        DiscordNotifier::new(&http(), &sink.url("/d")).unwrap(),
        &n,
        &sink,
    )
    .await;
    let e = &r.json()["embeds"][0];
    cut_to(&e["title"], 256);
    cut_to(&e["description"], 4096);
    cut_to(&e["footer"]["text"], 2048);
    let fields = e["fields"].as_array().unwrap();
    assert!(fields.len() <= 25);
    for f in fields {
        assert!(chars(&f["name"]) <= 256);
        assert!(chars(&f["value"]) <= 1024);
    }
    let note = fields.last().unwrap();
    assert_eq!(note["name"], MARKER);
    assert_eq!(
        note["value"],
        format!("{} more fields not shown", 300 - (fields.len() - 1))
    );
    let total = chars(&e["title"])
        + chars(&e["description"])
        + chars(&e["footer"]["text"])
        + fields
            .iter()
            .map(|f| chars(&f["name"]) + chars(&f["value"]))
            .sum::<usize>();
    assert!(total <= 6000, "{total}");
    // With a short message, the fields get the room: 24 fields and the note.
    let mut n = oversized();
    n.content.message = "short".into();
    DiscordNotifier::new(&http(), &sink.url("/d"))
        .unwrap()
        .send(&n)
        .await
        .unwrap();
    let got = sink.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    let fields = got[1].json()["embeds"][0]["fields"]
        .as_array()
        .unwrap()
        .clone();
    assert!(fields.len() >= 2 && fields.len() <= 25, "{}", fields.len());
    cut_to(&fields[0]["name"], 256);
    cut_to(&fields[0]["value"], 1024);
}

#[tokio::test]
async fn pagerduty_stays_within_the_events_api_limits() {
    let sink = Sink::with_default(Reply::status(202));
    let n = oversized();
    let pd = PagerDutyNotifier::new(&http(), "R0UT1NGKEY0000000000000000000000")
        .unwrap()
        .with_events_url(&sink.url("/v2/enqueue"))
        .unwrap();
    let r = deliver_one(pd, &n, &sink).await;
    assert!(r.body.len() <= 512_000, "{}", r.body.len());
    assert!(r.body.len() > 400_000, "the room is used: {}", r.body.len());
    let b = r.json();
    assert_eq!(b["routing_key"], "R0UT1NGKEY0000000000000000000000");
    assert!(chars(&b["dedup_key"]) <= 255);
    let p = &b["payload"];
    cut_to(&p["summary"], 1024);
    cut_to(&p["source"], 255);
    cut_to(&p["component"], 255);
    assert_eq!(p["severity"], "critical");
    let d = &p["custom_details"];
    cut_to(&d["title"], 1024);
    cut_to(&d["service"], 1024);
    assert!(d["message"].as_str().unwrap().ends_with(MARKER));
    let fields = d["fields"].as_object().unwrap();
    assert!(fields.len() < 300);
    assert_eq!(
        fields[MARKER],
        format!("{} more fields not shown", 300 - (fields.len() - 1))
    );
    assert!(
        b.get("images").is_none(),
        "an image URL over 2048 bytes is left out"
    );
    // A dedup key given as an option is cut to 255 characters.
    let mut n = oversized();
    n.provider_options.insert("dedup_key", "k".repeat(1000));
    n.provider_options.insert("event_action", "resolve");
    let e = PagerDutyNotifier::event(&n).unwrap();
    cut_to(&e["dedup_key"], 255);
}

/// Through the service, not only `event()`: the service does not cut the message to the
/// summary's 1024 characters before PagerDuty sees it.
#[tokio::test]
async fn pagerduty_through_the_service_keeps_the_message_whole_and_cuts_the_summary() {
    let sink = Sink::with_default(Reply::status(202));
    let pd = PagerDutyNotifier::new(&http(), "R0UT1NGKEY0000000000000000000000")
        .unwrap()
        .with_events_url(&sink.url("/v2/enqueue"))
        .unwrap();
    let s = NotificationService::builder()
        .with_retry_policy(fast_retries())
        .build();
    s.register("pagerduty", pd).unwrap();
    assert_eq!(s.capabilities("pagerduty").unwrap().max_message_length, 0);
    // No title: the summary is the message, cut to 1024 characters.
    let message: String = (0..5000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    s.notification()
        .message(message.clone())
        .provider("pagerduty")
        .send_with_retries()
        .await
        .unwrap();
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let p = &got[0].json()["payload"];
    assert_eq!(
        p["custom_details"]["message"].as_str().unwrap(),
        message,
        "the 5,000 characters arrive whole"
    );
    let summary = p["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with(MARKER), "{summary}");
    assert!(message.starts_with(summary.trim_end_matches(MARKER)));
    // A message over the whole budget is still fitted, by the provider, within
    // 512,000 bytes: here the 300 long fields leave it its floor of 64 KiB, far more
    // than the 1024 characters the service used to cut it to.
    s.send_with_retries(oversized()).await.unwrap();
    let got = sink.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    assert!(got[1].body.len() <= 512_000, "{}", got[1].body.len());
    let b = got[1].json();
    let m = &b["payload"]["custom_details"]["message"];
    assert!(m.as_str().unwrap().ends_with(MARKER));
    assert!(chars(m) > 30_000, "the room left is used: {}", chars(m));
    cut_to(&b["payload"]["summary"], 1024);
}

#[tokio::test]
async fn teams_bodies_stay_under_28_kb() {
    for format in [TeamsFormat::Workflows, TeamsFormat::MessageCard] {
        let sink = Sink::with_default(Reply::status(202));
        let n = oversized();
        let r = deliver_one(
            TeamsNotifier::new(&http(), &sink.url("/t"), format).unwrap(),
            &n,
            &sink,
        )
        .await;
        assert!(r.body.len() <= 27_000, "{format:?}: {}", r.body.len());
        assert!(
            r.body.len() > 26_000,
            "{format:?}: the room is used: {}",
            r.body.len()
        );
        let b = r.json();
        let (title, message, facts, name) = match format {
            TeamsFormat::Workflows => {
                let body = &b["attachments"][0]["content"]["body"];
                assert!(
                    body.as_array()
                        .unwrap()
                        .iter()
                        .all(|x| x["type"] != "Image"),
                    "an image URL over 2048 bytes is left out"
                );
                (
                    &body[0]["text"],
                    &body[1]["text"],
                    &body[2]["facts"],
                    "title",
                )
            }
            _ => {
                let s = &b["sections"][0];
                cut_to(&b["summary"], 256);
                (
                    &s["activityTitle"],
                    &s["activitySubtitle"],
                    &s["facts"],
                    "name",
                )
            }
        };
        cut_to(title, 256);
        assert!(message.as_str().unwrap().ends_with(MARKER), "{format:?}");
        let facts = facts.as_array().unwrap();
        for f in facts {
            assert!(chars(&f[name]) <= 256);
            assert!(chars(&f["value"]) <= 1024);
        }
        cut_to(&facts[1]["value"], 1024);
        let note = facts.last().unwrap();
        assert_eq!(note[name], MARKER);
        let shown = facts.len() - 5 - 1;
        assert_eq!(
            note["value"],
            format!("{} more fields not shown", 300 - shown)
        );
    }
}

#[tokio::test]
async fn google_chat_stays_within_32000_bytes_and_100_widgets() {
    let sink = Sink::start();
    let n = oversized();
    let r = deliver_one(
        GoogleChatNotifier::new(&http(), &sink.url("/g")).unwrap(),
        &n,
        &sink,
    )
    .await;
    assert!(r.body.len() <= 32_000, "{}", r.body.len());
    let b = r.json();
    cut_to(&b["text"], 256);
    let card = &b["cardsV2"][0]["card"];
    cut_to(&card["header"]["title"], 256);
    let widgets = card["sections"][0]["widgets"].as_array().unwrap();
    assert!(widgets.len() <= 100);
    cut_to(&widgets[0]["textParagraph"]["text"], 4096);
    let labelled: Vec<_> = widgets
        .iter()
        .filter_map(|w| w.get("decoratedText"))
        .collect();
    for d in &labelled {
        assert!(chars(&d["topLabel"]) <= 256);
        assert!(chars(&d["text"]) <= 1024);
    }
    cut_to(&labelled[0]["topLabel"], 256);
    cut_to(&labelled[0]["text"], 1024);
    let note = labelled
        .iter()
        .find(|d| d["topLabel"] == MARKER)
        .expect("a note");
    let shown = labelled.len() - 4 - 1;
    assert_eq!(
        note["text"],
        format!("{} more fields not shown", 300 - shown)
    );
    assert!(widgets.iter().all(|w| w.get("image").is_none()));
    // Many short fields: the widget count is what limits them.
    let mut n = Notification::new("t", "m");
    for i in 0..500 {
        n.content.fields.insert(format!("f{i}"), "v");
    }
    n.content.image_url = "https://example.com/i.png".into();
    GoogleChatNotifier::new(&http(), &sink.url("/g"))
        .unwrap()
        .send(&n)
        .await
        .unwrap();
    let got = sink.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    let b = got[1].json();
    let widgets = b["cardsV2"][0]["card"]["sections"][0]["widgets"]
        .as_array()
        .unwrap();
    assert_eq!(widgets.len(), 100);
    // The message, 97 fields, the note and the image.
    assert_eq!(
        widgets[98]["decoratedText"],
        serde_json::json!({"topLabel": MARKER, "text": "403 more fields not shown"})
    );
    assert!(widgets[99].get("image").is_some());
}

#[tokio::test]
async fn ntfy_and_webhook_stay_within_their_limits() {
    let sink = Sink::start();
    let n = oversized();
    let r = deliver_one(
        NtfyNotifier::from_topic_url(&http(), &sink.url("/alerts")).unwrap(),
        &n,
        &sink,
    )
    .await;
    assert!(r.body.len() <= 4096, "{}", r.body.len());
    assert!(r.text().ends_with(MARKER));
    let title = r.header("title").unwrap();
    let b64 = title
        .trim_start_matches("=?UTF-8?B?")
        .trim_end_matches("?=");
    let title = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    cut_to(&serde_json::Value::String(title), 256);

    // The webhook cuts the message to 100,000 characters, and sends a webhook-id even
    // unsigned.
    let sink = Sink::start();
    let mut n = oversized();
    n.content.message = "x".repeat(150_000);
    let r = deliver_one(
        WebhookNotifier::new(&http(), &sink.url("/h")).unwrap(),
        &n,
        &sink,
    )
    .await;
    cut_to(&r.json()["message"], 100_000);
    assert_eq!(
        r.header("webhook-id"),
        Some(format!("msg_{}", n.context.id.trim_start_matches("ntf_")).as_str())
    );
    assert!(r.header("webhook-signature").is_none());
}

#[tokio::test]
async fn an_answer_echoing_the_request_does_not_carry_the_secret_into_the_error() {
    // A careless server answers "Cannot POST /hooks/<secret>?token=<secret>
    // (authorization: Bearer <secret>)".
    let sink = Sink::with_default(Reply::status(404).echoing());
    let hook = WebhookNotifier::new(
        &http(),
        &sink.url("/hooks/T0SECRETPATH/B0SECRETPATH?token=QUERYSECRET"),
    )
    .unwrap();
    let ntfy = NtfyNotifier::from_topic_url(&http(), &sink.url("/topicSECRET"))
        .unwrap()
        .with_token("tk_TOKENSECRET")
        .unwrap();
    let slack = SlackNotifier::new(&http(), &sink.url("/services/T000/B000/SLACKSECRET")).unwrap();
    let errors = [
        hook.send(&sample()).await.unwrap_err(),
        ntfy.send(&sample()).await.unwrap_err(),
        slack.send(&sample()).await.unwrap_err(),
    ];
    let answers = sink.requests();
    assert_eq!(answers.len(), 3);
    for e in errors {
        let text = format!("{e} / {e:?}");
        assert!(text.contains("404"), "{text}");
        assert!(
            text.contains("Cannot POST"),
            "the rest of the answer is kept: {text}"
        );
        assert!(text.contains("<redacted>"), "{text}");
        for secret in [
            "SECRETPATH",
            "QUERYSECRET",
            "topicSECRET",
            "TOKENSECRET",
            "SLACKSECRET",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

/// The forms a secret could come back in: as it is, JSON-escaped, percent-encoded and
/// base64 (as basic auth sends `user:password`).
fn encodings(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap();
    let percent: String = secret
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    vec![
        secret.to_string(),
        json[1..json.len() - 1].to_string(),
        percent,
        base64::engine::general_purpose::STANDARD.encode(secret),
    ]
}

/// What of `text` an error's excerpt could show: its first 200 characters, without
/// control characters.
fn window(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[tokio::test]
async fn an_answer_echoing_the_whole_request_carries_no_secret_into_the_error() {
    // An echo endpoint or a debugging proxy answers 500 with the whole request: request
    // line, every header and the body (in one order, then the other, so that each
    // part of the request is at the start of the answer once).
    let key = "R0UTINGKEY5ECRET0000000000000abc";
    let whsec = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"a signing key of 32 bytes long!!")
    );
    let mut n = Notification::new("Disk", "full");
    n.provider_options.insert("event_action", "acknowledge");
    n.provider_options.insert("dedup_key", "d1");
    // Per provider: the secrets the request carries (each must come back at the start
    // of an echo, or the test would prove nothing), and those it must never carry.
    let cases: [(&str, &[&str], &[&str]); 9] = [
        ("pagerduty", &[key], &[]),
        (
            "webhook",
            &["KEYSECRET-x1y2z3", "Tok/en+SECRET=", "HOOKPATHSECRET"],
            &[&whsec, "a signing key of 32 bytes long!!"],
        ),
        (
            "ntfy token",
            &["tk_NTFYTOKENSECRET1", "NTFYTOPICSECRET"],
            &[],
        ),
        (
            "ntfy basic",
            &["YWxpY2U6UEFTU1NFQ1JFVC05", "NTFYTOPICSECRET"],
            &["alice:PASSSECRET-9", "PASSSECRET-9"],
        ),
        (
            "ntfy URL credentials",
            &["aGFydmV5Omh1bnRlcjI=", "NTFYTOPICSECRET"],
            &["harvey:hunter2", "hunter2"],
        ),
        ("slack", &["SLACKPATHSECRET", "T0SLACK", "B0SLACK"], &[]),
        ("discord", &["DISCORDPATHSECRET-x", "123456789"], &[]),
        ("teams", &["TEAMSWORKFLOWID", "TEAMSSIGSECRET"], &[]),
        (
            "googlechat",
            &["CHATKEYSECRET", "CHATTOKEN%3DSECRET", "AAAASPACE"],
            &["CHATTOKEN=SECRET"],
        ),
    ];
    let mut echoed: Vec<String> = vec![String::new(); cases.len()];
    let mut leaks: Vec<String> = Vec::new();
    for body_first in [false, true] {
        let sink = Sink::with_default(Reply::status(500).echoing_all(body_first));
        let http = http();
        let errors = [
            PagerDutyNotifier::new(&http, key)
                .unwrap()
                .with_events_url(&sink.url("/v2/enqueue"))
                .unwrap()
                .send(&n)
                .await,
            WebhookNotifier::new(&http, &sink.url("/hooks/HOOKPATHSECRET"))
                .unwrap()
                .with_header("X-Api-Key", "KEYSECRET-x1y2z3")
                .unwrap()
                .with_header("X-Other", "Tok/en+SECRET=")
                .unwrap()
                .with_signing_secret(&whsec)
                .unwrap()
                .send(&n)
                .await,
            NtfyNotifier::from_topic_url(&http, &sink.url("/NTFYTOPICSECRET"))
                .unwrap()
                .with_token("tk_NTFYTOKENSECRET1")
                .unwrap()
                .send(&n)
                .await,
            NtfyNotifier::from_topic_url(&http, &sink.url("/NTFYTOPICSECRET"))
                .unwrap()
                .with_basic_auth("alice", "PASSSECRET-9")
                .unwrap()
                .send(&n)
                .await,
            // A user:password in the URL, which reqwest sends as basic auth.
            NtfyNotifier::from_topic_url(
                &http,
                &sink
                    .url("/NTFYTOPICSECRET")
                    .replace("http://", "http://harvey:hunter2@"),
            )
            .unwrap()
            .send(&n)
            .await,
            SlackNotifier::new(
                &http,
                &sink.url("/services/T0SLACK/B0SLACK/SLACKPATHSECRET"),
            )
            .unwrap()
            .send(&n)
            .await,
            DiscordNotifier::new(
                &http,
                &sink.url("/api/webhooks/123456789/DISCORDPATHSECRET-x"),
            )
            .unwrap()
            .send(&n)
            .await,
            TeamsNotifier::new(
                &http,
                &sink.url(
                    "/workflows/TEAMSWORKFLOWID/triggers/manual/paths/invoke\
                     ?api-version=2016-06-01&sig=TEAMSSIGSECRET",
                ),
                TeamsFormat::Workflows,
            )
            .unwrap()
            .send(&n)
            .await,
            GoogleChatNotifier::new(
                &http,
                &sink.url(
                    "/v1/spaces/AAAASPACE/messages?key=CHATKEYSECRET&token=CHATTOKEN%3DSECRET",
                ),
            )
            .unwrap()
            .send(&n)
            .await,
        ];
        let requests = sink.requests();
        assert_eq!(requests.len(), cases.len());
        for (i, ((name, sent, never), e)) in cases.iter().zip(errors).enumerate() {
            let e = e.expect_err(name);
            assert!(
                matches!(e, SendError::Status { status: 500, .. }),
                "{name}: {e:?}"
            );
            echoed[i] += &format!("{} | ", window(&requests[i].whole(body_first)));
            let text = format!("{e} / {e:?}");
            assert!(text.contains("<redacted>"), "{name}: {text}");
            assert!(
                text.contains("HTTP/1.1"),
                "{name}: the rest is kept: {text}"
            );
            for secret in sent.iter().chain(never.iter()) {
                for form in encodings(secret) {
                    if text.to_lowercase().contains(&form.to_lowercase()) {
                        leaks.push(format!("{name}: {form} (of {secret}) in {text}"));
                    }
                }
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
    // Each secret sent was within the first 200 characters of an echo: without the
    // masking, the error would have shown it.
    for ((name, sent, _), echoed) in cases.iter().zip(&echoed) {
        for secret in *sent {
            assert!(echoed.contains(secret), "{name}: {secret} not echoed early");
        }
    }
}

#[test]
fn no_provider_shows_its_secrets_in_debug() {
    let http = http();
    let secret_b64 =
        base64::engine::general_purpose::STANDARD.encode(b"a signing key of 32 bytes long!!");
    let shown = [
        format!(
            "{:?}",
            SlackNotifier::new(&http, "https://hooks.slack.com/services/T0/B0/SLACKSECRET")
                .unwrap()
        ),
        format!(
            "{:?}",
            DiscordNotifier::new(&http, "https://discord.com/api/webhooks/1/DISCORDSECRET")
                .unwrap()
        ),
        format!(
            "{:?}",
            TeamsNotifier::new(
                &http,
                "https://example.webhook.office.com/workflows/TEAMSSECRET?sig=SIGSECRET",
                TeamsFormat::Workflows
            )
            .unwrap()
        ),
        format!(
            "{:?}",
            GoogleChatNotifier::new(
                &http,
                "https://chat.googleapis.com/v1/spaces/S/messages?key=CHATSECRET&token=CHATTOKEN"
            )
            .unwrap()
        ),
        format!(
            "{:?}",
            WebhookNotifier::new(&http, "https://example.com/hooks/HOOKSECRET")
                .unwrap()
                .with_header("Authorization", "Bearer HEADERSECRET")
                .unwrap()
                .with_signing_secret(&format!("whsec_{secret_b64}"))
                .unwrap()
        ),
        format!(
            "{:?}",
            PagerDutyNotifier::new(&http, "R0UTINGKEYSECRET00000000000000ab").unwrap()
        ),
        format!(
            "{:?}",
            NtfyNotifier::new(&http, "https://ntfy.example.com", "TOPICSECRET")
                .unwrap()
                .with_basic_auth("alice", "PASSSECRET")
                .unwrap()
        ),
    ];
    for text in &shown {
        for secret in [
            "SLACKSECRET",
            "DISCORDSECRET",
            "TEAMSSECRET",
            "SIGSECRET",
            "CHATSECRET",
            "CHATTOKEN",
            "HOOKSECRET",
            "HEADERSECRET",
            secret_b64.as_str(),
            "R0UTINGKEYSECRET",
            "PASSSECRET",
        ] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    }
}

/// The four priorities, from low to critical.
const PRIORITIES: [Priority; 4] = [
    Priority::Low,
    Priority::Normal,
    Priority::High,
    Priority::Critical,
];

/// Sends the sample at each priority, low to critical, through `notifier` to `sink`;
/// returns the four requests, in that order, each checked to be a POST to `path`.
async fn at_each_priority(notifier: &impl Notifier, sink: &Sink, path: &str) -> Vec<Recorded> {
    for (i, p) in PRIORITIES.into_iter().enumerate() {
        let mut n = sample();
        n.context.priority = p;
        notifier
            .send(&n)
            .await
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(sink.wait_for(i + 1, Duration::from_secs(5)).len(), i + 1);
    }
    let got = sink.requests();
    assert_eq!(got.len(), PRIORITIES.len());
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, path);
    }
    got
}

/// The string at JSON `pointer` in each request's body.
fn strings_at(got: &[piko_obs_testkit::sink::Recorded], pointer: &str) -> Vec<String> {
    got.iter()
        .map(|r| {
            r.json()
                .pointer(pointer)
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("no string at {pointer}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn slack_header_emoji_for_each_priority() {
    let sink = Sink::start();
    let slack = SlackNotifier::new(&http(), &sink.url("/services/T/B/X")).unwrap();
    let got = at_each_priority(&slack, &sink, "/services/T/B/X").await;
    let headers: Vec<String> = strings_at(&got, "/blocks/0/text/text");
    assert_eq!(
        headers,
        [
            ":bulb: Disk almost full",
            ":information_source: Disk almost full",
            ":warning: Disk almost full",
            ":rotating_light: Disk almost full",
        ]
    );
    for r in &got {
        assert_eq!(r.json()["blocks"][0]["type"], "header");
    }
}

#[tokio::test]
async fn discord_embed_colour_for_each_priority() {
    let sink = Sink::with_default(Reply::status(204));
    let discord = DiscordNotifier::new(&http(), &sink.url("/api/webhooks/1/tok")).unwrap();
    let got = at_each_priority(&discord, &sink, "/api/webhooks/1/tok").await;
    let colours: Vec<u64> = got
        .iter()
        .map(|r| r.json()["embeds"][0]["color"].as_u64().unwrap())
        .collect();
    // #95A5A6, #3498DB, #F1C40F, #E74C3C.
    assert_eq!(colours, [9_807_270, 3_447_003, 15_844_367, 15_158_332]);
    assert_eq!(
        colours,
        [0x95A5A6, 0x3498DB, 0xF1C40F, 0xE74C3C],
        "the documented hex colours"
    );
}

#[tokio::test]
async fn pagerduty_severity_for_each_priority() {
    let sink = Sink::with_default(Reply::status(202));
    let pd = PagerDutyNotifier::new(&http(), "R0UT1NGKEY0000000000000000000000")
        .unwrap()
        .with_events_url(&sink.url("/v2/enqueue"))
        .unwrap();
    let got = at_each_priority(&pd, &sink, "/v2/enqueue").await;
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let b = r.json();
            assert_eq!(b["event_action"], "trigger");
            (
                b["payload"]["severity"].as_str().unwrap().to_string(),
                b["payload"]["custom_details"]["priority"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let want = [
        ("info", "low"),
        ("warning", "normal"),
        ("error", "high"),
        ("critical", "critical"),
    ]
    .map(|(s, p)| (s.to_string(), p.to_string()));
    assert_eq!(seen, want);
}

#[tokio::test]
async fn teams_colours_and_headings_for_each_priority() {
    let sink = Sink::with_default(Reply::status(202));
    let workflows =
        TeamsNotifier::new(&http(), &sink.url("/workflows/abc"), TeamsFormat::Workflows).unwrap();
    let got = at_each_priority(&workflows, &sink, "/workflows/abc").await;
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let card = &r.json()["attachments"][0]["content"];
            (
                card["body"][0]["color"].as_str().unwrap().to_string(),
                card["body"][2]["facts"][0]["value"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let want = [
        ("Default", "low"),
        ("Default", "normal"),
        ("Warning", "high"),
        ("Attention", "critical"),
    ]
    .map(|(c, p)| (c.to_string(), p.to_string()));
    assert_eq!(seen, want);

    let legacy = Sink::start();
    let card = TeamsNotifier::new(
        &http(),
        &legacy.url("/webhookb2/x"),
        TeamsFormat::MessageCard,
    )
    .unwrap();
    let got = at_each_priority(&card, &legacy, "/webhookb2/x").await;
    let seen: Vec<(String, String, String)> = got
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["themeColor"].as_str().unwrap().to_string(),
                b["title"].as_str().unwrap().to_string(),
                b["sections"][0]["facts"][0]["value"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let want = [
        ("808080", "📢 Notification", "low"),
        ("0078D4", "📢 Notification", "normal"),
        ("FFA500", "⚠️ High Priority Notification", "high"),
        ("FF0000", "🚨 Critical Notification", "critical"),
    ]
    .map(|(c, t, p)| (c.to_string(), t.to_string(), p.to_string()));
    assert_eq!(seen, want);
}

#[tokio::test]
async fn google_chat_subtitle_for_each_priority() {
    let sink = Sink::start();
    let chat = GoogleChatNotifier::new(&http(), &sink.url("/v1/spaces/AAA/messages")).unwrap();
    let got = at_each_priority(&chat, &sink, "/v1/spaces/AAA/messages").await;
    let subtitles: Vec<String> = strings_at(&got, "/cardsV2/0/card/header/subtitle");
    assert_eq!(
        subtitles,
        [
            "Low priority",
            "Normal priority",
            "High priority",
            "Critical priority"
        ]
    );
}

#[tokio::test]
async fn ntfy_priority_and_tags_for_each_priority() {
    let sink = Sink::start();
    let ntfy = NtfyNotifier::from_topic_url(&http(), &sink.url("/alerts")).unwrap();
    let got = at_each_priority(&ntfy, &sink, "/alerts").await;
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|r| (r.header("priority").unwrap(), r.header("tags").unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("low", "bell"),
            ("default", "bell"),
            ("high", "warning"),
            ("urgent", "rotating_light,fire"),
        ]
    );
}

#[tokio::test]
async fn webhook_priority_text_for_each_priority() {
    let sink = Sink::start();
    let hook = WebhookNotifier::new(&http(), &sink.url("/hooks/alerts")).unwrap();
    let got = at_each_priority(&hook, &sink, "/hooks/alerts").await;
    let seen: Vec<String> = got
        .iter()
        .map(|r| r.json()["priority"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, ["low", "normal", "high", "critical"]);
}

#[tokio::test]
async fn a_connect_that_cannot_complete_ends_at_the_connect_timeout() {
    // A listener on loopback with a backlog of 0 that never accepts: once its accept
    // queue is full, Linux drops further SYNs (tcp_abort_on_overflow is 0 by default),
    // so a connect is neither accepted nor refused: it waits.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the queue: it is full when two connects in a row do not complete (two, so
    // that one slow connect on a busy machine is not taken for a full queue).
    let mut queued = Vec::new();
    let mut waited = 0;
    for _ in 0..32 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(stream)) => {
                queued.push(stream);
                waited = 0;
            }
            Ok(Err(e)) => panic!("connect to the listener: {e}"),
            Err(_) => {
                waited += 1;
                if waited == 2 {
                    break;
                }
            }
        }
    }
    assert_eq!(
        waited,
        2,
        "the accept queue did not fill after {} connections",
        queued.len()
    );

    let connect = Duration::from_millis(400);
    let total = Duration::from_secs(20);
    let client = HttpClient::with_timeouts(connect, total).unwrap();
    let hook = WebhookNotifier::new(&client, &format!("http://{addr}/hooks/SECRETHOOK")).unwrap();
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(10), hook.send(&sample()))
        .await
        .expect("the send ended within 10 s")
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= connect - Duration::from_millis(20),
        "ended after {took:?}, before the connect timeout"
    );
    assert!(
        took < Duration::from_secs(4),
        "took {took:?}: the connect timeout ({connect:?}) did not end it"
    );
    assert!(
        matches!(
            e,
            SendError::Transport {
                provider: "webhook",
                ..
            }
        ),
        "expected a transport error, got {e:?}"
    );
    assert_eq!(
        e.to_string(),
        "webhook: request failed: no connection within 400ms (the connect timeout)"
    );
    assert!(e.is_retryable(), "a connect timeout is worth a retry");
    let text = format!("{e:?}");
    assert!(!text.contains("SECRETHOOK"), "{text}");
    drop(queued);
}

/// The sink's streamed bodies, once one has ended (at most 5 s), waiting without
/// blocking the runtime, whose tasks close the client's connections.
async fn streamed_bodies_ended(sink: &Sink) -> Vec<piko_obs_testkit::sink::Streamed> {
    let end = Instant::now() + Duration::from_secs(5);
    while sink.streamed().is_empty() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sink.streamed()
}

#[tokio::test]
async fn an_answer_is_read_up_to_the_cap_and_an_error_quotes_a_short_excerpt() {
    assert_eq!(MAX_ANSWER_BYTES, 64 * 1024);
    // 256 MiB: far over the cap, and over what the loopback socket buffers hold, so a
    // client that read it all would be seen to.
    let len = 256 * 1024 * 1024;
    let sink = Sink::with_default(Reply::status(500).with_body_of(len));
    let hook = WebhookNotifier::new(&http(), &sink.url("/hooks/alerts")).unwrap();
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(10), hook.send(&sample()))
        .await
        .expect("the send ended within 10 s")
        .unwrap_err();
    let took = started.elapsed();
    let SendError::Status {
        status,
        detail: Some(detail),
        ..
    } = &e
    else {
        panic!("expected a 500 with an excerpt, got {e:?}")
    };
    assert_eq!(*status, 500);
    assert!(detail.chars().count() <= 200, "{} characters", detail.len());
    assert!(
        "0123456789abcdef".repeat(13).starts_with(detail.as_str()),
        "{detail}"
    );
    assert_eq!(
        e.to_string(),
        format!("webhook returned status 500: {detail}")
    );
    assert!(e.is_retryable());
    let ended = streamed_bodies_ended(&sink).await;
    assert_eq!(ended.len(), 1, "the connection was not closed");
    assert!(
        !ended[0].finished && ended[0].sent < len / 4,
        "the client read on past the cap: {:?}",
        ended[0]
    );
    assert!(ended[0].sent >= MAX_ANSWER_BYTES, "{:?}", ended[0]);
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // A success with a huge answer is over as soon as the status is in.
    let ok = Sink::with_default(Reply::status(200).with_body_of(len));
    let hook = WebhookNotifier::new(&http(), &ok.url("/hooks/alerts")).unwrap();
    tokio::time::timeout(Duration::from_secs(10), hook.send(&sample()))
        .await
        .expect("the send ended within 10 s")
        .expect("delivered");
    let ended = streamed_bodies_ended(&ok).await;
    assert_eq!(ended.len(), 1, "the connection was not closed");
    assert!(
        !ended[0].finished && ended[0].sent < len / 4,
        "{:?}",
        ended[0]
    );
}
