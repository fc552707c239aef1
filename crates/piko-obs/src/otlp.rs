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

use std::sync::RwLock;

pub use opentelemetry::Context;
pub use piko_obs_otlp::*;
use std::time::Duration;

use piko_obs_lifecycle::Unwind;
use piko_obs_logger::AddedOutput;

use crate::start::{Resolved, Started};
use crate::{Builder, InitError, logger};

/// An OpenTelemetry attribute, for `run_in_span`'s attributes.
pub fn opentelemetry_kv(
    key: impl Into<opentelemetry::Key>,
    value: impl Into<opentelemetry::Value>,
) -> opentelemetry::KeyValue {
    opentelemetry::KeyValue::new(key, value)
}

static INSTALLED: RwLock<Option<Pipeline>> = RwLock::new(None);

/// The OTLP side of the process's `metrics` recorder: each `init()` with OTLP on puts
/// its pipeline's recorder in, its shutdown empties it.
static METRICS_SLOT: std::sync::OnceLock<OtelRecorderSlot> = std::sync::OnceLock::new();

/// Whether the installed `metrics` recorder holds [`metrics_slot`] (the first `init()`
/// to install it had OTLP on).
#[cfg(feature = "metrics")]
static SLOT_IN_RECORDER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The OTLP side of the process's `metrics` recorder.
pub(crate) fn metrics_slot() -> &'static OtelRecorderSlot {
    METRICS_SLOT.get_or_init(OtelRecorderSlot::new)
}

/// Notes that the recorder just installed holds [`metrics_slot`].
#[cfg(feature = "metrics")]
pub(crate) fn slot_installed() {
    SLOT_IN_RECORDER.store(true, std::sync::atomic::Ordering::Release);
}

/// Whether the installed recorder holds [`metrics_slot`].
#[cfg(feature = "metrics")]
pub(crate) fn slot_in_recorder() -> bool {
    SLOT_IN_RECORDER.load(std::sync::atomic::Ordering::Acquire)
}

/// The pipeline `init()` started, if export is on.
pub fn pipeline() -> Option<Pipeline> {
    INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Starts the pipeline on `runtime` and installs it.
pub(crate) fn start(
    settings: &Settings,
    runtime: &tokio::runtime::Handle,
    buckets: &[(String, Vec<f64>)],
) -> Result<Pipeline, StartError> {
    let pipeline = {
        let _in = runtime.enter();
        Pipeline::start_with_buckets(settings, buckets)?
    };
    opentelemetry::global::set_tracer_provider(pipeline.tracer_provider.clone());
    use_tracer_provider(Some(&pipeline.tracer_provider));
    install_panic_hook();
    opentelemetry::global::set_meter_provider(pipeline.meter_provider.clone());
    install_propagators(settings);
    *INSTALLED.write().unwrap_or_else(|p| p.into_inner()) = Some(pipeline.clone());
    Ok(pipeline)
}

/// Installs the propagators `OTEL_PROPAGATORS` names (default: trace context, then
/// baggage) as OpenTelemetry's global propagator.
pub(crate) fn install_propagators(settings: &Settings) {
    opentelemetry::global::set_text_map_propagator(text_map_propagator(&settings.propagators));
}

/// Puts [`note_panic`] in front of the panic hook, once per process, so that a span a
/// panic ends carries its message. The hook that was there runs after it, unchanged.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            note_panic(info);
            previous(info)
        }));
    });
}

/// The trace and span ids (hex) of the current OpenTelemetry span, if one is being
/// recorded: the trace context of notifications and Sentry events.
#[cfg(any(feature = "sentry", feature = "notify"))]
pub(crate) fn current_span_ids() -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt as _;
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// Points the `metrics` recorder's OTLP slot at `pipeline` (`fresh`: the recorder was
/// installed just now, holding the slot).
#[cfg(feature = "metrics")]
pub(crate) fn export_metrics(pipeline: &Pipeline, fresh: bool) {
    use opentelemetry::metrics::MeterProvider as _;
    if fresh {
        slot_installed();
    }
    if slot_in_recorder() {
        metrics_slot().set(Some(OtelRecorder::new(
            pipeline.meter_provider.meter("piko-obs"),
        )));
    } else {
        logger::get_logger("piko-obs/otlp").warn(
            "metrics recorded with the `metrics` macros are not exported over OTLP: \
             an earlier init() in this process installed the recorder without OTLP",
            &[],
        );
    }
}

/// What stops before the providers do: new series go nowhere (a later `init()` puts its
/// own recorder in), lines logged from here on stay local (the `otlp` output is removed),
/// and spans are no longer made with this pipeline's tracer.
pub(crate) struct Detach {
    pub(crate) output: piko_obs_logger::AddedOutput,
}

impl piko_obs_lifecycle::Lifecycle for Detach {
    fn part(&self) -> &'static str {
        "otlp output"
    }

    fn shutdown_within(
        &self,
        _budget: std::time::Duration,
    ) -> Result<(), piko_obs_lifecycle::ShutdownError> {
        metrics_slot().set(None);
        let removed = self
            .output
            .shutdown_within(std::time::Duration::from_millis(100));
        use_tracer_provider(None);
        removed
    }
}

/// The OTLP settings given to the builder.
pub(crate) struct InCode {
    pub(crate) config: OtlpConfig,
    pub(crate) protocol: Option<String>,
    pub(crate) span_events: bool,
}

impl Default for InCode {
    fn default() -> Self {
        Self {
            config: OtlpConfig::default(),
            protocol: None,
            span_events: true,
        }
    }
}

impl Builder {
    /// All OTLP settings at once (Piko's `WithOTLP`); the `with_otlp_*` options after it
    /// change single fields.
    pub fn with_otlp(mut self, config: OtlpConfig) -> Self {
        self.otlp.config = config;
        self
    }
    /// Turns OTLP export on or off (default: on when an endpoint is set, in code or in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or a signal's `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`).
    /// `OTEL_SDK_DISABLED=true` turns it off whatever this says.
    pub fn with_otlp_enabled(mut self, on: bool) -> Self {
        self.otlp.config.enabled = Some(on);
        self
    }
    /// The collector: `http://host:port` (plaintext), `https://host:port` (TLS with the
    /// system's roots), or `host:port` (TLS unless insecure); checked by `init()`.
    pub fn with_otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp.config.endpoint = Some(endpoint.into());
        self
    }
    /// `http/protobuf` (default, as the OpenTelemetry specification says; `http` too;
    /// port 4318), `http/json` (port 4318) or `grpc` (port 4317); checked by `init()`.
    pub fn with_otlp_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.otlp.protocol = Some(protocol.into());
        self
    }
    /// Headers sent with every export (`authorization`, say); they win over
    /// `OTEL_EXPORTER_OTLP_HEADERS` for the same name. Checked by `init()`.
    pub fn with_otlp_headers<K: Into<String>, V: Into<String>>(
        mut self,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.otlp
            .config
            .headers
            .extend(headers.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }
    /// Plaintext for an endpoint given as `host:port` (no scheme). It never turns off
    /// certificate verification, and conflicts with an `https://` endpoint.
    pub fn with_otlp_insecure_tls(mut self, insecure: bool) -> Self {
        self.otlp.config.insecure = Some(insecure);
        self
    }
    /// The share of root traces sampled, 0 to 1 (checked by `init()`); child spans follow
    /// their parent.
    pub fn with_otlp_trace_sample_rate(mut self, rate: f64) -> Self {
        self.otlp.config.sample_rate = Some(rate);
        self
    }
    /// `service.version` of the resource.
    pub fn with_otlp_service_version(mut self, version: impl Into<String>) -> Self {
        self.otlp.config.service_version = Some(version.into());
        self
    }
    /// The bound on one export (default 10 s).
    pub fn with_otlp_timeout(mut self, timeout: Duration) -> Self {
        self.otlp.config.timeout = Some(timeout);
        self
    }
    /// gzip or none (default none).
    pub fn with_otlp_compression(mut self, compression: Compression) -> Self {
        self.otlp.config.compression = Some(compression);
        self
    }
    /// How often metrics are exported (default 60 s).
    pub fn with_otlp_metric_interval(mut self, interval: Duration) -> Self {
        self.otlp.config.metric_interval = Some(interval);
        self
    }
    /// Whether a log line written inside a recording span is also added to the span as
    /// an event, and an ERROR line sets the span's status to ERROR (default on). Off,
    /// the line is still exported as a log record carrying the span's ids.
    pub fn with_otlp_span_events(mut self, on: bool) -> Self {
        self.otlp.span_events = on;
        self
    }
    /// A PEM file of CA certificates to trust besides the system's roots.
    pub fn with_otlp_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.otlp.config.tls.ca_file = Some(path.into());
        self
    }
    /// A client certificate and key (PEM files) for mutual TLS.
    pub fn with_otlp_client_certificate(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.otlp.config.tls.client_cert = Some(cert.into());
        self.otlp.config.tls.client_key = Some(key.into());
        self
    }
}

impl Builder {
    pub(crate) fn resolve_otlp(
        &self,
        environment: &Option<String>,
        release: &Option<String>,
        service_name: &str,
    ) -> Result<Settings, InitError> {
        let mut config = self.otlp.config.clone();
        if config.environment.is_none() {
            config.environment.clone_from(environment);
        }
        if config.service_version.is_none() {
            config.service_version.clone_from(release);
        }
        if let Some(text) = &self.otlp.protocol {
            config.protocol = Some(Protocol::parse(text).ok_or_else(|| {
                InitError::Otlp(format!(
                    "with_otlp_protocol: unknown protocol {:?}; use grpc, http/protobuf or http/json",
                    text.trim()
                ))
            })?);
        }
        config
            .resolve(crate::start::env, service_name)
            .map_err(|e| InitError::Otlp(e.to_string()))
    }
    /// The OTLP pipeline and its log output, when export is on.
    pub(crate) fn start_otlp(
        &self,
        r: &Resolved,
        started: &mut Started,
        parts: &Unwind,
    ) -> Result<(), InitError> {
        let Some(rt) = started.runtime.clone().filter(|_| r.otlp.enabled) else {
            if std::env::var_os("OTEL_PROPAGATORS").is_some() {
                // Export off (no endpoint, or `OTEL_SDK_DISABLED`): context still
                // propagates as the variable says; without it, the global propagator is
                // left as it is.
                install_propagators(&r.otlp);
            }
            return Ok(());
        };
        #[cfg(feature = "metrics")]
        let buckets = r.metrics.buckets();
        #[cfg(not(feature = "metrics"))]
        let buckets = &[];
        let p = start(&r.otlp, &rt, buckets).map_err(|e| InitError::Otlp(e.to_string()))?;
        parts.push(p.clone());
        let id = logger::add_output(
            "otlp",
            r.level.clone(),
            OtelLogOutput::new(&p.logger_provider).with_span_events(self.otlp.span_events),
        )?;
        parts.push(Detach {
            output: AddedOutput::new(logger::hub(), id, "otlp output"),
        });
        started.pipeline = Some(p);
        Ok(())
    }
}
