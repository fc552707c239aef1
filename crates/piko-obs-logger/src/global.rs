//! The process-wide hub, and what goes through it: loggers by name, outputs added to it,
//! the framework level and the `log` bridge.
//!
//! ```
//! use piko_obs_logger::global;
//! let log = global::get_logger("billing");
//! log.info("invoice built", &[]);
//! ```

use std::sync::{Mutex, OnceLock};

use crate::{
    AddOutputError, Directives, Hub, LOG_LEVEL, LevelSettingError, LogBridge, Logger, Output,
    OutputId, PIKO_LOG_LEVEL, resolve_directives,
};

static HUB: OnceLock<Hub> = OnceLock::new();

/// The process-wide hub that [`get_logger`] and [`add_output`] use.
pub fn hub() -> &'static Hub {
    HUB.get_or_init(Hub::default)
}

/// A logger named `name` from the process-wide hub. Cheap; a logger obtained before
/// outputs are added writes to them once they are.
pub fn get_logger(name: &str) -> Logger {
    hub().get_logger(name)
}

/// The name piko-obs's own loggers start with (`piko-obs/otlp`, ...).
pub const FRAMEWORK_LOGGERS: &str = "piko-obs";

/// The framework level set at start-up (`with_log_level`, then `PIKO_LOG_LEVEL`).
static FRAMEWORK_LEVEL: Mutex<Option<Directives>> = Mutex::new(None);

/// Sets the framework level: the level of piko-obs's own loggers in outputs added later
/// through [`output_level`].
pub fn set_framework_level(level: Directives) {
    *FRAMEWORK_LEVEL.lock().unwrap_or_else(|p| p.into_inner()) = Some(level);
}

/// The level of an output added by the program: `in_code` (named `with_level` in
/// errors), else `LOG_LEVEL`, else INFO; piko-obs's own loggers keep the framework level
/// (before one is set, `PIKO_LOG_LEVEL`) unless the directives name them.
pub fn output_level(in_code: Option<&str>) -> Result<Directives, LevelSettingError> {
    let env = |k: &str| std::env::var(k).ok();
    let own = resolve_directives(in_code.map(|l| ("with_level", l)), LOG_LEVEL, env)?;
    let set = FRAMEWORK_LEVEL
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let framework = match set {
        Some(level) => level,
        None => resolve_directives(None, PIKO_LOG_LEVEL, env)?,
    };
    Ok(own.with_scope_from(FRAMEWORK_LOGGERS, &framework))
}

/// Adds any output to the process-wide hub, and lets `log` records through down to its
/// level.
pub fn add_output(
    name: &str,
    filter: impl Into<Directives>,
    output: impl Output,
) -> Result<OutputId, AddOutputError> {
    let id = hub().add_output(name, filter, output)?;
    levels_changed();
    Ok(id)
}

/// Adds any slog drain as an output of the process-wide hub.
pub fn add_drain<D>(
    name: &str,
    filter: impl Into<Directives>,
    drain: D,
) -> Result<OutputId, AddOutputError>
where
    D: slog::Drain<Err = slog::Never> + Send + Sync + 'static,
{
    let id = hub().add_drain(name, filter, drain)?;
    levels_changed();
    Ok(id)
}

/// Lets the `log` and `tracing` fast paths through down to the outputs' most verbose
/// level again; call it after adding an output to the process-wide hub another way.
pub fn levels_changed() {
    log::set_max_level(hub().min_level().to_log_filter());
    tracing_core::callsite::rebuild_interest_cache();
}

/// Another `log` logger was installed first.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "another logger of the `log` crate is already installed; remove it, or turn the bridge off with with_log_bridge(false)"
)]
pub struct LogBridgeError;

/// Serialises the bridge's installation, so concurrent start-ups install it once.
static INSTALLING: Mutex<()> = Mutex::new(());

static BRIDGE: OnceLock<()> = OnceLock::new();

/// Routes the `log` crate's records into the process-wide hub. Idempotent.
pub fn install_log_bridge() -> Result<(), LogBridgeError> {
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if BRIDGE.get().is_some() {
        return Ok(());
    }
    log::set_boxed_logger(Box::new(LogBridge::new(hub().clone()))).map_err(|_| LogBridgeError)?;
    let _ = BRIDGE.set(());
    log::set_max_level(hub().min_level().to_log_filter());
    Ok(())
}
