//! Piko's structured logger: the process-wide hub and the functions that add outputs to it.
//!
//! Everything of `piko-obs-logger` and `piko-obs-logger-drains` is re-exported here.
//! `init()` also routes the `log` crate's records and `tracing` events into the hub
//! (`with_log_bridge(false)` and `with_tracing_bridge(false)` turn that off).
//! Outputs added with these functions take their level from `LOG_LEVEL` unless
//! [`OutputOptions::with_level`] sets one in code (code wins, then the environment, then
//! INFO), except for piko-obs's own loggers (`piko-obs/...`), which keep the framework
//! level (`with_log_level`, then `PIKO_LOG_LEVEL`, then INFO) unless the output's
//! directives name them. The console output that `init()` adds uses the framework
//! level for every logger.
//!
//! Standard output has one output at a time, so no line is printed twice: as in Piko,
//! the first [`add_json_output`] or [`add_pretty_output`] replaces the console output
//! that `init()` added (what it queued is written first), and an `init()` that comes
//! after one adds no console output; a second stdout output is refused
//! ([`OutputError::StdoutTaken`]). Outputs to other places (a file, a drain, your own)
//! are added beside it.
//!
//! ```
//! use piko_obs::logger::{self, attr, OutputOptions};
//! let dir = tempfile::tempdir().unwrap();
//! logger::add_file_output_with(
//!     dir.path().join("app.log"),
//!     OutputOptions::default().with_level("debug"),
//! ).unwrap();
//! let log = logger::get_logger("billing").with(&[attr::string("tenant", "acme")]);
//! log.debug("invoice built", &[attr::int("lines", 12)]);
//! logger::hub().flush(std::time::Duration::from_secs(5)).unwrap();
//! let text = std::fs::read_to_string(dir.path().join("app.log")).unwrap();
//! assert!(text.contains("invoice built | lines=12 tenant=acme"));
//! # logger::hub().shutdown(std::time::Duration::from_secs(1)).unwrap();
//! ```

pub use piko_obs_logger::global::*;
pub use piko_obs_logger::*;
pub use piko_obs_logger_drains::*;
#[cfg(feature = "otlp")]
pub use piko_obs_otlp::{TracingRoute, install_tracing_bridge, tracing_layer};
