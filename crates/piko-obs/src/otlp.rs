//! OpenTelemetry over OTLP: traces, metrics and logs to a collector over gRPC or
//! HTTP/protobuf.
//!
//! `init()` resolves the OTLP settings (the `with_otlp_*` options, then the standard
//! `OTEL_*` variables, then the defaults: see [`OtlpConfig`]); when export is on (an
//! endpoint in code or in `OTEL_EXPORTER_OTLP_ENDPOINT`), it starts the exporters on
//! piko-obs's runtime, installs the tracer and meter providers and the propagators
//! `OTEL_PROPAGATORS` names (by default W3C trace context and baggage) as
//! OpenTelemetry's globals, puts [`note_panic`] in front of
//! the panic hook (so a span that a panic ends carries the panic's message), and adds an
//! `otlp` log output, so every log line is also an OpenTelemetry log record carrying the
//! current span's ids.
//! Spans and log records that do not fit in their export queues are counted in
//! `piko_obs_spans_dropped_total` and `piko_obs_log_records_dropped_total`, failed
//! exports in `piko_obs_spans_export_failed_total` and
//! `piko_obs_log_records_export_failed_total`.

pub use opentelemetry::Context;
pub use piko_obs_otlp::*;
use std::time::Duration;

use piko_obs_lifecycle::Unwind;

use crate::start::{Resolved, Started};
use crate::{Builder, InitError};

#[cfg(any(feature = "sentry", feature = "notify"))]
pub(crate) use piko_obs_otlp::setup::current_span_ids;

impl Builder {
    delegate! { otlp:
        /// All OTLP settings at once (Piko's `WithOTLP`); the `with_otlp_*` options after it
        /// change single fields.
        fn with_otlp(config: OtlpConfig) => with_config(config);
        /// Turns OTLP export on or off (default: on when an endpoint is set, in code or in
        /// `OTEL_EXPORTER_OTLP_ENDPOINT` or a signal's `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`).
        /// `OTEL_SDK_DISABLED=true` turns it off whatever this says.
        fn with_otlp_enabled(on: bool) => with_enabled(on);
        /// The collector: `http://host:port` (plaintext), `https://host:port` (TLS with the
        /// system's roots), or `host:port` (TLS unless insecure); checked by `init()`.
        fn with_otlp_endpoint(endpoint: impl Into<String>) => with_endpoint(endpoint);
        /// `http/protobuf` (default, as the OpenTelemetry specification says; `http` too;
        /// port 4318), `http/json` (port 4318) or `grpc` (port 4317); checked by `init()`.
        fn with_otlp_protocol(protocol: impl Into<String>) => with_protocol_named(protocol, "with_otlp_protocol");
        /// Headers sent with every export (`authorization`, say); they win over
        /// `OTEL_EXPORTER_OTLP_HEADERS` for the same name. Checked by `init()`.
        fn with_otlp_headers[K: Into<String>, V: Into<String>](headers: impl IntoIterator<Item = (K, V)>) => with_headers(headers);
        /// Plaintext for an endpoint given as `host:port` (no scheme). It never turns off
        /// certificate verification, and conflicts with an `https://` endpoint.
        fn with_otlp_insecure_tls(insecure: bool) => with_insecure_tls(insecure);
        /// The share of root traces sampled, 0 to 1 (checked by `init()`); child spans follow
        /// their parent.
        fn with_otlp_trace_sample_rate(rate: f64) => with_trace_sample_rate(rate);
        /// `service.version` of the resource.
        fn with_otlp_service_version(version: impl Into<String>) => with_service_version(version);
        /// The bound on one export (default 10 s).
        fn with_otlp_timeout(timeout: Duration) => with_timeout(timeout);
        /// gzip or none (default none).
        fn with_otlp_compression(compression: Compression) => with_compression(compression);
        /// How often metrics are exported (default 60 s).
        fn with_otlp_metric_interval(interval: Duration) => with_metric_interval(interval);
        /// Whether a log line written inside a recording span is also added to the span as
        /// an event, and an ERROR line sets the span's status to ERROR (default on). Off,
        /// the line is still exported as a log record carrying the span's ids.
        fn with_otlp_span_events(on: bool) => with_span_events(on);
        /// A PEM file of CA certificates to trust besides the system's roots.
        fn with_otlp_ca_file(path: impl Into<std::path::PathBuf>) => with_ca_file(path);
        /// A client certificate and key (PEM files) for mutual TLS.
        fn with_otlp_client_certificate(cert: impl Into<std::path::PathBuf>, key: impl Into<std::path::PathBuf>) => with_client_certificate(cert, key);
    }
}

impl Builder {
    /// The OTLP pipeline and its log output, when export is on.
    pub(crate) fn start_otlp(
        &self,
        r: &Resolved,
        started: &mut Started,
        parts: &Unwind,
    ) -> Result<(), InitError> {
        #[cfg(feature = "metrics")]
        let buckets = r.metrics.buckets();
        #[cfg(not(feature = "metrics"))]
        let buckets = &[];
        let rt = started.runtime.as_ref();
        started.pipeline = self
            .otlp
            .start(&r.otlp, rt, r.logger.level.clone(), buckets, parts)?;
        let on = started.pipeline.is_some();
        let signals = [
            ("otlp_traces", "traces"),
            ("otlp_metrics", "metrics"),
            ("otlp_logs", "logs"),
        ];
        for (key, signal) in signals {
            started.show(key, self.otlp.shown(&r.otlp, on, signal, crate::start::env));
        }
        Ok(())
    }
}
