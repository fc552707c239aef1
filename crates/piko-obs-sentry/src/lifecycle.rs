//! Sentry as a part of the piko-obs lifecycle.

use std::time::Duration;

use piko_obs_lifecycle::{Lifecycle, ShutdownError, bounded};

use crate::Sentry;

/// The part name of Sentry.
const PART: &str = "sentry";

/// Events still queued when the bound ran out were dropped.
#[derive(Debug, thiserror::Error)]
#[error("events still queued after {0:?} were dropped")]
pub struct EventsDropped(pub Duration);

/// Sentry sends what is queued within its own shutdown timeout (capped by the budget, at
/// least 50 ms), then stops; Sentry's main hub no longer names the client. It keeps back
/// its shutdown timeout, at most a second, from the parts shut down before it.
impl Lifecycle for Sentry {
    fn part(&self) -> &'static str {
        PART
    }

    fn reserve(&self) -> Duration {
        self.shutdown_timeout.min(Duration::from_secs(1))
    }

    fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
        let budget = self
            .shutdown_timeout
            .min(budget)
            .max(Duration::from_millis(50));
        let client = self.client.clone();
        let result = bounded(PART, budget, move || {
            if client.close(Some(budget)) {
                Ok(())
            } else {
                Err(ShutdownError::new(PART, EventsDropped(budget)))
            }
        });
        let main = sentry_core::Hub::main();
        if main
            .client()
            .is_some_and(|c| std::sync::Arc::ptr_eq(&c, &self.client))
        {
            main.bind_client(None);
        }
        result.map_err(|e| {
            if e.is_timeout() {
                ShutdownError::new(PART, EventsDropped(budget))
            } else {
                e
            }
        })
    }
}
