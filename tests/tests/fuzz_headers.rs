//! Fuzzing by property tests of the request headers providers build from settings and
//! content: a webhook's custom header and an ntfy title or image of arbitrary text
//! never give a request an extra header. The header is refused when the webhook is
//! built, or encoded; the requests are checked as they arrive at a real HTTP sink on
//! loopback.
//!
//! Each property runs `PIKO_FUZZ_CASES` cases (default 256); see `tests/src/fuzz.rs`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use base64::Engine as _;
use piko_obs_notify::{Notification, Notifier};
use piko_obs_notify_providers::{HttpClient, NtfyNotifier, WebhookNotifier};
use piko_obs_testkit::sink::{Recorded, Sink};
use piko_obs_tests::fuzz::fuzz;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Text that tries to start a header of its own, or any text.
fn injecting_text() -> impl Strategy<Value = String> {
    let brk = prop::sample::select(
        &[
            "\r\n", "\n", "\r", "\r\n\r\n", "\n\t", "\0", "\u{85}", "\u{2028}",
        ][..],
    );
    prop_oneof![
        ("[ -~]{0,8}", brk, "X-Injected: [a-z]{1,4}", "[ -~]{0,4}")
            .prop_map(|(a, b, c, d)| format!("{a}{b}{c}{d}")),
        prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        "[ -~]{0,24}",
    ]
}

/// A sink replaced every few hundred requests, so that reading its records stays cheap.
struct Sinks {
    sink: Sink,
    used: usize,
}

impl Sinks {
    fn new() -> Sinks {
        Sinks {
            sink: Sink::start(),
            used: 0,
        }
    }
    fn next(&mut self) -> &Sink {
        if self.used == 200 {
            self.sink = Sink::start();
            self.used = 0;
        }
        self.used += 1;
        &self.sink
    }
}

fn last(sink: &Sink) -> Result<Recorded, TestCaseError> {
    sink.requests()
        .pop()
        .ok_or_else(|| TestCaseError::fail("no request arrived"))
}

fn names(r: &Recorded) -> BTreeSet<String> {
    r.headers.iter().map(|(n, _)| n.clone()).collect()
}

#[test]
fn fuzz_webhook_header_never_adds_a_header() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = HttpClient::new().unwrap();
    let sinks = RefCell::new(Sinks::new());
    let note = Notification::new("t", "m");
    // The headers of a request without a custom one.
    let baseline = {
        let s = sinks.borrow_mut();
        let hook = WebhookNotifier::new(&http, &s.sink.url("/h")).unwrap();
        rt.block_on(hook.send(&note)).unwrap();
        names(&last(&s.sink).unwrap())
    };
    let (refused, sent) = (Cell::new(0u32), Cell::new(0u32));
    let name = prop_oneof![
        3 => "X-[A-Za-z0-9-]{1,10}",
        1 => injecting_text(),
    ];
    fuzz(
        "webhook_header_never_adds_a_header",
        (name, injecting_text()),
        |(name, value)| {
            let mut sinks = sinks.borrow_mut();
            let sink = sinks.next();
            let hook = WebhookNotifier::new(&http, &sink.url("/h")).unwrap();
            let hook = match hook.with_header(&name, &value) {
                Ok(h) => h,
                Err(e) => {
                    refused.set(refused.get() + 1);
                    prop_assert!(e.setting.starts_with("webhook header"), "{}", e);
                    prop_assert!(!e.to_string().contains(&value) || value.len() < 4, "{}", e);
                    return Ok(());
                }
            };
            prop_assert!(!value.contains(['\r', '\n', '\0']), "accepted {:?}", value);
            rt.block_on(hook.send(&note))
                .map_err(|e| TestCaseError::fail(format!("send: {e}")))?;
            sent.set(sent.get() + 1);
            let r = last(sink)?;
            let mut expected = baseline.clone();
            expected.insert(name.trim().to_ascii_lowercase());
            prop_assert_eq!(names(&r), expected, "{:?}: {:?}", name, value);
            let got = r.header(name.trim()).unwrap_or_default();
            prop_assert_eq!(
                got,
                String::from_utf8_lossy(value.trim_matches([' ', '\t']).as_bytes()),
                "{:?}",
                value
            );
            Ok(())
        },
    );
    eprintln!(
        "fuzz webhook_header_never_adds_a_header: {} refused at build time, {} sent",
        refused.get(),
        sent.get()
    );
    assert!(sent.get() > 0 && refused.get() > 0);
}

/// What ntfy gets for a title: control characters as spaces, RFC 2047 when not ASCII.
fn decode_title(v: &str) -> Option<String> {
    match v
        .strip_prefix("=?UTF-8?B?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(v.to_string()),
    }
}

#[test]
fn fuzz_ntfy_title_never_adds_a_header() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = HttpClient::new().unwrap();
    let sinks = RefCell::new(Sinks::new());
    fuzz(
        "ntfy_title_never_adds_a_header",
        (injecting_text(), prop::option::of(injecting_text())),
        |(title, image)| {
            let mut n = Notification::new(title.clone(), "m");
            n.content.image_url = image.clone().unwrap_or_default();
            // The headers as built: the fixed set, the title always there.
            let h = NtfyNotifier::headers(&n);
            let mut expected: BTreeSet<String> = ["content-type", "title", "priority", "tags"]
                .map(String::from)
                .into();
            let clean = |s: &str| -> String {
                s.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect()
            };
            if !n.content.image_url.is_empty() {
                expected.insert("attach".into());
            }
            let built: BTreeSet<String> = h.keys().map(|k| k.as_str().to_string()).collect();
            prop_assert_eq!(&built, &expected);
            let t = h
                .get("title")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            prop_assert_eq!(decode_title(t), Some(clean(&title)), "{:?}", t);

            // And as they arrive.
            let mut sinks = sinks.borrow_mut();
            let sink = sinks.next();
            let ntfy = NtfyNotifier::new(&http, &sink.url(""), "alerts").unwrap();
            rt.block_on(ntfy.send(&n))
                .map_err(|e| TestCaseError::fail(format!("send: {e}")))?;
            let r = last(sink)?;
            let arrived: BTreeSet<String> = names(&r)
                .into_iter()
                .filter(|k| {
                    !["host", "content-length", "accept", "user-agent"].contains(&k.as_str())
                })
                .collect();
            prop_assert_eq!(&arrived, &expected, "{:?}", r.headers);
            let t = r.header("title").unwrap_or_default();
            // An HTTP parser drops the spaces around a value; an encoded title has none.
            let sent = clean(&title);
            let sent = if sent.is_ascii() {
                sent.trim_matches(' ').to_string()
            } else {
                sent
            };
            prop_assert_eq!(decode_title(t), Some(sent), "{:?}", t);
            Ok(())
        },
    );
}
