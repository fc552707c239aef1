//! OTLP log records through `BoundedLogProcessor`, against the receiver of the tests on
//! loopback (built on the official protobuf definitions), over gRPC and HTTP/protobuf:
//! what a live collector accepts is counted exported and arrives with its body; against
//! a collector that refuses or never answers, `emit` never waits, the records past the
//! queue are dropped and counted, and after a bounded flush every record emitted is
//! exported, dropped or failed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use piko_obs_otlp::{LOG_QUEUE, LogStats, OtlpConfig, Pipeline, Protocol};
use piko_obs_testkit::otlp::{Mode, OtlpReceiver};

/// The most records the export thread holds outside the queue (one batch).
const BATCH: u64 = 512;

/// The bound on one export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// The bound given to the pipeline's shutdown in the fault tests.
const SHUTDOWN: Duration = Duration::from_secs(3);
/// What a flush or a shutdown may take beyond its bound: this covers a loaded 2-core
/// CI machine scheduling the threads involved late.
const MARGIN: Duration = Duration::from_secs(2);

/// A receiver answering as `mode`, and a pipeline exporting to it over `protocol` with
/// an [`EXPORT_TIMEOUT`] export timeout, started on its own runtime (which must outlive
/// the pipeline's shutdown).
fn start(protocol: Protocol, mode: Mode) -> (OtlpReceiver, tokio::runtime::Runtime, Pipeline) {
    let receiver = OtlpReceiver::start();
    receiver.set_mode(mode);
    let mut c = OtlpConfig::new();
    c.endpoint = Some(match protocol {
        Protocol::Grpc => receiver.grpc_endpoint(),
        Protocol::HttpProtobuf | Protocol::HttpJson => receiver.http_endpoint(),
    });
    c.protocol = Some(protocol);
    c.timeout = Some(EXPORT_TIMEOUT);
    let settings = c.resolve(|_| None, "otlp-logs-test").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pipeline = {
        let _in = runtime.enter();
        Pipeline::start(&settings).unwrap()
    };
    (receiver, runtime, pipeline)
}

/// Emits `n` records with the bodies `"{prefix} {i}"`.
fn emit(pipeline: &Pipeline, n: u64, prefix: &str) {
    let logger = pipeline.logger_provider.logger("otlp-logs-test");
    for i in 0..n {
        let mut record = logger.create_log_record();
        record.set_body(AnyValue::from(format!("{prefix} {i}")));
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        logger.emit(record);
    }
}

/// The records neither exported, dropped nor failed yet: queued or in an export.
fn queued(s: &LogStats) -> u64 {
    let settled = s.exported + s.dropped + s.failed;
    assert!(settled <= s.emitted, "more settled than emitted: {s:?}");
    s.emitted - settled
}

fn records_arrive_counted_exported(protocol: Protocol) {
    let (receiver, runtime, pipeline) = start(protocol, Mode::Accept);
    emit(&pipeline, 300, "record");
    pipeline.logger_provider.force_flush().unwrap();
    // The receiver stores an export before it answers: after the flush, all is there.
    let stats = pipeline.logs.stats();
    assert_eq!(
        (stats.emitted, stats.exported, stats.dropped, stats.failed),
        (300, 300, 0, 0),
        "{stats:?}"
    );
    let got = receiver.received();
    let records = got.log_records();
    assert_eq!(records.len(), 300, "{} exports", got.logs.len());
    let bodies: HashSet<String> = records
        .iter()
        .filter_map(|r| match r.body.clone()?.value? {
            Value::StringValue(s) => Some(s),
            _ => None,
        })
        .collect();
    for i in 0..300 {
        assert!(
            bodies.contains(&format!("record {i}")),
            "record {i} missing"
        );
    }
    assert!(records.iter().all(|r| r.severity_text == "INFO"));
    let scope = got.logs[0].request.resource_logs[0].scope_logs[0]
        .scope
        .clone()
        .unwrap();
    assert_eq!(scope.name, "otlp-logs-test");
    // The resource reached the exporter (set_resource is forwarded).
    let resource = got.logs[0].request.resource_logs[0]
        .resource
        .clone()
        .unwrap();
    assert!(
        resource.attributes.iter().any(|a| a.key == "service.name"
            && a.value.clone().and_then(|v| v.value)
                == Some(Value::StringValue("otlp-logs-test".into()))),
        "{resource:?}"
    );
    let failures = pipeline.shutdown(Duration::from_secs(5));
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(pipeline.logs.stats(), stats);
    drop(runtime);
}

#[test]
fn records_arrive_with_their_bodies_counted_exported_grpc() {
    records_arrive_counted_exported(Protocol::Grpc);
}

#[test]
fn records_arrive_with_their_bodies_counted_exported_http() {
    records_arrive_counted_exported(Protocol::HttpProtobuf);
}

fn every_record_is_accounted_for(protocol: Protocol, mode: Mode) {
    let (receiver, runtime, pipeline) = start(protocol, mode);
    // Emitting never waits for the collector: 10,000 records, far more than the queue
    // holds, in far less than a second per thousand.
    let n = 10_000;
    let started = Instant::now();
    emit(&pipeline, n, "lost");
    let spent = started.elapsed();
    assert!(spent < Duration::from_secs(10), "emitting took {spent:?}");
    let before = pipeline.logs.stats();
    assert_eq!(before.emitted, n, "{before:?}");
    assert!(before.dropped > 0, "{before:?}");
    assert!(
        queued(&before) <= LOG_QUEUE as u64 + BATCH,
        "queued past the bound: {before:?}"
    );
    // A bounded flush: the export thread finishes the export in hand (failed), then
    // exports what is queued (failed too). Each export ends within twice the export
    // timeout: its retries stop at the timeout, but the last attempt may start just
    // before it and take a whole timeout.
    let flushing = Instant::now();
    let flushed = pipeline.logger_provider.force_flush();
    let took = flushing.elapsed();
    assert!(
        took < 2 * (2 * EXPORT_TIMEOUT) + MARGIN,
        "{took:?}: {flushed:?}"
    );
    let after = pipeline.logs.stats();
    // emitted = exported + dropped + failed + queued, with nothing left queued.
    assert_eq!(queued(&after), 0, "{after:?} (flush: {flushed:?})");
    assert_eq!(
        after.emitted,
        after.exported + after.dropped + after.failed,
        "{after:?}"
    );
    assert_eq!(after.exported, 0, "{after:?}");
    assert!(after.dropped > 0 && after.failed > 0, "{after:?}");
    assert!(receiver.received().log_records().is_empty());
    let shutting = Instant::now();
    let _ = pipeline.shutdown(SHUTDOWN);
    assert!(
        shutting.elapsed() < SHUTDOWN + MARGIN,
        "shutdown took {:?} for a bound of {SHUTDOWN:?}",
        shutting.elapsed()
    );
    let last = pipeline.logs.stats();
    assert_eq!(
        last.emitted,
        last.exported + last.dropped + last.failed,
        "{last:?}"
    );
    drop(runtime);
}

#[test]
fn a_refusing_collector_loses_nothing_uncounted_grpc() {
    every_record_is_accounted_for(Protocol::Grpc, Mode::Unavailable);
}

#[test]
fn a_refusing_collector_loses_nothing_uncounted_http() {
    every_record_is_accounted_for(Protocol::HttpProtobuf, Mode::Unavailable);
}

#[test]
fn a_silent_collector_loses_nothing_uncounted() {
    every_record_is_accounted_for(Protocol::Grpc, Mode::Hang);
}

/// A line written while OpenTelemetry telemetry is suppressed (the SDK's own reports from
/// inside an export) is not handed to the SDK, which would drop it without a count: the
/// `otlp` output counts it as dropped, and writes the others.
#[test]
fn lines_written_inside_an_export_are_counted_dropped_not_exported() {
    use piko_obs_logger::{Hub, Level};
    let (_receiver, runtime, pipeline) = start(Protocol::Grpc, Mode::Accept);
    let hub = Hub::default();
    hub.add_output(
        "otlp",
        Level::INFO,
        piko_obs_otlp::OtelLogOutput::new(&pipeline.logger_provider),
    )
    .unwrap();
    let log = hub.get_logger("suppressed-test");
    log.info("exported", &[]);
    {
        let _inside = opentelemetry::Context::enter_telemetry_suppressed_scope();
        log.warn("export failed", &[]);
    }
    log.info("exported again", &[]);
    let otlp = hub
        .outputs()
        .into_iter()
        .find(|o| o.name == "otlp")
        .unwrap();
    assert_eq!(
        (otlp.stats.accepted, otlp.stats.written, otlp.stats.dropped),
        (2, 2, 1)
    );
    pipeline.logger_provider.force_flush().unwrap();
    let stats = pipeline.logs.stats();
    assert_eq!((stats.emitted, stats.exported), (2, 2), "{stats:?}");
    let failures = pipeline.shutdown(Duration::from_secs(5));
    assert!(failures.is_empty(), "{failures:?}");
    drop(runtime);
}
