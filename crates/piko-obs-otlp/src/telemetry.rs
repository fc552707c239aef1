//! The pipeline's span and log-record counters as `metrics` series
//! (`piko_obs_spans_*`, `piko_obs_log_records_*`).

use crate::Pipeline;

/// Describes the series [`Pipeline::record_metrics`] sets.
pub fn describe_metrics() {
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

impl Pipeline {
    /// Records the span and log-record counters.
    pub fn record_metrics(&self) {
        let s = self.spans.stats();
        let l = self.logs.stats();
        for (name, v) in [
            ("piko_obs_spans_ended_total", s.ended),
            ("piko_obs_spans_exported_total", s.exported),
            ("piko_obs_spans_dropped_total", s.dropped),
            ("piko_obs_spans_export_failed_total", s.failed),
            ("piko_obs_log_records_emitted_total", l.emitted),
            ("piko_obs_log_records_exported_total", l.exported),
            ("piko_obs_log_records_dropped_total", l.dropped),
            ("piko_obs_log_records_export_failed_total", l.failed),
        ] {
            metrics::counter!(name).absolute(v);
        }
    }
}
