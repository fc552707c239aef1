//! The OpenTelemetry pipeline as a part of the piko-obs lifecycle.

use std::time::Duration;

use piko_obs_lifecycle::{Lifecycle, ShutdownError, bounded};

use crate::Pipeline;

/// The part name of the pipeline.
const PART: &str = "OpenTelemetry providers";

/// The providers that did not flush and stop, by signal (`traces`, `metrics`, `logs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .failures.iter().map(|(signal, e)| format!("{signal}: {e}")).collect::<Vec<_>>().join("; "))]
pub struct ProviderFailures {
    /// Each failed signal and why.
    pub failures: Vec<(&'static str, String)>,
}

/// The three providers flush and stop at the same time ([`Pipeline::shutdown`]) within
/// the budget (at least 100 ms). Stop the pipeline while the runtime its gRPC connections
/// use is still up. It keeps back a second from the parts shut down before it.
impl Lifecycle for Pipeline {
    fn part(&self) -> &'static str {
        PART
    }

    fn reserve(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
        let budget = budget.max(Duration::from_millis(100));
        let pipeline = self.clone();
        bounded(PART, budget, move || {
            let failures = pipeline.shutdown(budget);
            if failures.is_empty() {
                Ok(())
            } else {
                Err(ShutdownError::new(PART, ProviderFailures { failures }))
            }
        })
    }
}
