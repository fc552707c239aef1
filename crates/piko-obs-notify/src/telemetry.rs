//! The notification service's, dispatcher's and providers' counters as `metrics` series
//! (`piko_obs_notification*`).

use crate::service::NotificationService;

/// Describes the series [`record_metrics`] sets.
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
