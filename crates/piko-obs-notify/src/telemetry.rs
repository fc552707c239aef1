//! The notification service's, dispatcher's, providers' and error forwarder's counters
//! as `metrics` series (`piko_obs_notification*`, `piko_obs_error_notifications_*`).

use crate::{ErrorForwarder, NotificationService};

/// Describes the series [`record_metrics`] and [`record_forwarder_metrics`] set.
pub fn describe_metrics() {
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
    ] {
        metrics::describe_gauge!(name, help);
    }
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

/// Records the dispatcher's and the providers' counters as `piko_obs_notification*`
/// metrics.
pub fn record_metrics(service: &NotificationService) {
    if let Some(d) = service.dispatcher() {
        let s = d.stats();
        for (name, v) in [
            ("piko_obs_notifications_enqueued_total", s.enqueued),
            ("piko_obs_notifications_delivered_total", s.delivered),
            ("piko_obs_notifications_retried_total", s.retried),
            (
                "piko_obs_notifications_dead_lettered_total",
                s.dead_lettered,
            ),
            (
                "piko_obs_notifications_dead_letter_errors_total",
                s.dead_letter_errors,
            ),
            ("piko_obs_notifications_dropped_total", s.dropped),
        ] {
            metrics::counter!(name).absolute(v);
        }
        for (name, v) in [
            ("piko_obs_notifications_queued", s.queued),
            ("piko_obs_notifications_in_flight", s.in_flight),
            ("piko_obs_notifications_waiting_retry", s.waiting_retry),
            (
                "piko_obs_notifications_dead_letter_pending",
                s.dead_letter_pending,
            ),
        ] {
            metrics::gauge!(name).set(v as f64);
        }
    }
    for p in service.provider_stats() {
        metrics::counter!("piko_obs_notification_provider_delivered_total", "provider" => p.provider.clone())
            .absolute(p.delivered);
        metrics::counter!("piko_obs_notification_provider_failed_attempts_total", "provider" => p.provider)
            .absolute(p.failed_attempts);
    }
}

/// Records the error forwarder's counters as `piko_obs_error_notifications_*` metrics.
pub fn record_forwarder_metrics(f: &ErrorForwarder) {
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
