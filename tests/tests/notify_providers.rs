//! Each provider against a webhook sink on loopback: method, path, headers and body,
//! field by field, against the platform's documented payload.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hmac::Mac as _;
use piko_obs_notify::{Notification, NotificationService, Notifier, Priority};
use piko_obs_notify_providers::{
    DiscordNotifier, GoogleChatNotifier, HttpClient, NtfyNotifier, PagerDutyNotifier,
    SlackNotifier, StdoutFormat, StdoutNotifier, TeamsFormat, TeamsNotifier, WebhookNotifier,
};
use piko_obs_tests::Capture;
use piko_obs_tests::sink::{Recorded, Reply, Sink};

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
    assert_eq!(r.path, "/api/webhooks/1/tok");
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
    assert_eq!(r.path, "/v2/enqueue");
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

    let mut bad = sample();
    bad.provider_options.insert("event_action", "snooze");
    let e = pd.send(&bad).await.unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(sink.requests().len(), 2, "a bad action is not sent");
}

#[tokio::test]
async fn teams_posts_an_adaptive_card_or_a_message_card() {
    let sink = Sink::with_default(Reply::status(202));
    let r = deliver(
        TeamsNotifier::new(&http(), &sink.url("/workflows/abc"), TeamsFormat::Workflows).unwrap(),
        &sink,
    )
    .await;
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
    let b = r.json();
    assert_eq!(b["@type"], "MessageCard");
    assert_eq!(b["@context"], "http://schema.org/extensions");
    assert_eq!(b["themeColor"], "FFA500");
    assert_eq!(b["title"], "⚠️ High Priority Notification");
    assert_eq!(b["summary"], "Disk almost full");
    assert_eq!(b["sections"][0]["activityTitle"], "Disk almost full");
    assert_eq!(b["sections"][0]["facts"][0]["name"], "Priority");
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
    assert_eq!(r.path, "/v1/spaces/AAA/messages?key=k&token=t");
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
    let r = deliver(hook, &sink).await;
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
    assert_eq!(
        b["fields"],
        serde_json::json!({"host": "db-1", "mount": "/var"})
    );
    // Standard Webhooks: HMAC-SHA256 over "id.timestamp.body", base64, prefixed v1.
    let id = r.header("webhook-id").unwrap();
    let ts = r.header("webhook-timestamp").unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts.parse().unwrap()) < 60);
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.header("webhook-signature"), Some(expected.as_str()));
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
