//! Piko's structured logger for Rust, on slog, without Piko's bugs.
//!
//! This crate holds the logging domain and performs no I/O of its own:
//!
//! - [`Level`]: Piko's seven levels (TRACE -8, INTERNAL -6, DEBUG -4, INFO 0, NOTICE 2,
//!   WARN 4, ERROR 8) and [`parse_level`], the one parser for level text;
//! - [`Directives`]: a default level plus per-logger-name overrides
//!   (`info,myapp/db=debug`), and [`resolve_directives`], the precedence rule
//!   (code, then environment, then INFO);
//! - [`attr`]: typed attributes (`string`, `int`, `duration`, `error`, `any`, ...) and
//!   the standard keys; [`SecretKeys`] masks secret-looking keys in every output;
//! - [`Hub`] and [`Logger`]: outputs with their own filters, and cheap named loggers
//!   that follow them; [`context`] carries a logger through async code;
//! - [`Output`], the port of the built-in outputs, and any `slog::Drain` as an output;
//! - [`LogBridge`] and [`TracingBridge`], which route the `log` crate's records and
//!   `tracing` events into the same outputs;
//! - [`json`]: the JSON encoding of values.
//!
//! The outputs themselves (JSON lines, pretty console, rotating files, all written off
//! the caller's thread) are in `piko-obs-logger-drains`; the `piko-obs` facade owns the
//! process-wide hub.
//!
//! ```
//! use piko_obs_logger::{Hub, Level, attr};
//! # use std::sync::{Arc, Mutex};
//! # #[derive(Default)] struct Capture(Mutex<Vec<String>>);
//! # impl piko_obs_logger::Output for Capture {
//! #     fn write(&self, r: &piko_obs_logger::Record<'_>) {
//! #         let fields: Vec<String> = r.bound().chain(r.attrs().iter().copied())
//! #             .map(|a| a.key().to_string()).collect();
//! #         self.0.lock().unwrap().push(format!("{} {} {}", r.level(), r.msg(), fields.join(",")));
//! #     }
//! #     fn flush(&self, _: std::time::Duration) -> Result<(), piko_obs_logger::FlushError> { Ok(()) }
//! # }
//! let hub = Hub::builder().build();
//! let out = Arc::new(Capture::default());
//! hub.add_output("capture", Level::DEBUG, out.clone()).unwrap();
//!
//! let log = hub.get_logger("checkout").with(&[attr::string("region", "eu-west-1")]);
//! log.info("order placed", &[attr::int("items", 3)]);
//! piko_obs_logger::debug!(log, "cart loaded", attr::bool("cached", true));
//! assert_eq!(
//!     *out.0.lock().unwrap(),
//!     ["INFO order placed region,items", "DEBUG cart loaded region,cached"]
//! );
//! ```
//!
//! No feature flags.

pub mod attr;
mod bridge;
mod clock;
pub mod context;
mod filter;
pub mod global;
mod hub;
pub mod intern;
pub mod json;
mod level;
mod lifecycle;
pub use lifecycle::AddedOutput;
mod record;
pub mod setup;
mod slog_kv;
pub mod telemetry;
mod text;
mod tracing_bridge;

pub use attr::{Attr, OwnedAttr, REDACTED, SecretKeys, StrList, Value, keys};
pub use bridge::LogBridge;
pub use filter::{
    Directives, LOG_LEVEL, LevelSettingError, PIKO_LOG_LEVEL, ParseDirectivesError,
    resolve_directives,
};
pub use hub::{AddOutputError, FlushErrors, Hub, HubBuilder, Logger, OutputId, OutputInfo};
pub use level::{Level, LevelName, ParseLevelError, parse_level};
pub use record::{FlushError, Output, OutputStats, Record, Source, StackTrace};
pub use text::write_neutralised;
pub use tracing_bridge::{LEVEL_FIELD, TracingBridge};

/// Logs at a level through a [`Logger`], with the call site's module in the source.
/// Attributes are only built when the level is enabled.
///
/// ```
/// # let log = piko_obs_logger::Hub::default().get_logger("x");
/// use piko_obs_logger::{Level, attr};
/// piko_obs_logger::log!(log, Level::NOTICE, "listening", attr::int("port", 8080));
/// ```
#[macro_export]
macro_rules! log {
    ($logger:expr, $level:expr, $msg:expr $(, $attr:expr)* $(,)?) => {{
        let __logger = &$logger;
        let __level: $crate::Level = $level;
        if __logger.enabled(__level) {
            static __SOURCE: $crate::Source = $crate::Source {
                file: file!(),
                line: line!(),
                module: Some(module_path!()),
            };
            __logger.log_at(__level, &__SOURCE, $msg, &[$($attr),*]);
        }
    }};
}

/// Logs at TRACE; see [`log!`].
#[macro_export]
macro_rules! trace {
    ($logger:expr, $msg:expr $(, $attr:expr)* $(,)?) => {
        $crate::log!($logger, $crate::Level::TRACE, $msg $(, $attr)*)
    };
}
/// Logs at INTERNAL; see [`log!`].
#[macro_export]
macro_rules! internal {
    ($logger:expr, $msg:expr $(, $attr:expr)* $(,)?) => {
        $crate::log!($logger, $crate::Level::INTERNAL, $msg $(, $attr)*)
    };
}
/// Logs at DEBUG; see [`log!`].
#[macro_export]
macro_rules! debug {
    ($logger:expr, $msg:expr $(, $attr:expr)* $(,)?) => {
        $crate::log!($logger, $crate::Level::DEBUG, $msg $(, $attr)*)
    };
}
/// Logs at INFO; see [`log!`].
#[macro_export]
macro_rules! info {
    ($logger:expr, $msg:expr $(, $attr:expr)* $(,)?) => {
        $crate::log!($logger, $crate::Level::INFO, $msg $(, $attr)*)
    };
}
/// Logs at NOTICE; see [`log!`].
#[macro_export]
macro_rules! notice {
    ($logger:expr, $msg:expr $(, $attr:expr)* $(,)?) => {
        $crate::log!($logger, $crate::Level::NOTICE, $msg $(, $attr)*)
    };
}
/// Logs at WARN; see [`log!`].
#[macro_export]
macro_rules! warn {
    ($logger:expr, $msg:expr $(, $attr:expr)* $(,)?) => {
        $crate::log!($logger, $crate::Level::WARN, $msg $(, $attr)*)
    };
}
/// Logs at ERROR; see [`log!`].
#[macro_export]
macro_rules! error {
    ($logger:expr, $msg:expr $(, $attr:expr)* $(,)?) => {
        $crate::log!($logger, $crate::Level::ERROR, $msg $(, $attr)*)
    };
}
