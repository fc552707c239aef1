//! The OpenTelemetry SDK environment variables, each scenario in a fresh process
//! (`log_probe otlp`) so that the variables are the process's own, as the exporters
//! read them, checked at the OTLP receiver: code wins per header name over
//! `OTEL_EXPORTER_OTLP_HEADERS` over both protocols; a signal's own variables; the
//! `OTEL_<SIGNAL>_EXPORTER` switches; `OTEL_SDK_DISABLED` as a kill switch; the default
//! protocol and http/json; code's compression over the variable's, on the wire; the
//! temporality preference; the propagators; the console exporters (`log_probe console`,
//! checked on the child's stdout); and bad values named in `init()`'s error.

use std::process::{Command, Output};
use std::time::Duration;

use piko_obs_testkit::otlp::{OtlpReceiver, Received};

/// Runs `log_probe otlp [endpoint]` with `env` (and no other `OTEL_*` variable); what it
/// printed.
fn probe(endpoint: Option<&str>, env: &[(&str, &str)]) -> String {
    run("otlp", endpoint, env)
}

/// Runs `log_probe SCENARIO [arg]` with `env` (and no other `OTEL_*` variable); what it
/// printed.
fn run(scenario: &str, arg: Option<&str>, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_log_probe"));
    cmd.arg(scenario);
    cmd.args(arg);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") || k.starts_with("PROBE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out: Output = cmd.output().expect("log_probe runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits (bounded) until spans, log records and metrics have all arrived.
fn all_three(receiver: &OtlpReceiver) -> Received {
    receiver.wait_until(Duration::from_secs(10), |r| {
        !r.spans().is_empty() && !r.log_records().is_empty() && !r.metric_names().is_empty()
    })
}

/// Every export of the three signals, as (signal, protocol, header value).
fn header_of_each(got: &Received, name: &str) -> Vec<(&'static str, &'static str, Option<String>)> {
    let h = |e: Option<&str>| e.map(str::to_string);
    got.traces
        .iter()
        .map(|e| ("traces", e.protocol, h(e.header(name))))
        .chain(
            got.metrics
                .iter()
                .map(|e| ("metrics", e.protocol, h(e.header(name)))),
        )
        .chain(
            got.logs
                .iter()
                .map(|e| ("logs", e.protocol, h(e.header(name)))),
        )
        .collect()
}

/// The documented precedence: a header given in code wins over the same name in
/// `OTEL_EXPORTER_OTLP_HEADERS` (which the exporters re-read and applied last), and the
/// variable's other headers are sent too; over HTTP/protobuf and over gRPC.
#[test]
fn code_wins_per_header_name_over_both_protocols() {
    for protocol in ["http/protobuf", "grpc"] {
        let receiver = OtlpReceiver::start();
        let endpoint = match protocol {
            "grpc" => receiver.grpc_endpoint(),
            _ => receiver.http_endpoint(),
        };
        let out = probe(
            Some(&endpoint),
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=from-env,x-team=core",
                ),
                ("PROBE_CODE_HEADER", "1"),
            ],
        );
        assert!(out.contains("init: ok"), "{out}");
        let got = all_three(&receiver);
        let wire = if protocol == "grpc" { "grpc" } else { "http" };
        for (signal, arrived_over, value) in header_of_each(&got, "authorization") {
            assert_eq!(arrived_over, wire, "{signal}");
            assert_eq!(value.as_deref(), Some("code"), "{protocol} {signal}");
        }
        for (signal, _, value) in header_of_each(&got, "x-team") {
            assert_eq!(value.as_deref(), Some("core"), "{protocol} {signal}");
        }
    }
}

/// A signal's own endpoint and headers, `OTEL_METRICS_EXPORTER=none`, and the default
/// protocol (http/protobuf, as the specification says) with no protocol anywhere.
#[test]
fn signal_variables_send_each_signal_its_own_way() {
    let general = OtlpReceiver::start();
    let traces = OtlpReceiver::start();
    let traces_url = format!("{}/v1/traces", traces.http_endpoint());
    let out = probe(
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &general.http_endpoint()),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces_url),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-scope=general"),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-scope=logs"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ],
    );
    assert!(out.contains("init: ok"), "{out}");
    let got = traces.wait_until(Duration::from_secs(10), |r| !r.spans().is_empty());
    assert!(
        got.spans().iter().any(|s| s.name == "probe span"),
        "{:?}",
        got.spans()
    );
    assert!(got.logs.is_empty() && got.metrics.is_empty(), "{got:?}");
    for e in &got.traces {
        assert_eq!(e.protocol, "http", "the default protocol");
        assert_eq!(e.header("x-scope"), Some("general"));
    }
    let got = general.wait_until(Duration::from_secs(10), |r| !r.log_records().is_empty());
    assert!(got.traces.is_empty(), "traces went to their own endpoint");
    assert!(got.metrics.is_empty(), "OTEL_METRICS_EXPORTER=none");
    for e in &got.logs {
        assert_eq!(e.protocol, "http");
        assert_eq!(e.header("x-scope"), Some("logs"));
    }
}

/// `OTEL_SDK_DISABLED=true` turns every signal off, though code enables export and
/// names an endpoint: after the probe's shutdown (which flushes), nothing has arrived.
#[test]
fn sdk_disabled_is_a_kill_switch() {
    let receiver = OtlpReceiver::start();
    let out = probe(
        Some(&receiver.http_endpoint()),
        &[("OTEL_SDK_DISABLED", "true")],
    );
    assert!(out.contains("init: ok"), "{out}");
    let got = receiver.received();
    assert!(
        got.traces.is_empty() && got.metrics.is_empty() && got.logs.is_empty(),
        "{got:?}"
    );
    // The same probe without the switch exports: the silence above is the switch's.
    let out = probe(Some(&receiver.http_endpoint()), &[]);
    assert!(out.contains("init: ok"), "{out}");
    all_three(&receiver);
}

/// `OTEL_PROPAGATORS` decides what is carried on: by default trace context and
/// baggage, or what it lists, or nothing for `none`.
#[test]
fn propagators_are_the_ones_named() {
    let receiver = OtlpReceiver::start();
    for (value, carried) in [
        (None, "baggage,traceparent,tracestate"),
        (Some("baggage"), "baggage"),
        (Some("tracecontext"), "traceparent,tracestate"),
        (Some("none"), ""),
        (
            Some("tracecontext,xray,baggage"),
            "baggage,traceparent,tracestate,x-amzn-trace-id",
        ),
        (
            Some("tracecontext,baggage,b3multi,jaeger,ottrace,b3"),
            "b3,baggage,ot-baggage-tenant,ot-tracer-sampled,ot-tracer-spanid,\
             ot-tracer-traceid,traceparent,tracestate,uber-trace-id,uberctx-tenant,\
             x-b3-sampled,x-b3-spanid,x-b3-traceid",
        ),
    ] {
        let env: Vec<(&str, &str)> = value.map(|v| ("OTEL_PROPAGATORS", v)).into_iter().collect();
        let out = probe(Some(&receiver.http_endpoint()), &env);
        assert!(
            out.contains(&format!("propagated: {carried}\n")),
            "{value:?}: {out}"
        );
    }
    // With export off, the propagators the variable names are installed all the same
    // (the specification leaves propagation out of the kill switch); without the
    // variable, none is.
    let out = probe(
        Some(&receiver.http_endpoint()),
        &[
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_PROPAGATORS", "tracecontext"),
        ],
    );
    assert!(
        out.contains("propagated: traceparent,tracestate\n"),
        "{out}"
    );
    let out = probe(None, &[]);
    assert!(out.contains("propagated: \n"), "{out}");
}

/// A bad value fails `init()` naming its variable; a header's value is never quoted.
#[test]
fn bad_values_name_their_variable() {
    for (var, value, names) in [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "OTEL_BSP_MAX_QUEUE_SIZE:"),
        (
            "OTEL_BLRP_SCHEDULE_DELAY",
            "soon",
            "OTEL_BLRP_SCHEDULE_DELAY:",
        ),
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER:"),
        ("OTEL_LOGS_EXPORTER", "console,none", "OTEL_LOGS_EXPORTER:"),
        ("OTEL_METRICS_EXPORTER", "stdout", "OTEL_METRICS_EXPORTER:"),
        ("OTEL_PROPAGATORS", "b3single", "OTEL_PROPAGATORS:"),
        ("OTEL_PROPAGATORS", "jaeger,none", "OTEL_PROPAGATORS:"),
        (
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "deltas",
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE:",
        ),
        (
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "-1",
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT:",
        ),
        (
            "OTEL_METRICS_EXEMPLAR_FILTER",
            "sometimes",
            "OTEL_METRICS_EXEMPLAR_FILTER:",
        ),
        (
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "0",
            "OTEL_EXPORTER_OTLP_TIMEOUT:",
        ),
        (
            "OTEL_METRIC_EXPORT_TIMEOUT",
            "30s",
            "OTEL_METRIC_EXPORT_TIMEOUT:",
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            "authorization: Bearer s3cret",
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS:",
        ),
        ("OTEL_SDK_DISABLED", "maybe", "OTEL_SDK_DISABLED:"),
        ("OTEL_LOG_LEVEL", "loud", "OTEL_LOG_LEVEL:"),
        ("OTEL_TRACES_SAMPLER", "xray", "OTEL_TRACES_SAMPLER:"),
    ] {
        let out = probe(Some("http://127.0.0.1:9"), &[(var, value)]);
        assert!(
            out.contains(&format!("init: OTLP: {names}")) || out.contains(names),
            "{var}: {out}"
        );
        assert!(!out.contains("init: ok"), "{var}: {out}");
        assert!(!out.contains("s3cret"), "{out}");
    }
}

/// Code's compression wins over `OTEL_EXPORTER_OTLP_COMPRESSION`, which the exporters
/// also read themselves: with `with_otlp_compression(Compression::None)` and the
/// variable at `gzip`, the receiver gets the three signals uncompressed over HTTP;
/// without the option, gzip (so the variable is read, and code is what wins). Over
/// gRPC, where the exporter cannot be told "none", `init()` fails naming the option
/// and the variable instead of compressing against code's word.
#[test]
fn code_compression_wins_on_the_wire() {
    for (code_none, expected) in [(true, None), (false, Some("gzip"))] {
        let receiver = OtlpReceiver::start();
        let mut env = vec![("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")];
        if code_none {
            env.push(("PROBE_CODE_NO_COMPRESSION", "1"));
        }
        let out = probe(Some(&receiver.http_endpoint()), &env);
        assert!(out.contains("init: ok"), "{out}");
        let got = all_three(&receiver);
        let seen = header_of_each(&got, "content-encoding");
        assert!(seen.len() >= 3, "{seen:?}");
        for (signal, protocol, encoding) in seen {
            assert_eq!(protocol, "http", "{signal}");
            assert_eq!(
                encoding.as_deref(),
                expected,
                "code none: {code_none}, {signal}"
            );
        }
    }
    let receiver = OtlpReceiver::start();
    let out = probe(
        Some(&receiver.grpc_endpoint()),
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            ("PROBE_CODE_NO_COMPRESSION", "1"),
        ],
    );
    assert!(
        out.contains("init: OtlpConfig.compression: none cannot apply over gRPC")
            && out.contains("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"),
        "{out}"
    );
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`: the three signals arrive as JSON bodies,
/// which the receiver decodes.
#[test]
fn http_json_from_the_environment() {
    let receiver = OtlpReceiver::start();
    let out = probe(
        Some(&receiver.http_endpoint()),
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
    );
    assert!(out.contains("init: ok"), "{out}");
    let got = all_three(&receiver);
    for (signal, protocol, content_type) in header_of_each(&got, "content-type") {
        assert_eq!(protocol, "http", "{signal}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{signal}"
        );
    }
    assert!(
        got.spans().iter().any(|s| s.name == "probe span"),
        "{:?}",
        got.spans()
    );
}

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta` in the process's own
/// environment: the probe's counter arrives as a delta sum.
#[test]
fn temporality_preference_from_the_environment() {
    use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    for (preference, expected) in [
        ("delta", AggregationTemporality::Delta),
        ("cumulative", AggregationTemporality::Cumulative),
    ] {
        let receiver = OtlpReceiver::start();
        let out = probe(
            Some(&receiver.http_endpoint()),
            &[(
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                preference,
            )],
        );
        assert!(out.contains("init: ok"), "{out}");
        let got = receiver.wait_until(Duration::from_secs(10), |r| {
            r.last_metric("probe_runs").is_some()
        });
        match got.last_metric("probe_runs").and_then(|m| m.data) {
            Some(Data::Sum(s)) => {
                assert_eq!(s.aggregation_temporality, expected as i32, "{preference}")
            }
            other => panic!("a sum: {other:?}"),
        }
    }
}

/// The log-record limits from the process's environment, through the facade's log
/// output: the probe's line inside its span arrives with its first attribute only
/// (`logger`), cut to the record's own 2 bytes (not the general 1), and the span's own
/// ids as its trace context.
#[test]
fn log_record_limits_from_the_environment() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    let receiver = OtlpReceiver::start();
    let out = probe(
        Some(&receiver.http_endpoint()),
        &[
            ("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "1"),
            ("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "2"),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1"),
        ],
    );
    assert!(out.contains("init: ok"), "{out}");
    let got = all_three(&receiver);
    let record = got
        .log_records()
        .into_iter()
        .find(|r| format!("{:?}", r.body).contains("inside the probe span"))
        .unwrap_or_else(|| panic!("{:?}", got.log_records()));
    let attributes: Vec<(String, Option<Value>)> = record
        .attributes
        .iter()
        .map(|a| (a.key.clone(), a.value.clone().and_then(|v| v.value)))
        .collect();
    assert_eq!(
        attributes,
        vec![("logger".to_string(), Some(Value::StringValue("ap".into())))]
    );
    assert_eq!(
        record.trace_id.len(),
        16,
        "the record keeps its trace context"
    );
}

/// The incoming trace `log_probe console` runs its span in.
const CONSOLE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Whether `out` has the block header the console exporter writes before each export of
/// a signal (`Spans`, `Metrics`, `Logs`) on a line of its own.
fn has_block(out: &str, header: &str) -> bool {
    out.lines().any(|l| l == header)
}

/// `OTEL_<SIGNAL>_EXPORTER=console` with no endpoint: that signal, and only it, is
/// written to the child's stdout by the console exporter: the span with its name and
/// trace id, the counter under its OpenTelemetry name, the log record with its body
/// and the span's trace id (beside the record's JSON line); the start-up summary says
/// so.
#[test]
fn console_exporters_write_each_signal_to_stdout() {
    for (signal, header) in [
        ("TRACES", "Spans"),
        ("METRICS", "Metrics"),
        ("LOGS", "Logs"),
    ] {
        let var = format!("OTEL_{signal}_EXPORTER");
        let out = run("console", None, &[(&var, "console")]);
        assert!(out.contains("init: ok"), "{var}: {out}");
        for other in ["Spans", "Metrics", "Logs"] {
            assert_eq!(
                has_block(&out, other),
                other == header,
                "{var}, {other}: {out}"
            );
        }
        match signal {
            "TRACES" => {
                assert!(
                    out.contains("\tName         : console probe span\n"),
                    "{out}"
                );
                assert!(
                    out.contains(&format!("\tTraceId      : {CONSOLE_TRACE}\n")),
                    "{out}"
                );
                assert!(
                    out.contains("\"otlp_traces\":\"console (stdout)\""),
                    "{out}"
                );
                assert!(
                    out.contains(
                        "\"otlp_logs\":\"off (no endpoint: OTEL_EXPORTER_OTLP_ENDPOINT unset)\""
                    ),
                    "{out}"
                );
            }
            "METRICS" => {
                assert!(
                    out.contains("\t\tName         : console_probe_runs\n"),
                    "{out}"
                );
                assert!(
                    out.contains("\"otlp_metrics\":\"console (stdout)\""),
                    "{out}"
                );
            }
            _ => {
                let body = out
                    .lines()
                    .find(|l| l.contains("Body: ") && l.contains("inside the console probe span"))
                    .unwrap_or_else(|| panic!("no record body: {out}"));
                assert!(body.starts_with("\t Body: "), "{body}");
                assert!(
                    out.contains(&format!("\t TraceId: {CONSOLE_TRACE}\n")),
                    "the record carries the span's trace id: {out}"
                );
                // The same line as a JSON line of the console output, as documented.
                assert!(
                    out.lines().any(|l| l.starts_with('{')
                        && l.contains("\"msg\":\"inside the console probe span\"")),
                    "{out}"
                );
                assert!(
                    out.contains("\"otlp_logs\":\"console (stdout: each log line again"),
                    "{out}"
                );
            }
        }
    }
    // The deprecated alias, and the kill switch.
    let out = run("console", None, &[("OTEL_TRACES_EXPORTER", "logging")]);
    assert!(has_block(&out, "Spans"), "{out}");
    let out = run(
        "console",
        None,
        &[
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_METRICS_EXPORTER", "console"),
            ("OTEL_LOGS_EXPORTER", "console"),
            ("OTEL_SDK_DISABLED", "true"),
        ],
    );
    assert!(out.contains("init: ok"), "{out}");
    for header in ["Spans", "Metrics", "Logs"] {
        assert!(!has_block(&out, header), "OTEL_SDK_DISABLED=true: {out}");
    }
}

/// `otlp,console`: the same span goes to the receiver and to stdout, through one
/// processor.
#[test]
fn otlp_and_console_listed_together_both_export() {
    let receiver = OtlpReceiver::start();
    let out = run(
        "console",
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
            ("OTEL_TRACES_EXPORTER", "otlp,console"),
        ],
    );
    assert!(out.contains("init: ok"), "{out}");
    assert!(
        out.contains("\tName         : console probe span\n"),
        "{out}"
    );
    assert!(
        out.contains("/v1/traces + console (stdout)\""),
        "the start-up summary names both: {out}"
    );
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        r.spans().iter().any(|s| s.name == "console probe span")
    });
    let span = got
        .spans()
        .into_iter()
        .find(|s| s.name == "console probe span")
        .expect("the span at the receiver");
    let hex: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, CONSOLE_TRACE);
    assert!(
        !has_block(&out, "Logs") && !has_block(&out, "Metrics"),
        "{out}"
    );
}

/// `OTEL_LOG_LEVEL` governs the SDK's own diagnostics: with traces sent to a closed
/// loopback port, the OTLP exporter's WARN line ("exhausted retries") reaches the console
/// at the default level (WARN), and not at `error` nor `none`; a `PIKO_LOG_LEVEL`
/// directive naming the exporter's target wins over `OTEL_LOG_LEVEL=none`.
#[test]
fn otel_log_level_governs_the_sdk_diagnostics() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let endpoint = format!("http://{}", closed.local_addr().expect("its address"));
    drop(closed);
    let diagnostics = |extra: &[(&str, &str)]| {
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ];
        env.extend_from_slice(extra);
        let out = run("sdk-diagnostics", None, &env);
        assert!(out.contains("init: ok"), "{out}");
        assert!(out.contains("inside the diagnostics probe span"), "{out}");
        let sdk: Vec<&str> = out
            .lines()
            .filter(|l| l.contains(r#""logger":"opentelemetry"#))
            .collect();
        let exhausted = sdk.iter().any(|l| {
            l.contains(r#""level":"WARN""#)
                && l.contains("exhausted retries")
                && l.contains(r#""logger":"opentelemetry-otlp""#)
        });
        (sdk.len(), exhausted, out)
    };
    let (_, exhausted, out) = diagnostics(&[]);
    assert!(
        exhausted,
        "the default level shows the exporter's warning: {out}"
    );
    assert!(!out.contains("Global tracer provider is set"), "{out}");
    let (_, exhausted, out) = diagnostics(&[("OTEL_LOG_LEVEL", "info")]);
    assert!(exhausted, "{out}");
    assert!(
        out.contains("Global tracer provider is set"),
        "INFO shows INFO: {out}"
    );
    let (_, _, out) = diagnostics(&[("OTEL_LOG_LEVEL", "error")]);
    assert!(!out.contains("exhausted retries"), "{out}");
    assert!(out.contains("shutdown: "), "the export failed: {out}");
    let (n, _, out) = diagnostics(&[("OTEL_LOG_LEVEL", "NONE")]);
    assert_eq!(n, 0, "{out}");
    let (_, exhausted, out) = diagnostics(&[
        ("OTEL_LOG_LEVEL", "none"),
        ("PIKO_LOG_LEVEL", "info,opentelemetry-otlp=warn"),
    ]);
    assert!(exhausted, "the directive wins: {out}");
}

/// `OTEL_TRACES_SAMPLER=jaeger_remote` (and `parentbased_jaeger_remote`) with
/// `OTEL_TRACES_SAMPLER_ARG`: the sampler asks a real HTTP server on loopback for the
/// service's strategy (`/sampling?service=NAME`), and follows it against the initial
/// rate: probability 0 lets no span reach the receiver, 1 lets them all through.
#[test]
fn jaeger_remote_sampler_follows_the_served_strategy() {
    use piko_obs_testkit::sink::{Reply, Sink};
    let strategy = |p: f64| {
        Reply::status(200)
            .header("content-type", "application/json")
            .with_text(&format!(
                r#"{{"strategyType":"PROBABILISTIC","probabilisticSampling":{{"samplingRate":{p}}}}}"#
            ))
    };
    for (sampler, served, initial, spans) in [
        ("jaeger_remote", 0.0, 1.0, 0),
        ("jaeger_remote", 1.0, 0.0, 5),
        ("parentbased_jaeger_remote", 0.0, 1.0, 0),
        ("parentbased_jaeger_remote", 1.0, 0.0, 5),
    ] {
        let receiver = OtlpReceiver::start();
        let jaeger = Sink::with_default(strategy(served));
        let arg = format!(
            "endpoint={},pollingIntervalMs=200,initialSamplingRate={initial}",
            jaeger.url("/sampling")
        );
        let out = run(
            "sampled",
            None,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
                ("OTEL_SERVICE_NAME", "checkout"),
                ("OTEL_TRACES_SAMPLER", sampler),
                ("OTEL_TRACES_SAMPLER_ARG", &arg),
            ],
        );
        assert!(out.contains("init: ok"), "{sampler}: {out}");
        let asked = jaeger.requests();
        assert!(
            !asked.is_empty(),
            "{sampler}: the strategy was never asked for"
        );
        for r in &asked {
            assert_eq!(r.path, "/sampling?service=checkout", "{sampler}");
        }
        // The probe shut down (flushing every span) before it exited.
        let got = receiver.wait_until(Duration::from_secs(5), |r| {
            !r.metric_names().is_empty() || !r.log_records().is_empty() || !r.spans().is_empty()
        });
        let probe_spans = got
            .spans()
            .iter()
            .filter(|s| s.name == "sampled probe span")
            .count();
        assert_eq!(probe_spans, spans, "{sampler} served {served}");
    }
}

/// Bad `OTEL_TRACES_SAMPLER_ARG` values of the Jaeger remote sampler fail `init()`,
/// naming the variable.
#[test]
fn jaeger_remote_sampler_arguments_are_checked() {
    for arg in [
        "endpoint=ftp://agent/sampling",
        "endpoint=http://jaeger:s3cret@agent:5778/sampling",
        "pollingIntervalMs=0",
        "pollingIntervalMs=soon",
        "initialSamplingRate=2",
        "endpoint=http://a:5778/sampling,endpoint=http://b:5778/sampling",
        "rate=0.5",
        "0.5",
    ] {
        let out = probe(
            Some("http://127.0.0.1:9"),
            &[
                ("OTEL_TRACES_SAMPLER", "parentbased_jaeger_remote"),
                ("OTEL_TRACES_SAMPLER_ARG", arg),
            ],
        );
        assert!(
            out.contains("init: OTEL_TRACES_SAMPLER_ARG: "),
            "{arg}: {out}"
        );
        assert!(!out.contains("init: ok"), "{arg}: {out}");
        assert!(!out.contains("s3cret"), "{arg}: {out}");
    }
}
