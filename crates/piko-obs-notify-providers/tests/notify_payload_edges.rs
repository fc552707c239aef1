//! Edge payloads of the chat providers against a webhook sink on loopback: a
//! notification with only a message, one with a field whose name is empty, one whose
//! value is empty and one where both are blank, and one with only a title. Each body
//! that arrives is checked field by field: every field the platform requires is present
//! and not empty (once trimmed, as the platforms trim), and every documented limit
//! holds.

use std::time::{Duration, SystemTime};

use piko_obs_notify::{Notification, Notifier, Priority};
use piko_obs_notify_providers::{
    DiscordNotifier, GoogleChatNotifier, HttpClient, SlackNotifier, TeamsFormat, TeamsNotifier,
};
use piko_obs_testkit::sink::Sink;
use serde_json::Value;

const MESSAGE: &str = "Disk usage at 95%\non db-1";
const TITLE: &str = "Only a title";
/// What a blank name becomes where the platform requires one (Discord, Teams facts).
const ZWSP: &str = "\u{200b}";

fn http() -> HttpClient {
    HttpClient::new().unwrap()
}

fn at_epoch(mut n: Notification) -> Notification {
    n.context.timestamp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    n
}

/// (a) A message and no title; no context, no fields.
fn message_only() -> Notification {
    at_epoch(Notification::new("", MESSAGE))
}

/// (b) A field with an empty name, one with an empty value, one with both blank.
fn empty_fields() -> Notification {
    let mut n = Notification::new("Disk almost full", "95% used");
    n.content.fields.insert("", "db-1");
    n.content.fields.insert("mount", "");
    n.content.fields.insert(" ", " \t");
    n.context.priority = Priority::High;
    n.context.source = "disk-monitor".into();
    at_epoch(n)
}

/// (c) A title and no message; no context, no fields.
fn title_only() -> Notification {
    at_epoch(Notification::new(TITLE, ""))
}

/// Sends `n` with the notifier `make` builds for a fresh sink's URL; the JSON body that
/// arrived, and its size in bytes.
async fn deliver<N: Notifier>(make: impl FnOnce(&str) -> N, n: &Notification) -> (Value, usize) {
    let sink = Sink::start();
    let notifier = make(&sink.url("/hook"));
    notifier.send(n).await.expect("delivered");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    (got[0].json(), got[0].body.len())
}

/// The text at `v`, which must be a string that is not empty once trimmed, and at most
/// `max` characters.
fn text<'a>(v: &'a Value, what: &str, max: usize) -> &'a str {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is required: {v}"));
    assert!(!s.trim().is_empty(), "{what} is empty: {s:?}");
    let n = s.chars().count();
    assert!(n <= max, "{what} has {n} characters, over {max}");
    s
}

/// Like [`text`] when `v` holds something; `None` when the key is absent.
fn optional_text<'a>(v: &'a Value, what: &str, max: usize) -> Option<&'a str> {
    (!v.is_null()).then(|| text(v, what, max))
}

fn array<'a>(v: &'a Value, what: &str, min: usize, max: usize) -> &'a Vec<Value> {
    let a = v
        .as_array()
        .unwrap_or_else(|| panic!("{what} is required: {v}"));
    assert!(
        (min..=max).contains(&a.len()),
        "{what} has {} entries, not {min} to {max}",
        a.len()
    );
    a
}

// --- Slack (Block Kit) -------------------------------------------------------------

/// Block Kit: `text` and the blocks, each block's text present, not empty and within
/// its limit (header plain_text 150, section text 3000, section fields 10 of 2000,
/// context 10 elements, image URL 3000, 50 blocks).
fn check_slack(b: &Value) -> &Vec<Value> {
    text(&b["text"], "text", 3000);
    let blocks = array(&b["blocks"], "blocks", 1, 50);
    for (i, block) in blocks.iter().enumerate() {
        let what = format!("blocks[{i}]");
        match block["type"].as_str().expect("a block type") {
            "header" => {
                assert_eq!(block["text"]["type"], "plain_text", "{what}");
                text(&block["text"]["text"], &format!("{what}.text.text"), 150);
            }
            "section" => {
                if block.get("fields").is_none() {
                    text(&block["text"]["text"], &format!("{what}.text.text"), 3000);
                } else {
                    optional_text(&block["text"]["text"], &format!("{what}.text.text"), 3000);
                    for (j, f) in array(&block["fields"], &what, 1, 10).iter().enumerate() {
                        text(&f["text"], &format!("{what}.fields[{j}].text"), 2000);
                    }
                }
            }
            "context" => {
                for (j, e) in array(&block["elements"], &what, 1, 10).iter().enumerate() {
                    text(&e["text"], &format!("{what}.elements[{j}].text"), 3000);
                }
            }
            "image" => {
                text(&block["image_url"], &format!("{what}.image_url"), 3000);
                text(&block["alt_text"], &format!("{what}.alt_text"), 2000);
            }
            other => panic!("{what}: unexpected block type {other}"),
        }
    }
    blocks
}

fn slack(url: &str) -> SlackNotifier {
    SlackNotifier::new(&http(), url).unwrap()
}

#[tokio::test]
async fn slack_message_only_has_no_header_and_a_section_with_the_message() {
    let (b, _) = deliver(slack, &message_only()).await;
    let blocks = check_slack(&b);
    assert_eq!(b["text"], MESSAGE, "the fallback is the message");
    assert!(blocks.iter().all(|x| x["type"] != "header"));
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["text"], MESSAGE);
}

#[tokio::test]
async fn slack_fields_with_empty_names_or_values_read_cleanly() {
    let (b, _) = deliver(slack, &empty_fields()).await;
    let blocks = check_slack(&b);
    let lines = blocks
        .iter()
        .filter_map(|x| x["text"]["text"].as_str())
        .find(|t| t.contains("db-1"))
        .expect("the fields section");
    assert_eq!(lines, "`db-1`\n*mount*: `-`\n`-`\n");
    assert!(!lines.contains("**"), "an empty bold name: {lines:?}");
    assert!(!lines.contains("``"), "an empty code span: {lines:?}");
}

#[tokio::test]
async fn slack_title_only_has_a_header_and_no_empty_section() {
    let (b, _) = deliver(slack, &title_only()).await;
    let blocks = check_slack(&b);
    assert_eq!(b["text"], TITLE);
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(
        blocks[0]["text"]["text"],
        format!(":information_source: {TITLE}")
    );
}

// --- Discord (embeds) --------------------------------------------------------------

/// Discord's embed limits: title 256, description 4096, 25 fields with names of 1-256
/// and values of 1-1024 characters, footer 2048, 6000 in all; an embed shows a title or
/// a description.
fn check_discord(b: &Value) -> &Value {
    let embeds = array(&b["embeds"], "embeds", 1, 10);
    let e = &embeds[0];
    let title = optional_text(&e["title"], "embed.title", 256);
    let description = optional_text(&e["description"], "embed.description", 4096);
    assert!(
        title.is_some() || description.is_some(),
        "an embed with neither title nor description: {e}"
    );
    let mut total =
        title.map_or(0, |s| s.chars().count()) + description.map_or(0, |s| s.chars().count());
    if !e["fields"].is_null() {
        for (i, f) in array(&e["fields"], "embed.fields", 1, 25)
            .iter()
            .enumerate()
        {
            total += text(&f["name"], &format!("fields[{i}].name"), 256)
                .chars()
                .count();
            total += text(&f["value"], &format!("fields[{i}].value"), 1024)
                .chars()
                .count();
        }
    }
    if !e["footer"].is_null() {
        total += text(&e["footer"]["text"], "embed.footer.text", 2048)
            .chars()
            .count();
    }
    assert!(total <= 6000, "{total} characters in the embed");
    assert_eq!(b["allowed_mentions"]["parse"], serde_json::json!([]));
    e
}

fn discord(url: &str) -> DiscordNotifier {
    DiscordNotifier::new(&http(), url).unwrap()
}

#[tokio::test]
async fn discord_message_only_sends_no_empty_title() {
    let (b, _) = deliver(discord, &message_only()).await;
    let e = check_discord(&b);
    assert!(e.get("title").is_none(), "no title key: {e}");
    assert_eq!(e["description"], MESSAGE);
}

#[tokio::test]
async fn discord_fields_with_empty_names_or_values_get_a_placeholder() {
    let (b, _) = deliver(discord, &empty_fields()).await;
    let e = check_discord(&b);
    let fields: Vec<(&str, &str)> = array(&e["fields"], "fields", 3, 3)
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["value"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, [(ZWSP, "db-1"), ("mount", "-"), (ZWSP, "-")]);
}

#[tokio::test]
async fn discord_title_only_sends_no_empty_description() {
    let (b, _) = deliver(discord, &title_only()).await;
    let e = check_discord(&b);
    assert_eq!(e["title"], TITLE);
    assert!(e.get("description").is_none(), "no description key: {e}");
}

// --- Teams (Adaptive Card and MessageCard) -----------------------------------------

/// An Adaptive Card 1.4 in a `message`: every TextBlock's text and every fact's title
/// and value present and not empty; the body within 27,000 bytes.
fn check_adaptive(b: &Value, size: usize) -> &Vec<Value> {
    assert!(size <= 27_000, "{size} bytes");
    assert_eq!(b["type"], "message");
    let a = &array(&b["attachments"], "attachments", 1, 1)[0];
    assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
    let card = &a["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let body = array(&card["body"], "body", 1, usize::MAX);
    for (i, x) in body.iter().enumerate() {
        match x["type"].as_str().expect("an element type") {
            "TextBlock" => {
                text(&x["text"], &format!("body[{i}].text"), 20_000);
            }
            "FactSet" => {
                for (j, f) in array(&x["facts"], "facts", 1, usize::MAX)
                    .iter()
                    .enumerate()
                {
                    text(&f["title"], &format!("facts[{j}].title"), 256);
                    text(&f["value"], &format!("facts[{j}].value"), 1024);
                }
            }
            "Image" => {
                text(&x["url"], &format!("body[{i}].url"), 2048);
            }
            other => panic!("body[{i}]: unexpected element {other}"),
        }
    }
    body
}

/// A MessageCard: `summary` (required without `text`) present and not empty; the
/// heading, the section's titles and every fact's name and value not empty; within
/// 27,000 bytes.
fn check_message_card(b: &Value, size: usize) -> &Value {
    assert!(size <= 27_000, "{size} bytes");
    assert_eq!(b["@type"], "MessageCard");
    assert_eq!(b["@context"], "http://schema.org/extensions");
    let summary = optional_text(&b["summary"], "summary", 256);
    let txt = optional_text(&b["text"], "text", 20_000);
    assert!(
        summary.is_some() || txt.is_some(),
        "Summary or Text is required: {b}"
    );
    text(&b["title"], "title", 256);
    let s = &array(&b["sections"], "sections", 1, 10)[0];
    optional_text(&s["activityTitle"], "activityTitle", 256);
    optional_text(&s["activitySubtitle"], "activitySubtitle", 20_000);
    for (j, f) in array(&s["facts"], "facts", 1, usize::MAX)
        .iter()
        .enumerate()
    {
        text(&f["name"], &format!("facts[{j}].name"), 256);
        text(&f["value"], &format!("facts[{j}].value"), 1024);
    }
    s
}

fn teams(format: TeamsFormat) -> impl FnOnce(&str) -> TeamsNotifier {
    move |url| TeamsNotifier::new(&http(), url, format).unwrap()
}

#[tokio::test]
async fn teams_message_only_has_a_summary_and_no_empty_text_block() {
    let (b, size) = deliver(teams(TeamsFormat::Workflows), &message_only()).await;
    let body = check_adaptive(&b, size);
    assert_eq!(body[0]["type"], "TextBlock");
    assert_eq!(body[0]["text"], MESSAGE);
    assert_eq!(body[1]["type"], "FactSet");

    let (b, size) = deliver(teams(TeamsFormat::MessageCard), &message_only()).await;
    let s = check_message_card(&b, size);
    // The message on one line is the summary; the section carries it whole.
    assert_eq!(b["summary"], "Disk usage at 95% on db-1");
    assert_eq!(s["activitySubtitle"], MESSAGE);
    assert!(s.get("activityTitle").is_none());

    // A long message: the summary is cut to 256 characters, with the marker.
    let n = at_epoch(Notification::new("", "word ".repeat(2_000)));
    let (b, size) = deliver(teams(TeamsFormat::MessageCard), &n).await;
    check_message_card(&b, size);
    let summary = b["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 256);
    assert!(summary.starts_with("word word "), "{summary}");
    assert!(summary.ends_with("… [truncated]"), "{summary}");
}

#[tokio::test]
async fn teams_facts_with_empty_names_or_values_get_a_placeholder() {
    let expected = [
        ("Priority", "high"),
        ("Source", "disk-monitor"),
        (ZWSP, "db-1"),
        ("mount", "-"),
        (ZWSP, "-"),
    ];
    let (b, size) = deliver(teams(TeamsFormat::Workflows), &empty_fields()).await;
    let body = check_adaptive(&b, size);
    let facts: Vec<(&str, &str)> = body
        .iter()
        .find(|x| x["type"] == "FactSet")
        .expect("a fact set")["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["title"].as_str().unwrap(), f["value"].as_str().unwrap()))
        .collect();
    assert_eq!(facts, expected);

    let (b, size) = deliver(teams(TeamsFormat::MessageCard), &empty_fields()).await;
    let s = check_message_card(&b, size);
    assert_eq!(b["summary"], "Disk almost full");
    let facts: Vec<(&str, &str)> = s["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["value"].as_str().unwrap()))
        .collect();
    assert_eq!(facts, expected);
}

#[tokio::test]
async fn teams_title_only_has_no_empty_text_block_or_subtitle() {
    let (b, size) = deliver(teams(TeamsFormat::Workflows), &title_only()).await;
    let body = check_adaptive(&b, size);
    assert_eq!(body[0]["text"], TITLE);
    assert_eq!(body[1]["type"], "FactSet");
    assert_eq!(body.len(), 2);

    let (b, size) = deliver(teams(TeamsFormat::MessageCard), &title_only()).await;
    let s = check_message_card(&b, size);
    assert_eq!(b["summary"], TITLE);
    assert_eq!(s["activityTitle"], TITLE);
    assert!(s.get("activitySubtitle").is_none());
}

// --- Google Chat (cardsV2) ---------------------------------------------------------

/// cardsV2: the header's `title` (required) not empty; each section with at least one
/// widget; every `textParagraph.text` and `decoratedText.text` (required) not empty, a
/// `topLabel` not empty when present; at most 100 widgets and 32,000 bytes.
fn check_google_chat(b: &Value, size: usize) -> &Value {
    assert!(size <= 32_000, "{size} bytes");
    optional_text(&b["text"], "text", 256);
    let card = &array(&b["cardsV2"], "cardsV2", 1, 1)[0];
    text(&card["cardId"], "cardId", 256);
    let card = &card["card"];
    text(&card["header"]["title"], "header.title", 256);
    optional_text(&card["header"]["subtitle"], "header.subtitle", 256);
    let mut widgets = 0;
    if !card["sections"].is_null() {
        for (i, s) in array(&card["sections"], "sections", 1, 100)
            .iter()
            .enumerate()
        {
            let list = array(&s["widgets"], &format!("sections[{i}].widgets"), 1, 100);
            widgets += list.len();
            for (j, w) in list.iter().enumerate() {
                let what = format!("sections[{i}].widgets[{j}]");
                if let Some(p) = w.get("textParagraph") {
                    text(&p["text"], &format!("{what}.textParagraph.text"), 4096);
                } else if let Some(d) = w.get("decoratedText") {
                    text(&d["text"], &format!("{what}.decoratedText.text"), 1024);
                    optional_text(&d["topLabel"], &format!("{what}.topLabel"), 256);
                } else if let Some(img) = w.get("image") {
                    text(&img["imageUrl"], &format!("{what}.image.imageUrl"), 2048);
                } else {
                    panic!("{what}: unexpected widget {w}");
                }
            }
        }
    }
    assert!(widgets <= 100, "{widgets} widgets");
    card
}

fn google_chat(url: &str) -> GoogleChatNotifier {
    GoogleChatNotifier::new(&http(), url).unwrap()
}

#[tokio::test]
async fn google_chat_message_only_has_a_header_title() {
    let (b, size) = deliver(google_chat, &message_only()).await;
    let card = check_google_chat(&b, size);
    assert_eq!(card["header"]["title"], "Notification");
    assert_eq!(card["header"]["subtitle"], "Normal priority");
    assert!(b.get("text").is_none(), "no empty text: {b}");
    assert_eq!(
        card["sections"][0]["widgets"][0]["textParagraph"]["text"],
        MESSAGE
    );
}

#[tokio::test]
async fn google_chat_fields_with_empty_names_or_values_are_valid_widgets() {
    let (b, size) = deliver(google_chat, &empty_fields()).await;
    let card = check_google_chat(&b, size);
    let widgets = card["sections"][0]["widgets"].as_array().unwrap();
    let decorated: Vec<&Value> = widgets
        .iter()
        .filter_map(|w| w.get("decoratedText"))
        .collect();
    assert_eq!(
        decorated,
        [
            &serde_json::json!({"text": "db-1"}),
            &serde_json::json!({"topLabel": "mount", "text": "-"}),
            &serde_json::json!({"text": "-"}),
            &serde_json::json!({"topLabel": "Source", "text": "disk-monitor"}),
        ]
    );
}

#[tokio::test]
async fn google_chat_title_only_has_no_empty_section() {
    let (b, size) = deliver(google_chat, &title_only()).await;
    let card = check_google_chat(&b, size);
    assert_eq!(b["text"], TITLE);
    assert_eq!(card["header"]["title"], TITLE);
    assert!(
        card.get("sections").is_none(),
        "no section without widgets: {card}"
    );
}
