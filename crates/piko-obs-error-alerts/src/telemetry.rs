//! The error forwarder's counters as `metrics` series (`piko_obs_error_notifications_*`).

use crate::ErrorForwarder;

/// Describes the series [`record_metrics`] sets.
pub fn describe_metrics() {
    for (name, help) in [
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
}

/// Records the error forwarder's counters as `piko_obs_error_notifications_*` metrics.
pub fn record_metrics(f: &ErrorForwarder) {
    {
        let s = f.stats();
        for (name, v) in [
            (
                "piko_obs_error_notifications_records_total",
                s.records_grouped,
            ),
            ("piko_obs_error_notifications_sent_total", s.groups_sent),
            (
                "piko_obs_error_notifications_handoff_failed_total",
                s.handoff_failed + s.send_failed,
            ),
            (
                "piko_obs_error_notifications_groups_dropped_total",
                s.dropped_groups,
            ),
            (
                "piko_obs_error_notifications_records_dropped_total",
                s.dropped_records,
            ),
            (
                "piko_obs_error_notifications_rate_limited_total",
                s.rate_limited_groups,
            ),
            (
                "piko_obs_error_notifications_resolved_total",
                s.resolved_sent,
            ),
            (
                "piko_obs_error_notifications_untracked_total",
                s.untracked_alerts,
            ),
        ] {
            metrics::counter!(name).absolute(v);
        }
    }
}
