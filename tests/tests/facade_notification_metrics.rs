//! Notifications set up by `init()`: providers, the trace id of the current
//! OpenTelemetry span, the dead-letter file at shutdown, and the dispatcher's counters on
//! `/metrics`.
//!
//! Alone in its test binary: the facade records the dispatcher's counters with
//! `Counter::absolute`, which keeps the highest value the process's recorder has seen, so
//! a dispatcher of an earlier test in the same process (one `init()` after another) could
//! leave a higher count than this test's.

use std::time::Duration;

use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use piko_obs::notification::{self, Enqueued, HttpClient, RetryPolicy, WebhookNotifier};
use piko_obs_testkit::sink::{Reply, Sink};

#[test]
fn init_wires_providers_trace_ids_dead_letters_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead-letters.jsonl");
    let ok = Sink::start();
    let down = Sink::with_default(Reply::status(503));
    let http = HttpClient::new().unwrap();
    let guard = piko_obs::builder()
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
    // And for `send().await`, which delivers on piko-obs's runtime: the trace id is
    // the caller's span's, taken before the delivery leaves the caller's thread.
    use opentelemetry::trace::TraceContextExt as _;
    let cx = opentelemetry::Context::current().with_span(tracer.start("refund"));
    let refund_trace = cx.span().span_context().trace_id().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(opentelemetry::trace::FutureExt::with_context(
            notification::builder()
                .title("refund failed")
                .send_with_retries(),
            cx,
        ))
        .unwrap();
    let got = ok.wait_for(2, Duration::from_secs(10));
    let refund = got
        .iter()
        .map(|r| r.json())
        .find(|b| b["title"] == "refund failed")
        .expect("the sent notification arrived");
    assert_eq!(refund["trace_id"], refund_trace.as_str());

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
    assert_eq!(value("piko_obs_notifications_dead_letter_pending"), 0.0);
    // Every counter of the dispatcher is on /metrics, as it stands (nothing moves now:
    // the two wait for a retry far off).
    let stats = service.dispatcher().unwrap().stats();
    assert!(stats.enqueued >= 3, "{stats:?}");
    for (metric, v) in [
        ("piko_obs_notifications_enqueued_total", stats.enqueued),
        ("piko_obs_notifications_queued", 0),
        ("piko_obs_notifications_in_flight", 0),
        ("piko_obs_notifications_dead_lettered_total", 0),
        ("piko_obs_notifications_dead_letter_errors_total", 0),
        ("piko_obs_notifications_dropped_total", 0),
    ] {
        assert_eq!(value(metric), v as f64, "{metric}: {stats:?}");
    }
    assert!(
        value("piko_obs_notification_provider_failed_attempts_total{provider=\"down\"}") >= 2.0
    );
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
