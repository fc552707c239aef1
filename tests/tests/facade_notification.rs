//! Notifications set up by `init()`: providers, the default service's builder, the
//! dead-letter file and its cap, stores of one's own, and bad settings (the trace ids and
//! the dispatcher's metrics are in `facade_notification_metrics.rs`).

use std::time::Duration;

use piko_obs::notification::{self, Enqueued, HttpClient, PagerDutyNotifier, WebhookNotifier};
use piko_obs_testkit::sink::{Reply, Sink};

/// `init()` installs one process-wide notification service: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn bad_notification_settings_fail_init_with_the_setting_named() {
    let _one = serial();
    let base = || {
        piko_obs::builder()
            .with_console_output(false)
            .with_health_enabled(false)
    };
    let e = base()
        .with_notification_dead_letter_path("/proc/piko-obs/cannot/dead.jsonl")
        .init()
        .unwrap_err();
    assert!(
        e.to_string().starts_with(
            "with_notification_dead_letter_path: notification dead-letter file /proc/piko-obs/cannot/dead.jsonl"
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .ends_with("set with_notification_dead_letter_path to a writable path"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let e = base()
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_notification_provider("a", notification::NoopNotifier)
        .with_notification_provider("a", notification::NoopNotifier)
        .init()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "with_notification_provider: notification provider \"a\" is already registered; choose another name"
    );
    let e = base()
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_default_notification_provider("pager")
        .init()
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("with_default_notification_provider:"),
        "{e}"
    );
}

/// Set in the child process [`with_no_provider_alerts_go_to_stdout`] starts.
const STDOUT_CHILD: &str = "PIKO_OBS_TEST_NOTIFY_STDOUT_CHILD";

/// The child's part: `init()` with no provider, then one alert sent now and one
/// enqueued (delivered by the dispatcher at shutdown), both printed by the stdout
/// provider to the real stdout.
fn stdout_child() {
    let dir = tempfile::tempdir().unwrap();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_run_mode(piko_obs::RunMode::Dev)
        .with_environment("staging")
        .with_service_name("billing")
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .init()
        .unwrap();
    let service = notification::service().unwrap();
    assert_eq!(service.providers(), ["stdout"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(
        notification::builder()
            .title("disk almost full")
            .message("95% used on db-1")
            .field("host", "db-1")
            .priority(notification::Priority::High)
            .send_with_retries(),
    )
    .unwrap();
    assert_eq!(
        notification::builder()
            .title("queued alert")
            .message("through the dispatcher")
            .enqueue(),
        Ok(Enqueued::Queued)
    );
    guard.shutdown().unwrap();
}

#[test]
fn with_no_provider_alerts_go_to_stdout() {
    if std::env::var_os(STDOUT_CHILD).is_some() {
        stdout_child();
        return;
    }
    // The stdout provider writes to the process's stdout, which the test harness does
    // not capture: run this test again in a child process and read its stdout.
    let out = piko_obs_testkit::rerun_in_child(
        "with_no_provider_alerts_go_to_stdout",
        STDOUT_CHILD,
        false,
        Duration::from_secs(60),
    );
    let stdout = &out.stdout;
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        out.stderr
    );
    let sent = "=== NOTIFICATION ===\n\
                Priority: high\n\
                Source: billing\n\
                Environment: staging\n\
                Service: billing\n\
                Title: disk almost full\n\
                Message: 95% used on db-1\n\
                Fields:\n  host: db-1\n\
                ===================\n";
    assert!(stdout.contains(sent), "no alert block in:\n{stdout}");
    let queued = "Title: queued alert\nMessage: through the dispatcher\n===================\n";
    assert!(stdout.contains(queued), "no queued alert in:\n{stdout}");
    assert_eq!(
        stdout.matches("=== NOTIFICATION ===").count(),
        2,
        "{stdout}"
    );
}

#[test]
fn every_builder_method_reaches_the_platform() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let hook = Sink::start();
    let pager = Sink::start();
    let http = HttpClient::new().unwrap();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_environment("staging")
        .with_service_name("billing")
        .with_notification_provider(
            "webhook",
            WebhookNotifier::new(&http, &hook.url("/hook")).unwrap(),
        )
        .with_notification_provider(
            "pagerduty",
            PagerDutyNotifier::new(&http, "R0UTINGKEY0123456789")
                .unwrap()
                .with_events_url(&pager.url("/v2/enqueue"))
                .unwrap(),
        )
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .init()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    rt.block_on(
        notification::builder()
            .title("checkout failing")
            .message("5xx on /pay")
            .field("first", "1")
            .fields([("zone", "eu-west-1"), ("pod", "pay-7f9c")])
            // A name set again keeps its place.
            .fields(vec![("first".to_string(), "one".to_string())])
            .image("https://example.com/graph.png")
            .environment("production")
            .service("checkout")
            .trace_id(trace_id)
            .provider_option("dedup_key", "checkout-5xx")
            .to_providers(["webhook", "pagerduty"])
            .send_with_retries(),
    )
    .unwrap();
    // The webhook: the flat JSON, the builder's values over the service's defaults.
    let got = hook.requests();
    assert_eq!(got.len(), 1);
    let b = got[0].json();
    assert_eq!(b["title"], "checkout failing");
    assert_eq!(b["message"], "5xx on /pay");
    assert_eq!(b["environment"], "production");
    assert_eq!(b["service"], "checkout");
    assert_eq!(b["source"], "billing");
    assert_eq!(b["trace_id"], trace_id);
    assert_eq!(b["image_url"], "https://example.com/graph.png");
    assert_eq!(
        b["fields"],
        serde_json::json!({"first": "one", "zone": "eu-west-1", "pod": "pay-7f9c"})
    );
    let text = got[0].text();
    let at = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
    assert!(at("first") < at("zone") && at("zone") < at("pod"), "{text}");
    // PagerDuty: the provider option chose the dedup key; the context is in the details.
    let got = pager.requests();
    assert_eq!(got.len(), 1);
    let e = got[0].json();
    assert_eq!(got[0].path, "/v2/enqueue");
    assert_eq!(e["event_action"], "trigger");
    assert_eq!(e["dedup_key"], "checkout-5xx");
    let details = &e["payload"]["custom_details"];
    assert_eq!(details["environment"], "production");
    assert_eq!(details["service"], "checkout");
    assert_eq!(details["trace_id"], trace_id);
    assert_eq!(details["fields"]["zone"], "eu-west-1");
    assert_eq!(e["images"][0]["src"], "https://example.com/graph.png");
    // Another option: resolve the same incident.
    rt.block_on(
        notification::builder()
            .title("checkout failing")
            .provider("pagerduty")
            .provider_option("event_action", "resolve")
            .provider_option("dedup_key", "checkout-5xx")
            .send_with_retries(),
    )
    .unwrap();
    let got = pager.requests();
    assert_eq!(got.len(), 2);
    let e = got[1].json();
    assert_eq!(e["event_action"], "resolve");
    assert_eq!(e["dedup_key"], "checkout-5xx");
    guard.shutdown().unwrap();
}

/// A send from a runtime that then stops being polled (a `block_on` that returned) must
/// not leave a pooled connection behind that the next delivery waits on: the facade's
/// service delivers on its own runtime, whoever awaits.
#[test]
fn a_send_from_a_runtime_that_stops_polling_does_not_stall_later_deliveries() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let http = HttpClient::new().unwrap();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_notification_provider(
            "hook",
            WebhookNotifier::new(&http, &sink.url("/hook")).unwrap(),
        )
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .init()
        .unwrap();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    first
        .block_on(notification::builder().title("one").send_with_retries())
        .unwrap();
    // `first` is alive but idle from here on. The dispatcher, then a second runtime,
    // deliver to the same host.
    assert_eq!(
        notification::builder().title("two").enqueue(),
        Ok(Enqueued::Queued)
    );
    assert_eq!(sink.wait_for(2, Duration::from_secs(3)).len(), 2);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    second
        .block_on(notification::builder().title("three").send_with_retries())
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let titles: Vec<String> = sink
        .wait_for(3, Duration::from_secs(3))
        .iter()
        .map(|r| r.json()["title"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(titles, ["one", "two", "three"]);
    guard.shutdown().unwrap();
    drop(first);
}

/// A platform that refuses everything, and a dead-letter file capped at 4 KiB: the
/// file stops at its cap, and what does not fit is counted on /metrics and named in
/// the shutdown's error, not lost silently.
#[test]
fn the_dead_letter_file_stops_at_its_cap_and_the_rest_is_counted() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead-letters.jsonl");
    let refusing = Sink::with_default(Reply::status(400));
    let cap = 4096;
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_notification_provider(
            "refusing",
            WebhookNotifier::new(&HttpClient::new().unwrap(), &refusing.url("/hook")).unwrap(),
        )
        .with_notification_dead_letter_path(&dead)
        .with_notification_dead_letter_max_bytes(std::num::NonZeroU64::new(cap).unwrap())
        .init()
        .unwrap();
    let service = notification::service().unwrap();
    for i in 0..40 {
        notification::builder()
            .title(format!("refused {i}"))
            .message("m".repeat(100))
            .enqueue()
            .unwrap();
    }
    let d = service.dispatcher().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.stats().dead_lettered + d.stats().dead_letter_errors < 40 {
        assert!(std::time::Instant::now() < deadline, "{:?}", d.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = d.stats();
    assert!(
        stats.dead_lettered > 0 && stats.dead_letter_errors > 0,
        "{stats:?}"
    );
    let size = std::fs::metadata(&dead).unwrap().len();
    assert!(size <= cap, "{size} bytes");
    let lines = std::fs::read_to_string(&dead).unwrap().lines().count() as u64;
    assert_eq!(lines, stats.dead_lettered);
    let text = piko_obs::metrics::render().unwrap();
    let errors = text
        .lines()
        .find(|l| l.starts_with("piko_obs_notifications_dead_letter_errors_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(errors, Some(stats.dead_letter_errors as f64), "{text}");
    let e = guard.shutdown().unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "{} notification(s) could not be written to the dead-letter file",
            stats.dead_letter_errors
        )),
        "{e}"
    );
}

/// A dead-letter store of one's own, through the port; this one holds every write
/// until the test opens its gate, as a stalled disk would.
#[derive(Clone, Default)]
struct Gated {
    open: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    written: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gated {
    fn open_gate(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }
}

impl notification::DeadLetterStore for Gated {
    fn append(&self, entry: &notification::DeadLetter) -> std::io::Result<()> {
        let mut open = self.open.0.lock().unwrap();
        while !*open {
            open = self.open.1.wait(open).unwrap();
        }
        self.written
            .lock()
            .unwrap()
            .push(entry.notification.content.title.clone());
        Ok(())
    }
    fn take_all(&self) -> std::io::Result<notification::DeadLetterBatch> {
        Ok(notification::DeadLetterBatch::default())
    }
}

/// The dead letters go to the store given; a shutdown that reaches its bound while the
/// store holds them says how many are not yet stored, and they are stored once it
/// takes them. A store and file settings together fail `init()`, naming both.
#[test]
fn a_dead_letter_store_of_ones_own_and_a_shutdown_that_cannot_wait_for_it() {
    let _one = serial();
    let refusing = Sink::with_default(Reply::status(400));
    let provider = || WebhookNotifier::new(&HttpClient::new().unwrap(), &refusing.url("/hook"));
    let e = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_notification_provider("refusing", provider().unwrap())
        .with_notification_dead_letter_store(Gated::default())
        .with_notification_dead_letter_path("/nonexistent/dlq.jsonl")
        .init()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("with_notification_dead_letter_store")
            && e.contains("with_notification_dead_letter_path"),
        "{e}"
    );
    let store = Gated::default();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_shutdown_timeout(Duration::from_secs(2))
        .with_notification_provider("refusing", provider().unwrap())
        .with_notification_dead_letter_store(store.clone())
        .init()
        .unwrap();
    for i in 0..3 {
        notification::builder()
            .title(format!("refused {i}"))
            .enqueue()
            .unwrap();
    }
    let d = notification::service()
        .unwrap()
        .dispatcher()
        .unwrap()
        .clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.stats().dead_letter_pending < 3 {
        assert!(std::time::Instant::now() < deadline, "{:?}", d.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let e = guard.shutdown().unwrap_err().to_string();
    assert!(
        e.contains("3 dead letter(s) not yet written to the dead-letter store"),
        "{e}"
    );
    store.open_gate();
    assert!(
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(d.flush_dead_letters(Duration::from_secs(10)))
    );
    let mut written = store.written.lock().unwrap().clone();
    written.sort();
    assert_eq!(written, ["refused 0", "refused 1", "refused 2"]);
}
