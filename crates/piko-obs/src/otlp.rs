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
static SLOT_IN_RECORDER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The OTLP side of the process's `metrics` recorder.
pub(crate) fn metrics_slot() -> &'static OtelRecorderSlot {
    METRICS_SLOT.get_or_init(OtelRecorderSlot::new)
}

/// Notes that the recorder just installed holds [`metrics_slot`].
pub(crate) fn slot_installed() {
    SLOT_IN_RECORDER.store(true, std::sync::atomic::Ordering::Release);
}

/// Whether the installed recorder holds [`metrics_slot`].
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
pub(crate) fn current_span_ids() -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt as _;
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
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
