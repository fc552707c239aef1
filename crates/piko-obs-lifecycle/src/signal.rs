//! Waiting for the signal that asks the process to stop (SIGTERM from Kubernetes or
//! systemd, SIGINT from Ctrl-C), so that `main` can run the guard's shutdown (feature
//! `signal`; re-exported as `piko_obs::signal`).
//!
//! ```no_run
//! # async fn serve() {}
//! # struct Guard;
//! # fn start() -> Guard { Guard }
//! use piko_obs_lifecycle::signal::ShutdownSignals;
//!
//! #[tokio::main]
//! async fn main() {
//!     // Register first: a SIGTERM that arrives during start-up is then not fatal.
//!     let mut signals = ShutdownSignals::register().expect("signal handlers");
//!     let guard = start(); // piko_obs::builder().init(), for example
//!     tokio::select! {
//!         _ = serve() => {}
//!         signal = signals.recv() => eprintln!("stopping on {signal}"),
//!     }
//!     drop(guard);
//! }
//! ```

use std::fmt;
use std::io;

/// The signal that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownSignal {
    /// SIGTERM.
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

impl ShutdownSignal {
    /// `SIGTERM` or `SIGINT`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownSignal::Terminate => "SIGTERM",
            ShutdownSignal::Interrupt => "SIGINT",
        }
    }
}

impl fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Handlers for SIGTERM and SIGINT, registered when this is made: from then on those
/// signals no longer end the process, they wake [`recv`](Self::recv).
#[derive(Debug)]
pub struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Registers the handlers. Call it inside a tokio runtime (or with one entered).
    pub fn register() -> io::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(ShutdownSignals {})
        }
    }

    /// Waits for the next SIGTERM or SIGINT.
    pub async fn recv(&mut self) -> ShutdownSignal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => ShutdownSignal::Terminate,
                _ = self.int.recv() => ShutdownSignal::Interrupt,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            ShutdownSignal::Interrupt
        }
    }
}

/// Registers the handlers and waits for SIGTERM or SIGINT (inside a tokio runtime).
pub async fn shutdown_signal() -> io::Result<ShutdownSignal> {
    Ok(ShutdownSignals::register()?.recv().await)
}

/// Blocks the calling thread until SIGTERM or SIGINT, for a `main` without a runtime.
pub fn wait_for_shutdown_signal() -> io::Result<ShutdownSignal> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(shutdown_signal())
}
