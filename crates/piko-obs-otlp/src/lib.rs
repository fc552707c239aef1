//! OpenTelemetry for piko-obs: OTLP export configured from code and the standard
//! variables.
//!
//! [`Pipeline::start`] builds the tracer, meter and logger providers with OTLP exporters
//! (gRPC through tonic, or HTTP/protobuf or HTTP/JSON through a blocking reqwest client
//! with rustls, or the console exporters of `opentelemetry-stdout` for a signal whose
//! `OTEL_<SIGNAL>_EXPORTER` lists `console`, or both),
//! spans going through a [`BoundedSpanProcessor`] and log records through a
//! [`BoundedLogProcessor`], each counting what does not fit and what fails to export.
//!
//! The configuration: [`OtlpConfig`] (every field optional),
//! resolved with [`OtlpConfig::resolve`] into [`Settings`] in the order code, then the
//! standard `OTEL_*` variables (a signal's own `OTEL_EXPORTER_OTLP_<SIGNAL>_*` before
//! the general ones), then defaults that fit together (HTTP/protobuf to
//! `localhost:4318` with `/v1/<signal>` paths, gRPC to `localhost:4317`), with every bad
//! value an error that names its setting.
//!
//! A process's OTLP part: [`OtlpSetup`] (the settings given in code, resolved against
//! the variables; its `start` starts the pipeline with the `otlp` log output, its
//! `shown` says where each signal goes for a start-up summary) and, in [`setup`], the
//! process-wide pipeline: `install_pipeline` (called by the composing program only),
//! [`pipeline`], the `metrics` recorder's slot and the `Detach` part that unhooks the
//! pipeline before it shuts down.
//!
//! Bridges: [`OtelLogOutput`] (the log hub's records as OpenTelemetry log records, with
//! the current span's ids) and [`OtelRecorder`] (the `metrics` macros as OpenTelemetry
//! instruments). [`extract_context`], [`inject_context`] and [`traced`] (for reqwest)
//! carry the trace context across HTTP headers through the installed propagators:
//! W3C trace context and baggage, AWS X-Ray, and piko-obs's own [`B3Propagator`],
//! [`JaegerPropagator`] and [`OtTracePropagator`] (`OTEL_PROPAGATORS`). [`run_in_span`] runs an operation in its own span, with a logger
//! whose lines carry the span's ids, recording errors and panics.
//!
//! ```
//! use piko_obs_otlp::{OtlpConfig, Protocol};
//! let mut config = OtlpConfig::new();
//! config.protocol = Some(Protocol::HttpProtobuf);
//! config.headers = vec![("authorization".into(), "Bearer token".into())];
//! let env = |name: &str| match name {
//!     "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318".to_string()),
//!     _ => None,
//! };
//! let settings = config.resolve(env, "orders").unwrap();
//! assert!(settings.enabled);
//! assert_eq!(settings.signal_url("traces"), "http://collector:4318/v1/traces");
//! assert_eq!(settings.resource["service.name"], "orders");
//! ```
//!
//! A signal goes to standard output instead (or as well, with `otlp,console`), with no
//! endpoint needed:
//!
//! ```
//! use piko_obs_otlp::OtlpConfig;
//! let env = |name: &str| (name == "OTEL_TRACES_EXPORTER").then(|| "console".to_string());
//! let settings = OtlpConfig::new().resolve(env, "orders").unwrap();
//! assert!(settings.enabled && settings.traces.console && !settings.traces.enabled);
//! assert_eq!(settings.shown("traces", str::to_string), "console (stdout)");
//! ```
//!
//! Feature flags, both on by default: `warp` (`warp_trace_context`) and `tower`
//! (`TraceLayer`, `Traced`); `axum` (implies `tower`) names server spans from axum's
//! `MatchedPath`.

mod config;
mod fanout;
mod global;
mod lifecycle;
mod logs;
mod metrics_bridge;

pub use metrics_bridge::{
    CONVENTION_ATTRIBUTES, CONVENTION_METRICS, InstrumentKind, OtelRecorder, OtelRecorderSlot,
    otel_attribute, otel_name,
};
mod pipeline;
mod propagation;
mod propagators;
pub mod setup;
mod span;
pub mod telemetry;
mod tracing_layer;

pub use tracing_layer::{TracingLayer, UNTRACED_TARGETS};

pub use span::{note_panic, opentelemetry_kv, run_in_span, run_in_span_from, use_tracer_provider};

#[cfg(feature = "warp")]
pub use propagation::warp_trace_context;
#[cfg(feature = "tower")]
pub use propagation::{TraceLayer, Traced};
pub use propagation::{extract_context, inject_context, traced, traced_with};

pub use propagators::{B3Encoding, B3Propagator, JaegerPropagator, OtTracePropagator};

pub use global::{TracingRoute, install_tracing_bridge, tracing_layer};
pub use lifecycle::ProviderFailures;
pub use logs::{OtelLogOutput, severity};
pub use setup::{OtlpSetup, pipeline};

pub use config::{
    AttributeLimits, BatchSettings, Compression, ConfigError, ENV_VARIABLES, ExemplarFilter,
    HistogramAggregation, JaegerRemote, MetricSettings, OtlpConfig, ParentRoot, Propagator,
    Protocol, SIGNALS, Sampling, Settings, SignalSettings, SpanLimits, Temporality, TlsFiles,
    resource_attribute, sdk_log_level,
};
pub use pipeline::{
    BoundedLogProcessor, BoundedSpanProcessor, LOG_ITEM_BYTES, LOG_QUEUE, LogStats, LogStatsHandle,
    Pipeline, SPAN_QUEUE, SpanStats, SpanStatsHandle, StartError, text_map_propagator,
};
