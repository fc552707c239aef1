//! OTLP export of the three signals to a receiver built on the official protobuf
//! definitions, over gRPC and over HTTP/protobuf: what arrives, field by field, plain
//! and gzip-compressed; and the faults: a receiver that refuses, one that never
//! answers, and a port where nothing listens.

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
    let settings = config.resolve(|_| None, "otlp-test").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pipeline = {
        let _in = runtime.enter();
        Pipeline::start(&settings).unwrap()
    };
    (runtime, pipeline)
}

fn endpoint(receiver: &OtlpReceiver, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => receiver.grpc_endpoint(),
        Protocol::HttpProtobuf => receiver.http_endpoint(),
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
        Protocol::HttpProtobuf => "content-encoding",
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
    let (receiver, runtime, pipeline) = start(Protocol::Grpc, Mode::Unavailable);
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
    let (runtime, pipeline) = start_pipeline(&c);
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
    let (runtime, pipeline) = start_pipeline(&c);
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
