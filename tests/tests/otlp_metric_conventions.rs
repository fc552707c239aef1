//! Metrics over OTLP as a collector and its backends expect them, checked at the OTLP
//! receiver: the HTTP request duration of a real axum server under its semantic-convention
//! name, unit and attribute keys, with the convention's buckets and the requests spread
//! over them as their durations say; a histogram declared with `with_metrics_buckets`
//! with those buckets; other names without their unit and `_total` suffixes; and
//! `/metrics` keeping the Prometheus names.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AttrValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{HistogramDataPoint, Metric};
use piko_obs::metrics::http::HttpMetricsLayer;
use piko_obs_testkit::otlp::{OtlpReceiver, Received};
use piko_obs_testkit::{http_get, serve_axum};

/// The HTTP semantic conventions' buckets for `http.server.request.duration`.
const HTTP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

async fn fast() -> &'static str {
    "fast"
}

async fn slow() -> &'static str {
    // Between 0.1 s and 0.25 s even on a loaded machine: the 0.25 bucket.
    tokio::time::sleep(Duration::from_millis(120)).await;
    "slow"
}

async fn slower() -> &'static str {
    // Between 0.5 s and 0.75 s: the 0.75 bucket.
    tokio::time::sleep(Duration::from_millis(520)).await;
    "slower"
}

/// The last metric named `name` that arrived.
fn last(got: &Received, name: &str) -> Metric {
    got.last_metric(name)
        .unwrap_or_else(|| panic!("{name} did not arrive: {:?}", got.metric_names()))
}

fn string_attr(p: &HistogramDataPoint, key: &str) -> Option<String> {
    p.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone()?.value)
        .map(|v| match v {
            AttrValue::StringValue(s) => s,
            AttrValue::IntValue(i) => format!("int {i}"),
            other => format!("{other:?}"),
        })
}

/// The count in the bucket whose upper bound is `le` (the bucket `(previous, le]`).
fn in_bucket(p: &HistogramDataPoint, le: f64) -> u64 {
    let i = p
        .explicit_bounds
        .iter()
        .position(|b| *b == le)
        .unwrap_or_else(|| panic!("no bound {le} in {:?}", p.explicit_bounds));
    p.bucket_counts[i]
}

#[test]
fn histograms_go_out_with_their_buckets_under_the_convention_names() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_otlp_endpoint(receiver.http_endpoint())
        .with_otlp_metric_interval(Duration::from_millis(200))
        .with_metrics_buckets("payment_duration_seconds", &[0.1, 0.5, 1.0])
        .init()
        .unwrap();
    let probes = guard.health_addr().unwrap();
    let (runtime, app) = serve_axum(|_| {
        Router::new()
            .route("/fast", get(fast))
            .route("/slow", get(slow))
            .route("/slower", get(slower))
            .layer(HttpMetricsLayer::new())
    });
    for (path, times) in [("/fast", 3), ("/slow", 2), ("/slower", 1)] {
        for _ in 0..times {
            assert_eq!(http_get(app, path).unwrap().status, 200, "{path}");
        }
    }
    for v in [0.05, 0.3, 0.4, 2.0] {
        metrics::histogram!("payment_duration_seconds").record(v);
    }
    metrics::counter!("payments_total", "method" => "card").increment(4);

    // `/metrics` keeps the Prometheus names and labels.
    let text = http_get(probes, "/metrics").unwrap().body;
    assert!(
        text.contains("http_server_request_duration_seconds_bucket{")
            && text.contains("http_route=\"/slow\""),
        "{text}"
    );
    assert!(
        text.contains("payment_duration_seconds_bucket{le=\"0.5\"} 3"),
        "{text}"
    );
    assert!(text.contains("payments_total{method=\"card\"} 4"), "{text}");

    drop(runtime);
    guard.shutdown().unwrap();
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        let names = r.metric_names();
        [
            "http.server.request.duration",
            "payment_duration",
            "payments",
        ]
        .iter()
        .all(|n| names.contains(&n.to_string()))
    });
    let names = got.metric_names();
    for prometheus in [
        "http_server_request_duration_seconds",
        "payment_duration_seconds",
        "payments_total",
    ] {
        assert!(
            !names.contains(&prometheus.to_string()),
            "{prometheus} went out under its Prometheus name: {names:?}"
        );
    }

    let duration = last(&got, "http.server.request.duration");
    assert_eq!(duration.unit, "s");
    let Some(Data::Histogram(h)) = duration.data else {
        panic!("a histogram: {duration:?}")
    };
    let route = |r: &str| {
        h.data_points
            .iter()
            .find(|p| string_attr(p, "http.route").as_deref() == Some(r))
            .unwrap_or_else(|| panic!("no point for {r}: {:?}", h.data_points))
    };
    let fast = route("/fast");
    assert_eq!(fast.explicit_bounds, HTTP_BUCKETS.to_vec());
    assert_eq!(
        string_attr(fast, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(string_attr(fast, "url.scheme").as_deref(), Some("http"));
    assert_eq!(
        string_attr(fast, "http.response.status_code").as_deref(),
        Some("int 200")
    );
    assert!(
        fast.attributes
            .iter()
            .all(|a| a.key.starts_with("http.") || a.key.starts_with("url.")),
        "Prometheus label keys over OTLP: {:?}",
        fast.attributes
    );
    assert_eq!(fast.count, 3);
    // Each fast request well under 0.1 s: in the buckets up to 0.1, none above.
    let up_to_100ms: u64 = fast.bucket_counts[..6].iter().sum();
    assert_eq!(up_to_100ms, 3, "{:?}", fast.bucket_counts);
    let slow = route("/slow");
    assert_eq!(slow.count, 2);
    assert_eq!(in_bucket(slow, 0.25), 2, "{:?}", slow.bucket_counts);
    let slower = route("/slower");
    assert_eq!(slower.count, 1);
    assert_eq!(in_bucket(slower, 0.75), 1, "{:?}", slower.bucket_counts);

    let payment = last(&got, "payment_duration");
    assert_eq!(payment.unit, "s");
    let Some(Data::Histogram(h)) = payment.data else {
        panic!("a histogram: {payment:?}")
    };
    let p = &h.data_points[0];
    assert_eq!(p.explicit_bounds, vec![0.1, 0.5, 1.0]);
    // 0.05 | 0.3, 0.4 | - | 2.0
    assert_eq!(p.bucket_counts, vec![1, 2, 0, 1]);

    // The in-flight gauge under its convention name, back to 0 for each route.
    let active = last(&got, "http.server.active_requests");
    assert_eq!(active.unit, "{request}");
    let Some(Data::Gauge(g)) = active.data else {
        panic!("a gauge: {active:?}")
    };
    let slow_active = g
        .data_points
        .iter()
        .find(|p| {
            p.attributes.iter().any(|a| {
                a.key == "http.route"
                    && a.value.clone().and_then(|v| v.value)
                        == Some(AttrValue::StringValue("/slow".into()))
            })
        })
        .unwrap_or_else(|| panic!("no point for /slow: {:?}", g.data_points));
    assert_eq!(
        slow_active.value,
        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(0.0))
    );

    let payments = last(&got, "payments");
    assert!(
        matches!(&payments.data, Some(Data::Sum(s)) if s.is_monotonic),
        "{payments:?}"
    );
}
