//! The probe server's connection counters as `metrics` series
//! (`piko_obs_health_connections_*`, `piko_obs_health_accept_errors_total`).

use crate::ConnectionCounters;

/// Describes the probe server's connection metrics.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "piko_obs_health_connections_accepted_total",
        "Connections the probe server accepted and served."
    );
    metrics::describe_counter!(
        "piko_obs_health_connections_closed_total",
        "Connections the probe server closed itself, per reason: refused_at_limit (at the connection limit with every connection busy, closed at once), evicted_at_limit (closed to make room at the limit), header_timeout, idle_timeout."
    );
    metrics::describe_gauge!(
        "piko_obs_health_connections_open",
        "Connections the probe server holds."
    );
    metrics::describe_counter!(
        "piko_obs_health_accept_errors_total",
        "Failed accepts on the probe port (out of file descriptors and the like)."
    );
}

impl ConnectionCounters {
    /// Records the probe server's connection counters.
    pub fn record_metrics(&self) {
        let s = self.snapshot();
        metrics::counter!("piko_obs_health_connections_accepted_total").absolute(s.accepted);
        for (reason, v) in [
            ("refused_at_limit", s.refused),
            ("evicted_at_limit", s.evicted),
            ("header_timeout", s.header_timeouts),
            ("idle_timeout", s.idle_timeouts),
        ] {
            metrics::counter!("piko_obs_health_connections_closed_total", "reason" => reason)
                .absolute(v);
        }
        metrics::gauge!("piko_obs_health_connections_open").set(s.open as f64);
        metrics::counter!("piko_obs_health_accept_errors_total").absolute(s.accept_errors);
    }
}
