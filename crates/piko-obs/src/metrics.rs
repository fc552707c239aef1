//! Prometheus metrics, served on the probe port's `/metrics`.
//!
//! `init()` installs piko-obs's recorder as the process's `metrics` recorder (once per
//! process; a later `init()` reuses it), so every `metrics::counter!`, `gauge!` and
//! `histogram!` in the program and its dependencies is rendered on `/metrics`, next to
//! the standard process metrics and piko-obs's own `piko_obs_*` counters. Histogram
//! upkeep runs every 5 s on piko-obs's runtime, so memory stays bounded.
//!
//! ```
//! let guard = piko_obs::builder()
//!     .with_console_output(false)
//!     .with_health_probe_port(0)
//!     .with_metrics_global_label("environment", "staging")
//!     .init()
//!     .unwrap();
//! metrics::counter!("orders_placed_total").increment(1);
//! let text = piko_obs::metrics::render().unwrap();
//! assert!(text.contains("orders_placed_total"));
//! guard.shutdown().unwrap();
//! ```

pub use piko_obs_metrics::setup::{installed, render};
pub use piko_obs_metrics::*;

use crate::logger;

use piko_obs_lifecycle::Unwind;
use piko_obs_metrics::setup::{InstallError, RecorderSetting, RecorderSetupError, Telemetry};

use crate::start::{Resolved, Started};
use crate::{Builder, InitError};

/// Another `metrics` recorder is installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "another `metrics` recorder is already installed; remove it, or turn piko-obs's off with with_health_metrics_enabled(false)"
)]
pub struct RecorderInstalledError;

impl From<RecorderSetupError> for InitError {
    fn from(e: RecorderSetupError) -> Self {
        let setting = match e.setting {
            RecorderSetting::GlobalLabel => "with_metrics_global_label",
            RecorderSetting::CardinalityLimit => "with_metrics_cardinality_limit",
            RecorderSetting::CardinalityLimitFor => "with_metrics_cardinality_limit_for",
            RecorderSetting::Buckets => "with_metrics_buckets",
        };
        InitError::Metrics {
            setting,
            source: e.source,
        }
    }
}

impl From<InstallError> for InitError {
    fn from(e: InstallError) -> Self {
        match e {
            InstallError::Buckets(source) => InitError::Metrics {
                setting: "with_metrics_buckets",
                source,
            },
            InstallError::RecorderInstalled => RecorderInstalledError.into(),
            InstallError::Upkeep(e) => InitError::Runtime(e),
        }
    }
}

/// The series of every subsystem compiled in: described when the recorder is installed,
/// collected at each render.
const TELEMETRY: Telemetry<'static> = Telemetry {
    describe: &[
        piko_obs_logger::telemetry::describe_metrics,
        #[cfg(feature = "health")]
        piko_obs_health_warp::telemetry::describe_metrics,
        #[cfg(feature = "notify")]
        crate::notification::telemetry::describe_metrics,
        #[cfg(feature = "notify")]
        piko_obs_error_alerts::telemetry::describe_metrics,
        #[cfg(feature = "notify")]
        crate::notification::MemoryDeadLetterStore::describe_metrics,
        #[cfg(feature = "sentry")]
        crate::sentry::telemetry::describe_metrics,
        #[cfg(feature = "otlp")]
        crate::otlp::telemetry::describe_metrics,
    ],
    collect: &[
        || piko_obs_logger::telemetry::record_metrics(logger::hub()),
        #[cfg(feature = "health")]
        piko_obs_health_warp::setup::global::record_metrics,
        #[cfg(feature = "notify")]
        piko_obs_notify_providers::setup::global::record_metrics,
        #[cfg(feature = "notify")]
        piko_obs_error_alerts::setup::global::record_metrics,
        #[cfg(feature = "sentry")]
        piko_obs_sentry::setup::global::record_metrics,
        #[cfg(feature = "otlp")]
        || crate::otlp::pipeline().map_or((), |p| p.record_metrics()),
    ],
};

/// Logs the first refusal of each metric's series at WARN under `piko-obs/metrics`.
fn log_refusal(refusal: &guard::Refusal) {
    logger::get_logger("piko-obs/metrics").warn(
        "metric series not recorded",
        &[
            logger::attr::string("metric", &refusal.metric),
            logger::attr::string("reason", refusal.reason.as_str()),
            logger::attr::string("why", &refusal.to_string()),
        ],
    )
}

impl Builder {
    delegate! { metrics:
        /// Whether the probe port serves metrics on the metrics path and `init()` installs
        /// piko-obs's `metrics` recorder (default on). Off, the metrics path answers 404 and
        /// no recorder is installed.
        fn with_health_metrics_enabled(on: bool) => with_enabled(on);
        /// A label added to every metric series (for example `environment`); checked by
        /// `init()`. Labels apply when the recorder is installed, at the first `init()`.
        fn with_metrics_global_label(name: impl Into<String>, value: impl Into<String>) => with_global_label(name, value);
        /// The cap on label sets per metric name (default 1000; at least 1, checked by
        /// `init()`). Series past it are not recorded, are counted in
        /// `piko_obs_metrics_series_refused_total`, and the first refusal of each metric is
        /// logged as a warning; so are series with names Prometheus cannot take.
        fn with_metrics_cardinality_limit(limit: usize) => with_cardinality_limit(limit);
        /// The cap on label sets of one metric, instead of the cap of
        /// [`with_metrics_cardinality_limit`](Self::with_metrics_cardinality_limit) (a valid
        /// metric name and at least 1, checked by `init()`). Like the global labels, caps
        /// apply when the recorder is installed, at the first `init()`.
        fn with_metrics_cardinality_limit_for(metric: impl Into<String>, limit: usize) => with_cardinality_limit_for(metric, limit);
        /// Histogram buckets (upper bounds) for the metric named `metric`, so that its
        /// `metrics::histogram!` renders as a Prometheus histogram with these `le` values;
        /// a histogram without buckets renders as a summary. The name is matched whole.
        /// `http_server_request_duration_seconds` has the OpenTelemetry buckets unless set
        /// here. `init()` checks the name and the buckets (non-empty, finite, increasing);
        /// they apply when the recorder is installed, at the first `init()`.
        ///
        /// ```
        /// let guard = piko_obs::builder()
        ///     .with_console_output(false)
        ///     .with_health_probe_port(0)
        ///     .with_metrics_buckets("payment_duration_seconds", &[0.1, 0.5, 1.0, 5.0])
        ///     .init()
        ///     .unwrap();
        /// metrics::histogram!("payment_duration_seconds").record(0.42);
        /// let text = piko_obs::metrics::render().unwrap();
        /// assert!(text.contains(r#"payment_duration_seconds_bucket{le="0.5"} 1"#));
        /// guard.shutdown().unwrap();
        /// ```
        fn with_metrics_buckets(metric: impl Into<String>, buckets: &[f64]) => with_buckets(metric, buckets);
    }
}

impl Builder {
    /// The `metrics` recorder: served on the health server's `/metrics`, and, with OTLP
    /// on, exported over OTLP too, with or without the health server.
    pub(crate) fn start_metrics(
        &self,
        r: &Resolved,
        started: &mut Started,
        parts: &Unwind,
    ) -> Result<(), InitError> {
        #[cfg(feature = "health")]
        let (served, custom) = (self.health.enabled(), self.health.has_metrics_render());
        #[cfg(not(feature = "health"))]
        let (served, custom) = (false, false);
        #[cfg(feature = "otlp")]
        let pipeline = started.pipeline.as_ref();
        #[cfg(not(feature = "otlp"))]
        let pipeline: Option<&()> = None;
        if !self.metrics.wanted(served, custom, pipeline.is_some()) {
            return Ok(());
        }
        #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
        let mut builder = r.metrics.clone().on_refused(log_refusal);
        // The same buckets over OTLP as on `/metrics`: the recorder is installed once per
        // process; the slot in it takes the recorder of each pipeline started.
        #[cfg(feature = "otlp")]
        if pipeline.is_some() {
            builder = builder.with_extra_recorder(crate::otlp::setup::metrics_slot().clone());
        }
        let (installed, fresh) = setup::start(builder, TELEMETRY, parts)?;
        #[cfg(feature = "otlp")]
        if let Some(p) = pipeline {
            crate::otlp::setup::export_metrics(p, fresh);
        }
        let _ = fresh;
        started.recorder = Some(installed);
        Ok(())
    }
}
