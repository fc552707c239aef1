//! OTLP settings: a config struct with optional fields, the standard environment
//! variables, and the defaults, resolved in that order (code, then environment, then
//! default) into [`Settings`] that are known to work, or an error naming the setting.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use piko_obs_logger::Level;

/// The wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OTLP over gRPC (default port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (default port 4318, paths `/v1/<signal>`):
    /// the default, as the OpenTelemetry specification says.
    #[default]
    HttpProtobuf,
    /// OTLP over HTTP with JSON bodies (the protobuf messages in the JSON mapping OTLP
    /// defines; same port and paths as HTTP/protobuf).
    HttpJson,
}

impl Protocol {
    /// Parses `grpc`, `http/protobuf`, `http` (its alias) or `http/json`, any case.
    pub fn parse(text: &str) -> Option<Protocol> {
        match text.trim().to_ascii_lowercase().as_str() {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" | "http" => Some(Protocol::HttpProtobuf),
            "http/json" => Some(Protocol::HttpJson),
            _ => None,
        }
    }

    /// `grpc`, `http/protobuf` or `http/json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
        }
    }

    /// The default endpoint: `http://localhost:4317` for gRPC, `http://localhost:4318`
    /// over HTTP.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf | Protocol::HttpJson => "http://localhost:4318",
        }
    }

    /// Whether it is one of the HTTP protocols (paths `/v1/<signal>`).
    pub fn is_http(self) -> bool {
        self != Protocol::Grpc
    }
}

/// Payload compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// None (default).
    #[default]
    None,
    /// gzip.
    Gzip,
}

/// TLS files for the collector connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// A PEM file of CA certificates to trust besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate, for mutual TLS (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// The PEM key of the client certificate.
    pub client_key: Option<PathBuf>,
}

/// OTLP settings as given in code; every field is optional, and what is left out comes
/// from the environment, then from the defaults (see the table in `docs/reference/otlp.md`).
/// `Debug` shows the headers' names only: their values are often credentials.
#[derive(Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// Export at all (default: on when an endpoint is given in code or in
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or a signal's `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`;
    /// off otherwise). `OTEL_SDK_DISABLED=true` turns it off whatever this says.
    pub enabled: Option<bool>,
    /// The collector (`OTEL_EXPORTER_OTLP_ENDPOINT`; default by protocol).
    pub endpoint: Option<String>,
    /// The protocol (`OTEL_EXPORTER_OTLP_PROTOCOL`; default http/protobuf).
    pub protocol: Option<Protocol>,
    /// Headers for every export (`OTEL_EXPORTER_OTLP_HEADERS`; these win over the
    /// variable's for the same name).
    pub headers: Vec<(String, String)>,
    /// Plaintext for an endpoint given without a scheme (`host:4317`)
    /// (`OTEL_EXPORTER_OTLP_INSECURE`; default false: TLS). An `http://` endpoint is
    /// always plaintext and an `https://` one always TLS; insecure never turns off
    /// certificate verification.
    pub insecure: Option<bool>,
    /// TLS files (`OTEL_EXPORTER_OTLP_CERTIFICATE`, `..._CLIENT_CERTIFICATE`,
    /// `..._CLIENT_KEY`).
    pub tls: TlsFiles,
    /// The bound on one export (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds; default 10 s).
    pub timeout: Option<Duration>,
    /// Compression (`OTEL_EXPORTER_OTLP_COMPRESSION`: `gzip` or `none`; default none).
    pub compression: Option<Compression>,
    /// The share of root traces sampled, 0 to 1 (default: `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG`, else every trace, following the parent's decision).
    pub sample_rate: Option<f64>,
    /// `service.name` (`OTEL_SERVICE_NAME`, then `OTEL_RESOURCE_ATTRIBUTES`, then the
    /// facade's service name).
    pub service_name: Option<String>,
    /// `service.version`.
    pub service_version: Option<String>,
    /// `deployment.environment.name`.
    pub environment: Option<String>,
    /// How often metrics are exported (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds;
    /// default 60 s).
    pub metric_interval: Option<Duration>,
}

/// How root spans are sampled.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    /// Every span.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// This share of trace ids.
    Ratio(f64),
    /// Follow the parent; roots by the inner rule.
    ParentBased(ParentRoot),
    /// The strategy a Jaeger sampling endpoint serves (`OTEL_TRACES_SAMPLER=jaeger_remote`).
    JaegerRemote(JaegerRemote),
}

/// The rule for root spans under [`Sampling::ParentBased`].
#[derive(Debug, Clone, PartialEq)]
pub enum ParentRoot {
    /// Every root.
    AlwaysOn,
    /// No root.
    AlwaysOff,
    /// This share of roots.
    Ratio(f64),
    /// The strategy a Jaeger sampling endpoint serves
    /// (`OTEL_TRACES_SAMPLER=parentbased_jaeger_remote`).
    JaegerRemote(JaegerRemote),
}

/// Where the Jaeger remote sampler fetches its strategy, and how often
/// (`OTEL_TRACES_SAMPLER_ARG=endpoint=...,pollingIntervalMs=...,initialSamplingRate=...`).
/// It asks `{endpoint}?service={service.name}` for a Jaeger sampling-strategy JSON
/// document (probabilistic, rate-limiting or per-operation), first when the pipeline
/// starts, then every polling interval; until an answer arrives (and while none
/// does), roots are sampled at the initial rate.
#[derive(Debug, Clone, PartialEq)]
pub struct JaegerRemote {
    /// The sampling endpoint, `http` or `https` (default `http://localhost:5778/sampling`,
    /// the Jaeger agent's).
    pub endpoint: String,
    /// How often the strategy is fetched again (default 60 s).
    pub polling_interval: Duration,
    /// The share of roots sampled before the first strategy arrives (default 0.001).
    pub initial_sampling_rate: f64,
}

/// Settings resolved from code, environment and defaults. `Debug` shows the headers'
/// names only: their values are often credentials.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// Whether to export: over OTLP (an endpoint given, or `with_otlp_enabled(true)`),
    /// or to the console for a signal whose `OTEL_<SIGNAL>_EXPORTER` lists `console`.
    pub enabled: bool,
    /// The settings from code and the general variables only
    /// (`OTEL_EXPORTER_OTLP_*`), with `url` the collector's base URL (`http://` or
    /// `https://`, no `/v1/<signal>` path): what a signal without variables of its own
    /// gets.
    pub general: SignalSettings,
    /// Sampling.
    pub sampling: Sampling,
    /// Resource attributes (service name, version, environment, detected ones, and
    /// `OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: BTreeMap<String, String>,
    /// How often metrics are exported.
    pub metric_interval: Duration,
    /// Traces: where and how they are exported.
    pub traces: SignalSettings,
    /// Metrics: where and how they are exported.
    pub metrics: SignalSettings,
    /// Logs: where and how they are exported.
    pub logs: SignalSettings,
    /// The span processor's queue and batches (`OTEL_BSP_*`).
    pub span_batch: BatchSettings,
    /// The log-record processor's queue and batches (`OTEL_BLRP_*`).
    pub log_batch: BatchSettings,
    /// The bound on one metric export (`OTEL_METRIC_EXPORT_TIMEOUT`, ms; default 30 s,
    /// and never more than the export timeout).
    pub metric_export_timeout: Duration,
    /// The propagators installed, in order (`OTEL_PROPAGATORS`; default trace context
    /// then baggage).
    pub propagators: Vec<Propagator>,
    /// Temporality, histogram aggregation and exemplar filter.
    pub metric: MetricSettings,
    /// The limits on spans, their events and links.
    pub span_limits: SpanLimits,
    /// The limits on a log record's attributes (`OTEL_LOGRECORD_ATTRIBUTE_*_LIMIT`, then
    /// `OTEL_ATTRIBUTE_*_LIMIT`).
    pub log_record_limits: AttributeLimits,
}

/// One signal's export settings: the general ones, with the signal's own variables
/// (`OTEL_EXPORTER_OTLP_<SIGNAL>_*`) in place of the general variables where set. Code
/// wins over both. `Debug` shows the headers' names only.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct SignalSettings {
    /// Whether this signal is exported over OTLP (export on, and
    /// `OTEL_<SIGNAL>_EXPORTER` unset or listing `otlp`).
    pub enabled: bool,
    /// Whether this signal is written to standard output by the console exporter
    /// (`OTEL_<SIGNAL>_EXPORTER` lists `console`, or its deprecated alias `logging`):
    /// needs no endpoint; off with `OTEL_SDK_DISABLED=true` or `with_otlp_enabled(false)`.
    pub console: bool,
    /// The protocol.
    pub protocol: Protocol,
    /// The URL exports go to: for HTTP, the general endpoint plus `/v1/<signal>`, or the
    /// signal's endpoint as given; for gRPC, the endpoint.
    pub url: String,
    /// Headers, by name (lower case).
    pub headers: BTreeMap<String, String>,
    /// TLS files.
    pub tls: TlsFiles,
    /// What the TLS files held.
    pub(crate) pem: TlsPem,
    /// The bound on one export.
    pub timeout: Duration,
    /// Compression.
    pub compression: Compression,
}

impl std::fmt::Debug for SignalSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalSettings")
            .field("enabled", &self.enabled)
            .field("console", &self.console)
            .field("protocol", &self.protocol)
            .field("url", &self.url)
            .field(
                "header_names",
                &HeaderNames(self.headers.keys().map(String::as_str)),
            )
            .field("tls", &self.tls)
            .field("pem", &self.pem)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .finish()
    }
}

/// A batch processor's settings (the four `OTEL_BSP_*` or `OTEL_BLRP_*` variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchSettings {
    /// The longest an item waits in a partial batch (`..._SCHEDULE_DELAY`, ms; default
    /// 5 s for spans and 1 s for log records, as the specification says).
    pub schedule_delay: Duration,
    /// The bound on one export (`..._EXPORT_TIMEOUT`, ms; default 30 s; the export
    /// timeout bounds it too).
    pub export_timeout: Duration,
    /// The queue's capacity (`..._MAX_QUEUE_SIZE`; default 2048).
    pub max_queue_size: usize,
    /// The most items in one export (`..._MAX_EXPORT_BATCH_SIZE`; default 512, at most
    /// the queue's capacity).
    pub max_export_batch_size: usize,
}

impl Default for BatchSettings {
    /// The log-record processor's defaults (`OTEL_BLRP_*`): a delay of 1 s, an export
    /// timeout of 30 s, a queue of 2048 and batches of 512.
    fn default() -> BatchSettings {
        BatchSettings {
            schedule_delay: Duration::from_secs(1),
            export_timeout: Duration::from_secs(30),
            max_queue_size: 2048,
            max_export_batch_size: 512,
        }
    }
}

impl BatchSettings {
    /// The span processor's defaults (`OTEL_BSP_*`): as [`BatchSettings::default`], with
    /// a delay of 5 s, as the specification says.
    pub fn spans() -> BatchSettings {
        BatchSettings {
            schedule_delay: Duration::from_secs(5),
            ..BatchSettings::default()
        }
    }
}

/// The temporality metrics are exported with
/// (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Temporality {
    /// Every instrument cumulative (default): each export carries the totals since the
    /// start, as `/metrics` does.
    #[default]
    Cumulative,
    /// Counters, histograms and asynchronous counters as deltas (what changed since the
    /// last export); up-down counters stay cumulative, as the specification says.
    Delta,
    /// Synchronous counters and histograms as deltas, everything else cumulative (the
    /// least memory in the SDK).
    LowMemory,
}

/// The aggregation of histograms whose buckets were not declared
/// (`OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistogramAggregation {
    /// Explicit buckets (default): the SDK's default bounds, or the instrument's advice.
    #[default]
    ExplicitBucket,
    /// Base-2 exponential buckets (at most 160 buckets, scale at most 20, as the
    /// specification's defaults say), which fit any unit.
    Base2Exponential,
}

/// Which measurements may become exemplars (`OTEL_METRICS_EXEMPLAR_FILTER`). Read and
/// checked, with no effect: the SDK in use (`opentelemetry_sdk` 0.33) collects no
/// exemplars, so none is exported whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExemplarFilter {
    /// Every measurement.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// Measurements made in a sampled span (the specification's default).
    #[default]
    TraceBased,
}

/// Limits on the attributes of one span, event, link or log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttributeLimits {
    /// The most attributes kept (the first ones); those past it are dropped, and a
    /// span, event or link says how many over OTLP (a log record cannot: the SDK's
    /// record has no field for it). Default 128.
    pub count: usize,
    /// The longest string value kept, in bytes: a longer one (and each longer string
    /// of an array) is cut on a UTF-8 character boundary. Default: no limit.
    pub value_length: Option<usize>,
}

impl Default for AttributeLimits {
    fn default() -> AttributeLimits {
        AttributeLimits {
            count: 128,
            value_length: None,
        }
    }
}

/// The span limits (`OTEL_SPAN_*_LIMIT`, `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`,
/// `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`, with `OTEL_ATTRIBUTE_*_LIMIT` where a span's own
/// variable is not set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpanLimits {
    /// A span's attributes; the value length applies to its events' and links'
    /// attributes too.
    pub attributes: AttributeLimits,
    /// The most events of one span (default 128).
    pub events: usize,
    /// The most links of one span (default 128).
    pub links: usize,
    /// The most attributes of one event (default 128).
    pub event_attributes: usize,
    /// The most attributes of one link (default 128).
    pub link_attributes: usize,
}

impl Default for SpanLimits {
    fn default() -> SpanLimits {
        SpanLimits {
            attributes: AttributeLimits::default(),
            events: 128,
            links: 128,
            event_attributes: 128,
            link_attributes: 128,
        }
    }
}

/// The metric settings besides the exporter's: temporality, the default histogram
/// aggregation and the exemplar filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MetricSettings {
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (default cumulative).
    pub temporality: Temporality,
    /// `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION` (default explicit
    /// buckets). Declared buckets always apply to their histogram.
    pub histogram_aggregation: HistogramAggregation,
    /// `OTEL_METRICS_EXEMPLAR_FILTER` (default trace-based; no effect, see
    /// [`ExemplarFilter`]).
    pub exemplar_filter: ExemplarFilter,
}

/// A propagator `OTEL_PROPAGATORS` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Propagator {
    /// W3C trace context (`traceparent`, `tracestate`).
    TraceContext,
    /// W3C baggage.
    Baggage,
    /// AWS X-Ray (`X-Amzn-Trace-Id`), through `opentelemetry-aws`.
    XRay,
    /// B3 written as the single `b3` header, read in both forms
    /// ([`crate::B3Propagator`]).
    B3,
    /// B3 written as the `X-B3-*` headers, read in both forms
    /// ([`crate::B3Propagator`]).
    B3Multi,
    /// Jaeger's `uber-trace-id` and `uberctx-*` ([`crate::JaegerPropagator`]).
    Jaeger,
    /// OT Trace's `ot-tracer-*` and `ot-baggage-*` ([`crate::OtTracePropagator`]).
    OtTrace,
}

/// Header names only, for `Debug`: the values never appear.
struct HeaderNames<'a, I: Iterator<Item = &'a str> + Clone>(I);

impl<'a, I: Iterator<Item = &'a str> + Clone> std::fmt::Debug for HeaderNames<'a, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.clone()).finish()
    }
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("enabled", &self.enabled)
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field(
                "header_names",
                &HeaderNames(self.headers.iter().map(|(k, _)| k.as_str())),
            )
            .field("insecure", &self.insecure)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("sample_rate", &self.sample_rate)
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("environment", &self.environment)
            .field("metric_interval", &self.metric_interval)
            .finish()
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("enabled", &self.enabled)
            .field("general", &self.general)
            .field("sampling", &self.sampling)
            .field("resource", &self.resource)
            .field("metric_interval", &self.metric_interval)
            .field("traces", &self.traces)
            .field("metrics", &self.metrics)
            .field("logs", &self.logs)
            .field("span_batch", &self.span_batch)
            .field("log_batch", &self.log_batch)
            .field("metric_export_timeout", &self.metric_export_timeout)
            .field("propagators", &self.propagators)
            .field("metric", &self.metric)
            .field("span_limits", &self.span_limits)
            .field("log_record_limits", &self.log_record_limits)
            .finish()
    }
}

impl Settings {
    /// The URL for one signal (`traces`, `metrics`, `logs`): its
    /// [`SignalSettings::url`]; for another name, the general endpoint (plus
    /// `/v1/<signal>` over HTTP).
    pub fn signal_url(&self, signal: &str) -> String {
        match self.signal(signal) {
            Some(s) => s.url.clone(),
            None => base_url(self.general.protocol, &self.general.url, signal),
        }
    }

    /// One signal's exporters as `init()`'s start-up summary shows them: the protocol
    /// and the URL (through `url`, which is to leave credentials out) when it goes over
    /// OTLP, `console (stdout)` when the console exporter writes it to standard output
    /// (for logs, saying that each line is written again), both joined by ` + `, or why
    /// it is off. Another name than `traces`, `metrics` or `logs` shows the general
    /// settings.
    pub fn shown(&self, signal: &str, url: impl FnOnce(&str) -> String) -> String {
        let s = self.signal(signal).unwrap_or(&self.general);
        let otlp = s
            .enabled
            .then(|| format!("{} {}", s.protocol.as_str(), url(&self.signal_url(signal))));
        let console = s.console.then_some(match signal {
            "logs" => "console (stdout: each log line again, as an OpenTelemetry record)",
            _ => "console (stdout)",
        });
        match (otlp, console) {
            (Some(otlp), Some(console)) => format!("{otlp} + {console}"),
            (Some(otlp), None) => otlp,
            (None, Some(console)) => console.to_string(),
            (None, None) if !self.general.enabled => {
                "off (no endpoint: OTEL_EXPORTER_OTLP_ENDPOINT unset)".to_string()
            }
            (None, None) => format!("off (OTEL_{}_EXPORTER)", signal.to_ascii_uppercase()),
        }
    }

    /// One signal's settings, by name (`traces`, `metrics`, `logs`).
    pub fn signal(&self, signal: &str) -> Option<&SignalSettings> {
        match signal {
            "traces" => Some(&self.traces),
            "metrics" => Some(&self.metrics),
            "logs" => Some(&self.logs),
            _ => None,
        }
    }
}

/// A setting that cannot work: names the setting (the [`OtlpConfig`] field, such as
/// `OtlpConfig.endpoint`, or the variable) and how to fix it. Header values never
/// appear in it. The one configuration error of piko-obs, re-exported from
/// [`piko_obs_lifecycle::settings`].
pub use piko_obs_lifecycle::settings::ConfigError;

fn err(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(setting, reason)
}

/// The standard variables read (each signal's own `OTEL_EXPORTER_OTLP_<SIGNAL>_*`
/// variables included).
pub const ENV_VARIABLES: [&str; 72] = [
    "OTEL_SDK_DISABLED",
    "OTEL_LOG_LEVEL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_INSECURE",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
    "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
    "OTEL_EXPORTER_OTLP_LOGS_INSECURE",
    "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BLRP_SCHEDULE_DELAY",
    "OTEL_BLRP_EXPORT_TIMEOUT",
    "OTEL_BLRP_MAX_QUEUE_SIZE",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_METRIC_EXPORT_TIMEOUT",
    "OTEL_PROPAGATORS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "PIKO_ENVIRONMENT",
    "ENVIRONMENT",
    "PIKO_SERVICE_VERSION",
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
    "OTEL_METRICS_EXEMPLAR_FILTER",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
];

/// Environment variables mapped to resource attributes when set (Piko's detection,
/// and `HOSTNAME`).
const DETECTED: [(&str, &str); 14] = [
    ("POD_NAME", "k8s.pod.name"),
    ("POD_NAMESPACE", "k8s.namespace.name"),
    ("POD_IP", "k8s.pod.ip"),
    ("NODE_NAME", "k8s.node.name"),
    ("AWS_LAMBDA_FUNCTION_NAME", "faas.name"),
    ("AWS_LAMBDA_FUNCTION_VERSION", "faas.version"),
    ("AWS_REGION", "cloud.region"),
    ("K_SERVICE", "faas.name"),
    ("K_REVISION", "faas.version"),
    ("GOOGLE_CLOUD_PROJECT", "cloud.account.id"),
    ("CONTAINER_APP_NAME", "azure.container_app.name"),
    ("CONTAINER_APP_REVISION", "azure.container_app.revision"),
    ("CONTAINER_APP_REPLICA_NAME", "azure.container_app.replica"),
    ("HOSTNAME", "host.name"),
];

/// The first sentinel variable present names `runtime.environment` (Piko's probes, and
/// `KUBERNETES_SERVICE_HOST`, which every Kubernetes pod has).
const RUNTIMES: [(&str, &str); 6] = [
    ("POD_NAME", "kubernetes"),
    ("KUBERNETES_SERVICE_HOST", "kubernetes"),
    ("AWS_LAMBDA_FUNCTION_NAME", "aws-lambda"),
    ("K_SERVICE", "cloud-run"),
    ("CONTAINER_APP_NAME", "azure-container-apps"),
    ("ECS_CONTAINER_METADATA_URI_V4", "aws-ecs"),
];

/// `key=value` lists and the value `OTEL_RESOURCE_ATTRIBUTES` gives a key, read as every
/// piko-obs crate reads them.
pub use piko_obs_lifecycle::settings::resource_attribute;
pub(crate) use piko_obs_lifecycle::settings::{key_value_pairs as pairs, percent_decode};

fn millis(setting: &str, text: &str) -> Result<Duration, ConfigError> {
    let ms: u64 = text.trim().parse().map_err(|_| {
        err(
            setting,
            "must be a whole number of milliseconds (for example 10000)",
        )
    })?;
    if ms == 0 {
        if setting.ends_with("TIMEOUT") {
            // The specification reads 0 as "no limit"; here every export is bounded.
            return Err(err(
                setting,
                "must be greater than zero: 0 would be no limit, and piko-obs bounds every \
                 export; give the bound in milliseconds (for example 10000)",
            ));
        }
        return Err(err(setting, "must be greater than zero"));
    }
    Ok(Duration::from_millis(ms))
}

fn boolean(setting: &str, text: &str) -> Result<bool, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(err(setting, "must be true or false")),
    }
}

/// Checks one header; an error names its position (`entry n`, from 1) and the rule,
/// never the name or the value: text put in the wrong place (`Authorization: Basic ...`
/// with a colon) would otherwise be quoted.
fn check_header(setting: &str, n: usize, name: &str, value: &str) -> Result<(), ConfigError> {
    http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        err(
            setting,
            format!(
                "the name of entry {n} is not a valid header name: a name is letters, digits \
                 and !#$%&'*+-.^_`|~ only, without spaces or colons (write name=value)"
            ),
        )
    })?;
    http::HeaderValue::from_str(value).map_err(|_| {
        err(
            setting,
            format!(
                "the value of entry {n} must be text without control characters or line breaks"
            ),
        )
    })?;
    Ok(())
}

fn ratio(setting: &str, r: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(err(
            setting,
            "must be a number from 0 to 1 (for example 0.1 for 10 %)",
        ))
    }
}

/// The most bytes read from a TLS file (a CA bundle is a few hundred KiB): a path to
/// something endless (`/dev/zero`) fails instead of filling the memory.
const MAX_TLS_FILE: u64 = 16 << 20;

/// The contents of the TLS files, read once when the settings resolve. `Debug` shows
/// only which are there: the key is a secret.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct TlsPem {
    /// The CA file's certificates.
    pub(crate) ca: Option<Vec<u8>>,
    /// The client certificate and its key.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

/// What a TLS file must hold.
#[derive(Debug, Clone, Copy)]
enum Pem {
    /// At least one certificate.
    Certificates,
    /// A private key.
    PrivateKey,
}

/// Checks that `pem`, read from `path`, holds what `holds` says. Without this check a CA
/// file holding no certificate would be taken as adding no root (the exporters skip what
/// they cannot parse), and every export would then fail on the collector's certificate.
/// A key's parse error is not shown, as it may quote the key.
fn check_pem(setting: &str, path: &Path, pem: &[u8], holds: Pem) -> Result<(), ConfigError> {
    match holds {
        Pem::Certificates => {
            let mut found = 0;
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                cert.map_err(|e| {
                    err(setting, format!("{} is not valid PEM: {e}", path.display()))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(err(
                    setting,
                    format!(
                        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                        path.display()
                    ),
                ));
            }
        }
        Pem::PrivateKey => match rustls_pemfile::private_key(&mut &pem[..]) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(err(
                    setting,
                    format!(
                        "{} holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
                        path.display()
                    ),
                ));
            }
            Err(_) => {
                return Err(err(
                    setting,
                    format!("{} is not a valid PEM private key", path.display()),
                ));
            }
        },
    }
    Ok(())
}

impl OtlpConfig {
    /// An empty config: everything from the environment and the defaults.
    pub fn new() -> OtlpConfig {
        OtlpConfig::default()
    }

    /// Resolves code, then `env` (the process environment in the facade), then the
    /// defaults; `service_name` is the last fallback for `service.name`.
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
        service_name: &str,
    ) -> Result<Settings, ConfigError> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        // A kill switch: nothing in code turns export back on.
        let disabled = match env("OTEL_SDK_DISABLED") {
            Some(v) => boolean("OTEL_SDK_DISABLED", &v)?,
            None => false,
        };
        let any_endpoint = self.endpoint.is_some()
            || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || SIGNALS
                .iter()
                .any(|(_, v)| env(&format!("OTEL_EXPORTER_OTLP_{v}_ENDPOINT")).is_some());
        let otlp = !disabled && self.enabled.unwrap_or(any_endpoint);
        // The console needs no endpoint; the kill switch and code's "off" stop it too.
        let console = !disabled && self.enabled != Some(false);
        let mut general = self.signal_settings(&env, None)?;
        general.enabled = otlp;
        let mut signals = Vec::with_capacity(3);
        for (name, var) in SIGNALS {
            let mut s = self.signal_settings(&env, Some((name, var)))?;
            let listed = exporters(&env, name, var)?;
            s.enabled = otlp && listed.otlp;
            s.console = console && listed.console;
            signals.push(s);
        }
        let enabled = otlp || signals.iter().any(|s| s.console);
        let [traces, metrics, logs]: [SignalSettings; 3] =
            signals.try_into().expect("three signals");

        let metric_interval = match self.metric_interval {
            Some(t) if t.is_zero() => {
                return Err(err(
                    "OtlpConfig.metric_interval",
                    "must be greater than zero (for example 60s)",
                ));
            }
            Some(t) => t,
            None => match env("OTEL_METRIC_EXPORT_INTERVAL") {
                Some(v) => millis("OTEL_METRIC_EXPORT_INTERVAL", &v)?,
                None => Duration::from_secs(60),
            },
        };
        let metric_export_timeout = match env("OTEL_METRIC_EXPORT_TIMEOUT") {
            Some(v) => millis("OTEL_METRIC_EXPORT_TIMEOUT", &v)?,
            None => Duration::from_secs(30),
        };
        let sampling = match self.sample_rate {
            Some(r) => {
                Sampling::ParentBased(ParentRoot::Ratio(ratio("OtlpConfig.sample_rate", r)?))
            }
            None => sampling_from_env(&env)?,
        };
        let span_batch = batch_from_env(&env, "OTEL_BSP")?;
        let log_batch = batch_from_env(&env, "OTEL_BLRP")?;
        let propagators = propagators_from_env(&env)?;
        // Read by the `tracing` bridge, which cannot fail: checked here.
        sdk_log_level(&env)?;
        let metric = metric_from_env(&env)?;
        let (span_limits, log_record_limits) = limits_from_env(&env)?;
        let resource = self.resource(&env, service_name)?;
        Ok(Settings {
            enabled,
            general,
            sampling,
            resource,
            metric_interval,
            traces,
            metrics,
            logs,
            span_batch,
            log_batch,
            metric_export_timeout,
            propagators,
            metric,
            span_limits,
            log_record_limits,
        })
    }

    /// The settings of one signal (`Some((name, VARIABLE_INFIX))`), or the general ones
    /// (`None`, with `url` the base endpoint): code, then the signal's variable, then
    /// the general variable, then the default.
    fn signal_settings(
        &self,
        env: &impl Fn(&str) -> Option<String>,
        signal: Option<(&str, &str)>,
    ) -> Result<SignalSettings, ConfigError> {
        // The variable that decides a setting: the signal's own, else the general one.
        let var = |suffix: &str| -> Option<(String, String)> {
            if let Some((_, infix)) = signal {
                let name = format!("OTEL_EXPORTER_OTLP_{infix}_{suffix}");
                if let Some(v) = env(&name) {
                    return Some((name, v));
                }
            }
            let name = format!("OTEL_EXPORTER_OTLP_{suffix}");
            env(&name).map(|v| (name, v))
        };
        let protocol = match self.protocol {
            Some(p) => p,
            None => match var("PROTOCOL") {
                Some((name, text)) => parse_protocol(&name, &text)?,
                None => Protocol::HttpProtobuf,
            },
        };
        let insecure = match self.insecure {
            Some(i) => i,
            None => match var("INSECURE") {
                Some((name, v)) => boolean(&name, &v)?,
                None => false,
            },
        };
        let url = match (&self.endpoint, var("ENDPOINT")) {
            (Some(e), _) => {
                let base = endpoint_url("OtlpConfig.endpoint", e.trim(), insecure)?;
                signal_url(protocol, &base, signal)
            }
            (None, Some((name, e))) => {
                let url = endpoint_url(&name, e.trim(), insecure)?;
                if name == "OTEL_EXPORTER_OTLP_ENDPOINT" {
                    signal_url(protocol, &url, signal)
                } else {
                    // A signal's own endpoint is used as given (an empty path is `/`).
                    own_signal_url(protocol, &url)
                }
            }
            (None, None) => signal_url(protocol, protocol.default_endpoint(), signal),
        };

        // The variable's headers (the signal's variable instead of the general one, as
        // the exporter reads them), then code's, which win per name.
        let mut headers = BTreeMap::new();
        if let Some((name, text)) = var("HEADERS") {
            for (n, k, v) in pairs(&name, &text)? {
                check_header(&name, n, &k, &v)?;
                headers.insert(k.to_ascii_lowercase(), v);
            }
        }
        for (i, (k, v)) in self.headers.iter().enumerate() {
            check_header("OtlpConfig.headers", i + 1, k, v)?;
            headers.insert(k.to_ascii_lowercase(), v.clone());
        }

        let timeout = match self.timeout {
            Some(t) if t.is_zero() => {
                return Err(err(
                    "OtlpConfig.timeout",
                    "must be greater than zero (for example 10s)",
                ));
            }
            Some(t) => t,
            None => match var("TIMEOUT") {
                Some((name, v)) => millis(&name, &v)?,
                None => Duration::from_secs(10),
            },
        };
        let env_compression = var("COMPRESSION");
        if let (Some(_), Some(Compression::None), Protocol::Grpc, Some((name, c))) =
            (signal, self.compression, protocol, &env_compression)
            && c.trim().eq_ignore_ascii_case("gzip")
        {
            // Over HTTP piko-obs sends the body as code says; a signal's gRPC exporter
            // reads the variable itself and has no setting that says "none".
            return Err(err(
                "OtlpConfig.compression",
                format!(
                    "none cannot apply over gRPC while {name} is gzip (the gRPC exporter reads \
                     that variable itself); unset the variable, drop the option, or use \
                     http/protobuf"
                ),
            ));
        }
        let compression = match self.compression {
            Some(c) => c,
            None => match env_compression {
                None => Compression::None,
                Some((name, c)) => match c.trim().to_ascii_lowercase().as_str() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    other => {
                        return Err(err(
                            &name,
                            format!("unknown compression {other:?}; use gzip or none"),
                        ));
                    }
                },
            },
        };
        // Each file is read once, here: one the exporters could not use fails naming its
        // option or variable, and the pipeline builds its TLS set-up from what was read.
        let path = |setting: &str,
                    code: &Option<PathBuf>,
                    suffix: &str,
                    holds: Pem|
         -> Result<(Option<PathBuf>, Option<Vec<u8>>), ConfigError> {
            let (setting, p) = match (code, var(suffix)) {
                (Some(p), _) => (setting.to_string(), p.clone()),
                (None, Some((name, v))) => (name, PathBuf::from(v)),
                (None, None) => return Ok((None, None)),
            };
            let setting = setting.as_str();
            let mut pem = Vec::new();
            std::fs::File::open(&p)
                .and_then(|f| f.take(MAX_TLS_FILE + 1).read_to_end(&mut pem))
                .map_err(|e| err(setting, format!("cannot read {}: {e}", p.display())))?;
            if pem.len() as u64 > MAX_TLS_FILE {
                return Err(err(
                    setting,
                    format!(
                        "{} is larger than {} MiB: not a PEM file",
                        p.display(),
                        MAX_TLS_FILE >> 20
                    ),
                ));
            }
            check_pem(setting, &p, &pem, holds)?;
            Ok((Some(p), Some(pem)))
        };
        let (ca_file, ca) = path(
            "OtlpConfig.tls.ca_file",
            &self.tls.ca_file,
            "CERTIFICATE",
            Pem::Certificates,
        )?;
        let (client_cert, cert) = path(
            "OtlpConfig.tls.client_cert",
            &self.tls.client_cert,
            "CLIENT_CERTIFICATE",
            Pem::Certificates,
        )?;
        let (client_key, key) = path(
            "OtlpConfig.tls.client_key",
            &self.tls.client_key,
            "CLIENT_KEY",
            Pem::PrivateKey,
        )?;
        let tls = TlsFiles {
            ca_file,
            client_cert,
            client_key,
        };
        let pem = TlsPem {
            ca,
            identity: cert.zip(key),
        };
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            let setting = match signal {
                Some((_, infix)) if self.tls.client_cert.is_none() => {
                    format!("OTEL_EXPORTER_OTLP_{infix}_CLIENT_CERTIFICATE")
                }
                _ => "OtlpConfig.tls.client_cert and client_key".to_string(),
            };
            return Err(err(
                &setting,
                "mutual TLS needs both the client certificate and its key",
            ));
        }
        Ok(SignalSettings {
            enabled: false,
            console: false,
            protocol,
            url,
            headers,
            tls,
            pem,
            timeout,
            compression,
        })
    }

    fn resource(
        &self,
        env: &impl Fn(&str) -> Option<String>,
        service_name: &str,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut r = BTreeMap::new();
        for (var, key) in DETECTED {
            if let Some(v) = env(var) {
                r.entry(key.to_string()).or_insert(v);
            }
        }
        if let Some((_, runtime)) = RUNTIMES.iter().find(|(var, _)| env(var).is_some()) {
            r.insert("runtime.environment".into(), runtime.to_string());
        }
        if let Some(text) = env("OTEL_RESOURCE_ATTRIBUTES") {
            for (_, k, v) in pairs("OTEL_RESOURCE_ATTRIBUTES", &text)? {
                r.insert(k, v);
            }
        }
        let name = self
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .or_else(|| r.get("service.name").cloned())
            .unwrap_or_else(|| service_name.to_string());
        r.insert("service.name".into(), name);
        if let Some(v) = self
            .service_version
            .clone()
            .or_else(|| env("PIKO_SERVICE_VERSION"))
        {
            r.insert("service.version".into(), v);
        }
        if let Some(e) = self
            .environment
            .clone()
            .or_else(|| env("PIKO_ENVIRONMENT"))
            .or_else(|| env("ENVIRONMENT"))
        {
            r.insert("deployment.environment.name".into(), e);
        }
        Ok(r)
    }
}

fn sampling_from_env(env: &impl Fn(&str) -> Option<String>) -> Result<Sampling, ConfigError> {
    let arg = || -> Result<f64, ConfigError> {
        match env("OTEL_TRACES_SAMPLER_ARG") {
            None => Ok(1.0),
            Some(a) => {
                let r: f64 = a
                    .trim()
                    .parse()
                    .map_err(|_| err("OTEL_TRACES_SAMPLER_ARG", "must be a number from 0 to 1"))?;
                ratio("OTEL_TRACES_SAMPLER_ARG", r)
            }
        }
    };
    let jaeger = || -> Result<JaegerRemote, ConfigError> {
        jaeger_remote(env("OTEL_TRACES_SAMPLER_ARG").as_deref().unwrap_or(""))
    };
    let Some(name) = env("OTEL_TRACES_SAMPLER") else {
        return Ok(Sampling::ParentBased(ParentRoot::AlwaysOn));
    };
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "always_on" => Sampling::AlwaysOn,
        "always_off" => Sampling::AlwaysOff,
        "traceidratio" => Sampling::Ratio(arg()?),
        "parentbased_always_on" => Sampling::ParentBased(ParentRoot::AlwaysOn),
        "parentbased_always_off" => Sampling::ParentBased(ParentRoot::AlwaysOff),
        "parentbased_traceidratio" => Sampling::ParentBased(ParentRoot::Ratio(arg()?)),
        "jaeger_remote" => Sampling::JaegerRemote(jaeger()?),
        "parentbased_jaeger_remote" => Sampling::ParentBased(ParentRoot::JaegerRemote(jaeger()?)),
        other => {
            return Err(err(
                "OTEL_TRACES_SAMPLER",
                format!(
                    "unknown sampler {other:?}; use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio, jaeger_remote or parentbased_jaeger_remote"
                ),
            ));
        }
    })
}

/// `OTEL_TRACES_SAMPLER_ARG` for the Jaeger remote sampler: `key=value` pairs separated
/// by commas, each key at most once, any of them left out for its default.
fn jaeger_remote(text: &str) -> Result<JaegerRemote, ConfigError> {
    const VAR: &str = "OTEL_TRACES_SAMPLER_ARG";
    let mut j = JaegerRemote {
        endpoint: "http://localhost:5778/sampling".into(),
        polling_interval: Duration::from_secs(60),
        initial_sampling_rate: 0.001,
    };
    let mut seen = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            err(
                VAR,
                format!("{item:?} is not key=value; give endpoint=URL,pollingIntervalMs=N,initialSamplingRate=R"),
            )
        })?;
        let (key, value) = (key.trim(), value.trim());
        if seen.contains(&key) {
            return Err(err(VAR, format!("{key} is given twice; give it once")));
        }
        seen.push(key);
        match key {
            "endpoint" => {
                // The value is not quoted: a URL may carry a password.
                let url = reqwest::Url::parse(value)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                    .ok_or_else(|| {
                        err(
                            VAR,
                            "endpoint is not an http or https URL (http://jaeger-agent:5778/sampling)",
                        )
                    })?;
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(err(
                        VAR,
                        "endpoint carries credentials; remove the user and password from the URL",
                    ));
                }
                j.endpoint = url.to_string();
            }
            "pollingIntervalMs" => {
                j.polling_interval = value
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        err(
                            VAR,
                            format!("pollingIntervalMs {value:?} must be a whole number of milliseconds above 0 (60000)"),
                        )
                    })?;
            }
            "initialSamplingRate" => {
                let r: f64 = value.parse().map_err(|_| {
                    err(
                        VAR,
                        format!("initialSamplingRate {value:?} must be a number from 0 to 1"),
                    )
                })?;
                j.initial_sampling_rate = ratio(VAR, r)?;
            }
            other => {
                return Err(err(
                    VAR,
                    format!(
                        "unknown key {other:?} for the Jaeger remote sampler; use endpoint, pollingIntervalMs or initialSamplingRate"
                    ),
                ));
            }
        }
    }
    Ok(j)
}

/// The three signals: their names and their variables' infix.
pub const SIGNALS: [(&str, &str); 3] = [
    ("traces", "TRACES"),
    ("metrics", "METRICS"),
    ("logs", "LOGS"),
];

/// `OTEL_LOG_LEVEL`, the level of the OpenTelemetry SDK's own diagnostics (its `tracing`
/// events under the `opentelemetry*` targets): `error`, `warn`, `info`, `debug`, `trace`,
/// any other level name piko-obs reads, or `none` (also `off`) for none at all, which
/// gives `None`.
///
/// Unset, it is WARN, not the specification's `info`: at INFO the SDK announces on every
/// start that it installed its global providers, two lines of no use in production.
///
/// ```
/// use piko_obs_logger::Level;
/// let env = |v: &'static str| move |k: &str| (k == "OTEL_LOG_LEVEL").then(|| v.to_string());
/// assert_eq!(piko_obs_otlp::sdk_log_level(&env("WARN")), Ok(Some(Level::WARN)));
/// assert_eq!(piko_obs_otlp::sdk_log_level(&|_: &str| None), Ok(Some(Level::WARN)));
/// assert_eq!(piko_obs_otlp::sdk_log_level(&env("none")), Ok(None));
/// let e = piko_obs_otlp::sdk_log_level(&env("loud")).unwrap_err();
/// assert_eq!(e.setting, "OTEL_LOG_LEVEL");
/// ```
pub fn sdk_log_level(env: &impl Fn(&str) -> Option<String>) -> Result<Option<Level>, ConfigError> {
    let Some(text) = env("OTEL_LOG_LEVEL").filter(|v| !v.trim().is_empty()) else {
        return Ok(Some(Level::WARN));
    };
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    t.parse::<Level>().map(Some).map_err(|_| {
        err(
            "OTEL_LOG_LEVEL",
            format!("unknown level {t:?}; use error, warn, info, debug, trace or none"),
        )
    })
}

fn parse_protocol(setting: &str, text: &str) -> Result<Protocol, ConfigError> {
    Protocol::parse(text).ok_or_else(|| {
        err(
            setting,
            format!(
                "unknown protocol {:?}; use grpc, http/protobuf or http/json",
                text.trim()
            ),
        )
    })
}

/// A general endpoint for one signal: plus `/v1/<signal>` over HTTP; itself over gRPC
/// and for the general settings.
fn signal_url(protocol: Protocol, base: &str, signal: Option<(&str, &str)>) -> String {
    match signal {
        Some((name, _)) => base_url(protocol, base, name),
        None => base.to_string(),
    }
}

/// `base` plus `/v1/<signal>` over HTTP; `base` over gRPC.
pub(crate) fn base_url(protocol: Protocol, base: &str, signal: &str) -> String {
    match protocol {
        Protocol::Grpc => base.to_string(),
        Protocol::HttpProtobuf | Protocol::HttpJson => {
            format!("{}/v1/{signal}", base.trim_end_matches('/'))
        }
    }
}

/// A signal's own endpoint, used as given; over HTTP an empty path is `/`.
fn own_signal_url(protocol: Protocol, url: &str) -> String {
    let has_path = url
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if protocol.is_http() && !has_path {
        format!("{url}/")
    } else {
        url.to_string()
    }
}

/// The exporters `OTEL_<SIGNAL>_EXPORTER` lists for one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listed {
    /// `otlp` (the default when the variable is unset).
    otlp: bool,
    /// `console`, or its deprecated alias `logging`.
    console: bool,
}

/// `OTEL_<SIGNAL>_EXPORTER`: a comma-separated list of `otlp` (the default), `console`
/// (or `logging`, its deprecated alias), or `none` alone (no export of the signal); for
/// metrics also `prometheus` (only `/metrics`, which is there anyway). Exporters
/// piko-obs does not have are refused, saying what to use.
fn exporters(
    env: &impl Fn(&str) -> Option<String>,
    signal: &str,
    infix: &str,
) -> Result<Listed, ConfigError> {
    let name = format!("OTEL_{infix}_EXPORTER");
    let Some(text) = env(&name) else {
        return Ok(Listed {
            otlp: true,
            console: false,
        });
    };
    let mut listed = Listed {
        otlp: false,
        console: false,
    };
    let mut none = false;
    let mut others = false;
    for entry in text.split(',').map(|e| e.trim().to_ascii_lowercase()) {
        match entry.as_str() {
            "otlp" => listed.otlp = true,
            "console" | "logging" => listed.console = true,
            "none" => none = true,
            "prometheus" if signal == "metrics" => others = true,
            "" => {}
            other => {
                let also = if signal == "metrics" {
                    ", prometheus"
                } else {
                    ""
                };
                return Err(err(
                    &name,
                    format!(
                        "unknown or unsupported exporter {other:?}; use otlp, console{also} or \
                         none, or a list such as otlp,console"
                    ),
                ));
            }
        }
    }
    if none && (listed.otlp || listed.console || others) {
        return Err(err(
            &name,
            "none cannot be listed with other exporters; give none alone, or the exporters \
             (otlp, console) without it",
        ));
    }
    Ok(listed)
}

/// The bounds on a queue's capacity and a batch: past them a typo would take memory
/// the service needs.
const MAX_QUEUE: usize = 1 << 20;

/// A batch processor's four variables (`OTEL_BSP` or `OTEL_BLRP` plus `_SCHEDULE_DELAY`,
/// `_EXPORT_TIMEOUT`, `_MAX_QUEUE_SIZE`, `_MAX_EXPORT_BATCH_SIZE`).
fn batch_from_env(
    env: &impl Fn(&str) -> Option<String>,
    prefix: &str,
) -> Result<BatchSettings, ConfigError> {
    let mut b = match prefix {
        "OTEL_BSP" => BatchSettings::spans(),
        _ => BatchSettings::default(),
    };
    let var = |suffix: &str| {
        let name = format!("{prefix}_{suffix}");
        env(&name).map(|v| (name, v))
    };
    if let Some((name, v)) = var("SCHEDULE_DELAY") {
        b.schedule_delay = millis(&name, &v)?;
    }
    if let Some((name, v)) = var("EXPORT_TIMEOUT") {
        b.export_timeout = millis(&name, &v)?;
    }
    let count = |name: &str, v: &str| -> Result<usize, ConfigError> {
        match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_QUEUE).contains(&n) => Ok(n),
            _ => Err(err(
                name,
                format!("must be a whole number from 1 to {MAX_QUEUE} (for example 2048)"),
            )),
        }
    };
    if let Some((name, v)) = var("MAX_QUEUE_SIZE") {
        b.max_queue_size = count(&name, &v)?;
    }
    match var("MAX_EXPORT_BATCH_SIZE") {
        Some((name, v)) => {
            b.max_export_batch_size = count(&name, &v)?;
            if b.max_export_batch_size > b.max_queue_size {
                return Err(err(
                    &name,
                    format!(
                        "must be at most {prefix}_MAX_QUEUE_SIZE ({})",
                        b.max_queue_size
                    ),
                ));
            }
        }
        None => b.max_export_batch_size = b.max_export_batch_size.min(b.max_queue_size),
    }
    Ok(b)
}

/// `OTEL_PROPAGATORS`: `tracecontext`, `baggage`, `b3`, `b3multi`, `jaeger`, `xray`,
/// `ottrace`, `none`, in order, each once.
fn propagators_from_env(
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<Propagator>, ConfigError> {
    const NAME: &str = "OTEL_PROPAGATORS";
    let Some(text) = env(NAME) else {
        return Ok(vec![Propagator::TraceContext, Propagator::Baggage]);
    };
    let mut out = Vec::new();
    let mut none = false;
    for entry in text.split(',').map(|e| e.trim().to_ascii_lowercase()) {
        let p = match entry.as_str() {
            "tracecontext" => Propagator::TraceContext,
            "baggage" => Propagator::Baggage,
            "xray" => Propagator::XRay,
            "b3" => Propagator::B3,
            "b3multi" => Propagator::B3Multi,
            "jaeger" => Propagator::Jaeger,
            "ottrace" => Propagator::OtTrace,
            "none" => {
                none = true;
                continue;
            }
            "" => continue,
            other => {
                return Err(err(
                    NAME,
                    format!(
                        "unknown propagator {other:?}; use tracecontext, baggage, b3, b3multi, \
                         jaeger, xray, ottrace or none"
                    ),
                ));
            }
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if none && !out.is_empty() {
        return Err(err(NAME, "none cannot be listed with other propagators"));
    }
    Ok(out)
}

/// One of `values` (any case), for the variable `name`; `None` when it is not set.
fn choice<T: Copy>(
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
    values: &[(&str, T)],
) -> Result<Option<T>, ConfigError> {
    let Some(text) = env(name) else {
        return Ok(None);
    };
    let text = text.trim().to_ascii_lowercase();
    match values.iter().find(|(v, _)| *v == text) {
        Some((_, t)) => Ok(Some(*t)),
        None => {
            let names: Vec<&str> = values.iter().map(|(v, _)| *v).collect();
            Err(err(
                name,
                format!("unknown value {text:?}; use {}", names.join(", ")),
            ))
        }
    }
}

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`,
/// `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION` and
/// `OTEL_METRICS_EXEMPLAR_FILTER`.
fn metric_from_env(env: &impl Fn(&str) -> Option<String>) -> Result<MetricSettings, ConfigError> {
    let temporality = choice(
        env,
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        &[
            ("cumulative", Temporality::Cumulative),
            ("delta", Temporality::Delta),
            ("lowmemory", Temporality::LowMemory),
        ],
    )?;
    let histogram_aggregation = choice(
        env,
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
        &[
            (
                "explicit_bucket_histogram",
                HistogramAggregation::ExplicitBucket,
            ),
            (
                "base2_exponential_bucket_histogram",
                HistogramAggregation::Base2Exponential,
            ),
        ],
    )?;
    let exemplar_filter = choice(
        env,
        "OTEL_METRICS_EXEMPLAR_FILTER",
        &[
            ("always_on", ExemplarFilter::AlwaysOn),
            ("always_off", ExemplarFilter::AlwaysOff),
            ("trace_based", ExemplarFilter::TraceBased),
        ],
    )?;
    Ok(MetricSettings {
        temporality: temporality.unwrap_or_default(),
        histogram_aggregation: histogram_aggregation.unwrap_or_default(),
        exemplar_filter: exemplar_filter.unwrap_or_default(),
    })
}

/// The largest limit taken: the specification's range for a number (2^31 - 1).
const MAX_LIMIT: usize = (1 << 31) - 1;

/// The first of `names` that is set, as a whole number from 0 to [`MAX_LIMIT`].
fn limit(
    env: &impl Fn(&str) -> Option<String>,
    names: &[&str],
) -> Result<Option<usize>, ConfigError> {
    for name in names {
        if let Some(text) = env(name) {
            return match text.trim().parse::<usize>() {
                Ok(n) if n <= MAX_LIMIT => Ok(Some(n)),
                _ => Err(err(
                    name,
                    format!("must be a whole number from 0 to {MAX_LIMIT} (for example 128)"),
                )),
            };
        }
    }
    Ok(None)
}

/// The span and log-record limits: a model's own variable, then the general
/// `OTEL_ATTRIBUTE_*_LIMIT`, then the defaults (128 attributes, events and links; no
/// length limit).
fn limits_from_env(
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(SpanLimits, AttributeLimits), ConfigError> {
    const COUNT: &str = "OTEL_ATTRIBUTE_COUNT_LIMIT";
    const LENGTH: &str = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";
    let count =
        |own: &str| -> Result<usize, ConfigError> { Ok(limit(env, &[own, COUNT])?.unwrap_or(128)) };
    let span = SpanLimits {
        attributes: AttributeLimits {
            count: count("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT")?,
            value_length: limit(env, &["OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", LENGTH])?,
        },
        events: limit(env, &["OTEL_SPAN_EVENT_COUNT_LIMIT"])?.unwrap_or(128),
        links: limit(env, &["OTEL_SPAN_LINK_COUNT_LIMIT"])?.unwrap_or(128),
        event_attributes: count("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT")?,
        link_attributes: count("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT")?,
    };
    let log = AttributeLimits {
        count: count("OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT")?,
        value_length: limit(
            env,
            &["OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", LENGTH],
        )?,
    };
    Ok((span, log))
}

/// The endpoint as a URL: a scheme decides TLS (`http` plaintext, `https` TLS); without
/// one, TLS unless `insecure`.
fn endpoint_url(setting: &str, raw: &str, insecure: bool) -> Result<String, ConfigError> {
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else if insecure {
        format!("http://{raw}")
    } else {
        format!("https://{raw}")
    };
    let uri: http::Uri = with_scheme.parse().map_err(|_| {
        err(
            setting,
            "is not a URL; give http://host:port or https://host:port",
        )
    })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(err(setting, "must use http:// or https://"));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(err(
            setting,
            "has no host; give http://host:port or https://host:port",
        ));
    }
    if insecure && uri.scheme_str() == Some("https") && raw.contains("://") {
        return Err(err(
            setting,
            "is https:// but insecure (plaintext) is set; drop one of the two",
        ));
    }
    Ok(with_scheme.trim_end_matches('/').to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The variables `vars`, read as `env` reads them.
    pub(crate) fn env(
        vars: &[(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: Vec<(&str, &str)> = vars.to_vec();
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_fit_together() {
        let s = OtlpConfig::new().resolve(env(&[]), "svc").unwrap();
        assert!(!s.enabled, "no endpoint anywhere: off");
        assert_eq!(
            s.general.protocol,
            Protocol::HttpProtobuf,
            "the specification's default"
        );
        assert_eq!(s.general.url, "http://localhost:4318");
        assert_eq!(s.signal_url("traces"), "http://localhost:4318/v1/traces");
        assert_eq!(s.signal_url("logs"), "http://localhost:4318/v1/logs");
        assert_eq!(s.general.timeout, Duration::from_secs(10));
        assert_eq!(s.metric_interval, Duration::from_secs(60));
        assert_eq!(s.metric_export_timeout, Duration::from_secs(30));
        assert_eq!(s.sampling, Sampling::ParentBased(ParentRoot::AlwaysOn));
        assert_eq!(s.resource["service.name"], "svc");
        assert_eq!(s.span_batch, BatchSettings::spans());
        assert_eq!(s.span_batch.schedule_delay, Duration::from_secs(5));
        assert_eq!(s.log_batch, BatchSettings::default());
        assert_eq!(
            s.propagators,
            vec![Propagator::TraceContext, Propagator::Baggage]
        );
        let mut grpc = OtlpConfig::new();
        grpc.protocol = Some(Protocol::Grpc);
        let s = grpc.resolve(env(&[]), "svc").unwrap();
        assert_eq!(
            s.general.url, "http://localhost:4317",
            "gRPC goes to the gRPC port"
        );
        assert_eq!(s.signal_url("metrics"), "http://localhost:4317");
    }

    #[test]
    fn code_wins_over_environment_which_wins_over_defaults() {
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20abc,x-team=core",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_SERVICE_NAME", "from-env"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,team=core",
            ),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
        ]);
        let s = OtlpConfig::new().resolve(&vars, "svc").unwrap();
        assert!(s.enabled, "an endpoint in the environment turns export on");
        assert_eq!(s.general.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.general.url, "http://collector:4318");
        assert_eq!(s.signal_url("metrics"), "http://collector:4318/v1/metrics");
        assert_eq!(s.general.headers["authorization"], "Bearer abc");
        assert_eq!(s.general.timeout, Duration::from_millis(2500));
        assert_eq!(s.resource["service.name"], "from-env");
        assert_eq!(s.resource["team"], "core");
        assert_eq!(s.sampling, Sampling::Ratio(0.25));
        assert_eq!(s.metric_interval, Duration::from_secs(5));

        let mut code = OtlpConfig::new();
        code.endpoint = Some("http://127.0.0.1:4317".into());
        code.protocol = Some(Protocol::Grpc);
        code.headers = vec![("Authorization".into(), "Bearer code".into())];
        code.timeout = Some(Duration::from_secs(3));
        code.service_name = Some("from-code".into());
        code.sample_rate = Some(0.5);
        code.metric_interval = Some(Duration::from_secs(1));
        code.enabled = Some(false);
        let s = code.resolve(&vars, "svc").unwrap();
        assert!(!s.enabled);
        assert_eq!(s.general.protocol, Protocol::Grpc);
        assert_eq!(s.general.url, "http://127.0.0.1:4317");
        assert_eq!(s.general.headers["authorization"], "Bearer code");
        assert_eq!(
            s.general.headers["x-team"], "core",
            "the variable's other headers stay"
        );
        assert_eq!(s.general.timeout, Duration::from_secs(3));
        assert_eq!(s.resource["service.name"], "from-code");
        assert_eq!(s.sampling, Sampling::ParentBased(ParentRoot::Ratio(0.5)));
        assert_eq!(s.metric_interval, Duration::from_secs(1));
        // The Jaeger remote sampler: the arguments given, the defaults for the others.
        let s = OtlpConfig::new()
            .resolve(
                env(&[
                    ("OTEL_TRACES_SAMPLER", "Jaeger_Remote"),
                    (
                        "OTEL_TRACES_SAMPLER_ARG",
                        "endpoint=http://agent:5778/sampling , pollingIntervalMs=5000",
                    ),
                ]),
                "svc",
            )
            .unwrap();
        let jaeger = JaegerRemote {
            endpoint: "http://agent:5778/sampling".into(),
            polling_interval: Duration::from_secs(5),
            initial_sampling_rate: 0.001,
        };
        assert_eq!(s.sampling, Sampling::JaegerRemote(jaeger));
        let s = OtlpConfig::new()
            .resolve(
                env(&[
                    ("OTEL_TRACES_SAMPLER", "parentbased_jaeger_remote"),
                    ("OTEL_TRACES_SAMPLER_ARG", "initialSamplingRate=0.5"),
                ]),
                "svc",
            )
            .unwrap();
        let jaeger = JaegerRemote {
            endpoint: "http://localhost:5778/sampling".into(),
            polling_interval: Duration::from_secs(60),
            initial_sampling_rate: 0.5,
        };
        assert_eq!(
            s.sampling,
            Sampling::ParentBased(ParentRoot::JaegerRemote(jaeger))
        );
        // OTEL_RESOURCE_ATTRIBUTES' service.name beats the facade's name.
        let s = OtlpConfig::new()
            .resolve(
                env(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=attrs")]),
                "svc",
            )
            .unwrap();
        assert_eq!(s.resource["service.name"], "attrs");
        let s = OtlpConfig::new()
            .resolve(
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                    ("OTEL_SDK_DISABLED", "true"),
                ]),
                "svc",
            )
            .unwrap();
        assert!(!s.enabled);
    }

    /// A signal's own variables come before the general ones, code before both; a
    /// signal's endpoint is used as given; its headers replace the general variable's,
    /// and code's win per name.
    #[test]
    fn signal_variables_come_between_code_and_the_general_ones() {
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom/path",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4318"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4317"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-general=1,authorization=general",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "authorization=logs"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "4000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "none"),
        ]);
        let s = OtlpConfig::new().resolve(&vars, "svc").unwrap();
        assert!(s.enabled && s.traces.enabled && s.metrics.enabled && s.logs.enabled);
        assert_eq!(s.traces.url, "http://traces:9999/custom/path");
        assert_eq!(
            s.logs.url, "http://logs:4318/",
            "as given, the empty path is /"
        );
        assert_eq!(s.metrics.protocol, Protocol::Grpc);
        assert_eq!(s.metrics.url, "http://metrics:4317");
        assert_eq!(s.traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.traces.headers["authorization"], "general");
        assert_eq!(s.logs.headers["authorization"], "logs");
        assert!(
            !s.logs.headers.contains_key("x-general"),
            "the signal's variable replaces the general one"
        );
        assert_eq!(s.traces.timeout, Duration::from_millis(1500));
        assert_eq!(s.metrics.timeout, Duration::from_millis(4000));
        assert_eq!(s.traces.compression, Compression::Gzip);
        assert_eq!(s.logs.compression, Compression::None);

        let mut code = OtlpConfig::new();
        code.endpoint = Some("http://code:4318".into());
        code.headers = vec![("Authorization".into(), "code".into())];
        code.timeout = Some(Duration::from_secs(2));
        let s = code.resolve(&vars, "svc").unwrap();
        assert_eq!(s.traces.url, "http://code:4318/v1/traces");
        assert_eq!(
            (s.metrics.protocol, s.metrics.url.as_str()),
            (Protocol::Grpc, "http://code:4318"),
            "code's endpoint, the variable's protocol: no path over gRPC"
        );
        assert_eq!(s.logs.headers["authorization"], "code");
        assert_eq!(s.traces.headers["x-general"], "1");
        assert_eq!(s.logs.timeout, Duration::from_secs(2));

        // A signal's endpoint alone turns export on; a bad one names its variable.
        let s = OtlpConfig::new()
            .resolve(
                env(&[(
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                    "http://logs:4318/v1/logs",
                )]),
                "svc",
            )
            .unwrap();
        assert!(s.enabled && s.logs.enabled);
        assert_eq!(s.logs.url, "http://logs:4318/v1/logs");
        assert_eq!(s.traces.url, "http://localhost:4318/v1/traces");
        let e = OtlpConfig::new()
            .resolve(
                env(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "ftp://x")]),
                "svc",
            )
            .unwrap_err();
        assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
        let e = OtlpConfig::new()
            .resolve(
                env(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization: s3cret")]),
                "svc",
            )
            .unwrap_err();
        assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_TRACES_HEADERS");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = OtlpConfig::new()
            .resolve(env(&[("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "soon")]), "svc")
            .unwrap_err();
        assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT");
        let e = OtlpConfig::new()
            .resolve(
                env(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/xml")]),
                "svc",
            )
            .unwrap_err();
        assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
        let s = OtlpConfig::new()
            .resolve(
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "HTTP/JSON"),
                ]),
                "svc",
            )
            .unwrap();
        assert_eq!(s.traces.protocol, Protocol::HttpJson);
        assert_eq!(s.traces.url, "http://c:4318/v1/traces", "the HTTP paths");
        let e = OtlpConfig::new()
            .resolve(
                env(&[(
                    "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
                    "/nonexistent/ca.pem",
                )]),
                "svc",
            )
            .unwrap_err();
        assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE");
        let e = OtlpConfig::new()
            .resolve(
                env(&[("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "zstd")]),
                "svc",
            )
            .unwrap_err();
        assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION");
    }

    /// `OTEL_SDK_DISABLED=true` turns every signal off whatever code says;
    /// `OTEL_<SIGNAL>_EXPORTER=none` one signal.
    #[test]
    fn the_kill_switch_and_the_exporter_variables() {
        let mut code = OtlpConfig::new();
        code.enabled = Some(true);
        code.endpoint = Some("http://c:4318".into());
        let s = code
            .resolve(env(&[("OTEL_SDK_DISABLED", "TRUE")]), "svc")
            .unwrap();
        assert!(!s.enabled && !s.traces.enabled && !s.metrics.enabled && !s.logs.enabled);
        assert!(code.resolve(env(&[]), "svc").unwrap().logs.enabled);
        let s = code
            .resolve(
                env(&[
                    ("OTEL_TRACES_EXPORTER", "none"),
                    ("OTEL_METRICS_EXPORTER", "prometheus"),
                    ("OTEL_LOGS_EXPORTER", "otlp"),
                ]),
                "svc",
            )
            .unwrap();
        assert!(s.enabled && !s.traces.enabled && !s.metrics.enabled && s.logs.enabled);
        for (var, value) in [
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_LOGS_EXPORTER", "console,none"),
            ("OTEL_METRICS_EXPORTER", "otlp,none"),
            ("OTEL_TRACES_EXPORTER", "prometheus"),
            ("OTEL_SDK_DISABLED", "yes"),
        ] {
            let e = code.resolve(env(&[(var, value)]), "svc").unwrap_err();
            assert_eq!(e.setting, var, "{e}");
        }
    }

    /// `console` (and its alias `logging`) needs no endpoint, can be listed with `otlp`,
    /// and the kill switch and code's "off" stop it too.
    #[test]
    fn the_console_exporter_values() {
        let s = OtlpConfig::new()
            .resolve(
                env(&[
                    ("OTEL_TRACES_EXPORTER", "console"),
                    ("OTEL_METRICS_EXPORTER", " Logging "),
                ]),
                "svc",
            )
            .unwrap();
        assert!(
            s.enabled,
            "the console alone turns export on, with no endpoint"
        );
        assert!(!s.general.enabled, "no OTLP without an endpoint");
        assert!(s.traces.console && !s.traces.enabled);
        assert!(s.metrics.console && !s.metrics.enabled);
        assert!(
            !s.logs.console && !s.logs.enabled,
            "logs: otlp by default, with no endpoint: off"
        );

        let mut code = OtlpConfig::new();
        code.endpoint = Some("http://c:4318".into());
        let s = code
            .resolve(
                env(&[
                    ("OTEL_TRACES_EXPORTER", "otlp,console"),
                    ("OTEL_METRICS_EXPORTER", "prometheus,console"),
                    ("OTEL_LOGS_EXPORTER", "console,otlp,console"),
                ]),
                "svc",
            )
            .unwrap();
        assert!(s.traces.enabled && s.traces.console);
        assert!(!s.metrics.enabled && s.metrics.console);
        assert!(s.logs.enabled && s.logs.console);
        let s = code.resolve(env(&[]), "svc").unwrap();
        assert!(!s.traces.console && !s.metrics.console && !s.logs.console);

        let console = env(&[("OTEL_LOGS_EXPORTER", "console")]);
        let s = OtlpConfig::new()
            .resolve(
                env(&[
                    ("OTEL_LOGS_EXPORTER", "console"),
                    ("OTEL_SDK_DISABLED", "1"),
                ]),
                "svc",
            )
            .unwrap();
        assert!(!s.enabled && !s.logs.console, "the kill switch");
        let mut off = OtlpConfig::new();
        off.enabled = Some(false);
        let s = off.resolve(&console, "svc").unwrap();
        assert!(
            !s.enabled && !s.logs.console,
            "code's with_otlp_enabled(false)"
        );

        let mut code = OtlpConfig::new();
        code.endpoint = Some("http://user:pw@c:4318".into());
        let s = code
            .resolve(
                env(&[
                    ("OTEL_TRACES_EXPORTER", "otlp,console"),
                    ("OTEL_METRICS_EXPORTER", "none"),
                    ("OTEL_LOGS_EXPORTER", "logging"),
                ]),
                "svc",
            )
            .unwrap();
        let hide = |u: &str| u.replace("user:pw@", "");
        assert_eq!(
            s.shown("traces", hide),
            "http/protobuf http://c:4318/v1/traces + console (stdout)"
        );
        assert_eq!(s.shown("metrics", hide), "off (OTEL_METRICS_EXPORTER)");
        assert!(
            s.shown("logs", hide)
                .starts_with("console (stdout: each log line again")
        );
        let s = OtlpConfig::new().resolve(&console, "svc").unwrap();
        assert_eq!(
            s.shown("traces", hide),
            "off (no endpoint: OTEL_EXPORTER_OTLP_ENDPOINT unset)"
        );

        for (var, value) in [
            ("OTEL_TRACES_EXPORTER", "console,none"),
            ("OTEL_METRICS_EXPORTER", "none, prometheus"),
            ("OTEL_LOGS_EXPORTER", "stdout"),
            ("OTEL_LOGS_EXPORTER", "console,zipkin"),
            ("OTEL_TRACES_EXPORTER", "prometheus,console"),
        ] {
            let e = OtlpConfig::new()
                .resolve(env(&[(var, value)]), "svc")
                .unwrap_err();
            assert_eq!(e.setting, var, "{e}");
            assert!(e.reason.contains("console"), "says what to use: {e}");
        }
    }

    #[test]
    fn batch_processor_and_propagator_variables() {
        let s = OtlpConfig::new()
            .resolve(
                env(&[
                    ("OTEL_BSP_SCHEDULE_DELAY", "250"),
                    ("OTEL_BSP_EXPORT_TIMEOUT", "3000"),
                    ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
                    ("OTEL_BLRP_MAX_QUEUE_SIZE", "64"),
                    ("OTEL_METRIC_EXPORT_TIMEOUT", "5000"),
                    ("OTEL_PROPAGATORS", "baggage, tracecontext,baggage,XRay"),
                ]),
                "svc",
            )
            .unwrap();
        assert_eq!(s.span_batch.schedule_delay, Duration::from_millis(250));
        assert_eq!(s.span_batch.export_timeout, Duration::from_secs(3));
        assert_eq!(s.span_batch.max_queue_size, 100);
        assert_eq!(s.span_batch.max_export_batch_size, 10);
        assert_eq!(s.log_batch.max_queue_size, 64);
        assert_eq!(
            s.log_batch.max_export_batch_size, 64,
            "clipped to the queue"
        );
        assert_eq!(s.metric_export_timeout, Duration::from_secs(5));
        assert_eq!(
            s.propagators,
            vec![
                Propagator::Baggage,
                Propagator::TraceContext,
                Propagator::XRay
            ]
        );
        let s = OtlpConfig::new()
            .resolve(
                env(&[("OTEL_PROPAGATORS", "B3multi, jaeger,ottrace ,b3,jaeger")]),
                "svc",
            )
            .unwrap();
        assert_eq!(
            s.propagators,
            vec![
                Propagator::B3Multi,
                Propagator::Jaeger,
                Propagator::OtTrace,
                Propagator::B3
            ]
        );
        let s = OtlpConfig::new()
            .resolve(env(&[("OTEL_PROPAGATORS", "none")]), "svc")
            .unwrap();
        assert!(s.propagators.is_empty());
        for (var, value) in [
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "4096"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "1s"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "0"),
            ("OTEL_METRIC_EXPORT_TIMEOUT", "-1"),
            ("OTEL_PROPAGATORS", "b3single"),
            ("OTEL_PROPAGATORS", "jaeger,none"),
            ("OTEL_PROPAGATORS", "zipkin"),
            ("OTEL_PROPAGATORS", "tracecontext,none"),
            ("OTEL_PROPAGATORS", "w3c"),
        ] {
            let e = OtlpConfig::new()
                .resolve(env(&[(var, value)]), "svc")
                .unwrap_err();
            assert_eq!(e.setting, var, "{e}");
        }
    }

    #[test]
    fn schemes_and_insecure_decide_tls() {
        let resolve = |endpoint: &str, insecure: Option<bool>| {
            let mut c = OtlpConfig::new();
            c.endpoint = Some(endpoint.into());
            c.insecure = insecure;
            c.resolve(env(&[]), "svc")
        };
        assert_eq!(
            resolve("collector:4317", None).unwrap().general.url,
            "https://collector:4317"
        );
        assert_eq!(
            resolve("collector:4317", Some(true)).unwrap().general.url,
            "http://collector:4317"
        );
        assert_eq!(
            resolve("https://c:4317", None).unwrap().general.url,
            "https://c:4317"
        );
        assert_eq!(
            resolve("http://c:4317", None).unwrap().general.url,
            "http://c:4317"
        );
        let e = resolve("https://c:4317", Some(true)).unwrap_err();
        assert!(e.to_string().contains("insecure"), "{e}");
    }

    #[test]
    fn bad_input_names_the_setting() {
        let bad = |vars: &[(&'static str, &'static str)]| {
            OtlpConfig::new()
                .resolve(env(vars), "svc")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]),
            "OTEL_EXPORTER_OTLP_PROTOCOL: unknown protocol \"thrift\"; use grpc, http/protobuf or http/json"
        );
        assert!(
            bad(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x:1")])
                .starts_with("OTEL_EXPORTER_OTLP_ENDPOINT:")
        );
        assert!(
            bad(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://")])
                .starts_with("OTEL_EXPORTER_OTLP_ENDPOINT:")
        );
        let e = bad(&[("OTEL_EXPORTER_OTLP_HEADERS", "authorization")]);
        assert!(
            e.starts_with("OTEL_EXPORTER_OTLP_HEADERS: entry 1 has no '=': expected key=value"),
            "{e}"
        );
        let e = bad(&[("OTEL_EXPORTER_OTLP_HEADERS", "x-key=sec%0Aret")]);
        assert!(e.contains("line breaks") && !e.contains("sec"), "{e}");
        assert!(bad(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]).contains("milliseconds"));
        assert!(bad(&[("OTEL_TRACES_SAMPLER", "sometimes")]).starts_with("OTEL_TRACES_SAMPLER:"));
        assert!(bad(&[("OTEL_LOG_LEVEL", "loud")]).starts_with("OTEL_LOG_LEVEL:"));
        assert!(
            bad(&[
                ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
                ("OTEL_TRACES_SAMPLER_ARG", "pollingIntervalMs=-5")
            ])
            .starts_with("OTEL_TRACES_SAMPLER_ARG: pollingIntervalMs")
        );
        assert!(
            bad(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "2")
            ])
            .contains("from 0 to 1")
        );
        assert!(
            bad(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem")])
                .starts_with("OTEL_EXPORTER_OTLP_CERTIFICATE: cannot read /nonexistent/ca.pem")
        );
        let mut c = OtlpConfig::new();
        c.sample_rate = Some(1.5);
        assert!(
            c.resolve(env(&[]), "svc")
                .unwrap_err()
                .to_string()
                .starts_with("OtlpConfig.sample_rate")
        );
    }

    /// A malformed header entry (a colon where `=` belongs, a space in the name) fails
    /// naming its position and the rule, never its text; code headers likewise.
    #[test]
    fn a_malformed_header_entry_is_named_by_position_never_quoted() {
        let secret = "dXNlcjpwYXNz";
        for (text, n) in [
            (format!("Authorization: Basic {secret}=="), 1),
            (format!("x-team=core,Authorization: Basic {secret}="), 2),
            (format!("x-team=core,,Authorization Basic {secret}"), 2),
            (format!("x-team=core, api key={secret}"), 2),
        ] {
            let e = OtlpConfig::new()
                .resolve(env(&[("OTEL_EXPORTER_OTLP_HEADERS", text.leak())]), "svc")
                .unwrap_err();
            assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_HEADERS");
            let shown = e.to_string();
            assert!(shown.contains(&format!("entry {n}")), "{shown}");
            assert!(
                shown.contains("write name=value") || shown.contains("expected key=value"),
                "the rule is given: {shown}"
            );
            for part in [secret, "Authorization", "Basic", "api key"] {
                assert!(!shown.contains(part), "{part} quoted in {shown}");
            }
        }
        let mut code = OtlpConfig::new();
        code.headers = vec![
            ("x-team".into(), "core".into()),
            (format!("Authorization: Bearer {secret}"), "x".into()),
        ];
        let e = code.resolve(env(&[]), "svc").unwrap_err();
        assert_eq!(e.setting, "OtlpConfig.headers");
        assert!(e.reason.starts_with("the name of entry 2 "), "{e}");
        assert!(!e.to_string().contains(secret), "{e}");
    }

    /// `Debug` of the code config and of the resolved settings shows header names, never
    /// their values.
    #[test]
    fn debug_shows_header_names_only() {
        let mut code = OtlpConfig::new();
        code.endpoint = Some("http://127.0.0.1:4318".into());
        code.headers = vec![("x-honeycomb-team".into(), "hcSECRETcode".into())];
        let shown = format!("{code:?} {code:#?}");
        assert!(shown.contains("x-honeycomb-team"), "{shown}");
        assert!(!shown.contains("hcSECRETcode"), "{shown}");
        let s = code
            .resolve(
                env(&[(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer%20envSECRET,dd-api-key=ddSECRET",
                )]),
                "svc",
            )
            .unwrap();
        let shown = format!("{s:?} {s:#?}");
        for name in ["authorization", "dd-api-key", "x-honeycomb-team"] {
            assert!(shown.contains(name), "{name} missing: {shown}");
        }
        for secret in ["envSECRET", "ddSECRET", "hcSECRETcode", "Bearer"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    /// TLS files are read when the settings resolve: one that cannot be read (a
    /// directory: the tests may run as root, whom no permission bit stops), or that
    /// holds no certificate or key, fails naming the option or the variable.
    #[test]
    fn tls_files_that_cannot_be_used_name_the_setting() {
        let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let dir = env!("CARGO_MANIFEST_DIR");
        let code = |ca: &str, cert: Option<&str>| {
            let mut c = OtlpConfig::new();
            c.tls.ca_file = Some(ca.into());
            if let Some(cert) = cert {
                c.tls.client_cert = Some(cert.into());
                c.tls.client_key = Some(cert.into());
            }
            c.resolve(env(&[]), "svc").unwrap_err().to_string()
        };
        let e = code(dir, None);
        assert!(
            e.starts_with(&format!("OtlpConfig.tls.ca_file: cannot read {dir}: ")),
            "{e}"
        );
        assert_eq!(
            code(not_pem, None),
            format!(
                "OtlpConfig.tls.ca_file: {not_pem} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            )
        );
        let vars = |vars: &[(&'static str, &'static str)]| {
            OtlpConfig::new()
                .resolve(env(vars), "svc")
                .unwrap_err()
                .to_string()
        };
        let e = vars(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", env!("CARGO_MANIFEST_DIR"))]);
        assert!(
            e.starts_with(&format!(
                "OTEL_EXPORTER_OTLP_CERTIFICATE: cannot read {dir}: "
            )),
            "{e}"
        );
        assert_eq!(
            vars(&[
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")
                ),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")
                ),
            ]),
            format!(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: {not_pem} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            )
        );
        assert_eq!(
            vars(&[(
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")
            )]),
            format!(
                "OTEL_EXPORTER_OTLP_CLIENT_KEY: {not_pem} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
            )
        );
        if Path::new("/dev/zero").exists() {
            assert_eq!(
                vars(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/dev/zero")]),
                "OTEL_EXPORTER_OTLP_CERTIFICATE: /dev/zero is larger than 16 MiB: not a PEM file"
            );
        }
        // A certificate where the key should be: the key's check names the key.
        let dir = std::env::temp_dir().join(format!("piko-obs-otlp-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        // A syntactically valid PEM certificate block (its contents are not parsed here).
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let cert = cert.to_str().unwrap().to_string();
        let e = code(&cert, Some(&cert));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            e,
            format!(
                "OtlpConfig.tls.client_key: {cert} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
            )
        );
    }

    #[test]
    fn cloud_variables_map_as_piko_detects_them() {
        let resource = |vars: &'static [(&'static str, &'static str)]| {
            OtlpConfig::new()
                .resolve(env(vars), "svc")
                .unwrap()
                .resource
        };
        let r = resource(&[("ENVIRONMENT", "prod")]);
        assert_eq!(r["deployment.environment.name"], "prod");
        let r = resource(&[("ENVIRONMENT", "prod"), ("PIKO_ENVIRONMENT", "canary")]);
        assert_eq!(
            r["deployment.environment.name"], "canary",
            "Piko's variable first"
        );
        let r = resource(&[("POD_NAME", "web-1")]);
        assert_eq!(r["k8s.pod.name"], "web-1");
        assert_eq!(r["runtime.environment"], "kubernetes");
        let r = resource(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "resize"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "7"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        assert_eq!(r["faas.name"], "resize");
        assert_eq!(r["faas.version"], "7");
        assert_eq!(r["cloud.region"], "eu-west-1");
        assert_eq!(r["runtime.environment"], "aws-lambda");
        let r = resource(&[
            ("K_SERVICE", "api"),
            ("K_REVISION", "api-00042"),
            ("GOOGLE_CLOUD_PROJECT", "shop-prod"),
        ]);
        assert_eq!(r["faas.name"], "api");
        assert_eq!(r["faas.version"], "api-00042");
        assert_eq!(r["cloud.account.id"], "shop-prod");
        assert_eq!(r["runtime.environment"], "cloud-run");
        let r = resource(&[
            ("CONTAINER_APP_NAME", "orders"),
            ("CONTAINER_APP_REVISION", "orders--r7"),
            ("CONTAINER_APP_REPLICA_NAME", "orders--r7-abc"),
        ]);
        assert_eq!(r["azure.container_app.name"], "orders");
        assert_eq!(r["azure.container_app.revision"], "orders--r7");
        assert_eq!(r["azure.container_app.replica"], "orders--r7-abc");
        assert_eq!(r["runtime.environment"], "azure-container-apps");
        assert!(!r.contains_key("service.instance.id"), "{r:?}");
        assert!(
            !r.contains_key("service.version"),
            "the revision is not the service version: {r:?}"
        );
        let r = resource(&[(
            "ECS_CONTAINER_METADATA_URI_V4",
            "http://169.254.170.2/v4/abc",
        )]);
        assert_eq!(r["runtime.environment"], "aws-ecs");
        assert!(
            !r.values().any(|v| v.starts_with("http://169.254")),
            "a metadata URI is not an attribute: {r:?}"
        );
    }

    #[test]
    fn the_resource_has_detected_and_given_attributes() {
        let mut c = OtlpConfig::new();
        c.service_version = Some("1.2.3".into());
        c.environment = Some("staging".into());
        let r = c
            .resolve(
                env(&[
                    ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
                    ("POD_NAME", "orders-7d9"),
                    ("POD_NAMESPACE", "shop"),
                ]),
                "orders",
            )
            .unwrap()
            .resource;
        assert_eq!(r["service.name"], "orders");
        assert_eq!(r["service.version"], "1.2.3");
        assert_eq!(r["deployment.environment.name"], "staging");
        assert_eq!(r["k8s.pod.name"], "orders-7d9");
        assert_eq!(r["k8s.namespace.name"], "shop");
        assert_eq!(r["runtime.environment"], "kubernetes");
    }

    /// Temporality, the default histogram aggregation and the exemplar filter: each
    /// value of the specification, any case; anything else names its variable.
    #[test]
    fn metric_variables() {
        let s = OtlpConfig::new().resolve(env(&[]), "svc").unwrap();
        assert_eq!(s.metric, MetricSettings::default());
        assert_eq!(s.metric.temporality, Temporality::Cumulative);
        assert_eq!(
            s.metric.histogram_aggregation,
            HistogramAggregation::ExplicitBucket
        );
        assert_eq!(s.metric.exemplar_filter, ExemplarFilter::TraceBased);
        for (value, t) in [
            ("cumulative", Temporality::Cumulative),
            ("Delta", Temporality::Delta),
            ("LOWMEMORY", Temporality::LowMemory),
        ] {
            let s = OtlpConfig::new()
                .resolve(
                    env(&[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", value)]),
                    "svc",
                )
                .unwrap();
            assert_eq!(s.metric.temporality, t, "{value}");
        }
        let s = OtlpConfig::new()
            .resolve(
                env(&[
                    (
                        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                        "base2_exponential_bucket_histogram",
                    ),
                    ("OTEL_METRICS_EXEMPLAR_FILTER", "always_off"),
                ]),
                "svc",
            )
            .unwrap();
        assert_eq!(
            s.metric.histogram_aggregation,
            HistogramAggregation::Base2Exponential
        );
        assert_eq!(s.metric.exemplar_filter, ExemplarFilter::AlwaysOff);
        for (var, value) in [
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "deltas",
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                "exponential",
            ),
            ("OTEL_METRICS_EXEMPLAR_FILTER", "sometimes"),
        ] {
            let e = OtlpConfig::new()
                .resolve(env(&[(var, value)]), "svc")
                .unwrap_err();
            assert_eq!(e.setting, var, "{e}");
            assert!(e.reason.starts_with("unknown value"), "{e}");
        }
    }

    /// A model's own limit beats the general one, which beats the default (128
    /// attributes, events and links; no length limit).
    #[test]
    fn limits_signal_specific_before_general_before_default() {
        let s = OtlpConfig::new().resolve(env(&[]), "svc").unwrap();
        assert_eq!(s.span_limits, SpanLimits::default());
        assert_eq!(s.span_limits.attributes.count, 128);
        assert_eq!(s.span_limits.attributes.value_length, None);
        assert_eq!(s.log_record_limits, AttributeLimits::default());
        let s = OtlpConfig::new()
            .resolve(
                env(&[
                    ("OTEL_ATTRIBUTE_COUNT_LIMIT", "10"),
                    ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
                    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "3"),
                    ("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "7"),
                    ("OTEL_SPAN_EVENT_COUNT_LIMIT", "0"),
                    ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "2"),
                ]),
                "svc",
            )
            .unwrap();
        assert_eq!(s.span_limits.attributes.count, 3, "the span's own");
        assert_eq!(s.span_limits.attributes.value_length, Some(100), "general");
        assert_eq!(s.span_limits.events, 0);
        assert_eq!(s.span_limits.links, 128, "not the attribute count");
        assert_eq!(s.span_limits.event_attributes, 10, "general");
        assert_eq!(s.span_limits.link_attributes, 2);
        assert_eq!(s.log_record_limits.count, 10, "general");
        assert_eq!(
            s.log_record_limits.value_length,
            Some(7),
            "the record's own"
        );
        for var in [
            "OTEL_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
        ] {
            for value in ["-1", "many", "2147483648"] {
                let e = OtlpConfig::new()
                    .resolve(env(&[(var, value)]), "svc")
                    .unwrap_err();
                assert_eq!(e.setting, var, "{e}");
                assert!(e.reason.contains("from 0 to 2147483647"), "{e}");
            }
        }
    }

    /// A timeout of 0 (no limit in the specification) is refused, saying why; code's
    /// "no compression" over gRPC, which the exporter cannot be told when the variable
    /// says gzip, is refused naming the option and the variable.
    #[test]
    fn zero_timeouts_and_unappliable_compression_are_refused() {
        for var in [
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
            "OTEL_BSP_EXPORT_TIMEOUT",
            "OTEL_METRIC_EXPORT_TIMEOUT",
        ] {
            let e = OtlpConfig::new()
                .resolve(env(&[(var, "0")]), "svc")
                .unwrap_err();
            assert_eq!(e.setting, var);
            assert!(e.reason.contains("no limit"), "{e}");
        }
        let mut code = OtlpConfig::new();
        code.compression = Some(Compression::None);
        code.protocol = Some(Protocol::Grpc);
        let e = code
            .resolve(
                env(&[("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip")]),
                "svc",
            )
            .unwrap_err();
        assert_eq!(e.setting, "OtlpConfig.compression");
        assert!(
            e.reason.contains("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"),
            "{e}"
        );
        // Over HTTP, code wins: the body is sent as code says.
        code.protocol = Some(Protocol::HttpProtobuf);
        let s = code
            .resolve(env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]), "svc")
            .unwrap();
        assert_eq!(s.traces.compression, Compression::None);
    }
}
