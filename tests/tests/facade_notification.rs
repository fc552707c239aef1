//! Notifications set up by `init()`: providers, the default service's builder, the trace
//! id of the current OpenTelemetry span, the dead-letter file at shutdown, metrics, and
//! bad settings.

use std::time::Duration;

use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use piko_obs::PikoObs;
use piko_obs::notification::{self, Enqueued, HttpClient, RetryPolicy, WebhookNotifier};
use piko_obs_tests::sink::{Reply, Sink};

/// `init()` installs one process-wide notification service: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn init_wires_providers_trace_ids_dead_letters_and_metrics() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead-letters.jsonl");
    let ok = Sink::start();
    let down = Sink::with_default(Reply::status(503));
    let http = HttpClient::new().unwrap();
    let guard = PikoObs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_environment("staging")
        .with_service_name("billing")
        .with_notification_provider("ok", WebhookNotifier::new(&http, &ok.url("/ok")).unwrap())
        .with_notification_provider(
            "down",
            WebhookNotifier::new(&http, &down.url("/down")).unwrap(),
        )
        .with_default_notification_provider("ok")
        .with_notification_retry_policy(
            RetryPolicy::default()
                .with_backoff(Duration::from_secs(60), Duration::from_secs(60), 2.0)
                .unwrap(),
        )
        .with_notification_dead_letter_path(&dead)
        .init()
        .unwrap();
    let service = notification::service().unwrap();
    assert_eq!(service.providers(), ["down", "ok"]);
    assert_eq!(service.default_provider().as_deref(), Some("ok"));

    // The trace id comes from the current OpenTelemetry span.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("test");
    let trace_id = tracer.in_span("charge", |cx| {
        use opentelemetry::trace::TraceContextExt as _;
        assert_eq!(
            notification::builder().title("charge failed").enqueue(),
            Ok(Enqueued::Queued)
        );
        cx.span().span_context().trace_id().to_string()
    });
    let got = ok.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    let b = got[0].json();
    assert_eq!(b["title"], "charge failed");
    assert_eq!(b["trace_id"], trace_id.as_str());
    assert_eq!(b["environment"], "staging");
    assert_eq!(b["service"], "billing");

    // Two waiting for a retry on the provider that is down: shutdown puts them on disk.
    for i in 0..2 {
        notification::builder()
            .title(format!("stuck {i}"))
            .provider("down")
            .enqueue()
            .unwrap();
    }
    down.wait_for(2, Duration::from_secs(10));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while service.dispatcher().unwrap().stats().waiting_retry < 2
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = piko_obs::metrics::render().unwrap();
    let value = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    };
    assert_eq!(value("piko_obs_notifications_delivered_total"), 1.0);
    assert_eq!(value("piko_obs_notifications_waiting_retry"), 2.0);
    assert_eq!(value("piko_obs_notifications_retried_total"), 2.0);
    guard.shutdown().unwrap();
    let lines = std::fs::read_to_string(&dead).unwrap();
    let mut titles: Vec<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["notification"]["content"]["title"]
            .as_str()
            .unwrap()
            .to_string())
        .collect();
    titles.sort();
    assert_eq!(titles, ["stuck 0", "stuck 1"]);
}

#[test]
fn bad_notification_settings_fail_init_with_the_setting_named() {
    let _one = serial();
    let base = || {
        PikoObs::builder()
            .with_console_output(false)
            .with_health_enabled(false)
    };
    let e = base()
        .with_notification_dead_letter_path("/proc/piko-obs/cannot/dead.jsonl")
        .init()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("notification dead-letter file /proc/piko-obs/cannot/dead.jsonl"),
        "{e}"
    );
    assert!(
        e.to_string().contains("PIKO_NOTIFICATION_DEAD_LETTER_PATH"),
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

#[test]
fn with_no_provider_alerts_go_to_stdout() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let guard = PikoObs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .init()
        .unwrap();
    let service = notification::service().unwrap();
    assert_eq!(service.providers(), ["stdout"]);
    guard.shutdown().unwrap();
}
