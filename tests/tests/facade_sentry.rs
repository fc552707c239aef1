//! Sentry through the facade, against a Sentry endpoint on loopback: a panic on any
//! thread is an event with its stack and the context integration's data, and the
//! application's `before_send` and `before_breadcrumb` run after piko-obs's scrubbing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use piko_obs::logger::{self, attr};
use piko_obs::sentry::SentryConfig;
use piko_obs_testkit::sentry::events;
use piko_obs_testkit::sink::Sink;

#[test]
fn panics_reach_sentry_and_the_applications_hooks_run_after_scrubbing() {
    let dir = tempfile::tempdir().unwrap();
    let sentry = Sink::start();
    let seen_by_hook = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = seen_by_hook.clone();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_sentry(SentryConfig::new(format!("http://pk@{}/7", sentry.addr())))
        .with_sentry_before_send(move |mut event| {
            // What the hook gets is already scrubbed.
            seen.lock()
                .unwrap()
                .push(serde_json::to_string(&event.extra).unwrap());
            if event.message.as_deref() == Some("drop me") {
                return None;
            }
            event.tags.insert("hooked".into(), "yes".into());
            Some(event)
        })
        .with_sentry_before_breadcrumb(|crumb| {
            (crumb.message.as_deref() != Some("a crumb to drop")).then_some(crumb)
        })
        .init()
        .unwrap();
    let log = logger::get_logger("payments");
    log.info("a crumb to drop", &[]);
    log.info("a crumb to keep", &[]);
    log.error(
        "charge failed",
        &[
            attr::string("token", "tok_live_secret"),
            attr::int("amount", 5),
        ],
    );
    log.error("drop me", &[]);
    // A panic on another thread: an event through Sentry's panic integration.
    let joined = std::thread::Builder::new()
        .name("worker".into())
        .spawn(|| {
            if std::hint::black_box(true) {
                panic!("worker gave up on order 42");
            }
        })
        .unwrap()
        .join();
    assert!(joined.is_err());
    let got = events(&sentry.wait_for(2, Duration::from_secs(10)));
    guard.shutdown().unwrap();
    let got = if got.len() >= 2 {
        got
    } else {
        events(&sentry.requests())
    };

    let charge = got
        .iter()
        .find(|e| e.message.as_deref() == Some("charge failed"))
        .expect("the ERROR line's event");
    assert_eq!(charge.tags.get("hooked").map(String::as_str), Some("yes"));
    let crumbs: Vec<&str> = charge
        .breadcrumbs
        .values
        .iter()
        .filter_map(|b| b.message.as_deref())
        .collect();
    assert!(crumbs.contains(&"a crumb to keep"), "{crumbs:?}");
    assert!(!crumbs.contains(&"a crumb to drop"), "{crumbs:?}");
    assert!(
        got.iter().all(|e| e.message.as_deref() != Some("drop me")),
        "before_send dropped it"
    );
    let seen = seen_by_hook.lock().unwrap().join("\n");
    assert!(
        !seen.contains("tok_live_secret"),
        "the hook saw a secret: {seen}"
    );
    assert!(seen.contains("[REDACTED]"), "{seen}");
    assert!(
        sentry
            .requests()
            .iter()
            .all(|r| !r.text().contains("tok_live_secret"))
    );

    let panic = got
        .iter()
        .find(|e| {
            e.exception
                .values
                .iter()
                .any(|x| x.value.as_deref() == Some("worker gave up on order 42"))
        })
        .expect("the panic's event");
    let exception = panic.exception.values.last().unwrap();
    assert_eq!(
        exception.mechanism.as_ref().map(|m| m.ty.as_str()),
        Some("panic")
    );
    let frames = exception.stacktrace.as_ref().map_or(0, |s| s.frames.len());
    assert!(frames > 0, "the panic's stack: {exception:?}");
    assert!(panic.contexts.contains_key("os"), "{:?}", panic.contexts);
    assert!(panic.contexts.contains_key("rust"), "{:?}", panic.contexts);
    assert_eq!(panic.tags.get("hooked").map(String::as_str), Some("yes"));
}
