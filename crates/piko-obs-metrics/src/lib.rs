//! Prometheus metrics for piko-obs.
//!
//! - [`MetricsBuilder::new`] builds a `metrics::Recorder` that keeps everything
//!   recorded through the `metrics` macros, in render-only mode (no listener of its own:
//!   the probe server serves `/metrics`), with histogram buckets and global labels
//!   checked when they are set;
//! - [`Metrics`] renders the Prometheus text (refreshing process metrics and any
//!   registered collector first) and runs the exporter's upkeep, which the caller
//!   schedules so histogram memory stays bounded.
//!
//! - [`guard`]: the recorder layer that refuses invalid names and caps the label sets
//!   of each metric (default [`guard::DEFAULT_CARDINALITY_LIMIT`]), counting what it
//!   refuses in `piko_obs_metrics_series_refused_total`;
//! - [`http`]: request metrics after the OpenTelemetry HTTP conventions, as a tower
//!   `Layer` and as a warp filter wrapper.
//!
//! This crate installs nothing globally; the `piko-obs` facade installs the recorder.
//!
//! ```
//! use piko_obs_metrics::MetricsBuilder;
//! let (recorder, metrics) = MetricsBuilder::new()
//!     .with_global_label("service", "orders").unwrap()
//!     .with_process_metrics(false)
//!     .build()
//!     .unwrap();
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!("orders_placed_total", "channel" => "web").increment(3);
//! });
//! let text = metrics.render();
//! let line = text.lines().find(|l| l.starts_with("orders_placed_total{")).unwrap();
//! assert!(line.contains(r#"channel="web""#) && line.contains(r#"service="orders""#));
//! assert!(line.ends_with(" 3"));
//! ```
//!
//! Feature flags, both on by default: `warp` (`http::warp_route`) and `tower`
//! (`http::HttpMetricsLayer`); `axum` (implies `tower`) takes route templates from
//! axum's `MatchedPath`.

pub mod guard;
pub mod http;
mod lifecycle;
pub mod setup;

pub use lifecycle::Upkeep;

use std::fmt;
use std::sync::{Arc, Mutex};

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::layers::Layer as _;

use crate::guard::{Refusal, SeriesGuard, SeriesGuardLayer};

/// The recorder [`MetricsBuilder::build`] returns: the Prometheus exporter's recorder,
/// and any extra ones, behind the [`guard`] layer.
pub type MetricsRecorder = SeriesGuard<Recorders>;

/// Where series go: the Prometheus recorder alone (its handles are used directly, at
/// no extra cost), or fanned out to it and extra recorders (an OTLP bridge).
pub enum Recorders {
    /// Prometheus only.
    Prometheus(PrometheusRecorder),
    /// Prometheus and the extra recorders.
    Fanout(metrics_util::layers::Fanout),
}

impl fmt::Debug for Recorders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Recorders::Prometheus(_) => "Recorders::Prometheus",
            Recorders::Fanout(_) => "Recorders::Fanout",
        })
    }
}

macro_rules! each {
    ($self:ident, $r:ident => $e:expr) => {
        match $self {
            Recorders::Prometheus($r) => $e,
            Recorders::Fanout($r) => $e,
        }
    };
}

impl metrics::Recorder for Recorders {
    fn describe_counter(
        &self,
        k: metrics::KeyName,
        u: Option<metrics::Unit>,
        d: metrics::SharedString,
    ) {
        each!(self, r => r.describe_counter(k, u, d))
    }
    fn describe_gauge(
        &self,
        k: metrics::KeyName,
        u: Option<metrics::Unit>,
        d: metrics::SharedString,
    ) {
        each!(self, r => r.describe_gauge(k, u, d))
    }
    fn describe_histogram(
        &self,
        k: metrics::KeyName,
        u: Option<metrics::Unit>,
        d: metrics::SharedString,
    ) {
        each!(self, r => r.describe_histogram(k, u, d))
    }
    fn register_counter(&self, k: &metrics::Key, m: &metrics::Metadata<'_>) -> metrics::Counter {
        each!(self, r => r.register_counter(k, m))
    }
    fn register_gauge(&self, k: &metrics::Key, m: &metrics::Metadata<'_>) -> metrics::Gauge {
        each!(self, r => r.register_gauge(k, m))
    }
    fn register_histogram(
        &self,
        k: &metrics::Key,
        m: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        each!(self, r => r.register_histogram(k, m))
    }
}

type ExtraRecorder = Arc<dyn metrics::Recorder + Send + Sync>;

/// Buckets the OpenTelemetry HTTP semantic conventions recommend for
/// `http.server.request.duration`, in seconds.
pub const HTTP_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The request-duration histogram's name.
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";

/// A metric or label name, or buckets, that Prometheus cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Not a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
    #[error(
        "metric name {0:?} is not valid: use letters, digits, '_' and ':', not starting with a digit"
    )]
    MetricName(String),
    /// Not a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`).
    #[error(
        "label name {0:?} is not valid: use letters, digits and '_', not starting with a digit or '__'"
    )]
    LabelName(String),
    /// Buckets that are empty, not finite or not increasing.
    #[error("buckets for {metric:?} must be finite, increasing and non-empty (got {buckets})")]
    Buckets {
        /// The metric.
        metric: String,
        /// The buckets given.
        buckets: String,
    },
    /// A cap on label sets of zero.
    #[error("the cardinality limit{} must be at least 1", .metric.as_ref().map(|m| format!(" for {m:?}")).unwrap_or_default())]
    CardinalityLimit {
        /// The metric, for a per-metric cap.
        metric: Option<String>,
    },
}

pub(crate) fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

pub(crate) fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    !n.starts_with("__")
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Configures the recorder; bad names and buckets are rejected where they are set.
#[derive(Clone)]
#[must_use]
pub struct MetricsBuilder {
    labels: Vec<(String, String)>,
    buckets: Vec<(String, Vec<f64>)>,
    process: bool,
    guard: SeriesGuardLayer,
    extra: Vec<ExtraRecorder>,
}

impl fmt::Debug for MetricsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsBuilder")
            .field("labels", &self.labels)
            .field("buckets", &self.buckets)
            .field("process", &self.process)
            .field("guard", &self.guard)
            .field("extra_recorders", &self.extra.len())
            .finish()
    }
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsBuilder {
    /// A builder with the defaults: the OpenTelemetry buckets for
    /// [`HTTP_SERVER_REQUEST_DURATION`], process metrics on, no global labels.
    pub fn new() -> Self {
        MetricsBuilder {
            labels: Vec::new(),
            buckets: vec![(
                HTTP_SERVER_REQUEST_DURATION.to_string(),
                HTTP_DURATION_BUCKETS.to_vec(),
            )],
            process: true,
            guard: SeriesGuardLayer::new(),
            extra: Vec::new(),
        }
    }

    /// A label added to every series (for example `service`, `environment`).
    pub fn with_global_label(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MetricsError> {
        let name = name.into();
        if !valid_label_name(&name) {
            return Err(MetricsError::LabelName(name));
        }
        self.labels.push((name, value.into()));
        Ok(self)
    }

    /// Histogram buckets for one metric (without them a histogram renders as a summary).
    pub fn with_buckets(
        mut self,
        metric: impl Into<String>,
        buckets: &[f64],
    ) -> Result<Self, MetricsError> {
        let metric = metric.into();
        if !valid_metric_name(&metric) {
            return Err(MetricsError::MetricName(metric));
        }
        let ok = !buckets.is_empty()
            && buckets.iter().all(|b| b.is_finite())
            && buckets.windows(2).all(|w| w[0] < w[1]);
        if !ok {
            return Err(MetricsError::Buckets {
                metric,
                buckets: format!("{buckets:?}"),
            });
        }
        self.buckets.retain(|(m, _)| *m != metric);
        self.buckets.push((metric, buckets.to_vec()));
        Ok(self)
    }

    /// The histogram buckets set, by metric name (the defaults included), for the
    /// recorders that export the same histograms elsewhere (the OTLP bridge).
    pub fn buckets(&self) -> &[(String, Vec<f64>)] {
        &self.buckets
    }

    /// Whether `render` refreshes the standard process metrics
    /// (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...; default on).
    pub fn with_process_metrics(mut self, on: bool) -> Self {
        self.process = on;
        self
    }

    /// The cap on label sets per metric name (default
    /// [`guard::DEFAULT_CARDINALITY_LIMIT`]); new label sets past it are not recorded
    /// and are counted in `piko_obs_metrics_series_refused_total`.
    pub fn with_cardinality_limit(mut self, limit: usize) -> Result<Self, MetricsError> {
        self.guard = self.guard.with_default_limit(limit)?;
        Ok(self)
    }

    /// The cap on metric names of each kind (default
    /// [`guard::DEFAULT_METRIC_NAME_LIMIT`]; at least 1): past it, series of new names
    /// are refused.
    pub fn with_metric_name_limit(mut self, limit: usize) -> Result<Self, MetricsError> {
        self.guard = self.guard.with_metric_name_limit(limit)?;
        Ok(self)
    }

    /// The cap on label sets for one metric, instead of the default cap.
    pub fn with_cardinality_limit_for(
        mut self,
        metric: impl Into<String>,
        limit: usize,
    ) -> Result<Self, MetricsError> {
        self.guard = self.guard.with_limit(metric, limit)?;
        Ok(self)
    }

    /// A function told of the first refused series of each metric for each reason (an
    /// invalid name, the cardinality cap); the facade logs it as a warning.
    pub fn on_refused(mut self, hook: impl Fn(&Refusal) + Send + Sync + 'static) -> Self {
        self.guard = self.guard.on_refused(hook);
        self
    }

    /// Another recorder that gets every series too, behind the same guard (the facade
    /// adds the OTLP bridge here).
    pub fn with_extra_recorder(
        mut self,
        recorder: impl metrics::Recorder + Send + Sync + 'static,
    ) -> Self {
        self.extra.push(Arc::new(recorder));
        self
    }

    /// The recorder (to install, or to use locally) and the handle that renders it.
    pub fn build(self) -> Result<(MetricsRecorder, Metrics), MetricsError> {
        let guard = self.guard.clone();
        let extra = self.extra.clone();
        let (recorder, metrics) = self.build_exporter()?;
        let sinks = if extra.is_empty() {
            Recorders::Prometheus(recorder)
        } else {
            let mut fan = metrics_util::layers::FanoutBuilder::default().add_recorder(recorder);
            for r in extra {
                fan = fan.add_recorder(r);
            }
            Recorders::Fanout(fan.build())
        };
        Ok((guard.layer(sinks), metrics))
    }

    #[cfg(test)]
    pub(crate) fn build_unguarded(self) -> (PrometheusRecorder, Metrics) {
        self.build_exporter().expect("valid settings")
    }

    fn build_exporter(self) -> Result<(PrometheusRecorder, Metrics), MetricsError> {
        let mut b = PrometheusBuilder::new();
        for (name, value) in self.labels {
            b = b.add_global_label(name, value);
        }
        for (metric, buckets) in &self.buckets {
            b = b
                .set_buckets_for_metric(Matcher::Full(metric.clone()), buckets)
                .map_err(|_| MetricsError::Buckets {
                    metric: metric.clone(),
                    buckets: format!("{buckets:?}"),
                })?;
        }
        let recorder = b.build_recorder();
        let handle = recorder.handle();
        let process = self.process.then(metrics_process::Collector::default);
        Ok((
            recorder,
            Metrics {
                handle,
                process: process.map(Arc::new),
                collectors: Arc::new(Mutex::new(Vec::new())),
            },
        ))
    }
}

type Collector = Box<dyn Fn() + Send + Sync>;

/// Renders the recorder's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: Option<Arc<metrics_process::Collector>>,
    collectors: Arc<Mutex<Vec<Collector>>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("process", &self.process.is_some())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Adds a function run before every render, to refresh values that are read rather
    /// than recorded (queue lengths, counters kept elsewhere). It records through the
    /// `metrics` macros, so it reaches the recorder only once that is installed.
    pub fn add_collector(&self, f: impl Fn() + Send + Sync + 'static) {
        self.collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }

    /// Describes the process metrics and the HTTP request metrics (their HELP lines) to
    /// the installed recorder; call it once the recorder is installed.
    pub fn describe(&self) {
        if let Some(p) = &self.process {
            p.describe();
        }
        http::describe();
    }

    /// The Prometheus text exposition, after refreshing process metrics and collectors.
    pub fn render(&self) -> String {
        if let Some(p) = &self.process {
            p.collect();
        }
        for c in self
            .collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            c();
        }
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; call it on a timer (the facade does,
    /// every 5 s) so memory stays bounded between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_buckets_are_checked_where_they_are_set() {
        let b = MetricsBuilder::new();
        assert!(b.clone().with_global_label("service", "x").is_ok());
        let e = b.clone().with_global_label("2bad", "x").unwrap_err();
        assert!(e.to_string().contains("\"2bad\""), "{e}");
        assert!(b.clone().with_global_label("__reserved", "x").is_err());
        assert!(b.clone().with_buckets("bad-name", &[1.0]).is_err());
        let e = b
            .clone()
            .with_buckets("latency_seconds", &[1.0, 0.5])
            .unwrap_err();
        assert!(e.to_string().contains("increasing"), "{e}");
        assert!(b.clone().with_buckets("latency_seconds", &[]).is_err());
        assert!(
            b.clone()
                .with_buckets("latency_seconds", &[f64::NAN])
                .is_err()
        );
        assert!(b.with_buckets("latency_seconds", &[0.1, 1.0]).is_ok());
    }

    #[test]
    fn histograms_render_with_the_configured_buckets_and_collectors_run() {
        let (recorder, metrics) = MetricsBuilder::new()
            .with_process_metrics(false)
            .with_buckets("job_seconds", &[0.1, 1.0])
            .unwrap()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("job_seconds").record(0.5);
            metrics::histogram!(HTTP_SERVER_REQUEST_DURATION, "http_route" => "/").record(0.02);
        });
        let text = metrics.render();
        assert!(text.contains("job_seconds_bucket{le=\"1\"} 1"), "{text}");
        assert!(text.contains("job_seconds_bucket{le=\"0.1\"} 0"), "{text}");
        assert!(
            text.contains(
                "http_server_request_duration_seconds_bucket{http_route=\"/\",le=\"0.025\"} 1"
            ),
            "{text}"
        );
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        metrics.add_collector(move || {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        metrics.render();
        metrics.run_upkeep();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
