//! OTLP through the facade: `init()` exports spans and log lines (with the ids of the
//! span they were written in) to a receiver, counts spans and log records on `/metrics`,
//! flushes at shutdown, and rejects bad settings naming them.

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, Tracer as _};
use piko_obs::logger::{self, attr};
use piko_obs_testkit::otlp::OtlpReceiver;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Always true: keeps the `Ok` after the panic reachable.
fn hook_ran_is_counting() -> bool {
    std::hint::black_box(true)
}

/// The value of the unlabelled series `name` in `text`.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A builder exporting to `receiver`, quiet, with its probe server on a free port and
/// its dead letters in `dir`.
fn exporting_to(receiver: &OtlpReceiver, dir: &tempfile::TempDir) -> piko_obs::Builder {
    piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_otlp_endpoint(receiver.http_endpoint())
}

#[test]
fn init_exports_spans_and_log_lines_with_their_trace_ids() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start();
    let guard = exporting_to(&receiver, &dir)
        .with_service_name("orders")
        .with_environment("staging")
        .with_otlp_headers([("authorization", "Bearer facade")])
        .with_otlp_service_version("9.9.9")
        .init()
        .unwrap();
    // A hook of the service's own, set after `init()` and chaining to the one before
    // it, as hooks should: both it and the facade's `note_panic` run.
    let hook_ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let hook_ran = hook_ran.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hook_ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            previous(info)
        }));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log = logger::get_logger("orders");
    let panicked = runtime.block_on(async move {
        tokio::spawn(piko_obs::otlp::run_in_span(
            &log,
            "charge card",
            vec![],
            |_| async {
                if hook_ran_is_counting() {
                    panic!("payment gateway down");
                }
                Ok::<(), std::io::Error>(())
            },
        ))
        .await
    });
    assert!(panicked.unwrap_err().is_panic());
    assert_eq!(hook_ran.load(std::sync::atomic::Ordering::SeqCst), 1);
    let tracer = opentelemetry::global::tracer("facade-test");
    let trace_id = tracer.in_span("handle order", |cx| {
        logger::get_logger("orders").warn("stock low", &[attr::int("left", 2)]);
        cx.span().span_context().trace_id()
    });
    // Recorded once with the `metrics` macros: on /metrics, and exported over OTLP.
    metrics::counter!("orders_shipped_total", "carrier" => "post").increment(2);
    let text = piko_obs::metrics::render().unwrap();
    assert!(text.contains("piko_obs_spans_ended_total"), "{text}");
    // The log-record pipeline's four counters, with their HELP lines: the line above went
    // to the otlp output, which emitted it (synchronously) to the processor.
    for name in [
        "piko_obs_log_records_emitted_total",
        "piko_obs_log_records_exported_total",
        "piko_obs_log_records_dropped_total",
        "piko_obs_log_records_export_failed_total",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
        assert!(value(&text, name).is_some(), "{name}:\n{text}");
    }
    let emitted = value(&text, "piko_obs_log_records_emitted_total").unwrap();
    let stats = piko_obs::otlp::pipeline().unwrap().logs.stats();
    assert!(
        emitted >= 1.0 && emitted <= stats.emitted as f64,
        "{emitted}: {stats:?}"
    );
    assert_eq!(
        value(&text, "piko_obs_log_records_dropped_total"),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("orders_shipped_total{carrier=\"post\"} 2"),
        "{text}"
    );
    guard.shutdown().unwrap();
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        !r.spans().is_empty()
            && !r.log_records().is_empty()
            && r.metric_names().contains(&"orders_shipped".to_string())
    });
    // Over OTLP without the `_total` a collector's Prometheus exporter adds back.
    assert!(
        got.metric_names().contains(&"orders_shipped".to_string()),
        "{:?}",
        got.metric_names()
    );
    let span = got
        .spans()
        .into_iter()
        .find(|s| s.name == "handle order")
        .unwrap();
    assert_eq!(span.trace_id, trace_id.to_bytes().to_vec());
    // The panic's message, from the hook the facade installed.
    let charge = got
        .spans()
        .into_iter()
        .find(|s| s.name == "charge card")
        .expect("the span a panic ended was exported");
    let status = charge.status.clone().unwrap();
    assert_eq!(status.code, 2);
    assert_eq!(status.message, "panic: payment gateway down");
    assert_eq!(got.traces[0].header("authorization"), Some("Bearer facade"));
    let line = got
        .log_records()
        .into_iter()
        .find(|l| format!("{:?}", l.body).contains("stock low"))
        .expect("the log line arrived");
    assert_eq!(
        line.trace_id,
        trace_id.to_bytes().to_vec(),
        "written inside the span"
    );
    assert_eq!(line.severity_text, "WARN");
    assert!(line.attributes.iter().any(|a| a.key == "left"));
    assert!(line.attributes.iter().any(|a| a.key == "logger"));
    let resource = got.traces[0].request.resource_spans[0]
        .resource
        .clone()
        .unwrap();
    let names: Vec<String> = resource
        .attributes
        .iter()
        .map(|a| {
            format!(
                "{}={:?}",
                a.key,
                a.value.as_ref().and_then(|v| v.value.clone())
            )
        })
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("service.name=") && n.contains("orders")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("service.version=") && n.contains("9.9.9")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("deployment.environment.name=") && n.contains("staging")),
        "the facade's environment: {names:?}"
    );
}

#[test]
fn bad_otlp_settings_fail_init_naming_them() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let base = || {
        piko_obs::builder()
            .with_console_output(false)
            .with_health_enabled(false)
            .with_notifications_enabled(false)
    };
    let e = base().with_otlp_protocol("thrift").init().unwrap_err();
    assert_eq!(
        e.to_string(),
        "with_otlp_protocol: unknown protocol \"thrift\"; use grpc, http/protobuf or \
         http/json"
    );
    let e = base()
        .with_otlp_endpoint("ftp://collector:4317")
        .init()
        .unwrap_err();
    assert!(e.to_string().starts_with("OtlpConfig.endpoint:"), "{e}");
    let e = base()
        .with_otlp_endpoint("http://127.0.0.1:4317")
        .with_otlp_headers([("x-key", "a\nb")])
        .init()
        .unwrap_err();
    assert!(e.to_string().starts_with("OtlpConfig.headers:"), "{e}");
    let e = base()
        .with_otlp_endpoint("http://127.0.0.1:4317")
        .with_otlp_ca_file("/nonexistent/ca.pem")
        .init()
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("OtlpConfig.tls.ca_file: cannot read /nonexistent/ca.pem"),
        "{e}"
    );
    // A CA file that exists but cannot be read (a directory: the tests may run as root,
    // whom no permission bit keeps from reading a file), and one holding no certificate,
    // fail `init()` naming the option, over either protocol.
    let tls_dir = tempfile::tempdir().unwrap();
    let not_pem = tls_dir.path().join("not-a-certificate.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    for (protocol, port) in [("grpc", 4317), ("http/protobuf", 4318)] {
        let e = base()
            .with_otlp_endpoint(format!("https://127.0.0.1:{port}"))
            .with_otlp_protocol(protocol)
            .with_otlp_ca_file(tls_dir.path())
            .init()
            .unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "OtlpConfig.tls.ca_file: cannot read {}: ",
                tls_dir.path().display()
            )),
            "{protocol}: {e}"
        );
        let e = base()
            .with_otlp_endpoint(format!("https://127.0.0.1:{port}"))
            .with_otlp_protocol(protocol)
            .with_otlp_ca_file(&not_pem)
            .init()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "OtlpConfig.tls.ca_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                not_pem.display()
            ),
            "{protocol}"
        );
    }
    let e = base().with_otlp_trace_sample_rate(2.0).init().unwrap_err();
    assert!(e.to_string().starts_with("OtlpConfig.sample_rate:"), "{e}");
}

#[test]
fn the_sdks_own_failures_reach_the_log_rate_limited() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start();
    receiver.set_mode(piko_obs_testkit::otlp::Mode::Unavailable);
    let cap = piko_obs_testkit::Capture::new();
    logger::add_output(
        "sdk-errors",
        piko_obs::logger::Level::WARN,
        piko_obs_logger_drains::JsonOutput::writer(cap.clone())
            .build()
            .unwrap(),
    )
    .unwrap();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_otlp_endpoint(receiver.http_endpoint())
        .with_otlp_metric_interval(Duration::from_millis(100))
        .with_otlp_timeout(Duration::from_millis(500))
        .init()
        .unwrap();
    // A log line and a metric for the exporters to fail on, again and again.
    metrics::counter!("sdk_errors_probe_total").increment(1);
    let read = || -> Vec<serde_json::Value> {
        // The OTLP output's flush fails (the collector refuses): only the capture matters.
        let _ = logger::hub().flush(Duration::from_secs(5));
        cap.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|l: &serde_json::Value| {
                l["logger"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("opentelemetry")
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while read().is_empty() && std::time::Instant::now() < deadline {
        logger::get_logger("orders").warn("export me", &[]);
        std::thread::sleep(Duration::from_millis(100));
    }
    // More failed exports, for the rate limit to hold back.
    for _ in 0..15 {
        logger::get_logger("orders").warn("export me", &[]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let sdk = read();
    assert!(!sdk.is_empty(), "the SDK's export failures are logged");
    for l in &sdk {
        // A telemetry-pipeline problem, not an application error for Sentry and alerts;
        // named, not blank.
        assert_eq!(l["level"], "WARN", "{l}");
        assert!(!l["msg"].as_str().unwrap_or("").is_empty(), "{l}");
    }
    let mut sites: Vec<String> = sdk
        .iter()
        .map(|l| format!("{}:{}", l["source"]["file"], l["source"]["line"]))
        .collect();
    let n = sites.len();
    sites.sort();
    sites.dedup();
    assert_eq!(
        sites.len(),
        n,
        "at most one line per call site in 30 s: {sdk:?}"
    );
    drop(guard);
}

#[test]
fn span_events_can_be_turned_off() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start();
    let guard = exporting_to(&receiver, &dir)
        .with_otlp_span_events(false)
        .init()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log = logger::get_logger("quiet");
    runtime
        .block_on(piko_obs::otlp::run_in_span(
            &log,
            "no events",
            vec![],
            |l| async move {
                l.error("declined", &[]);
                Ok::<(), std::io::Error>(())
            },
        ))
        .unwrap();
    guard.shutdown().unwrap();
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        r.spans().iter().any(|s| s.name == "no events")
            && r.log_records()
                .iter()
                .any(|l| format!("{:?}", l.body).contains("declined"))
    });
    let span = got
        .spans()
        .into_iter()
        .find(|s| s.name == "no events")
        .expect("the span arrived");
    assert!(span.events.is_empty(), "{:?}", span.events);
    assert_ne!(
        span.status.clone().map_or(0, |s| s.code),
        2,
        "not set by the ERROR line"
    );
    let line = got
        .log_records()
        .into_iter()
        .find(|l| format!("{:?}", l.body).contains("declined"))
        .expect("the line is still exported");
    assert_eq!(line.trace_id, span.trace_id);
    assert_eq!(line.span_id, span.span_id);
}

/// `init()`, shutdown, `init()` again in one process (as a test suite does): the
/// `metrics` macros reach the pipeline running now, though the process's recorder was
/// installed by the first.
#[test]
fn a_second_init_exports_the_metrics_macros_to_its_own_pipeline() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for round in ["first", "second"] {
        let dir = tempfile::tempdir().unwrap();
        let receiver = OtlpReceiver::start();
        let guard = exporting_to(&receiver, &dir).init().unwrap();
        let name = format!("reinit_{round}");
        metrics::counter!(format!("{name}_total")).increment(3);
        guard.shutdown().unwrap();
        let got = receiver.wait_until(Duration::from_secs(10), |r| {
            r.metric_names().contains(&name)
        });
        assert!(
            got.metric_names().contains(&name),
            "{round} init: {:?}",
            got.metric_names()
        );
    }
}
