//! The OTLP part of a process: [`OtlpSetup`] holds the settings given in code, resolves
//! them against the standard variables, starts the pipeline with its `otlp` log output
//! ([`OtlpSetup::start`]) and says where each signal goes ([`OtlpSetup::shown`]);
//! [`install_pipeline`] starts the exporters and installs them as OpenTelemetry's
//! globals, and the pipeline stays reachable through [`pipeline`]. Only the composing
//! program calls [`OtlpSetup::start`] and the `install_*` functions.

use std::path::PathBuf;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use piko_obs_lifecycle::{Lifecycle, ShutdownError, Unwind};
use piko_obs_logger::{AddOutputError, AddedOutput, Directives, global as logs};

use crate::{
    Compression, ConfigError, OtelLogOutput, OtelRecorder, OtelRecorderSlot, OtlpConfig, Pipeline,
    Protocol, Settings, StartError, note_panic, text_map_propagator, use_tracer_provider,
};

/// The setting an unknown protocol given to [`OtlpSetup::with_protocol`] names.
pub const PROTOCOL_SETTING: &str = "OtlpConfig.protocol";

/// The OTLP settings given in code: an [`OtlpConfig`], the protocol as text (checked
/// when resolved) and whether log lines become span events.
///
/// ```
/// use piko_obs_otlp::setup::OtlpSetup;
/// let env = |_: &str| None;
/// let setup = OtlpSetup::default()
///     .with_endpoint("http://127.0.0.1:4318")
///     .with_protocol("http/protobuf");
/// let settings = setup.resolve(&None, &Some("1.4.2".into()), "shop", env).unwrap();
/// assert!(settings.enabled);
/// let e = OtlpSetup::default().with_protocol("thrift").resolve(&None, &None, "shop", env);
/// assert_eq!(e.unwrap_err().setting, "OtlpConfig.protocol");
/// ```
#[derive(Debug, Clone)]
pub struct OtlpSetup {
    config: OtlpConfig,
    protocol: Option<String>,
    protocol_setting: &'static str,
    span_events: bool,
}

impl Default for OtlpSetup {
    fn default() -> Self {
        Self {
            config: OtlpConfig::default(),
            protocol: None,
            protocol_setting: PROTOCOL_SETTING,
            span_events: true,
        }
    }
}

impl OtlpSetup {
    /// All settings at once; the setters after it change single fields.
    pub fn with_config(self, config: OtlpConfig) -> Self {
        Self { config, ..self }
    }
    /// [`OtlpConfig::enabled`].
    pub fn with_enabled(mut self, on: bool) -> Self {
        self.config.enabled = Some(on);
        self
    }
    /// [`OtlpConfig::endpoint`].
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.config.endpoint = Some(endpoint.into());
        self
    }
    /// The protocol as text (`grpc`, `http/protobuf`, `http/json`, `http`), checked by
    /// [`resolve`](Self::resolve), which names [`PROTOCOL_SETTING`].
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }
    /// The protocol as text, as [`with_protocol`](Self::with_protocol), with the name a
    /// bad one's error gives the setting (a composer's own option) instead of
    /// [`PROTOCOL_SETTING`].
    ///
    /// ```
    /// use piko_obs_otlp::setup::OtlpSetup;
    /// let setup = OtlpSetup::default().with_protocol_named("thrift", "protocol option");
    /// let e = setup.resolve(&None, &None, "shop", |_: &str| None).unwrap_err();
    /// assert_eq!(e.setting, "protocol option");
    /// ```
    pub fn with_protocol_named(
        mut self,
        protocol: impl Into<String>,
        setting: &'static str,
    ) -> Self {
        self.protocol_setting = setting;
        self.with_protocol(protocol)
    }
    /// Adds to [`OtlpConfig::headers`].
    pub fn with_headers<K: Into<String>, V: Into<String>>(
        mut self,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let headers = headers.into_iter().map(|(k, v)| (k.into(), v.into()));
        self.config.headers.extend(headers);
        self
    }
    /// [`OtlpConfig::insecure`].
    pub fn with_insecure_tls(mut self, insecure: bool) -> Self {
        self.config.insecure = Some(insecure);
        self
    }
    /// [`OtlpConfig::sample_rate`].
    pub fn with_trace_sample_rate(mut self, rate: f64) -> Self {
        self.config.sample_rate = Some(rate);
        self
    }
    /// [`OtlpConfig::service_version`].
    pub fn with_service_version(mut self, version: impl Into<String>) -> Self {
        self.config.service_version = Some(version.into());
        self
    }
    /// [`OtlpConfig::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }
    /// [`OtlpConfig::compression`].
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.config.compression = Some(compression);
        self
    }
    /// [`OtlpConfig::metric_interval`].
    pub fn with_metric_interval(mut self, interval: Duration) -> Self {
        self.config.metric_interval = Some(interval);
        self
    }
    /// Whether a log line inside a recording span is also a span event (default on);
    /// see [`OtelLogOutput::with_span_events`](crate::OtelLogOutput::with_span_events).
    pub fn with_span_events(self, on: bool) -> Self {
        Self {
            span_events: on,
            ..self
        }
    }
    /// A PEM file of CA certificates to trust besides the system's roots.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.tls.ca_file = Some(path.into());
        self
    }
    /// A client certificate and key (PEM files) for mutual TLS.
    pub fn with_client_certificate(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.config.tls.client_cert = Some(cert.into());
        self.config.tls.client_key = Some(key.into());
        self
    }
    /// Whether log lines become span events.
    pub fn span_events(&self) -> bool {
        self.span_events
    }
    /// Whether export was turned on or off in code.
    pub fn enabled_in_code(&self) -> Option<bool> {
        self.config.enabled
    }

    /// The settings to start with: the code's, then the variables read through `env`,
    /// then the defaults; `environment` and `release` fill the resource's
    /// `deployment.environment.name` and `service.version` the code left unset.
    pub fn resolve(
        &self,
        environment: &Option<String>,
        release: &Option<String>,
        service_name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut config = self.config.clone();
        if config.environment.is_none() {
            config.environment.clone_from(environment);
        }
        if config.service_version.is_none() {
            config.service_version.clone_from(release);
        }
        if let Some(text) = &self.protocol {
            let protocol = Protocol::parse(text).ok_or_else(|| {
                ConfigError::new(
                    self.protocol_setting,
                    format!(
                        "unknown protocol {:?}; use grpc, http/protobuf or http/json",
                        text.trim()
                    ),
                )
            })?;
            config.protocol = Some(protocol);
        }
        config.resolve(env, service_name)
    }
}

impl OtlpSetup {
    /// Starts the OTLP part when export is on and there is a `runtime` to start it on:
    /// [`install_pipeline`] (with a view for each histogram of `buckets`) and the `otlp`
    /// output of the process-wide log hub at `level` (its lines also span events unless
    /// [`with_span_events`](Self::with_span_events) turned that off), both pushed on
    /// `parts`, the output as a [`Detach`]. With export off, the propagators
    /// `OTEL_PROPAGATORS` names are still installed when it is set (without it, the
    /// global propagator is left as it is). `None` when nothing started.
    pub fn start(
        &self,
        settings: &Settings,
        runtime: Option<&tokio::runtime::Handle>,
        level: impl Into<Directives>,
        buckets: &[(String, Vec<f64>)],
        parts: &Unwind,
    ) -> Result<Option<Pipeline>, SetupError> {
        let Some(runtime) = runtime.filter(|_| settings.enabled) else {
            if std::env::var_os("OTEL_PROPAGATORS").is_some() {
                install_propagators(settings);
            }
            return Ok(None);
        };
        let p = install_pipeline(settings, runtime, buckets)?;
        parts.push(p.clone());
        let output = OtelLogOutput::new(&p.logger_provider).with_span_events(self.span_events);
        let id = logs::add_output("otlp", level, output)?;
        parts.push(Detach::new(AddedOutput::new(
            logs::hub(),
            id,
            "otlp output",
        )));
        Ok(Some(p))
    }

    /// Where `signal` goes, for a start-up summary: as [`Settings::shown`] says, with
    /// URLs through [`shown_url`], when the pipeline `started`; else why export is off
    /// ([`off_reason`], reading the variables through `env`).
    pub fn shown(
        &self,
        settings: &Settings,
        started: bool,
        signal: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> String {
        if started {
            settings.shown(signal, shown_url)
        } else {
            off_reason(self.config.enabled, env).to_string()
        }
    }
}

/// Why the OTLP part could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A setting cannot work: [`ConfigError::setting`] names the [`OtlpConfig`] field,
    /// the variable, or [`PROTOCOL_SETTING`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The exporters could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The `otlp` output could not be added to the log hub.
    #[error(transparent)]
    Output(#[from] AddOutputError),
}

/// Why OTLP export is off, for a start-up summary: turned off in code (`in_code`),
/// `OTEL_SDK_DISABLED=true`, or no endpoint.
pub fn off_reason(in_code: Option<bool>, env: impl Fn(&str) -> Option<String>) -> &'static str {
    if in_code == Some(false) {
        "off (OtlpConfig.enabled: false)"
    } else if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        "off (OTEL_SDK_DISABLED=true)"
    } else {
        "off (no endpoint: OTEL_EXPORTER_OTLP_ENDPOINT unset)"
    }
}

/// A URL as a start-up summary shows it: without user information, query or fragment,
/// which may carry credentials.
///
/// ```
/// use piko_obs_otlp::setup::shown_url;
/// let url = "https://user:secret@collector:4318/v1/traces?token=x#f";
/// assert_eq!(shown_url(url), "https://collector:4318/v1/traces");
/// ```
pub fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

static INSTALLED: RwLock<Option<Pipeline>> = RwLock::new(None);

/// The OTLP side of the process's `metrics` recorder.
static METRICS_SLOT: OnceLock<OtelRecorderSlot> = OnceLock::new();

/// Whether the installed `metrics` recorder holds [`metrics_slot`].
static SLOT_IN_RECORDER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts the pipeline on `runtime` (with a view for each histogram of `buckets`, see
/// [`Pipeline::start_with_buckets`]) and installs it: its tracer and meter providers
/// as OpenTelemetry's globals, [`note_panic`] in front of the panic hook, the
/// propagators of `settings`; [`pipeline`] then returns it.
pub fn install_pipeline(
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

/// The pipeline [`install_pipeline`] installed, if it did.
pub fn pipeline() -> Option<Pipeline> {
    INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Installs the propagators `OTEL_PROPAGATORS` names (default: trace context, then
/// baggage) as OpenTelemetry's global propagator.
pub fn install_propagators(settings: &Settings) {
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
pub fn current_span_ids() -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt as _;
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The OTLP side of the process's `metrics` recorder: a recorder installed with it
/// (see [`export_metrics`]) sends through the pipeline put in it.
pub fn metrics_slot() -> &'static OtelRecorderSlot {
    METRICS_SLOT.get_or_init(OtelRecorderSlot::new)
}

/// Points [`metrics_slot`] at `pipeline`. `fresh`: the `metrics` recorder was installed
/// just now, holding the slot; when an earlier recorder without it is installed, says
/// so in a WARN line instead.
pub fn export_metrics(pipeline: &Pipeline, fresh: bool) {
    use opentelemetry::metrics::MeterProvider as _;
    use std::sync::atomic::Ordering;
    if fresh {
        SLOT_IN_RECORDER.store(true, Ordering::Release);
    }
    if SLOT_IN_RECORDER.load(Ordering::Acquire) {
        let meter = pipeline.meter_provider.meter("piko-obs");
        metrics_slot().set(Some(OtelRecorder::new(meter)));
    } else {
        piko_obs_logger::global::get_logger("piko-obs/otlp").warn(
            "metrics recorded with the `metrics` macros are not exported over OTLP: \
             an earlier init() in this process installed the recorder without OTLP",
            &[],
        );
    }
}

/// What stops before the providers do: new series go nowhere (a later pipeline puts its
/// own recorder in [`metrics_slot`]), lines logged from here on stay local (the `otlp`
/// output is removed), and spans are no longer made with this pipeline's tracer.
#[derive(Debug)]
pub struct Detach {
    output: AddedOutput,
}

impl Detach {
    /// The detach of the pipeline whose log output is `output`.
    pub fn new(output: AddedOutput) -> Self {
        Self { output }
    }
}

impl Lifecycle for Detach {
    fn part(&self) -> &'static str {
        "otlp output"
    }

    fn shutdown_within(&self, _budget: Duration) -> Result<(), ShutdownError> {
        metrics_slot().set(None);
        let removed = self.output.shutdown_within(Duration::from_millis(100));
        use_tracer_provider(None);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;

    #[test]
    fn otlp_off_says_why_and_urls_lose_credentials() {
        assert_eq!(
            off_reason(None, env(&[])),
            "off (no endpoint: OTEL_EXPORTER_OTLP_ENDPOINT unset)"
        );
        assert_eq!(
            off_reason(None, env(&[("OTEL_SDK_DISABLED", "true")])),
            "off (OTEL_SDK_DISABLED=true)"
        );
        assert_eq!(
            off_reason(Some(false), env(&[])),
            "off (OtlpConfig.enabled: false)"
        );
        assert_eq!(
            shown_url("https://user:secret@collector:4318/v1/traces?token=x#f"),
            "https://collector:4318/v1/traces"
        );
        assert_eq!(shown_url("http://127.0.0.1:4317"), "http://127.0.0.1:4317");
        let setup = OtlpSetup::default().with_enabled(false);
        let settings = setup.resolve(&None, &None, "shop", env(&[])).unwrap();
        assert_eq!(
            setup.shown(&settings, false, "traces", env(&[])),
            "off (OtlpConfig.enabled: false)"
        );
    }
}
