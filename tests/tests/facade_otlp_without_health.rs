//! OTLP through the facade with the health server off: what the `metrics` macros record
//! is still exported over OTLP (the recorder is installed for OTLP alone), and
//! `piko_obs::metrics::render()` still renders it. Its own binary: the recorder is
//! installed once per process.

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use piko_obs_testkit::otlp::OtlpReceiver;

#[test]
fn metrics_are_exported_over_otlp_without_the_health_server() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_service_name("batch-job")
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_otlp_endpoint(receiver.http_endpoint())
        .with_otlp_metric_interval(Duration::from_millis(200))
        .init()
        .unwrap();
    assert!(guard.health_addr().is_none(), "no health server");
    metrics::counter!("batch_rows_total", "table" => "orders").increment(41);
    metrics::counter!("batch_rows_total", "table" => "orders").increment(1);
    let text = piko_obs::metrics::render().expect("the recorder is installed");
    assert!(
        text.contains("batch_rows_total{table=\"orders\"} 42"),
        "{text}"
    );
    guard.shutdown().unwrap();
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        r.metric_names().contains(&"batch_rows".to_string())
    });
    let data = got
        .last_metric("batch_rows")
        .and_then(|m| m.data)
        .expect("batch_rows (batch_rows_total on /metrics) arrived");
    match data {
        Data::Sum(s) => {
            assert!(s.is_monotonic);
            let point = &s.data_points[0];
            assert_eq!(point.value, Some(Value::AsInt(42)), "{point:?}");
            assert!(point.attributes.iter().any(|a| a.key == "table"));
        }
        other => panic!("a counter arrives as a sum: {other:?}"),
    }
}
