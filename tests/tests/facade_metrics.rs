//! `/metrics` on the probe port: the program's own metrics, process metrics and
//! piko-obs's counters, in text that Prometheus parses.

use std::net::SocketAddr;
use std::time::Duration;

use piko_obs::PikoObs;
use piko_obs::logger::{self, JsonOutput, Level};
use piko_obs_tests::{Capture, http_get};

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let r = http_get(addr, path).unwrap();
    (r.status, r.content_type, r.body)
}

#[test]
fn metrics_path_serves_program_process_and_toolkit_metrics() {
    let guard = PikoObs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_metrics_global_label("environment", "test")
        .with_metrics_cardinality_limit(5)
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
    let written = line("piko_obs_log_lines_written_total{");
    assert!(written.contains("output=\"capture\""), "{written}");
    // 3 lines logged here and the 2 warnings about refused series.
    assert!(written.ends_with(" 5"), "{written}");
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
    let err = PikoObs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_metrics_cardinality_limit(0)
        .init()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cardinality limit must be at least 1"),
        "{err}"
    );
}

#[test]
fn a_bad_metrics_label_fails_init() {
    let err = PikoObs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_metrics_global_label("bad-label", "x")
        .init()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("label name \"bad-label\" is not valid"),
        "{err}"
    );
}
