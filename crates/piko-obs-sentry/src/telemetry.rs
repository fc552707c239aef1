//! Sentry's transport counters as `metrics` series (`piko_obs_sentry_envelopes_total`).

use crate::Sentry;

/// Describes the series [`Sentry::record_metrics`] sets.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "piko_obs_sentry_envelopes_total",
        "Sentry envelopes per outcome: queued, sent, failed, rate_limited, dropped (queue full or closed)."
    );
}

impl Sentry {
    /// Records the transport counters as `piko_obs_sentry_envelopes_total{outcome}`.
    pub fn record_metrics(&self) {
        let t = self.stats();
        for (outcome, v) in [
            ("queued", t.queued),
            ("sent", t.sent),
            ("failed", t.failed),
            ("rate_limited", t.rate_limited),
            ("dropped", t.dropped),
        ] {
            metrics::counter!("piko_obs_sentry_envelopes_total", "outcome" => outcome).absolute(v);
        }
    }
}
