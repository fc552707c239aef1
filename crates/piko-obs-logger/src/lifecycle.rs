//! The log hub as a part of the piko-obs lifecycle.

use std::time::Duration;

use piko_obs_lifecycle::{Lifecycle, ShutdownError};

use crate::Hub;

/// The part name of the log hub.
const PART: &str = "log hub";

/// The hub is the last part shut down: it closes every output, writing what each queued.
/// It keeps back 300 ms from the parts shut down before it, and takes at least 100 ms.
impl Lifecycle for Hub {
    fn part(&self) -> &'static str {
        PART
    }

    fn reserve(&self) -> Duration {
        Duration::from_millis(300)
    }

    fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
        self.shutdown(budget.max(Duration::from_millis(100)))
            .map_err(|e| ShutdownError::new(PART, e))
    }
}

/// A log output that a started part added to a hub, as a part of the lifecycle: at
/// shutdown it is removed from the hub and closed, writing what it queued, within the
/// budget (or the floor given, if larger). The error forwarder's output is one: closing it
/// hands its pending groups to the dispatcher.
#[derive(Debug, Clone)]
pub struct AddedOutput {
    hub: Hub,
    id: crate::OutputId,
    part: &'static str,
    floor: Duration,
}

impl AddedOutput {
    /// The output `id` of `hub`, named `part` in errors.
    pub fn new(hub: &Hub, id: crate::OutputId, part: &'static str) -> Self {
        Self {
            hub: hub.clone(),
            id,
            part,
            floor: Duration::ZERO,
        }
    }

    /// The least time the output is given to close, whatever the budget (default zero).
    pub fn with_floor(mut self, floor: Duration) -> Self {
        self.floor = floor;
        self
    }

    /// The output's id.
    pub fn id(&self) -> crate::OutputId {
        self.id
    }
}

impl Lifecycle for AddedOutput {
    fn part(&self) -> &'static str {
        self.part
    }

    fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
        self.hub
            .remove_output(self.id, budget.max(self.floor))
            .map(drop)
            .map_err(|e| ShutdownError::new(self.part, e))
    }
}
