//! Notification delivery as a part of the piko-obs lifecycle.

use std::time::Duration;

use piko_obs_lifecycle::{Lifecycle, ShutdownError, bounded};

use crate::dispatcher::{Dispatcher, ShutdownReport};
use crate::service::NotificationService;

/// The part name of the delivery.
const PART: &str = "notification dispatcher";

/// The started delivery of notifications: at shutdown the dispatcher delivers what is
/// queued within the budget (what it cannot is written to the dead-letter store), then
/// the service closes every provider.
#[derive(Debug, Clone)]
pub struct Delivery {
    service: NotificationService,
    dispatcher: Dispatcher,
    runtime: tokio::runtime::Handle,
}

impl Delivery {
    /// The delivery of `service` through `dispatcher`, which run on `runtime`.
    pub fn new(
        service: &NotificationService,
        dispatcher: &Dispatcher,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        Self {
            service: service.clone(),
            dispatcher: dispatcher.clone(),
            runtime: runtime.clone(),
        }
    }
}

impl Lifecycle for Delivery {
    fn part(&self) -> &'static str {
        PART
    }

    fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
        let Delivery {
            service,
            dispatcher,
            runtime,
        } = self.clone();
        bounded(PART, budget, move || {
            let report = runtime.block_on(async move {
                let report = dispatcher.shutdown(budget).await;
                service.close().await;
                report
            });
            NotDelivered::from_report(&report).map_or(Ok(()), |e| Err(ShutdownError::new(PART, e)))
        })
    }
}

/// What a dispatcher's shutdown left undone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotDelivered {
    /// The bound was reached: what was left was handed to the dead-letter writer.
    pub bound_reached: bool,
    /// Dead letters not yet written to the store; the writer thread keeps writing them
    /// while the process lives.
    pub dead_letter_pending: u64,
    /// Notifications that could not be written to the dead-letter store.
    pub not_written: u64,
}

impl NotDelivered {
    /// What `report` left undone, if anything.
    pub fn from_report(report: &ShutdownReport) -> Option<Self> {
        let s = &report.stats;
        let e = Self {
            bound_reached: !report.within_bound,
            dead_letter_pending: s.dead_letter_pending,
            not_written: s.dropped + s.dead_letter_errors,
        };
        (e.bound_reached || e.dead_letter_pending > 0 || e.not_written > 0).then_some(e)
    }
}

impl std::fmt::Display for NotDelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut problems = Vec::new();
        if self.bound_reached {
            problems.push(
                "bound reached: what was left was handed to the dead-letter writer".to_string(),
            );
        }
        if self.dead_letter_pending > 0 {
            problems.push(format!(
                "{} dead letter(s) not yet written to the dead-letter store: \
                 the writer thread keeps writing them while the process lives",
                self.dead_letter_pending
            ));
        }
        if self.not_written > 0 {
            problems.push(format!(
                "{} notification(s) could not be written to the dead-letter file",
                self.not_written
            ));
        }
        f.write_str(&problems.join("; "))
    }
}

impl std::error::Error for NotDelivered {}
