//! axum with piko-obs's tower layers, against the OTLP receiver and `/metrics`: route
//! templates from `MatchedPath` with no closure, a bounded label for unmatched requests,
//! server spans named `{METHOD} {route}` with `http.route` the template, the HTTP
//! semantic conventions' attributes and labels, and W3C trace context in and out.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use opentelemetry_proto::tonic::trace::v1::Span;
use piko_obs::metrics::http::HttpMetricsLayer;
use piko_obs::otlp::{TraceLayer, traced};
use piko_obs_testkit::otlp::OtlpReceiver;
use piko_obs_testkit::{http_get, http_get_with, serve_axum};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(s: &Span, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| format!("{:?}", a.value))
}

#[tracing::instrument(skip_all)]
async fn order(Path(id): Path<u64>) -> String {
    tracing::info!("order read");
    format!("order {id}")
}

async fn fail() -> (axum::http::StatusCode, &'static str) {
    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "broken")
}

async fn checkout(State(base): State<String>) -> String {
    let client = reqwest::Client::builder().build().unwrap();
    let answer = traced(client.get(format!("{base}/orders/9")))
        .send()
        .await
        .unwrap();
    format!("upstream said {}", answer.status())
}

#[test]
fn axum_routes_label_metrics_and_name_server_spans_by_their_template() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_otlp_endpoint(receiver.grpc_endpoint())
        .with_otlp_protocol("grpc")
        .init()
        .unwrap();
    let probes = guard.health_addr().unwrap();
    let (runtime, app) = serve_axum(|app| {
        Router::new()
            .route("/orders/{id}", get(order))
            .route("/fail", get(fail))
            .route("/checkout", get(checkout))
            .with_state(format!("http://{app}"))
            .layer(HttpMetricsLayer::new())
            .layer(TraceLayer::new())
    });

    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let r = http_get_with(app, "/orders/7", &[("traceparent", &traceparent)]).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "order 7"));
    assert_eq!(http_get(app, "/orders/8").unwrap().status, 200);
    assert_eq!(http_get(app, "/no/such/route").unwrap().status, 404);
    assert_eq!(http_get(app, "/fail").unwrap().status, 500);
    assert_eq!(http_get(app, "/checkout").unwrap().status, 200);

    // The metrics: the template, never the raw path; the unmatched one bounded; the
    // conventions' labels.
    let text = http_get(probes, "/metrics").unwrap().body;
    let series = |parts: &[&str]| {
        text.lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count{"))
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        series(&[
            "http_request_method=\"GET\"",
            "http_route=\"/orders/{id}\"",
            "http_response_status_code=\"200\"",
            "url_scheme=\"http\"",
        ]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        series(&["http_route=\"other\"", "http_response_status_code=\"404\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(&[
            "http_route=\"/fail\"",
            "http_response_status_code=\"500\"",
            "error_type=\"500\"",
        ]),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("/orders/7"),
        "a raw path became a label: {text}"
    );
    assert!(!text.contains("/no/such/route"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.contains("http_response_status_code=\"200\"") && l.contains("error_type")),
        "error_type on a success: {text}"
    );

    drop(runtime);
    guard.shutdown().unwrap();
    let got = receiver.wait_until(Duration::from_secs(10), |r| r.spans().len() >= 9);
    let spans = got.spans();
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == 2).collect();
    // `GET /orders/7` with the caller's traceparent: a child of the caller's span.
    let from_caller = servers
        .iter()
        .find(|s| hex(&s.trace_id) == CALLER_TRACE)
        .expect("a server span in the caller's trace");
    assert_eq!(from_caller.name, "GET /orders/{id}");
    assert_eq!(hex(&from_caller.parent_span_id), CALLER_SPAN);
    assert_eq!(
        attr(from_caller, "http.route").unwrap(),
        attr_str("/orders/{id}")
    );
    assert_eq!(
        attr(from_caller, "url.path").unwrap(),
        attr_str("/orders/7")
    );
    assert_eq!(attr(from_caller, "url.scheme").unwrap(), attr_str("http"));
    assert_eq!(
        attr(from_caller, "http.request.method").unwrap(),
        attr_str("GET")
    );
    assert!(
        attr(from_caller, "http.response.status_code")
            .unwrap()
            .contains("IntValue(200)")
    );
    // The handler's `#[instrument]` span is a child of the server span.
    let handler = spans
        .iter()
        .find(|s| s.name == "order" && s.trace_id == from_caller.trace_id)
        .expect("the handler's span");
    assert_eq!(handler.parent_span_id, from_caller.span_id);
    // Unmatched: named by the method alone, no `http.route`.
    let unmatched = servers
        .iter()
        .find(|s| attr(s, "url.path").as_deref() == Some(&attr_str("/no/such/route")))
        .unwrap();
    assert_eq!(unmatched.name, "GET");
    assert!(attr(unmatched, "http.route").is_none());
    assert_ne!(unmatched.status.clone().map_or(0, |s| s.code), 2, "a 4xx");
    // A 5xx: status ERROR and `error.type`.
    let failed = servers.iter().find(|s| s.name == "GET /fail").unwrap();
    assert_eq!(failed.status.clone().map_or(0, |s| s.code), 2);
    assert_eq!(attr(failed, "error.type").unwrap(), attr_str("500"));
    // Out: the request `/checkout` made carries its trace, so the server span of
    // `/orders/9` is in the same trace, under the checkout's.
    let checkout = servers.iter().find(|s| s.name == "GET /checkout").unwrap();
    let called = servers
        .iter()
        .find(|s| attr(s, "url.path").as_deref() == Some(&attr_str("/orders/9")))
        .unwrap();
    assert_eq!(called.trace_id, checkout.trace_id);
    assert_eq!(called.parent_span_id, checkout.span_id);
}

/// How the receiver's `Debug` shows a string attribute value.
fn attr_str(s: &str) -> String {
    format!("Some(AnyValue {{ value: Some(StringValue({s:?})) }})")
}
