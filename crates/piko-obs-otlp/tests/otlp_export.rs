//! OTLP export of the three signals to a receiver built on the official protobuf
//! definitions, over gRPC, HTTP/protobuf and HTTP/JSON: what arrives, field by field,
//! plain and gzip-compressed; the metric temporality and default histogram
//! aggregation; the attribute limits; the console exporters beside OTLP; and the
//! faults: a receiver that refuses, one that never answers, and a port where nothing
//! listens.

use std::time::{Duration, Instant};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Span as _, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use piko_obs_otlp::{Compression, OtlpConfig, Pipeline, Protocol};
use piko_obs_testkit::otlp::{Mode, OtlpReceiver};
use piko_obs_testkit::sink::{Reply, Sink};

/// The bound on one export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// The bound given to the pipeline's shutdown in the fault tests.
const SHUTDOWN: Duration = Duration::from_secs(3);
/// What a shutdown may take beyond its bound: `Pipeline::shutdown` returns within it
/// plus a few milliseconds, and this covers a loaded 2-core CI machine waking the
/// waiting thread late.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

fn config(endpoint: String, protocol: Protocol) -> OtlpConfig {
    let mut c = OtlpConfig::new();
    c.endpoint = Some(endpoint);
    c.protocol = Some(protocol);
    c.headers = vec![("authorization".into(), "Bearer test-token".into())];
    c.timeout = Some(EXPORT_TIMEOUT);
    c.service_version = Some("1.2.3".into());
    c.metric_interval = Some(Duration::from_millis(200));
    c
}

/// A pipeline exporting as `config` says, started on its own runtime (which must
/// outlive the pipeline's shutdown).
fn start_pipeline(config: &OtlpConfig) -> (tokio::runtime::Runtime, Pipeline) {
    start_pipeline_env(config, &[], &[])
}

/// [`start_pipeline`], with the variables `env` (read by the settings, not set in the
/// process) and a view for each histogram of `buckets`.
fn start_pipeline_env(
    config: &OtlpConfig,
    env: &[(&str, &str)],
    buckets: &[(String, Vec<f64>)],
) -> (tokio::runtime::Runtime, Pipeline) {
    let vars: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let settings = config.resolve(lookup, "otlp-test").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pipeline = {
        let _in = runtime.enter();
        Pipeline::start_with_buckets(&settings, buckets).unwrap()
    };
    (runtime, pipeline)
}

/// Spans wait at most 1 s in a batch (the specification's default is 5 s): for the
/// tests that watch a span's export without flushing.
const ONE_SECOND_BATCHES: [(&str, &str); 1] = [("OTEL_BSP_SCHEDULE_DELAY", "1000")];

fn endpoint(receiver: &OtlpReceiver, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => receiver.grpc_endpoint(),
        _ => receiver.http_endpoint(),
    }
}

/// A receiver answering as `mode`, and a pipeline exporting to it over `protocol`,
/// started on its own runtime (which must outlive the pipeline's shutdown).
fn start(protocol: Protocol, mode: Mode) -> (OtlpReceiver, tokio::runtime::Runtime, Pipeline) {
    let receiver = OtlpReceiver::start();
    receiver.set_mode(mode);
    let (runtime, pipeline) = start_pipeline(&config(endpoint(&receiver, protocol), protocol));
    (receiver, runtime, pipeline)
}

/// The header a compressed export names its encoding in.
fn encoding_header(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Grpc => "grpc-encoding",
        _ => "content-encoding",
    }
}

fn all_three_signals_arrive(protocol: Protocol) {
    let (receiver, runtime, pipeline) = start(protocol, Mode::Accept);
    let tracer = pipeline.tracer_provider.tracer("test");
    let (trace_id, parent_id) = tracer.in_span("checkout", |cx| {
        let parent = cx.span().span_context().clone();
        let mut child = tracer.start_with_context("charge card", &cx);
        child.set_attribute(KeyValue::new("order.id", 42));
        child.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", "PaymentError"),
                KeyValue::new("exception.message", "card declined"),
            ],
        );
        child.set_status(Status::error("card declined"));
        child.end();
        let logger = pipeline.logger_provider.logger("test");
        let mut record = logger.create_log_record();
        record.set_body(AnyValue::from("charging failed"));
        record.set_severity_number(Severity::Error);
        record.set_severity_text("ERROR");
        record.set_trace_context(parent.trace_id(), parent.span_id(), None);
        logger.emit(record);
        (parent.trace_id(), parent.span_id())
    });
    let _ = Context::current();
    let meter = pipeline.meter_provider.meter("test");
    meter
        .u64_counter("orders_placed")
        .build()
        .add(3, &[KeyValue::new("channel", "web")]);
    let failures = pipeline.shutdown(Duration::from_secs(5));
    assert!(failures.is_empty(), "{failures:?}");
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        r.spans().len() >= 2 && !r.metric_names().is_empty() && !r.log_records().is_empty()
    });
    let proto = if protocol == Protocol::Grpc {
        "grpc"
    } else {
        "http"
    };
    assert!(got.traces.iter().all(|e| e.protocol == proto));
    if protocol == Protocol::HttpJson {
        let json = |t: Option<&str>| t == Some("application/json");
        assert!(got.traces.iter().all(|e| json(e.header("content-type"))));
        assert!(got.metrics.iter().all(|e| json(e.header("content-type"))));
        assert!(got.logs.iter().all(|e| json(e.header("content-type"))));
    }
    assert_eq!(
        got.traces[0].header("authorization"),
        Some("Bearer test-token")
    );
    assert_eq!(
        got.metrics[0].header("authorization"),
        Some("Bearer test-token")
    );
    assert_eq!(
        got.logs[0].header("authorization"),
        Some("Bearer test-token")
    );
    // Compression is off by default.
    assert!(
        got.traces
            .iter()
            .all(|e| e.header(encoding_header(protocol)).is_none()),
        "{:?}",
        got.traces[0].headers
    );

    let resource = got.traces[0].request.resource_spans[0]
        .resource
        .clone()
        .unwrap();
    let attr = |k: &str| {
        resource
            .attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    assert_eq!(
        attr("service.name"),
        Some(Value::StringValue("otlp-test".into()))
    );
    assert_eq!(
        attr("service.version"),
        Some(Value::StringValue("1.2.3".into()))
    );

    let spans = got.spans();
    let parent = spans.iter().find(|s| s.name == "checkout").unwrap();
    let child = spans.iter().find(|s| s.name == "charge card").unwrap();
    assert_eq!(parent.trace_id, trace_id.to_bytes().to_vec());
    assert_eq!(child.trace_id, parent.trace_id);
    assert_eq!(child.parent_span_id, parent_id.to_bytes().to_vec());
    assert!(parent.parent_span_id.is_empty());
    let order = child
        .attributes
        .iter()
        .find(|a| a.key == "order.id")
        .unwrap();
    assert_eq!(
        order.value.clone().unwrap().value,
        Some(Value::IntValue(42))
    );
    let status = child.status.clone().unwrap();
    assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
    assert_eq!(status.message, "card declined");
    assert_eq!(child.events[0].name, "exception");

    assert!(
        got.metric_names().contains(&"orders_placed".to_string()),
        "{:?}",
        got.metric_names()
    );
    let logs = got.log_records();
    assert_eq!(logs[0].severity_number, Severity::Error as i32);
    assert_eq!(logs[0].severity_text, "ERROR");
    assert_eq!(
        logs[0].body.clone().unwrap().value,
        Some(Value::StringValue("charging failed".into()))
    );
    assert_eq!(logs[0].trace_id, trace_id.to_bytes().to_vec());
    drop(runtime);
}

#[test]
fn all_three_signals_arrive_over_grpc() {
    all_three_signals_arrive(Protocol::Grpc);
}

#[test]
fn all_three_signals_arrive_over_http() {
    all_three_signals_arrive(Protocol::HttpProtobuf);
}

/// `http/json`: the same exports, field by field, as JSON bodies the receiver decodes
/// with the OTLP JSON mapping.
#[test]
fn all_three_signals_arrive_over_http_json() {
    all_three_signals_arrive(Protocol::HttpJson);
}

/// `otlp,console` for spans and `console` for logs: each signal keeps its one bounded
/// processor, which hands every batch to both exporters (the receiver gets the spans)
/// and counts it once; a console-only signal is counted too.
#[test]
fn console_exporters_share_the_bounded_processors_and_their_counters() {
    let receiver = OtlpReceiver::start();
    let (runtime, pipeline) = start_pipeline_env(
        &config(receiver.http_endpoint(), Protocol::HttpProtobuf),
        &[
            ("OTEL_TRACES_EXPORTER", "otlp,console"),
            ("OTEL_LOGS_EXPORTER", "console"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ],
        &[],
    );
    let tracer = pipeline.tracer_provider.tracer("test");
    for i in 0..3 {
        tracer.start(format!("console op {i}")).end();
    }
    let logger = pipeline.logger_provider.logger("test");
    for _ in 0..2 {
        let mut record = logger.create_log_record();
        record.set_body(AnyValue::from("to the console"));
        logger.emit(record);
    }
    let failures = pipeline.shutdown(Duration::from_secs(5));
    assert!(failures.is_empty(), "{failures:?}");
    let spans = pipeline.spans.stats();
    assert_eq!(
        (spans.ended, spans.exported, spans.dropped, spans.failed),
        (3, 3, 0, 0),
        "counted once for both exporters"
    );
    let logs = pipeline.logs.stats();
    assert_eq!(
        (logs.emitted, logs.exported, logs.dropped, logs.failed),
        (2, 2, 0, 0)
    );
    let got = receiver.wait_until(Duration::from_secs(10), |r| r.spans().len() >= 3);
    let mut names: Vec<String> = got.spans().into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["console op 0", "console op 1", "console op 2"]);
    assert!(got.logs.is_empty(), "logs went to the console only");
    assert!(got.metrics.is_empty(), "OTEL_METRICS_EXPORTER=none");
    drop(runtime);
}

fn faults(protocol: Protocol, mode: Mode) {
    let (_receiver, runtime, pipeline) = start(protocol, mode);
    let tracer = pipeline.tracer_provider.tracer("test");
    // Ending spans never waits for the collector: 10,000 spans in far less than a second
    // per thousand, whatever the receiver does.
    let started = Instant::now();
    for i in 0..10_000 {
        let mut s = tracer.start(format!("op {i}"));
        s.end();
    }
    let spent = started.elapsed();
    assert!(
        spent < Duration::from_secs(10),
        "ending spans took {spent:?}"
    );
    let stats = pipeline.spans.stats();
    assert_eq!(stats.ended, 10_000);
    // The queue holds 2048: the rest is dropped and counted, not waited for.
    assert!(stats.dropped > 0, "{stats:?}");
    let shutting = Instant::now();
    let _ = pipeline.shutdown(SHUTDOWN);
    assert!(
        shutting.elapsed() < SHUTDOWN + SHUTDOWN_MARGIN,
        "shutdown took {:?} for a bound of {SHUTDOWN:?}",
        shutting.elapsed()
    );
    let stats = pipeline.spans.stats();
    assert_eq!(stats.exported, 0, "{stats:?}");
    assert!(stats.failed + stats.dropped >= 10_000 - 2048, "{stats:?}");
    drop(runtime);
}

#[test]
fn a_refusing_collector_costs_the_service_nothing_grpc() {
    faults(Protocol::Grpc, Mode::Unavailable);
}

#[test]
fn a_refusing_collector_costs_the_service_nothing_http() {
    faults(Protocol::HttpProtobuf, Mode::Unavailable);
}

#[test]
fn a_silent_collector_costs_the_service_nothing() {
    faults(Protocol::Grpc, Mode::Hang);
}

#[test]
fn when_the_collector_comes_back_new_spans_arrive() {
    let receiver = OtlpReceiver::start();
    receiver.set_mode(Mode::Unavailable);
    let (runtime, pipeline) = start_pipeline_env(
        &config(receiver.grpc_endpoint(), Protocol::Grpc),
        &ONE_SECOND_BATCHES,
        &[],
    );
    let tracer = pipeline.tracer_provider.tracer("test");
    tracer.start("while down").end();
    // Let the export of the first span fail.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(receiver.received().spans().is_empty());
    receiver.set_mode(Mode::Accept);
    tracer.start("after the collector came back").end();
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        r.spans()
            .iter()
            .any(|s| s.name == "after the collector came back")
    });
    assert!(
        got.spans()
            .iter()
            .any(|s| s.name == "after the collector came back"),
        "{:?}",
        got.spans()
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    );
    // Nothing lost: the exporter retries UNAVAILABLE, so the first span arrives too. The
    // receiver records a batch before it answers, so the processor counts the export a
    // moment after the span is seen: wait for the count, within a bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stats = pipeline.spans.stats();
    while stats.ended != stats.exported + stats.failed + stats.dropped && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
        stats = pipeline.spans.stats();
    }
    assert_eq!(
        stats.ended,
        stats.exported + stats.failed + stats.dropped,
        "{stats:?}"
    );
    let _ = pipeline.shutdown(Duration::from_secs(5));
    drop(runtime);
}

/// The `metrics` → OpenTelemetry bridge, values checked where they arrive: a counter fed
/// increments and absolute values (never going back), a gauge moved up, down and set, and
/// a histogram.
#[test]
fn metrics_macros_arrive_with_their_values() {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;

    let (receiver, runtime, pipeline) = start(Protocol::Grpc, Mode::Accept);
    let recorder = piko_obs_otlp::OtelRecorder::new(pipeline.meter_provider.meter("bridge"));
    metrics::with_local_recorder(&recorder, || {
        let c = metrics::counter!("bridge_jobs_total", "queue" => "mail");
        c.absolute(10);
        c.absolute(7); // a lower absolute value is not a decrease
        c.absolute(15);
        c.increment(2);
        let g = metrics::gauge!("bridge_queue_depth");
        g.set(5.0);
        g.increment(2.0);
        g.decrement(1.0);
        let h = metrics::histogram!("bridge_latency_seconds");
        h.record(0.5);
        h.record(1.5);
    });
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        let names = r.metric_names();
        // Over OTLP without the suffixes, the unit going into the instrument's unit.
        ["bridge_jobs", "bridge_queue_depth", "bridge_latency"]
            .iter()
            .all(|n| names.contains(&n.to_string()))
    });
    let last = |name: &str| {
        got.last_metric(name)
            .and_then(|m| m.data)
            .unwrap_or_else(|| panic!("{name} did not arrive"))
    };
    let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
        Some(Value::AsInt(i)) => i as f64,
        Some(Value::AsDouble(d)) => d,
        None => f64::NAN,
    };
    match last("bridge_jobs") {
        Data::Sum(s) => {
            assert!(s.is_monotonic);
            assert_eq!(
                number(&s.data_points[0]),
                17.0,
                "15 by absolute values, then 2 more"
            );
            assert!(s.data_points[0].attributes.iter().any(|a| a.key == "queue"));
        }
        other => panic!("a counter arrives as a sum: {other:?}"),
    }
    match last("bridge_queue_depth") {
        Data::Gauge(g) => assert_eq!(number(&g.data_points[0]), 6.0),
        other => panic!("a gauge arrives as a gauge: {other:?}"),
    }
    match last("bridge_latency") {
        Data::Histogram(h) => {
            assert_eq!(h.data_points[0].count, 2);
            assert_eq!(h.data_points[0].sum, Some(2.0));
        }
        other => panic!("a histogram arrives as a histogram: {other:?}"),
    }
    let _ = pipeline.shutdown(Duration::from_secs(2));
    drop(runtime);
}

/// With compression gzip, every export of the three signals names gzip in its encoding
/// header (`grpc-encoding` over gRPC, `content-encoding` over HTTP), and the receiver,
/// inflating it, decodes what was sent (over HTTP a body that is not gzip would be
/// refused, failing the export).
fn gzip_exports_decode_to_what_was_sent(protocol: Protocol) {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    let receiver = OtlpReceiver::start();
    let mut c = config(endpoint(&receiver, protocol), protocol);
    c.compression = Some(Compression::Gzip);
    let (runtime, pipeline) = start_pipeline(&c);
    let tracer = pipeline.tracer_provider.tracer("test");
    let payload = "the same words, again and again, compress well";
    for i in 0..100 {
        let mut span = tracer.start(format!("compressed {i}"));
        span.set_attribute(KeyValue::new("payload", payload));
        span.end();
    }
    let logger = pipeline.logger_provider.logger("test");
    let mut record = logger.create_log_record();
    record.set_body(AnyValue::from("a compressed log record"));
    logger.emit(record);
    pipeline
        .meter_provider
        .meter("test")
        .u64_counter("compressed_exports_total")
        .build()
        .add(1, &[]);
    // The receiver stores an export before it answers: after the flush, all is there.
    pipeline.tracer_provider.force_flush().unwrap();
    let stats = pipeline.spans.stats();
    assert_eq!(
        (stats.ended, stats.exported, stats.failed, stats.dropped),
        (100, 100, 0, 0),
        "{stats:?}"
    );
    let failures = pipeline.shutdown(Duration::from_secs(5));
    assert!(failures.is_empty(), "{failures:?}");
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        !r.log_records().is_empty()
            && r.metric_names()
                .contains(&"compressed_exports_total".to_string())
    });
    let header = encoding_header(protocol);
    let encodings = got
        .traces
        .iter()
        .map(|e| e.header(header))
        .chain(got.logs.iter().map(|e| e.header(header)))
        .chain(got.metrics.iter().map(|e| e.header(header)));
    for encoding in encodings {
        assert_eq!(encoding, Some("gzip"), "{header}");
    }
    let mut names: Vec<String> = got.spans().iter().map(|s| s.name.clone()).collect();
    names.sort();
    let mut sent: Vec<String> = (0..100).map(|i| format!("compressed {i}")).collect();
    sent.sort();
    assert_eq!(names, sent);
    for span in got.spans() {
        let value = span
            .attributes
            .iter()
            .find(|a| a.key == "payload")
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value);
        assert_eq!(value, Some(Value::StringValue(payload.into())));
    }
    let bodies: Vec<_> = got
        .log_records()
        .into_iter()
        .filter_map(|r| r.body.and_then(|b| b.value))
        .collect();
    assert_eq!(
        bodies,
        vec![Value::StringValue("a compressed log record".into())]
    );
    assert!(
        got.metric_names()
            .contains(&"compressed_exports_total".to_string())
    );
    drop(runtime);
}

#[test]
fn gzip_exports_decode_to_what_was_sent_grpc() {
    gzip_exports_decode_to_what_was_sent(Protocol::Grpc);
}

#[test]
fn gzip_exports_decode_to_what_was_sent_http() {
    gzip_exports_decode_to_what_was_sent(Protocol::HttpProtobuf);
}

/// An endpoint on 127.0.0.1 where nothing listens (a port bound, then let go): ending
/// spans and emitting log records return at once and are counted, every one ends up
/// failed or dropped (none exported), and shutdown ends within its bound.
fn a_closed_port_costs_the_service_nothing(protocol: Protocol) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (runtime, pipeline) = start_pipeline(&config(format!("http://127.0.0.1:{port}"), protocol));
    let n = 10_000;
    let started = Instant::now();
    let tracer = pipeline.tracer_provider.tracer("test");
    for i in 0..n {
        tracer.start(format!("op {i}")).end();
    }
    let logger = pipeline.logger_provider.logger("test");
    for i in 0..n {
        let mut record = logger.create_log_record();
        record.set_body(AnyValue::from(format!("line {i}")));
        logger.emit(record);
    }
    // A generous bound: what matters is that the calls return without waiting for
    // the exports; the counts say they were all taken.
    let spent = started.elapsed();
    assert!(
        spent < Duration::from_secs(10),
        "ending spans and emitting records took {spent:?}"
    );
    assert_eq!(pipeline.spans.stats().ended, n);
    assert_eq!(pipeline.logs.stats().emitted, n);

    let shutting = Instant::now();
    let _ = pipeline.shutdown(SHUTDOWN);
    let took = shutting.elapsed();
    assert!(
        took < SHUTDOWN + SHUTDOWN_MARGIN,
        "shutdown took {took:?} for a bound of {SHUTDOWN:?}"
    );
    // An export still failing when the bound came ends in the background within its
    // own bound (twice the export timeout at most, with its retries): wait for the
    // counts to settle, within a bound.
    let deadline = Instant::now() + 4 * EXPORT_TIMEOUT + SHUTDOWN_MARGIN;
    let settled = || {
        let (s, l) = (pipeline.spans.stats(), pipeline.logs.stats());
        s.ended == s.exported + s.failed + s.dropped
            && l.emitted == l.exported + l.failed + l.dropped
    };
    while !settled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let spans = pipeline.spans.stats();
    assert_eq!(spans.exported, 0, "{spans:?}");
    assert!(spans.failed > 0, "exports were tried and failed: {spans:?}");
    assert_eq!(spans.failed + spans.dropped, n, "{spans:?}");
    let logs = pipeline.logs.stats();
    assert_eq!(logs.exported, 0, "{logs:?}");
    assert!(logs.failed > 0, "exports were tried and failed: {logs:?}");
    assert_eq!(logs.failed + logs.dropped, n, "{logs:?}");
    drop(runtime);
}

#[test]
fn a_closed_port_costs_the_service_nothing_grpc() {
    a_closed_port_costs_the_service_nothing(Protocol::Grpc);
}

#[test]
fn a_closed_port_costs_the_service_nothing_http() {
    a_closed_port_costs_the_service_nothing(Protocol::HttpProtobuf);
}

/// A collector that answers with a redirect (307, to another server on 127.0.0.1 that
/// would accept the export): the export fails, and the other server sees no request,
/// so the vendor API-key header never goes to a host it was not given for.
#[test]
fn a_redirect_is_not_followed_and_carries_no_header_elsewhere() {
    let elsewhere = OtlpReceiver::start();
    let location = format!("{}/v1/traces", elsewhere.http_endpoint());
    let redirecting = Sink::with_default(Reply::status(307).header("location", &location));
    let mut c = config(redirecting.url(""), Protocol::HttpProtobuf);
    c.headers = vec![("x-honeycomb-team".into(), "hcREDIRECTsecret".into())];
    let (runtime, pipeline) = start_pipeline_env(&c, &ONE_SECOND_BATCHES, &[]);
    pipeline
        .tracer_provider
        .tracer("test")
        .start("redirected")
        .end();
    let got = redirecting.wait_for(1, Duration::from_secs(10));
    assert!(!got.is_empty(), "no export reached the collector");
    assert_eq!(got[0].header("x-honeycomb-team"), Some("hcREDIRECTsecret"));
    // The span's export ends (failed) well within this bound; had the redirect been
    // followed, it would have arrived at the other server by then.
    let deadline = Instant::now() + 2 * EXPORT_TIMEOUT;
    while pipeline.spans.stats().failed == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = pipeline.spans.stats();
    assert_eq!((stats.failed, stats.exported), (1, 0), "{stats:?}");
    let seen = elsewhere.received();
    assert!(
        seen.traces.is_empty() && seen.metrics.is_empty() && seen.logs.is_empty(),
        "the redirect was followed: {} trace and {} metric exports arrived elsewhere",
        seen.traces.len(),
        seen.metrics.len()
    );
    let _ = pipeline.shutdown(SHUTDOWN);
    drop(runtime);
}

/// The local ports of this host's TCP connections to `peer` still connecting
/// (`SYN_SENT` in `/proc/net/tcp`).
fn connecting_from(peer: std::net::SocketAddr) -> Vec<u16> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let std::net::SocketAddr::V4(peer) = peer else {
        return Vec::new();
    };
    // Addresses are written as the in-memory bytes of the IPv4 address, in hex.
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(peer.ip().octets()),
        peer.port()
    );
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&want.as_str()) && f.get(3) == Some(&"02"))
                .then(|| f[1].rsplit(':').next())
                .flatten()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
        })
        .collect()
}

/// A collector that never completes a connection (a listener on 127.0.0.1 whose
/// listen queue is full, so the kernel drops the exporter's SYNs): each attempt to
/// connect is given up at the connect bound (5 s) and the exporter tries again on a new
/// connection, instead of one attempt hanging for the whole export timeout (here 30 s).
#[test]
fn a_connect_that_never_completes_is_given_up_at_the_connect_bound() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the accept queue: once full, new connections stay in SYN_SENT.
    let mut held = Vec::new();
    while held.len() < 4096 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    assert!(held.len() < 4096, "the listen queue of {addr} never filled");
    let mut c = config(format!("http://{addr}"), Protocol::HttpProtobuf);
    c.timeout = Some(Duration::from_secs(30));
    c.metric_interval = Some(Duration::from_secs(3600));
    let (runtime, pipeline) = start_pipeline_env(&c, &ONE_SECOND_BATCHES, &[]);
    pipeline
        .tracer_provider
        .tracer("test")
        .start("unreachable")
        .end();
    // Watch for 11 s (the span waits up to 1 s in its batch): the first attempt is
    // given up at 5 s, and a second one starts from another port.
    let mut ports = std::collections::BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(11);
    while Instant::now() < until && ports.len() < 2 {
        ports.extend(connecting_from(addr));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !ports.is_empty(),
        "no connection to {addr} was seen connecting"
    );
    assert!(
        ports.len() >= 2,
        "one attempt to connect was kept past the connect bound: {ports:?}"
    );
    assert_eq!(pipeline.spans.stats().exported, 0);
    let _ = pipeline.shutdown(SHUTDOWN);
    drop((runtime, held, listener));
}

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: with `delta` (and `lowmemory`,
/// for a counter) each export carries what was added since the one before, marked
/// DELTA; by default the totals, marked CUMULATIVE. Exports happen at each flush only
/// (a metric interval of an hour).
#[test]
fn temporality_preference_decides_what_a_counter_sends() {
    use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;

    for (preference, temporality, values) in [
        (None, AggregationTemporality::Cumulative, [3, 7]),
        (Some("delta"), AggregationTemporality::Delta, [3, 4]),
        (Some("LowMemory"), AggregationTemporality::Delta, [3, 4]),
    ] {
        let receiver = OtlpReceiver::start();
        let mut c = config(receiver.http_endpoint(), Protocol::HttpProtobuf);
        c.metric_interval = Some(Duration::from_secs(3600));
        let env: Vec<(&str, &str)> = preference
            .map(|p| ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", p))
            .into_iter()
            .collect();
        let (runtime, pipeline) = start_pipeline_env(&c, &env, &[]);
        let jobs = pipeline
            .meter_provider
            .meter("test")
            .u64_counter("jobs_done")
            .build();
        jobs.add(3, &[]);
        pipeline.meter_provider.force_flush().unwrap();
        jobs.add(4, &[]);
        pipeline.meter_provider.force_flush().unwrap();
        let got = receiver.wait_until(Duration::from_secs(10), |r| {
            r.all_metrics()
                .iter()
                .filter(|m| m.name == "jobs_done")
                .count()
                >= 2
        });
        let sent: Vec<(i32, i64)> = got
            .all_metrics()
            .into_iter()
            .filter(|m| m.name == "jobs_done")
            .map(|m| match m.data {
                Some(Data::Sum(s)) => match s.data_points[0].value {
                    Some(Value::AsInt(v)) => (s.aggregation_temporality, v),
                    other => panic!("an integer sum: {other:?}"),
                },
                other => panic!("a sum: {other:?}"),
            })
            .collect();
        assert_eq!(
            sent,
            vec![
                (temporality as i32, values[0]),
                (temporality as i32, values[1])
            ],
            "{preference:?}"
        );
        let _ = pipeline.shutdown(Duration::from_secs(5));
        drop(runtime);
    }
}

/// `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`: with
/// `base2_exponential_bucket_histogram` a histogram without declared buckets arrives as
/// an exponential histogram, while a declared one keeps its buckets; by default both
/// are explicit-bucket histograms.
#[test]
fn the_default_histogram_aggregation_leaves_declared_buckets_alone() {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    for exponential in [false, true] {
        let receiver = OtlpReceiver::start();
        let mut c = config(receiver.http_endpoint(), Protocol::HttpProtobuf);
        c.metric_interval = Some(Duration::from_secs(3600));
        let env: &[(&str, &str)] = if exponential {
            &[(
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                "base2_exponential_bucket_histogram",
            )]
        } else {
            &[]
        };
        let declared = [("payment_duration_seconds".to_string(), vec![0.1, 0.5, 1.0])];
        let (runtime, pipeline) = start_pipeline_env(&c, env, &declared);
        let meter = pipeline.meter_provider.meter("test");
        let wait = meter.f64_histogram("queue_wait").with_unit("s").build();
        let payment = meter
            .f64_histogram("payment_duration")
            .with_unit("s")
            .build();
        for v in [0.05, 0.3, 0.4, 2.0] {
            wait.record(v, &[]);
            payment.record(v, &[]);
        }
        pipeline.meter_provider.force_flush().unwrap();
        let got = receiver.wait_until(Duration::from_secs(10), |r| {
            r.last_metric("queue_wait").is_some() && r.last_metric("payment_duration").is_some()
        });
        match got.last_metric("payment_duration").and_then(|m| m.data) {
            Some(Data::Histogram(h)) => {
                let p = &h.data_points[0];
                assert_eq!(p.explicit_bounds, vec![0.1, 0.5, 1.0]);
                assert_eq!(p.bucket_counts, vec![1, 2, 0, 1]);
            }
            other => panic!("declared buckets: {other:?}"),
        }
        match got.last_metric("queue_wait").and_then(|m| m.data) {
            Some(Data::ExponentialHistogram(h)) if exponential => {
                let p = &h.data_points[0];
                assert_eq!(p.count, 4);
                assert_eq!(p.sum, Some(2.75));
                assert!(p.scale <= 20, "{p:?}");
                let positive = p.positive.as_ref().expect("positive buckets");
                assert_eq!(positive.bucket_counts.iter().sum::<u64>(), 4, "{p:?}");
            }
            Some(Data::Histogram(h)) if !exponential => {
                assert_eq!(h.data_points[0].count, 4);
                // The SDK's default bounds, made for milliseconds.
                assert_eq!(h.data_points[0].explicit_bounds[..3], [0.0, 5.0, 10.0]);
            }
            other => panic!("exponential {exponential}: {other:?}"),
        }
        let _ = pipeline.shutdown(Duration::from_secs(5));
        drop(runtime);
    }
}

/// The attribute limits, a model's own before the general one: a span keeps its first
/// two attributes (one dropped, counted), its strings cut to its own 5 bytes (not the
/// general 3) on a character boundary (in arrays too, in events and links), one event
/// (one dropped, counted) with one attribute (one dropped, counted), one link with one
/// attribute; a log record keeps two attributes, its strings cut to the general length.
/// Without limits, all arrive whole.
#[test]
fn attribute_limits_reach_the_receiver() {
    use opentelemetry::trace::{Link, SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue as ProtoValue, KeyValue as ProtoKv};

    fn text(kv: &ProtoKv) -> Value {
        kv.value.clone().and_then(|v| v.value).expect("a value")
    }
    fn strings(values: &[&str]) -> Value {
        Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
            values: values
                .iter()
                .map(|s| ProtoValue {
                    value: Some(Value::StringValue(s.to_string())),
                })
                .collect(),
        })
    }
    let limits = [
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2"),
        ("OTEL_ATTRIBUTE_COUNT_LIMIT", "9"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "5"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "1"),
        ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "1"),
        ("OTEL_SPAN_LINK_COUNT_LIMIT", "1"),
        ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "1"),
        ("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "2"),
    ];
    for limited in [true, false] {
        let receiver = OtlpReceiver::start();
        let env: &[(&str, &str)] = if limited { &limits } else { &[] };
        let (runtime, pipeline) = start_pipeline_env(
            &config(receiver.http_endpoint(), Protocol::HttpProtobuf),
            env,
            &[],
        );
        let tracer = pipeline.tracer_provider.tracer("test");
        let linked = |n: u8| {
            SpanContext::new(
                TraceId::from_bytes([n; 16]),
                SpanId::from_bytes([n; 8]),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )
        };
        let mut span = tracer
            .span_builder("limited")
            .with_links(vec![
                Link::new(
                    linked(1),
                    vec![KeyValue::new("l1", "linked one"), KeyValue::new("l2", 2)],
                    0,
                ),
                Link::with_context(linked(2)),
            ])
            .start(&tracer);
        span.set_attribute(KeyValue::new("word", "héllo wörld"));
        span.set_attribute(KeyValue::new(
            "tags",
            opentelemetry::Value::Array(
                vec![
                    opentelemetry::StringValue::from("abcdefgh"),
                    opentelemetry::StringValue::from("xy"),
                ]
                .into(),
            ),
        ));
        span.set_attribute(KeyValue::new("third", 3));
        span.add_event(
            "first",
            vec![KeyValue::new("a", "123456789"), KeyValue::new("b", 2)],
        );
        span.add_event("second", vec![]);
        span.end();
        let logger = pipeline.logger_provider.logger("test");
        let mut record = logger.create_log_record();
        record.set_body(AnyValue::from("a limited record"));
        record.add_attribute("note", "ünïcode text");
        record.add_attribute("n", 2);
        record.add_attribute("dropped", "past the count");
        logger.emit(record);
        pipeline.tracer_provider.force_flush().unwrap();
        pipeline.logger_provider.force_flush().unwrap();
        let got = receiver.wait_until(Duration::from_secs(10), |r| {
            !r.spans().is_empty() && !r.log_records().is_empty()
        });
        let span = got
            .spans()
            .into_iter()
            .find(|s| s.name == "limited")
            .unwrap();
        let record = got.log_records().remove(0);
        if !limited {
            assert_eq!(span.attributes.len(), 3);
            assert_eq!(
                text(&span.attributes[0]),
                Value::StringValue("héllo wörld".into())
            );
            assert_eq!((span.events.len(), span.links.len()), (2, 2));
            assert_eq!(record.attributes.len(), 3);
            assert_eq!(
                text(&record.attributes[0]),
                Value::StringValue("ünïcode text".into())
            );
        } else {
            // "héllo": é is two bytes, so 5 bytes end after the second l.
            let keys: Vec<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
            assert_eq!(keys, ["word", "tags"]);
            assert_eq!(text(&span.attributes[0]), Value::StringValue("héll".into()));
            assert_eq!(text(&span.attributes[1]), strings(&["abcde", "xy"]));
            assert_eq!(span.dropped_attributes_count, 1);
            assert_eq!(span.events.len(), 1);
            assert_eq!(span.dropped_events_count, 1);
            let event = &span.events[0];
            assert_eq!(event.attributes.len(), 1);
            assert_eq!(
                text(&event.attributes[0]),
                Value::StringValue("12345".into())
            );
            assert_eq!(event.dropped_attributes_count, 1);
            assert_eq!(span.links.len(), 1);
            assert_eq!(span.dropped_links_count, 1);
            let link = &span.links[0];
            assert_eq!(link.attributes.len(), 1);
            assert_eq!(
                text(&link.attributes[0]),
                Value::StringValue("linke".into())
            );
            assert_eq!(link.dropped_attributes_count, 1);
            // The general length, 3 bytes: "ün".
            let keys: Vec<&str> = record.attributes.iter().map(|a| a.key.as_str()).collect();
            assert_eq!(keys, ["note", "n"]);
            assert_eq!(text(&record.attributes[0]), Value::StringValue("ün".into()));
            assert_eq!(
                record.body.clone().and_then(|b| b.value),
                Some(Value::StringValue("a limited record".into())),
                "the body is no attribute"
            );
        }
        let _ = pipeline.shutdown(Duration::from_secs(5));
        drop(runtime);
    }
}

/// With no limit set, a log record keeps the specification's default count, 128
/// attributes (the first ones), as a span does.
#[test]
fn a_log_record_keeps_128_attributes_by_default() {
    let receiver = OtlpReceiver::start();
    let (runtime, pipeline) =
        start_pipeline(&config(receiver.http_endpoint(), Protocol::HttpProtobuf));
    let logger = pipeline.logger_provider.logger("test");
    let mut record = logger.create_log_record();
    record.set_body(AnyValue::from("many attributes"));
    for i in 0..130 {
        record.add_attribute(format!("a{i}"), i);
    }
    logger.emit(record);
    pipeline.logger_provider.force_flush().unwrap();
    let got = receiver.wait_until(Duration::from_secs(10), |r| !r.log_records().is_empty());
    let record = got.log_records().remove(0);
    let keys: Vec<String> = record.attributes.iter().map(|a| a.key.clone()).collect();
    let first: Vec<String> = (0..128).map(|i| format!("a{i}")).collect();
    assert_eq!(keys, first);
    let _ = pipeline.shutdown(Duration::from_secs(5));
    drop(runtime);
}
