//! piko-obs's own small tokio runtime as a part of the [`Stack`](crate::Stack) (feature
//! `runtime`): the probe server, the notification dispatcher and the exporters run on
//! it, so they work from a synchronous `main` and an async one alike.

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

use crate::{Lifecycle, ShutdownError};

/// A runtime as a part: stopped in the background after the parts that run on it (a
/// runtime cannot be dropped inside an async caller). Push it before those parts, so
/// that it is shut down after them.
///
/// ```
/// use std::time::Duration;
/// use piko_obs_lifecycle::{Stack, runtime::OwnRuntime};
///
/// let runtime = OwnRuntime::start().unwrap();
/// let answer = runtime.handle().block_on(async { 42 });
/// assert_eq!(answer, 42);
/// let stack = Stack::new();
/// stack.push(runtime);
/// assert!(stack.shutdown(Duration::from_secs(1)).is_ok());
/// ```
#[derive(Debug)]
pub struct OwnRuntime {
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
}

impl OwnRuntime {
    /// The part of `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        Self {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
        }
    }

    /// piko-obs's runtime: two worker threads named `piko-obs-runtime`, with I/O and
    /// timers.
    pub fn start() -> io::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("piko-obs-runtime")
            .enable_all()
            .build()?;
        Ok(Self::new(runtime))
    }

    /// A handle to spawn on the runtime (it keeps working until the runtime stops).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Lifecycle for OwnRuntime {
    fn part(&self) -> &'static str {
        "piko-obs runtime"
    }

    fn shutdown_within(&self, _budget: Duration) -> Result<(), ShutdownError> {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rt) = runtime {
            rt.shutdown_background();
        }
        Ok(())
    }
}
