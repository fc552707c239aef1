//! Prometheus metrics, served on the probe port's `/metrics`.
//!
//! `init()` installs piko-obs's recorder as the process's `metrics` recorder (once per
//! process; a later `init()` reuses it), so every `metrics::counter!`, `gauge!` and
//! `histogram!` in the program and its dependencies is rendered on `/metrics`, next to
//! the standard process metrics and piko-obs's own `piko_obs_*` counters. Histogram
//! upkeep runs every 5 s on piko-obs's runtime, so memory stays bounded.
//!
//! ```
//! use piko_obs::PikoObs;
//! let guard = PikoObs::builder()
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
    describe_self_metrics();
    crate::health::describe_stats();
    metrics.add_collector(record_log_counters);
    metrics.add_collector(crate::otlp::record_stats);
    metrics.add_collector(crate::sentry::record_stats);
    metrics.add_collector(crate::notification::record_forwarder_stats);
    metrics.add_collector(crate::health::record_stats);
    metrics.add_collector(|| {
        if let Some(service) = crate::notification::service() {
            crate::notification::record_stats(&service);
        }
    });
    Ok((INSTALLED.get_or_init(|| metrics), true))
}

fn describe_self_metrics() {
    metrics::describe_counter!(
        "piko_obs_log_lines_accepted_total",
        "Log lines handed to each output."
    );
    metrics::describe_counter!(
        "piko_obs_log_lines_written_total",
        "Log lines each output wrote to its destination."
    );
    metrics::describe_counter!(
        "piko_obs_log_lines_dropped_total",
        "Log lines each output dropped (queue full in lossy mode, wait bound exceeded, closed, failed write)."
    );
    metrics::describe_counter!(
        "piko_obs_log_write_errors_total",
        "Failed writes of each output."
    );
    metrics::describe_counter!(
        guard::SERIES_REFUSED,
        "Metric series not recorded, per metric (the first 100 names, then _other) and reason (invalid_name, cardinality_limit, metric_name_limit)."
    );
    for (name, help) in [
        (
            "piko_obs_notifications_enqueued_total",
            "Notifications accepted into the dispatcher's queue.",
        ),
        (
            "piko_obs_notifications_delivered_total",
            "Queued notifications delivered to every provider they were for.",
        ),
        (
            "piko_obs_notifications_retried_total",
            "Retries the dispatcher scheduled.",
        ),
        (
            "piko_obs_notifications_dead_lettered_total",
            "Entries written to the dead-letter file (a notification for several providers can leave two).",
        ),
        (
            "piko_obs_notifications_dead_letter_errors_total",
            "Notifications the dead-letter file failed to take (printed to stderr).",
        ),
        (
            "piko_obs_notifications_dropped_total",
            "Notifications dropped: queue and dead-letter writer both full.",
        ),
        (
            "piko_obs_notification_provider_delivered_total",
            "Notifications each provider delivered.",
        ),
        (
            "piko_obs_notification_provider_failed_attempts_total",
            "Failed attempts of each provider, retries included.",
        ),
    ] {
        metrics::describe_counter!(name, help);
    }
    for (name, help) in [
        (
            "piko_obs_notifications_queued",
            "Notifications waiting in the dispatcher's queue.",
        ),
        (
            "piko_obs_notifications_in_flight",
            "Notifications being delivered.",
        ),
        (
            "piko_obs_notifications_waiting_retry",
            "Notifications waiting for their next retry.",
        ),
        (
            "piko_obs_notifications_dead_letter_pending",
            "Dead-letter entries handed to the writer and not yet on disk.",
        ),
        (
            "piko_obs_notifications_dead_letter_in_memory",
            "Dead letters held in memory (and printed to stderr) because the default dead-letter file is not writable.",
        ),
    ] {
        metrics::describe_gauge!(name, help);
    }
    for (name, help) in [
        (
            "piko_obs_sentry_envelopes_total",
            "Sentry envelopes per outcome: queued, sent, failed, rate_limited, dropped (queue full or closed).",
        ),
        (
            "piko_obs_error_notifications_records_total",
            "Log records counted into an error-notification group.",
        ),
        (
            "piko_obs_error_notifications_sent_total",
            "Grouped error alerts handed to the notification service.",
        ),
        (
            "piko_obs_error_notifications_handoff_failed_total",
            "Grouped error alerts the notification service could not take or deliver.",
        ),
        (
            "piko_obs_error_notifications_groups_dropped_total",
            "Error groups dropped because a window held the maximum number of groups.",
        ),
        (
            "piko_obs_error_notifications_records_dropped_total",
            "Error records not grouped: records of dropped groups, and records after shutdown.",
        ),
        (
            "piko_obs_error_notifications_rate_limited_total",
            "Error groups not sent because of the alerts-per-minute limit.",
        ),
        (
            "piko_obs_error_notifications_resolved_total",
            "Error alerts sent resolved once their group was quiet.",
        ),
        (
            "piko_obs_error_notifications_untracked_total",
            "Error alerts sent but not followed for a resolved alert (too many followed).",
        ),
    ] {
        metrics::describe_counter!(name, help);
    }
    metrics::describe_counter!(
        "piko_obs_notifications_dead_letter_memory_evicted_total",
        "Dead letters let go from memory to make room (each was printed to stderr)."
    );
    metrics::describe_counter!(
        "piko_obs_log_lines_unrouted_total",
        "Log lines at INFO or above logged while no output existed."
    );
    for (name, help) in [
        (
            "piko_obs_spans_ended_total",
            "Spans ended, whether they then fit in the OTLP export queue or were dropped.",
        ),
        (
            "piko_obs_spans_exported_total",
            "Spans the OTLP collector accepted.",
        ),
        (
            "piko_obs_spans_dropped_total",
            "Spans dropped: the OTLP span queue was full or already shut down.",
        ),
        (
            "piko_obs_spans_export_failed_total",
            "Spans in OTLP exports that failed.",
        ),
        (
            "piko_obs_log_records_emitted_total",
            "OTLP log records emitted, whether they then fit in the export queue or were dropped.",
        ),
        (
            "piko_obs_log_records_exported_total",
            "OTLP log records the collector accepted.",
        ),
        (
            "piko_obs_log_records_dropped_total",
            "OTLP log records dropped: the log-record queue was full or already shut down.",
        ),
        (
            "piko_obs_log_records_export_failed_total",
            "OTLP log records in exports that failed.",
        ),
    ] {
        metrics::describe_counter!(name, help);
    }
}

/// Records each check's duration and each probe's state and duration.
pub(crate) fn observe_health(service: &crate::health::HealthService) {
    metrics::describe_histogram!(
        "piko_obs_health_check_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of health checks, per kind, and of each probe in them."
    );
    metrics::describe_gauge!(
        "piko_obs_health_probe_state",
        "Last state of each probe per kind: 0 healthy, 1 degraded, 2 unhealthy."
    );
    service.observe(|kind, status| {
        metrics::histogram!(
            "piko_obs_health_check_duration_seconds",
            "kind" => kind.as_str(),
            "probe" => ""
        )
        .record(status.duration.as_secs_f64());
        for dep in &status.dependencies {
            metrics::histogram!(
                "piko_obs_health_check_duration_seconds",
                "kind" => kind.as_str(),
                "probe" => dep.name.clone()
            )
            .record(dep.duration.as_secs_f64());
            let state = match dep.state {
                crate::health::State::Healthy => 0.0,
                crate::health::State::Degraded => 1.0,
                crate::health::State::Unhealthy => 2.0,
            };
            metrics::gauge!(
                "piko_obs_health_probe_state",
                "kind" => kind.as_str(),
                "probe" => dep.name.clone()
            )
            .set(state);
        }
    });
}

/// Copies the logger's counters into the recorder.
fn record_log_counters() {
    let hub = logger::hub();
    for o in hub.outputs() {
        let s = o.stats;
        metrics::counter!("piko_obs_log_lines_accepted_total", "output" => o.name.clone())
            .absolute(s.accepted);
        metrics::counter!("piko_obs_log_lines_written_total", "output" => o.name.clone())
            .absolute(s.written);
        metrics::counter!("piko_obs_log_lines_dropped_total", "output" => o.name.clone())
            .absolute(s.dropped);
        metrics::counter!("piko_obs_log_write_errors_total", "output" => o.name)
            .absolute(s.write_errors);
    }
    metrics::counter!("piko_obs_log_lines_unrouted_total").absolute(hub.unrouted());
}
