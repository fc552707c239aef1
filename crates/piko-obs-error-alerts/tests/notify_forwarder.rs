//! ERROR logs forwarded as alerts, end to end: a log hub with the `ErrorForwarder` as an
//! output, the notification service with the webhook provider (with and without the
//! dispatcher), and a webhook sink on loopback that records what arrives.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use piko_obs_error_alerts::{ErrorForwarder, ErrorForwarderConfig};
use piko_obs_logger::{Hub, Level, Output, attr};
use piko_obs_notify::{Dispatcher, DispatcherConfig, NotificationService};
use piko_obs_notify_providers::{
    ALERTMANAGER, AlertmanagerNotifier, DEFAULT_MEMORY_ENTRIES, HttpClient, MemoryDeadLetterStore,
    PagerDutyNotifier, WebhookNotifier,
};
use piko_obs_testkit::sink::{Recorded, Sink};

/// A service whose default provider posts to `sink`.
fn service(sink: &Sink) -> NotificationService {
    let s = NotificationService::default();
    let http = HttpClient::new().unwrap();
    s.register(
        "webhook",
        WebhookNotifier::new(&http, &sink.url("/hook")).unwrap(),
    )
    .unwrap();
    s
}

/// A dispatcher for `s` (dead letters kept in memory), attached to it, as the facade does.
fn dispatch(s: &NotificationService) -> Dispatcher {
    let store = Arc::new(MemoryDeadLetterStore::new(DEFAULT_MEMORY_ENTRIES));
    let handle = tokio::runtime::Handle::current();
    let d = Dispatcher::start(&handle, s, store, DispatcherConfig::default()).unwrap();
    s.attach_dispatcher(d.clone()).unwrap();
    d
}

fn start(s: &NotificationService, config: ErrorForwarderConfig) -> (ErrorForwarder, Hub) {
    let fwd = ErrorForwarder::start(&tokio::runtime::Handle::current(), s.clone(), config).unwrap();
    let hub = Hub::builder().with_error_backtraces(false).build();
    hub.add_output("error-alerts", Level::ERROR, fwd.clone())
        .unwrap();
    (fwd, hub)
}

fn fields(r: &Recorded) -> serde_json::Value {
    r.json()["fields"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_identical_errors_make_one_alert_counting_them() {
    let sink = Sink::start();
    let s = service(&sink);
    let d = dispatch(&s);
    // A window long enough for 1,000 calls with stack traces on a loaded machine: the
    // point is that they fall in one window, not how fast they are.
    let window = Duration::from_secs(2);
    let (fwd, hub) = start(&s, ErrorForwarderConfig::default().with_window(window));
    let log = hub.get_logger("checkout");

    let began = Instant::now();
    let mut line = 0;
    for i in 0..1000 {
        line = line!() + 1;
        log.error("payment provider unreachable", &[attr::int("attempt", i)]);
    }
    assert!(
        began.elapsed() < window,
        "1,000 log calls took {:?}, longer than the window",
        began.elapsed()
    );

    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "no alert within 5 s");
    // Nothing else comes in the next window.
    tokio::time::sleep(window + Duration::from_millis(200)).await;
    let got = sink.requests();
    assert_eq!(
        got.len(),
        1,
        "{:?}",
        got.iter().map(Recorded::text).collect::<Vec<_>>()
    );
    let body = got[0].json();
    assert_eq!(body["title"], "ERROR: Application Error");
    assert_eq!(body["message"], "payment provider unreachable");
    assert_eq!(body["priority"], "critical");
    assert_eq!(body["source"], "logger");
    let f = &body["fields"];
    assert_eq!(f["occurrences"], "1000");
    assert_eq!(f["logger"], "checkout");
    assert_eq!(f["attempt"], "0", "the first record's fields");
    assert_eq!(f["source"], format!("{}:{line}", file!()));
    assert!(f["first_seen"].as_str().unwrap() <= f["last_seen"].as_str().unwrap());
    let stats = fwd.stats();
    assert_eq!((stats.records_grouped, stats.groups_sent), (1000, 1));
    assert!(d.shutdown(Duration::from_secs(5)).await.within_bound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_past_the_cap_are_dropped_and_the_count_reaches_the_sink() {
    let sink = Sink::start();
    let s = service(&sink); // no dispatcher: each alert is sent by a task
    let window = Duration::from_millis(300);
    let (fwd, hub) = start(
        &s,
        ErrorForwarderConfig::default()
            .with_window(window)
            .with_max_groups(5),
    );
    let log = hub.get_logger("jobs");
    let error = |msg: &str| log.error(msg, &[]); // one call site
    for _ in 0..2 {
        for i in 0..8 {
            error(&format!("job {i} failed"));
        }
    }
    assert_eq!(fwd.pending_groups(), 5);

    sink.wait_for(5, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(200)).await; // and no more
    let got = sink.requests();
    assert_eq!(got.len(), 5);
    let messages: BTreeSet<String> = got
        .iter()
        .map(|r| r.json()["message"].as_str().unwrap_or_default().to_string())
        .collect();
    let kept: BTreeSet<String> = (0..5).map(|i| format!("job {i} failed")).collect();
    assert_eq!(messages, kept, "the first five groups are kept");
    assert!(got.iter().all(|r| fields(r)["occurrences"] == "2"));
    let reporting: Vec<serde_json::Value> = got
        .iter()
        .map(fields)
        .filter(|f| f.get("dropped_groups").is_some())
        .collect();
    assert_eq!(reporting.len(), 1, "one alert reports the dropped groups");
    assert_eq!(reporting[0]["dropped_groups"], "3");
    let stats = fwd.stats();
    assert_eq!(
        (
            stats.dropped_groups,
            stats.dropped_records,
            stats.groups_sent
        ),
        (3, 6, 5)
    );

    // The next window has room again and nothing more to report.
    error("job 8 failed");
    let got = sink.wait_for(6, Duration::from_secs(5));
    assert_eq!(got.len(), 6);
    let last = got.iter().find(|r| r.json()["message"] == "job 8 failed");
    let last = last.expect("the next window's alert");
    assert!(fields(last).get("dropped_groups").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delivers_the_groups_still_in_their_window() {
    let sink = Sink::start();
    let s = service(&sink);
    let d = dispatch(&s);
    let (fwd, hub) = start(
        &s,
        ErrorForwarderConfig::default().with_window(Duration::from_secs(60)),
    );
    let log = hub.get_logger("app");
    let error = |msg: &str| log.error(msg, &[]);
    for msg in ["cache down", "queue full", "disk full", "cache down"] {
        error(msg);
    }
    assert_eq!(fwd.pending_groups(), 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sink.requests().is_empty(), "nothing before the window ends");

    // The facade's shutdown closes outputs from a plain thread.
    let f = fwd.clone();
    std::thread::spawn(move || Output::close(&f, Duration::from_secs(5)))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(fwd.pending_groups(), 0);
    assert_eq!(fwd.stats().groups_sent, 3);
    let got = sink.wait_for(3, Duration::from_secs(5));
    assert_eq!(got.len(), 3);
    let mut messages: Vec<String> = got
        .iter()
        .map(|r| r.json()["message"].as_str().unwrap_or_default().to_string())
        .collect();
    messages.sort();
    assert_eq!(messages, ["cache down", "disk full", "queue full"]);
    let cache = got
        .iter()
        .find(|r| r.json()["message"] == "cache down")
        .unwrap();
    assert_eq!(fields(cache)["occurrences"], "2");

    // After close: records are dropped and counted; closing again is harmless.
    error("too late");
    assert_eq!(fwd.pending_groups(), 0);
    assert_eq!(fwd.stats().dropped_records, 1);
    assert!(hub.shutdown(Duration::from_secs(1)).is_ok());
    assert!(d.shutdown(Duration::from_secs(5)).await.within_bound);
    assert_eq!(sink.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_fields_never_reach_the_sink_in_clear() {
    let sink = Sink::start();
    let s = service(&sink);
    let (fwd, hub) = start(
        &s,
        ErrorForwarderConfig::default().with_window(Duration::from_millis(200)),
    );
    let log = hub.get_logger("auth").with(&[
        attr::string("api_token", "tok-5f2a9c"),
        attr::string("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ]);
    log.error(
        "login failed",
        &[
            attr::string("user", "bob"),
            attr::string("password", "hunter2-s3cret"),
        ],
    );
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let text = got[0].text();
    assert!(!text.contains("hunter2-s3cret"), "{text}");
    assert!(!text.contains("tok-5f2a9c"), "{text}");
    let body = got[0].json();
    assert_eq!(body["fields"]["password"], "[REDACTED]");
    assert_eq!(body["fields"]["api_token"], "[REDACTED]");
    assert_eq!(body["fields"]["user"], "bob");
    assert_eq!(body["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(fwd.stats().groups_sent, 1);
}

/// Two replicas forward the same error to Alertmanager and PagerDuty: the same group
/// key on both, Alertmanager told each instance apart, PagerDuty one incident; once
/// quiet, each replica resolves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_group_key_and_resolve_their_alerts() {
    let (am_sink, pd_sink) = (Sink::start(), Sink::start());
    let http = HttpClient::new().unwrap();
    let quiet = Duration::from_millis(500);
    let config = ErrorForwarderConfig::new()
        .with_window(Duration::from_millis(100))
        .with_resolve_after(quiet);
    let mut replicas = Vec::new();
    for instance in ["pod-a", "pod-b"] {
        let s = NotificationService::default();
        let am = AlertmanagerNotifier::new(&http, [am_sink.url("")])
            .unwrap()
            .with_instance(instance)
            .unwrap();
        s.register(ALERTMANAGER, am).unwrap();
        let pd = PagerDutyNotifier::new(&http, "R0UTINGKEY0000000000000000000000")
            .unwrap()
            .with_events_url(&pd_sink.url("/v2/enqueue"))
            .unwrap();
        s.register("pagerduty", pd).unwrap();
        let config = config.clone().with_providers([ALERTMANAGER, "pagerduty"]);
        replicas.push(start(&s, config));
    }
    // One call site, as on every replica of one binary.
    let fail = |hub: &Hub| hub.get_logger("orders").error("payment declined", &[]);
    for (_, hub) in &replicas {
        fail(hub);
    }
    // Two firing and two resolved alerts to each sink, within a bounded wait.
    let am = am_sink.wait_for(4, Duration::from_secs(10));
    let pd = pd_sink.wait_for(4, Duration::from_secs(10));
    assert_eq!((am.len(), pd.len()), (4, 4));
    let alerts: Vec<serde_json::Value> = am.iter().map(|r| r.json()[0].clone()).collect();
    let key = alerts[0]["labels"]["error_group"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(key.len(), 16);
    let mut instances = BTreeSet::new();
    for a in &alerts {
        assert_eq!(a["labels"]["error_group"], key.as_str());
        assert_eq!(a["labels"]["alertname"], "ApplicationError");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["annotations"]["description"], "payment declined");
        instances.insert(a["labels"]["instance"].as_str().unwrap().to_string());
    }
    assert_eq!(instances, BTreeSet::from(["pod-a".into(), "pod-b".into()]));
    // The resolved ones end in the past; the firing ones hold past the quiet time.
    let now = std::time::SystemTime::now();
    let ends = |a: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(a["endsAt"].as_str().unwrap())
            .map(std::time::SystemTime::from)
            .unwrap()
    };
    let (resolved, firing): (Vec<_>, Vec<_>) = alerts.iter().partition(|a| ends(a) <= now);
    assert_eq!((resolved.len(), firing.len()), (2, 2), "{alerts:?}");
    for a in firing {
        assert!(ends(a) > now + quiet, "{a}");
    }
    let events: Vec<serde_json::Value> = pd.iter().map(Recorded::json).collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "trigger").count(),
        2,
        "{actions:?}"
    );
    assert_eq!(actions.iter().filter(|a| **a == "resolve").count(), 2);
    for e in &events {
        assert_eq!(e["dedup_key"], key.as_str(), "one incident for the group");
    }
    for (fwd, _) in &replicas {
        assert_eq!(fwd.stats().resolved_sent, 1);
    }
}
