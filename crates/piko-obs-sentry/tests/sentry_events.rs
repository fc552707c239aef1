//! The Sentry integration against a real HTTP endpoint on loopback that records each
//! envelope, parsed back with Sentry's own envelope types: the exception chain,
//! environment, release, tags, trace context and breadcrumbs of an event; scrubbing;
//! rate limits; and a flush that returns at its bound when Sentry never answers.

use std::fmt;
use std::time::{Duration, Instant};

use piko_obs_logger::{Hub, Logger, attr};
use piko_obs_sentry::{Sentry, SentryConfig};
use piko_obs_testkit::sentry::events;
use piko_obs_testkit::sink::{Reply, Sink};
use sentry_core::protocol::Context;

#[derive(Debug)]
struct Refused;
impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection refused by the database")
    }
}
impl std::error::Error for Refused {}

#[derive(Debug)]
struct LoadBasket(Refused);
impl fmt::Display for LoadBasket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("loading the basket failed")
    }
}
impl std::error::Error for LoadBasket {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn dsn(sink: &Sink) -> String {
    format!("http://publickey@{}/42", sink.addr())
}

/// A log hub whose `sentry` drain sends through `sentry`'s client.
fn wire(sentry: &Sentry) -> Hub {
    let hub = Hub::builder().build();
    hub.add_drain("sentry", sentry.min_level(), sentry.drain())
        .unwrap();
    hub
}

fn checkout(log: &Logger) {
    log.info("basket opened", &[attr::string("basket", "b-17")]);
    log.debug("cache lookup", &[]);
    log.error(
        "checkout failed",
        &[
            attr::error(&LoadBasket(Refused)),
            attr::string("tenant", "acme"),
            attr::string("password", "hunter2"),
        ],
    );
}

#[test]
fn an_error_record_becomes_an_event_with_chain_tags_trace_and_breadcrumbs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = Sink::start();
    let config = SentryConfig::new(dsn(&sink))
        .with_environment("integration")
        .with_release("shop@1.2.3")
        .with_tag_keys(["tenant"]);
    let sentry = Sentry::start(&config, rt.handle()).unwrap();
    let hub = wire(&sentry);
    // Logged from another thread than the one that started Sentry: the drain sends
    // through the client's own hub, whatever hub the thread inherited.
    std::thread::spawn(move || {
        let log = hub.get_logger("shop/checkout").with(&[
            attr::string("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            attr::string("span_id", "00f067aa0ba902b7"),
        ]);
        checkout(&log);
    })
    .join()
    .unwrap();
    assert!(sentry.flush(Duration::from_secs(5)));
    let requests = sink.wait_for(1, Duration::from_secs(5));
    let req = &requests[0];
    assert_eq!(req.path, "/api/42/envelope/");
    let auth = req.header("x-sentry-auth").unwrap();
    assert!(auth.contains("sentry_key=publickey"), "{auth}");
    let events = events(&requests);
    assert_eq!(events.len(), 1, "one ERROR line, one event");
    let e = &events[0];
    assert_eq!(e.message.as_deref(), Some("checkout failed"));
    assert_eq!(e.level, sentry_core::Level::Error);
    assert_eq!(e.logger.as_deref(), Some("shop/checkout"));
    assert_eq!(e.environment.as_deref(), Some("integration"));
    assert_eq!(e.release.as_deref(), Some("shop@1.2.3"));
    // The chain, innermost first, each with its type.
    let chain: Vec<(&str, Option<&str>)> = e
        .exception
        .values
        .iter()
        .map(|x| (x.ty.as_str(), x.value.as_deref()))
        .collect();
    assert_eq!(
        chain,
        [
            ("Refused", Some("connection refused by the database")),
            ("LoadBasket", Some("loading the basket failed")),
        ]
    );
    assert_eq!(e.tags.get("tenant").map(String::as_str), Some("acme"));
    assert_eq!(e.extra["tenant"], "acme");
    assert_eq!(e.extra["password"], piko_obs_logger::REDACTED);
    assert!(
        e.extra["source"]["file"]
            .as_str()
            .unwrap()
            .ends_with("sentry_events.rs")
    );
    let Some(Context::Trace(tc)) = e.contexts.get("trace") else {
        panic!("no trace context: {:?}", e.contexts);
    };
    assert_eq!(tc.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(tc.span_id.to_string(), "00f067aa0ba902b7");
    // INFO became a breadcrumb; DEBUG is under the breadcrumb threshold.
    let crumbs: Vec<&str> = e
        .breadcrumbs
        .values
        .iter()
        .filter_map(|b| b.message.as_deref())
        .collect();
    assert_eq!(crumbs, ["basket opened"]);
    assert_eq!(
        e.breadcrumbs.values[0].category.as_deref(),
        Some("shop/checkout")
    );
    assert_eq!(e.breadcrumbs.values[0].data["basket"], "b-17");
    // The secret never crossed the wire, in any form.
    assert!(!req.text().contains("hunter2"));
    let stats = sentry.stats();
    assert_eq!((stats.queued, stats.sent, stats.dropped), (1, 1, 0));
    assert!(sentry.close(Duration::from_secs(2)));
}

#[test]
fn scrubbing_covers_events_that_did_not_come_from_the_log() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = Sink::start();
    let sentry = Sentry::start(&SentryConfig::new(dsn(&sink)), rt.handle()).unwrap();
    let mut event = sentry_core::protocol::Event {
        message: Some("direct".into()),
        ..Default::default()
    };
    event.extra.insert("api_token".into(), "tok-123".into());
    event.tags.insert("session_id".into(), "s-456".into());
    sentry.client().capture_event(event, None);
    assert!(sentry.flush(Duration::from_secs(5)));
    let requests = sink.wait_for(1, Duration::from_secs(5));
    let body = requests[0].text();
    assert!(
        !body.contains("tok-123") && !body.contains("s-456"),
        "{body}"
    );
    let e = &events(&requests)[0];
    assert_eq!(e.extra["api_token"], piko_obs_logger::REDACTED);
    sentry.close(Duration::from_secs(1));
}

#[test]
fn a_sentry_that_never_answers_costs_the_caller_nothing_and_the_flush_its_bound() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = Sink::with_default(Reply::status(200).after(Duration::from_secs(60)));
    let config = SentryConfig::new(dsn(&sink))
        .with_timeouts(Duration::from_millis(500), Duration::from_millis(500))
        .with_queue_capacity(3);
    let sentry = Sentry::start(&config, rt.handle()).unwrap();
    let hub = wire(&sentry);
    let log = hub.get_logger("shop");
    let started = Instant::now();
    for i in 0..20 {
        log.error("payment failed", &[attr::int("attempt", i)]);
    }
    let logging = started.elapsed();
    // 20 errors, a queue of 3 (one more may be in flight): the rest are dropped, counted.
    let flushing = Instant::now();
    let drained = sentry.close(Duration::from_millis(700));
    let closing = flushing.elapsed();
    assert!(!drained, "a request that never returns cannot drain");
    assert!(closing < Duration::from_secs(3), "close took {closing:?}");
    let stats = sentry.stats();
    assert!(stats.dropped >= 16, "{stats:?}");
    assert_eq!(stats.queued + stats.dropped, 20, "{stats:?}");
    assert!(
        logging < Duration::from_secs(2),
        "20 lines took {logging:?}"
    );
    // After the request timeout the in-flight envelope counts as failed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sentry.stats().failed == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sentry.stats().failed >= 1, "{:?}", sentry.stats());
}

#[test]
fn a_rate_limit_answer_holds_further_envelopes_back() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = Sink::with_default(Reply::status(429).header("Retry-After", "30"));
    let sentry = Sentry::start(&SentryConfig::new(dsn(&sink)), rt.handle()).unwrap();
    let hub = wire(&sentry);
    let log = hub.get_logger("shop");
    log.error("first", &[]);
    assert!(sentry.flush(Duration::from_secs(5)));
    for _ in 0..5 {
        log.error("later", &[]);
    }
    assert!(sentry.flush(Duration::from_secs(5)));
    assert_eq!(
        sink.requests().len(),
        1,
        "nothing is sent while Sentry says wait"
    );
    let stats = sentry.stats();
    assert_eq!(stats.rate_limited, 6, "{stats:?}");
    sentry.close(Duration::from_secs(1));
}

/// The messages of the events the sink received, in order.
fn messages(sink: &Sink) -> Vec<String> {
    events(&sink.requests())
        .iter()
        .map(|e| {
            e.message
                .clone()
                .or_else(|| e.logentry.as_ref().map(|l| l.message.clone()))
                .unwrap_or_default()
        })
        .collect()
}

/// `X-Sentry-Rate-Limits` on a 200 answer limits the category it names (`error`: events
/// with an exception) and no other: a later ERROR with an error is held back and
/// counted, a later ERROR without one (category `default`) is sent.
#[test]
fn a_rate_limit_header_on_a_2xx_answer_holds_back_its_category_only() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = Sink::start();
    sink.script([Reply::status(200).header("X-Sentry-Rate-Limits", "60:error:organization")]);
    let sentry = Sentry::start(&SentryConfig::new(dsn(&sink)), rt.handle()).unwrap();
    let hub = wire(&sentry);
    let log = hub.get_logger("shop");
    log.error("first", &[attr::error(&Refused)]);
    assert!(sentry.flush(Duration::from_secs(5)));
    log.error("held back", &[attr::error(&Refused)]);
    log.error("no exception", &[]);
    assert!(sentry.flush(Duration::from_secs(5)));
    assert_eq!(messages(&sink), ["first", "no exception"]);
    let stats = sentry.stats();
    assert_eq!((stats.sent, stats.rate_limited), (2, 1), "{stats:?}");
    sentry.close(Duration::from_secs(1));
}

/// A 429 whose `X-Sentry-Rate-Limits` names only transactions: `Retry-After` is ignored
/// and error events go on being sent.
#[test]
fn a_429_limiting_one_category_leaves_the_others() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = Sink::start();
    sink.script([Reply::status(429)
        .header("Retry-After", "600")
        .header("X-Sentry-Rate-Limits", "600:transaction:key")]);
    let sentry = Sentry::start(&SentryConfig::new(dsn(&sink)), rt.handle()).unwrap();
    let hub = wire(&sentry);
    let log = hub.get_logger("shop");
    log.error("answered 429", &[attr::error(&Refused)]);
    assert!(sentry.flush(Duration::from_secs(5)));
    log.error("still sent", &[attr::error(&Refused)]);
    assert!(sentry.flush(Duration::from_secs(5)));
    assert_eq!(messages(&sink), ["answered 429", "still sent"]);
    sentry.close(Duration::from_secs(1));
}

/// A 503 with `Retry-After`: sending pauses for what the server asked (here 1 s), then
/// goes on; without `Retry-After` a 5xx pauses nothing. (That a 5xx's `Retry-After` of
/// hours pauses a minute at most is `ratelimit::tests`.)
#[test]
fn a_5xx_pauses_only_for_what_it_asked() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = Sink::start();
    sink.script([
        Reply::status(503),
        Reply::status(503).header("Retry-After", "1"),
    ]);
    let sentry = Sentry::start(&SentryConfig::new(dsn(&sink)), rt.handle()).unwrap();
    let hub = wire(&sentry);
    let log = hub.get_logger("shop");
    log.error("503 without Retry-After", &[]);
    assert!(sentry.flush(Duration::from_secs(5)));
    log.error("503 with Retry-After", &[]);
    assert!(sentry.flush(Duration::from_secs(5)));
    log.error("during the pause", &[]);
    assert!(sentry.flush(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(1200));
    log.error("after the pause", &[]);
    assert!(sentry.flush(Duration::from_secs(5)));
    assert_eq!(
        messages(&sink),
        [
            "503 without Retry-After",
            "503 with Retry-After",
            "after the pause"
        ]
    );
    let stats = sentry.stats();
    assert_eq!(
        (stats.failed, stats.rate_limited, stats.sent),
        (2, 1, 1),
        "{stats:?}"
    );
    sentry.close(Duration::from_secs(1));
}

#[test]
fn an_invalid_dsn_is_refused_before_anything_starts() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = Sentry::start(&SentryConfig::new("sentry.example.com/42"), rt.handle()).unwrap_err();
    assert_eq!(err.field, "dsn");
    assert!(
        err.to_string()
            .contains("https://<public key>@<host>/<project id>")
    );
}

/// The longest timeouts (`Duration::MAX`) for connecting, a request and the shutdown:
/// sending, flushing and closing do not panic adding them to the clock, and the event
/// arrives.
#[test]
fn the_longest_timeouts_do_not_panic() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = Sink::start();
    let config = SentryConfig::new(dsn(&sink))
        .with_timeouts(Duration::MAX, Duration::MAX)
        .with_shutdown_timeout(Duration::MAX);
    let sentry = Sentry::start(&config, rt.handle()).unwrap();
    let hub = wire(&sentry);
    hub.get_logger("shop").error("checkout failed", &[]);
    assert!(sentry.flush(Duration::MAX));
    assert!(sentry.close(Duration::MAX));
    assert_eq!(events(&sink.requests()).len(), 1);
}
