//! The testkit's OTLP receiver as a program, for `cargo xtask integration` and `soak`:
//! prints `grpc=ADDR` and `http=ADDR`, receives until stdin closes, then prints one JSON
//! object summarising what arrived: span names and trace ids, metric names, log bodies
//! with their severity and trace ids, and the `service.name` of each export.
//! `GRPC_ADDR` and `HTTP_ADDR` (optional) fix the servers' addresses; by default each
//! takes a free loopback port.

use std::io::Read;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use piko_obs_testkit::otlp::OtlpReceiver;

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    let addr = |name: &str| std::env::var(name).unwrap_or_else(|_| "127.0.0.1:0".into());
    let receiver = OtlpReceiver::start_on(&addr("GRPC_ADDR"), &addr("HTTP_ADDR"));
    println!("grpc={}", receiver.grpc_endpoint());
    println!("http={}", receiver.http_endpoint());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let got = receiver.received();
    let spans: Vec<serde_json::Value> = got
        .spans()
        .iter()
        .map(|s| serde_json::json!({"name": s.name, "trace_id": hex(&s.trace_id)}))
        .collect();
    let logs: Vec<serde_json::Value> = got
        .log_records()
        .iter()
        .map(|l| {
            serde_json::json!({
                "body": text(l.body.as_ref()),
                "severity": l.severity_text,
                "trace_id": hex(&l.trace_id),
            })
        })
        .collect();
    let mut services: Vec<String> = Vec::new();
    let resources = got
        .traces
        .iter()
        .flat_map(|e| {
            e.request
                .resource_spans
                .iter()
                .filter_map(|r| r.resource.clone())
        })
        .chain(got.metrics.iter().flat_map(|e| {
            e.request
                .resource_metrics
                .iter()
                .filter_map(|r| r.resource.clone())
        }))
        .chain(got.logs.iter().flat_map(|e| {
            e.request
                .resource_logs
                .iter()
                .filter_map(|r| r.resource.clone())
        }));
    for r in resources {
        for a in r.attributes {
            if a.key == "service.name" {
                let name = text(a.value.as_ref());
                if !services.contains(&name) {
                    services.push(name);
                }
            }
        }
    }
    let summary = serde_json::json!({
        "spans": spans,
        "metrics": got.metric_names(),
        "logs": logs,
        "services": services,
    });
    println!("{summary}");
}
