//! The probe server as a part of the piko-obs lifecycle.

use std::time::Duration;

use piko_obs_lifecycle::{Lifecycle, ShutdownError, bounded};

use crate::RunningServer;

/// The part name of the probe server.
const PART: &str = "probe server";

/// The longest a shutdown lets requests in flight finish.
const LONGEST_DRAIN: Duration = Duration::from_secs(5);

/// The server stops accepting, closes idle connections, and lets requests in flight
/// finish within the budget (at most 5 s): [`RunningServer::shutdown`], from any thread.
impl Lifecycle for RunningServer {
    fn part(&self) -> &'static str {
        PART
    }

    fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
        let budget = budget.min(LONGEST_DRAIN);
        let stopped = self.stop_within(budget);
        let runtime = self.runtime().clone();
        bounded(PART, budget, move || {
            runtime.block_on(stopped);
            Ok(())
        })
    }
}
