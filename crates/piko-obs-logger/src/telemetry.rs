//! The hub's counters as `metrics` series (`piko_obs_log_*`).

use crate::Hub;

/// Describes the series [`record_metrics`] sets.
pub fn describe_metrics() {
    for (name, help) in [
        (
            "piko_obs_log_lines_accepted_total",
            "Log lines handed to each output.",
        ),
        (
            "piko_obs_log_lines_written_total",
            "Log lines each output wrote to its destination.",
        ),
        (
            "piko_obs_log_lines_dropped_total",
            "Log lines each output dropped (queue full in lossy mode, wait bound exceeded, closed, failed write).",
        ),
        (
            "piko_obs_log_write_errors_total",
            "Failed writes of each output.",
        ),
        (
            "piko_obs_log_lines_unrouted_total",
            "Log lines at INFO or above logged while no output existed.",
        ),
    ] {
        metrics::describe_counter!(name, help);
    }
}

/// Copies the counters of `hub` and of each of its outputs into the `metrics` recorder.
pub fn record_metrics(hub: &Hub) {
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
