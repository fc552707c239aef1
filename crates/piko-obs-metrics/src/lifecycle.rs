//! The metrics upkeep as a part of the piko-obs lifecycle.

use std::sync::Mutex;
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::time::Duration;

use piko_obs_lifecycle::{Lifecycle, ShutdownError, bounded};

use crate::Metrics;

/// The part name of the upkeep.
const PART: &str = "metrics upkeep";

/// A thread that runs [`Metrics::run_upkeep`] on a timer, so histogram memory stays
/// bounded between scrapes; it stops at shutdown.
///
/// ```
/// use std::time::Duration;
/// use piko_obs_lifecycle::Lifecycle;
///
/// let (_recorder, metrics) = piko_obs_metrics::MetricsBuilder::new().build().unwrap();
/// let upkeep = piko_obs_metrics::Upkeep::start(metrics, Duration::from_secs(5)).unwrap();
/// upkeep.shutdown_within(Duration::from_secs(1)).unwrap();
/// ```
#[derive(Debug)]
pub struct Upkeep {
    stop: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Upkeep {
    /// Runs the upkeep of `metrics` every `every` on a thread of its own.
    pub fn start(metrics: Metrics, every: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("piko-obs-metrics-upkeep".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    metrics.run_upkeep();
                }
            })?;
        Ok(Self {
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl Lifecycle for Upkeep {
    fn part(&self) -> &'static str {
        PART
    }

    fn shutdown_within(&self, budget: Duration) -> Result<(), ShutdownError> {
        drop(self.stop.lock().unwrap_or_else(|p| p.into_inner()).take());
        let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        bounded(PART, budget, move || {
            thread
                .join()
                .map_err(|_| ShutdownError::new(PART, "the upkeep thread panicked"))
        })
    }
}
