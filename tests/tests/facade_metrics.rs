//! `/metrics` on the probe port: the program's own metrics, process metrics and
//! piko-obs's counters, in text that Prometheus parses; the facade's metrics options
//! (path, on/off, buckets, caps) and their checks at `init()`; and the self-metrics
//! moving when log lines, spans and notifications are lost.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use piko_obs::InitError;
use piko_obs::logger::{self, JsonOutput, Level, Overflow, QueueOptions, attr};
use piko_obs::notification::{self, HttpClient, WebhookNotifier};
use piko_obs_testkit::otlp::{Mode, OtlpReceiver};
use piko_obs_testkit::sink::{Reply, Sink};
use piko_obs_testkit::{Capture, http_get};

/// `init()` installs one process-wide recorder, with the settings of the first `init()`
/// that installs it, and one logger hub: one test at a time, all with the metrics
/// settings of [`builder`].
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The metrics settings of every test here, whichever runs first.
fn builder() -> piko_obs::Builder {
    piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_notifications_enabled(false)
        .with_metrics_global_label("environment", "test")
        .with_metrics_cardinality_limit(5)
        .with_metrics_cardinality_limit_for("sku_views_total", 2)
        .with_metrics_cardinality_limit_for("region_requests_total", 8)
        .with_metrics_buckets("payment_duration_seconds", &[0.1, 0.5, 1.0, 2.5])
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let r = http_get(addr, path).unwrap();
    (r.status, r.content_type, r.body)
}

/// The value of the first series of `text` that starts with `prefix` and contains
/// every one of `parts`.
fn value(text: &str, prefix: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// How many series of `text` start with `prefix`.
fn series(text: &str, prefix: &str) -> usize {
    text.lines().filter(|l| l.starts_with(prefix)).count()
}

fn refused(text: &str, metric: &str, reason: &str) -> Option<f64> {
    value(
        text,
        "piko_obs_metrics_series_refused_total{",
        &[
            &format!("metric=\"{metric}\""),
            &format!("reason=\"{reason}\""),
        ],
    )
}

#[test]
fn metrics_path_serves_program_process_and_toolkit_metrics() {
    let _one = serial();
    let guard = builder()
        .with_custom_health_probe(piko_obs::health::probe_fn("cache", |_, _| async {
            piko_obs::health::Status::degraded("cache", "warming up")
        }))
        .init()
        .unwrap();
    assert_eq!(get(guard.health_addr().unwrap(), "/ready").0, 200);
    let cap = Capture::new();
    logger::add_output(
        "capture",
        Level::INFO,
        JsonOutput::writer(cap.clone()).build().unwrap(),
    )
    .unwrap();
    for _ in 0..3 {
        logger::get_logger("m").info("counted", &[]);
    }
    logger::hub().flush(Duration::from_secs(5)).unwrap();
    metrics::counter!("orders_placed_total", "channel" => "web").increment(2);
    metrics::histogram!("http_server_request_duration_seconds", "http_route" => "/").record(0.03);
    for tenant in 0..8 {
        metrics::counter!("tenant_requests_total", "tenant" => tenant.to_string()).increment(1);
    }
    metrics::counter!("bad.name").increment(1);
    logger::hub().flush(Duration::from_secs(5)).unwrap();
    let warnings: Vec<_> = cap
        .json_lines()
        .into_iter()
        .filter(|l| l["msg"] == "metric series not recorded")
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0]["level"], "WARN");
    assert_eq!(warnings[0]["metric"], "tenant_requests_total");
    assert_eq!(warnings[0]["reason"], "cardinality_limit");
    assert_eq!(warnings[1]["metric"], "bad.name");

    let (code, content_type, body) = get(guard.health_addr().unwrap(), "/metrics");
    assert_eq!(code, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let line = |prefix: &str| {
        body.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{body}"))
            .to_string()
    };
    let orders = line("orders_placed_total{");
    assert!(
        orders.contains("channel=\"web\"") && orders.contains("environment=\"test\""),
        "{orders}"
    );
    assert!(orders.ends_with(" 2"), "{orders}");
    // 3 lines logged here and the 2 warnings about refused series.
    assert_eq!(
        value(
            &body,
            "piko_obs_log_lines_written_total{",
            &["output=\"capture\""]
        ),
        Some(5.0),
        "{body}"
    );
    assert!(body.contains("# HELP piko_obs_log_lines_dropped_total"));
    let state = line("piko_obs_health_probe_state{");
    assert!(
        state.contains("probe=\"cache\"") && state.contains("kind=\"readiness\""),
        "{state}"
    );
    assert!(state.ends_with(" 1"), "degraded is 1: {state}");
    assert!(
        body.contains("piko_obs_health_check_duration_seconds"),
        "{body}"
    );
    let cpu: f64 = line("process_cpu_seconds_total")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..3600.0).contains(&cpu), "{cpu}");
    let threads: f64 = line("process_threads")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(threads >= 2.0, "{threads}");
    let rss: f64 = line("process_resident_memory_bytes")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rss > 1e6 && rss < 1e11, "{rss}");
    assert!(
        body.contains("http_server_request_duration_seconds_bucket{environment=\"test\",http_route=\"/\",le=\"0.05\"} 1")
            || body.contains("http_server_request_duration_seconds_bucket{http_route=\"/\",environment=\"test\",le=\"0.05\"} 1"),
        "{body}"
    );

    // Every series piko-obs records itself is described (promtool lints a missing HELP).
    let undescribed: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| {
            ["piko_obs_", "process_", "http_server_"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .filter(|name| !body.contains(&format!("# HELP {name} ")))
        .collect();
    assert!(undescribed.is_empty(), "no HELP: {undescribed:?}\n{body}");

    let tenants = body
        .lines()
        .filter(|l| l.starts_with("tenant_requests_total{"))
        .count();
    assert_eq!(tenants, 5, "the cap is 5 label sets:\n{body}");
    let refused = |metric: &str, reason: &str| {
        body.lines()
            .find(|l| {
                l.starts_with("piko_obs_metrics_series_refused_total{")
                    && l.contains(&format!("metric=\"{metric}\""))
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .unwrap_or_else(|| panic!("no refusal of {metric} in:\n{body}"))
            .to_string()
    };
    assert!(
        refused("tenant_requests_total", "cardinality_limit").ends_with(" 3"),
        "{body}"
    );
    assert!(
        refused("bad.name", "invalid_name").ends_with(" 1"),
        "{body}"
    );

    guard.shutdown().unwrap();
}

#[test]
fn a_zero_cardinality_limit_fails_init() {
    let _one = serial();
    let err = builder()
        .with_metrics_cardinality_limit(0)
        .init()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "with_metrics_cardinality_limit: the cardinality limit must be at least 1"
    );
}

#[test]
fn a_bad_metrics_label_fails_init() {
    let _one = serial();
    let err = builder()
        .with_metrics_global_label("bad-label", "x")
        .init()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("with_metrics_global_label: label name \"bad-label\" is not valid"),
        "{err}"
    );
}

#[test]
fn configured_buckets_render_a_histogram_and_per_metric_caps_refuse_past_them() {
    let _one = serial();
    let guard = builder().init().unwrap();
    for seconds in [0.42, 2.0, 0.05] {
        metrics::histogram!("payment_duration_seconds", "method" => "card").record(seconds);
    }
    // A cap below the default (5) and one above it.
    for sku in 0..5 {
        metrics::counter!("sku_views_total", "sku" => sku.to_string()).increment(1);
    }
    for region in 0..10 {
        metrics::counter!("region_requests_total", "region" => region.to_string()).increment(1);
    }
    let (code, _, text) = get(guard.health_addr().unwrap(), "/metrics");
    assert_eq!(code, 200);
    assert!(
        text.contains("# TYPE payment_duration_seconds histogram"),
        "{text}"
    );
    let buckets: Vec<(String, f64)> = text
        .lines()
        .filter(|l| l.starts_with("payment_duration_seconds_bucket{"))
        .map(|l| {
            assert!(
                l.contains("method=\"card\"") && l.contains("environment=\"test\""),
                "{l}"
            );
            let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            (
                le.to_string(),
                l.rsplit(' ').next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        buckets,
        [
            ("0.1".to_string(), 1.0),
            ("0.5".to_string(), 2.0),
            ("1".to_string(), 2.0),
            ("2.5".to_string(), 3.0),
            ("+Inf".to_string(), 3.0),
        ],
        "{text}"
    );
    assert_eq!(
        value(&text, "payment_duration_seconds_count{", &[]),
        Some(3.0)
    );
    assert_eq!(series(&text, "sku_views_total{"), 2, "{text}");
    assert_eq!(
        refused(&text, "sku_views_total", "cardinality_limit"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(series(&text, "region_requests_total{"), 8, "{text}");
    assert_eq!(
        refused(&text, "region_requests_total", "cardinality_limit"),
        Some(2.0),
        "{text}"
    );
    guard.shutdown().unwrap();
}

#[test]
fn bad_buckets_and_caps_fail_init_naming_the_setting_and_the_metric() {
    let _one = serial();
    let cases: [(&[f64], &str); 5] = [
        (&[], "empty"),
        (&[1.0, 0.5], "decreasing"),
        (&[0.5, 0.5], "repeated"),
        (&[0.1, f64::NAN], "NaN"),
        (&[0.1, f64::INFINITY], "infinite"),
    ];
    for (buckets, what) in cases {
        let err = builder()
            .with_metrics_buckets("checkout_duration_seconds", buckets)
            .init()
            .unwrap_err();
        assert!(
            matches!(
                err,
                InitError::Metrics {
                    setting: "with_metrics_buckets",
                    ..
                }
            ),
            "{what}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(
                "with_metrics_buckets: buckets for \"checkout_duration_seconds\" must be finite, increasing and non-empty"
            ),
            "{what}: {text}"
        );
    }
    // Checked even when the probe server (and so the recorder) is off.
    let err = builder()
        .with_health_enabled(false)
        .with_metrics_buckets("checkout_duration_seconds", &[])
        .init()
        .unwrap_err();
    assert!(
        err.to_string().starts_with("with_metrics_buckets: "),
        "{err}"
    );
    let err = builder()
        .with_metrics_buckets("checkout-seconds", &[1.0])
        .init()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("with_metrics_buckets: metric name \"checkout-seconds\" is not valid"),
        "{err}"
    );
    let err = builder()
        .with_metrics_cardinality_limit_for("sku_views_total", 0)
        .init()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "with_metrics_cardinality_limit_for: the cardinality limit for \"sku_views_total\" must be at least 1"
    );
    let err = builder()
        .with_metrics_cardinality_limit_for("sku views", 3)
        .init()
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "with_metrics_cardinality_limit_for: metric name \"sku views\" is not valid"
        ),
        "{err}"
    );
}

#[test]
fn the_metrics_path_can_be_moved_and_metrics_turned_off() {
    let _one = serial();
    let guard = builder()
        .with_health_metrics_path("/internal/metrics")
        .init()
        .unwrap();
    let addr = guard.health_addr().unwrap();
    let (code, content_type, body) = get(addr, "/internal/metrics");
    assert_eq!(code, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        body.contains("# TYPE process_cpu_seconds_total counter"),
        "{body}"
    );
    assert_eq!(
        get(addr, "/metrics").0,
        404,
        "the default path is not served"
    );
    guard.shutdown().unwrap();

    let guard = builder().with_health_metrics_enabled(false).init().unwrap();
    let addr = guard.health_addr().unwrap();
    let (code, _, body) = get(addr, "/metrics");
    assert_eq!(code, 404, "{body}");
    assert!(!body.contains("process_cpu_seconds_total"), "{body}");
    assert_eq!(get(addr, "/live").0, 200, "the probes are still served");
    guard.shutdown().unwrap();
}

/// A destination whose writes wait while the gate is closed (at most 30 s each, so a
/// failing test cannot hang).
#[derive(Clone, Default)]
struct Stalled {
    gate: Arc<(Mutex<bool>, Condvar)>,
    out: Capture,
}

impl Stalled {
    fn open(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }
}

impl Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (lock, cvar) = &*self.gate;
        let open = lock.lock().unwrap();
        let _open = cvar
            .wait_timeout_while(open, Duration::from_secs(30), |open| !*open)
            .unwrap();
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn log_lines_dropped_by_a_lossy_output_are_counted() {
    let _one = serial();
    let guard = builder().init().unwrap();
    let disk = Stalled::default();
    logger::add_output(
        "stalled",
        Level::INFO,
        JsonOutput::writer(disk.clone())
            .with_queue(QueueOptions {
                capacity_bytes: 4 << 10,
                overflow: Overflow::Drop,
            })
            .build()
            .unwrap(),
    )
    .unwrap();
    let stats = || {
        logger::hub()
            .outputs()
            .into_iter()
            .find(|o| o.name == "stalled")
            .unwrap()
            .stats
    };
    let dropped_metric = || {
        value(
            &piko_obs::metrics::render().unwrap(),
            "piko_obs_log_lines_dropped_total{",
            &["output=\"stalled\""],
        )
    };
    assert_eq!(dropped_metric(), Some(0.0));
    let log = logger::get_logger("lossy");
    let mut n = 0;
    while n < 10_000 && stats().dropped < 10 {
        log.info("order placed", &[attr::uint("n", n)]);
        n += 1;
    }
    let dropped = stats().dropped;
    assert!(dropped >= 10, "{:?} after {n} lines", stats());
    let text = piko_obs::metrics::render().unwrap();
    assert!(
        text.contains("# HELP piko_obs_log_lines_dropped_total "),
        "{text}"
    );
    let counted = value(
        &text,
        "piko_obs_log_lines_dropped_total{",
        &["output=\"stalled\""],
    )
    .unwrap();
    assert!(counted >= dropped as f64, "{counted} < {dropped}:\n{text}");
    disk.open();
    guard.shutdown().unwrap();
    assert!(
        !disk.out.lines().is_empty(),
        "the lines that fit were written"
    );
}

#[test]
fn spans_that_do_not_fit_the_export_queue_are_counted() {
    let _one = serial();
    // The recorder of this binary is installed without the OTLP bridge, whichever test
    // runs first.
    if piko_obs::metrics::installed().is_none() {
        builder().init().unwrap().shutdown().unwrap();
    }
    let collector = OtlpReceiver::start();
    collector.set_mode(Mode::Hang);
    let guard = builder()
        .with_otlp_endpoint(collector.http_endpoint())
        .with_otlp_timeout(Duration::from_secs(2))
        .with_shutdown_timeout(Duration::from_secs(3))
        .init()
        .unwrap();
    let before = piko_obs::metrics::render().unwrap();
    assert!(
        before.contains("# HELP piko_obs_spans_dropped_total "),
        "{before}"
    );
    assert_eq!(
        value(&before, "piko_obs_spans_dropped_total", &[]),
        Some(0.0)
    );
    let pipeline = piko_obs::otlp::pipeline().unwrap();
    // The exporter waits on a collector that never answers: the queue (2048 spans)
    // fills and the spans past it are dropped.
    let tracer = opentelemetry::global::tracer("facade-metrics");
    let mut n = 0u64;
    while n < 20_000 && pipeline.spans.stats().dropped == 0 {
        opentelemetry::trace::Tracer::in_span(&tracer, "work", |_| {});
        n += 1;
    }
    let stats = pipeline.spans.stats();
    assert!(stats.dropped > 0, "{stats:?} after {n} spans");
    let text = piko_obs::metrics::render().unwrap();
    for name in [
        "piko_obs_spans_ended_total",
        "piko_obs_spans_exported_total",
        "piko_obs_spans_dropped_total",
        "piko_obs_spans_export_failed_total",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
    }
    let dropped = value(&text, "piko_obs_spans_dropped_total", &[]).unwrap();
    let ended = value(&text, "piko_obs_spans_ended_total", &[]).unwrap();
    assert!(dropped >= stats.dropped as f64, "{dropped}: {stats:?}");
    assert!(ended >= n as f64 && ended >= dropped, "{ended}: {stats:?}");
    // A collector that never answers cannot be flushed; the shutdown stays in its bound.
    let started = Instant::now();
    let result = guard.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}: {result:?}",
        started.elapsed()
    );
}

#[test]
fn a_dead_lettered_notification_is_counted() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead-letters.jsonl");
    let hook = Sink::with_default(Reply::status(400));
    let http = HttpClient::new().unwrap();
    let guard = builder()
        .with_notifications_enabled(true)
        .with_notification_provider(
            "hook",
            WebhookNotifier::new(&http, &hook.url("/alerts")).unwrap(),
        )
        .with_notification_dead_letter_path(&dead)
        .init()
        .unwrap();
    let dead_lettered = || {
        value(
            &piko_obs::metrics::render().unwrap(),
            "piko_obs_notifications_dead_lettered_total",
            &[],
        )
    };
    assert_eq!(dead_lettered(), Some(0.0));
    notification::builder()
        .title("card declined")
        .provider("hook")
        .enqueue()
        .unwrap();
    assert_eq!(hook.wait_for(1, Duration::from_secs(10)).len(), 1);
    // A 400 is not retried: the notification goes to the dead-letter file at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = dead_lettered();
    while seen != Some(1.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        seen = dead_lettered();
    }
    assert_eq!(seen, Some(1.0));
    let text = piko_obs::metrics::render().unwrap();
    assert!(
        text.contains("# HELP piko_obs_notifications_dead_lettered_total "),
        "{text}"
    );
    guard.shutdown().unwrap();
    let lines = std::fs::read_to_string(&dead).unwrap();
    assert!(lines.contains("card declined"), "{lines}");
}
