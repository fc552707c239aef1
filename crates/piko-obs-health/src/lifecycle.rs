//! Draining as a part of the piko-obs lifecycle.

use std::time::Duration;

use piko_obs_lifecycle::{Lifecycle, ShutdownError};

use crate::HealthService;

/// The first step of a shutdown: readiness answers UNHEALTHY ("application is shutting
/// down"; liveness is unchanged), then the drain delay passes (capped by the budget), so
/// load balancers stop sending traffic before anything stops.
///
/// ```
/// use std::time::Duration;
/// use piko_obs_health::{Drain, HealthService};
/// use piko_obs_lifecycle::Lifecycle;
///
/// let service = HealthService::new("orders", Duration::from_secs(5)).unwrap();
/// let drain = Drain::new(&service, Duration::from_secs(30));
/// // The budget caps the delay.
/// drain.shutdown_within(Duration::from_millis(10)).unwrap();
/// assert!(service.is_draining());
/// ```
#[derive(Debug, Clone)]
pub struct Drain {
    service: HealthService,
    delay: Duration,
}

impl Drain {
    /// Drains `service` for `delay` at shutdown.
    pub fn new(service: &HealthService, delay: Duration) -> Self {
        Self {
            service: service.clone(),
            delay,
        }
    }
}

impl Lifecycle for Drain {
    fn part(&self) -> &'static str {
        "drain"
    }

    fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
        self.service.signal_drain();
        std::thread::sleep(self.delay.min(budget));
        Ok(())
    }
}
