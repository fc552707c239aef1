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

use std::sync::OnceLock;

pub use piko_obs_metrics::*;

use crate::logger;

static INSTALLED: OnceLock<Metrics> = OnceLock::new();

/// The installed metrics, if `init()` installed them.
pub fn installed() -> Option<&'static Metrics> {
    INSTALLED.get()
}

/// The Prometheus text of the installed metrics.
pub fn render() -> Option<String> {
    INSTALLED.get().map(Metrics::render)
}

/// Another `metrics` recorder is installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "another `metrics` recorder is already installed; remove it, or turn piko-obs's off with with_health_metrics_enabled(false)"
)]
pub struct RecorderInstalledError;

/// Installs the recorder built from `builder` (the first time), with piko-obs's own
/// counters as a collector; later calls return the installed metrics. True when this
/// call installed it.
pub(crate) fn install(
    builder: MetricsBuilder,
) -> Result<(&'static Metrics, bool), crate::InitError> {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = INSTALLED.get() {
        return Ok((m, false));
    }
    let (recorder, metrics) = builder
        .on_refused(|refusal| {
            let why = refusal.to_string();
            logger::get_logger("piko-obs/metrics").warn(
                "metric series not recorded",
                &[
                    piko_obs_logger::attr::string("metric", &refusal.metric),
                    piko_obs_logger::attr::string("reason", refusal.reason.as_str()),
                    piko_obs_logger::attr::string("why", &why),
                ],
            )
        })
        .build()
        // Only buckets the exporter refuses fail here (the builder checked them already).
        .map_err(|source| crate::InitError::Metrics {
            setting: "with_metrics_buckets",
            source,
        })?;
    metrics::set_global_recorder(recorder).map_err(|_| RecorderInstalledError)?;
    metrics.describe();
    metrics::describe_counter!(
        guard::SERIES_REFUSED,
        "Metric series not recorded, per metric (the first 100 names, then _other) and reason (invalid_name, cardinality_limit, metric_name_limit)."
    );
    piko_obs_logger::telemetry::describe_metrics();
    piko_obs_health_warp::telemetry::describe_metrics();
    crate::notification::telemetry::describe_metrics();
    crate::notification::MemoryDeadLetterStore::describe_metrics();
    crate::sentry::telemetry::describe_metrics();
    crate::otlp::telemetry::describe_metrics();
    metrics.add_collector(|| piko_obs_logger::telemetry::record_metrics(logger::hub()));
    metrics.add_collector(crate::health::record_metrics);
    metrics.add_collector(crate::notification::record_metrics);
    metrics.add_collector(|| crate::sentry::installed().map_or((), |s| s.record_metrics()));
    metrics.add_collector(|| crate::otlp::pipeline().map_or((), |p| p.record_metrics()));
    Ok((INSTALLED.get_or_init(|| metrics), true))
}
