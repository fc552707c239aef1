//! OTLP export over TLS, end to end, over gRPC and over HTTP/protobuf, against the
//! receiver of the tests serving TLS with certificates made at test time (rcgen): with
//! the CA file (`ca_file`) the three signals arrive; without it the handshake fails,
//! the export is counted failed and nothing arrives; a receiver requiring client
//! certificates takes the configured certificate and key, and refuses a client without
//! one or with one another CA issued.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use piko_obs_otlp::{OtlpConfig, Pipeline, Protocol};
use piko_obs_testkit::otlp::{OtlpReceiver, ServerTls};
use piko_obs_testkit::pki::{PkiFiles, TestPki};

/// The bound on one export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// The bound given to the pipeline's shutdown.
const SHUTDOWN: Duration = Duration::from_secs(5);

/// The certificates of one test, written into their own directory (kept while the
/// test runs).
struct Certs {
    pki: TestPki,
    files: PkiFiles,
    _dir: tempfile::TempDir,
}

fn certs() -> Certs {
    // The process-wide rustls provider, installed first as a service does (reqwest,
    // built without a provider of its own, needs it); an Err only says it is there.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate();
    let files = pki.write(dir.path());
    Certs {
        pki,
        files,
        _dir: dir,
    }
}

/// The TLS files a pipeline is given.
#[derive(Default)]
struct Files {
    ca: Option<PathBuf>,
    client: Option<(PathBuf, PathBuf)>,
}

/// A pipeline exporting to `receiver` over `protocol` with `files`, started on its own
/// runtime (which must outlive the pipeline's shutdown).
fn start(
    receiver: &OtlpReceiver,
    protocol: Protocol,
    files: Files,
) -> (tokio::runtime::Runtime, Pipeline) {
    let mut c = OtlpConfig::new();
    c.endpoint = Some(match protocol {
        Protocol::Grpc => receiver.grpc_endpoint(),
        Protocol::HttpProtobuf | Protocol::HttpJson => receiver.http_endpoint(),
    });
    assert!(
        c.endpoint
            .as_deref()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    c.protocol = Some(protocol);
    c.timeout = Some(EXPORT_TIMEOUT);
    c.tls.ca_file = files.ca;
    if let Some((cert, key)) = files.client {
        c.tls.client_cert = Some(cert);
        c.tls.client_key = Some(key);
    }
    let settings = c.resolve(|_| None, "otlp-tls-test").unwrap();
    // The settings hold what the files held (read once, when they resolved); their
    // `Debug` does not show it, the key least of all.
    let shown = format!("{settings:?}");
    assert!(
        !shown.contains("PRIVATE KEY") && !shown.contains("BEGIN CERTIFICATE"),
        "{shown}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pipeline = {
        let _in = runtime.enter();
        Pipeline::start(&settings).unwrap()
    };
    (runtime, pipeline)
}

/// Ends the spans `"{prefix} 0"` to `"{prefix} 4"`, each with attribute `tls.test`.
fn end_spans(pipeline: &Pipeline, prefix: &str) {
    let tracer = pipeline.tracer_provider.tracer("otlp-tls-test");
    for i in 0..5 {
        let mut span = tracer.start(format!("{prefix} {i}"));
        span.set_attribute(KeyValue::new("tls.test", prefix.to_string()));
        span.end();
    }
}

/// Exports the three signals to a receiver serving `tls` and checks they arrive, with
/// the client certificate the receiver saw (if any); returns it.
fn three_signals_arrive(tls: &ServerTls, protocol: Protocol, files: Files) -> Option<Vec<u8>> {
    let receiver = OtlpReceiver::start_tls(tls);
    let (runtime, pipeline) = start(&receiver, protocol, files);
    end_spans(&pipeline, "over tls");
    // The receiver stores an export before it answers: after the flush, all is there.
    pipeline.tracer_provider.force_flush().unwrap();
    let stats = pipeline.spans.stats();
    assert_eq!(
        (stats.ended, stats.exported, stats.failed),
        (5, 5, 0),
        "{stats:?}"
    );
    let logger = pipeline.logger_provider.logger("otlp-tls-test");
    let mut record = logger.create_log_record();
    record.set_body(AnyValue::from("sent over tls"));
    logger.emit(record);
    pipeline
        .meter_provider
        .meter("otlp-tls-test")
        .u64_counter("tls_exports_total")
        .build()
        .add(1, &[]);
    let failures = pipeline.shutdown(SHUTDOWN);
    assert!(failures.is_empty(), "{failures:?}");
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        !r.log_records().is_empty() && !r.metric_names().is_empty()
    });
    let proto = match protocol {
        Protocol::Grpc => "grpc",
        Protocol::HttpProtobuf | Protocol::HttpJson => "http",
    };
    assert!(got.traces.iter().all(|e| e.protocol == proto));
    let mut names: Vec<String> = got.spans().iter().map(|s| s.name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        (0..5).map(|i| format!("over tls {i}")).collect::<Vec<_>>()
    );
    assert!(got.spans().iter().all(|s| s.attributes.iter().any(|a| {
        a.key == "tls.test"
            && a.value.clone().and_then(|v| v.value) == Some(Value::StringValue("over tls".into()))
    })));
    let bodies: Vec<_> = got
        .log_records()
        .into_iter()
        .filter_map(|r| r.body.and_then(|b| b.value))
        .collect();
    assert_eq!(bodies, vec![Value::StringValue("sent over tls".into())]);
    assert!(
        got.metric_names()
            .contains(&"tls_exports_total".to_string()),
        "{:?}",
        got.metric_names()
    );
    // Every export of the three signals came over a connection with the same client
    // certificate (or none).
    let cert = got.traces[0].client_cert.clone();
    assert!(got.traces.iter().all(|e| e.client_cert == cert));
    assert!(got.logs.iter().all(|e| e.client_cert == cert));
    assert!(got.metrics.iter().all(|e| e.client_cert == cert));
    drop(runtime);
    cert
}

/// Exports spans to a receiver serving `tls`, which the TLS handshake keeps from
/// arriving: the flush reports the failure, the spans are counted failed, nothing
/// reaches the receiver, and the receiver's side of each failed handshake says `why`.
/// Returns the flush's error.
fn export_is_refused(tls: &ServerTls, protocol: Protocol, files: Files, why: &str) -> String {
    let receiver = OtlpReceiver::start_tls(tls);
    let proto = match protocol {
        Protocol::Grpc => "grpc",
        Protocol::HttpProtobuf | Protocol::HttpJson => "http",
    };
    let (runtime, pipeline) = start(&receiver, protocol, files);
    end_spans(&pipeline, "refused");
    let flushed = pipeline.tracer_provider.force_flush();
    let error = format!("{:?}", flushed.expect_err("the export cannot succeed"));
    // The server records a failed handshake as it ends, which may be a moment after
    // the client gave up.
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        !r.tls_handshake_errors.is_empty()
    });
    let failed = &got.tls_handshake_errors;
    assert!(
        !failed.is_empty() && failed.iter().all(|(p, e)| *p == proto && e.contains(why)),
        "handshakes failing with {why:?} on the {proto} server: {failed:?} (client: {error})"
    );
    let stats = pipeline.spans.stats();
    assert_eq!(
        (stats.ended, stats.exported, stats.failed, stats.dropped),
        (5, 0, 5, 0),
        "{stats:?}"
    );
    let _ = pipeline.shutdown(SHUTDOWN);
    let got = receiver.received();
    assert!(
        got.traces.is_empty() && got.logs.is_empty() && got.metrics.is_empty(),
        "{got:?}"
    );
    drop(runtime);
    error
}

fn the_ca_file_makes_the_receiver_trusted(protocol: Protocol) {
    let c = certs();
    let tls = c.pki.server_tls(false);
    // Without the CA file, only the system's roots: the exporter refuses the receiver's
    // certificate, and tells the receiver so.
    let error = export_is_refused(
        &tls,
        protocol,
        Files::default(),
        "received fatal alert: UnknownCA",
    );
    if protocol == Protocol::Grpc {
        // (The HTTP exporter reports only "network error".)
        assert!(error.contains("UnknownIssuer"), "{error}");
    }
    let client_cert = three_signals_arrive(
        &tls,
        protocol,
        Files {
            ca: Some(c.files.ca.clone()),
            client: None,
        },
    );
    assert_eq!(client_cert, None, "no client certificate was configured");
}

#[test]
fn over_tls_the_ca_file_is_trusted_and_needed_grpc() {
    the_ca_file_makes_the_receiver_trusted(Protocol::Grpc);
}

#[test]
fn over_tls_the_ca_file_is_trusted_and_needed_http() {
    the_ca_file_makes_the_receiver_trusted(Protocol::HttpProtobuf);
}

fn mutual_tls(protocol: Protocol) {
    let c = certs();
    let tls = c.pki.server_tls(true);
    // The CA file but no client certificate: refused.
    export_is_refused(
        &tls,
        protocol,
        Files {
            ca: Some(c.files.ca.clone()),
            client: None,
        },
        "peer sent no certificates",
    );
    // A client certificate another CA issued: refused.
    export_is_refused(
        &tls,
        protocol,
        Files {
            ca: Some(c.files.ca.clone()),
            client: Some((c.files.stranger_cert.clone(), c.files.stranger_key.clone())),
        },
        "invalid peer certificate: UnknownIssuer",
    );
    // The configured certificate and key: accepted, and it is the certificate the
    // receiver saw.
    let seen = three_signals_arrive(
        &tls,
        protocol,
        Files {
            ca: Some(c.files.ca.clone()),
            client: Some((c.files.client_cert.clone(), c.files.client_key.clone())),
        },
    );
    assert_eq!(seen.as_deref(), Some(c.pki.client.cert_der.as_slice()));
}

#[test]
fn mutual_tls_takes_the_client_certificate_and_refuses_others_grpc() {
    mutual_tls(Protocol::Grpc);
}

#[test]
fn mutual_tls_takes_the_client_certificate_and_refuses_others_http() {
    mutual_tls(Protocol::HttpProtobuf);
}
