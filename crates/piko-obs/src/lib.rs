//! Production observability for Rust services, set up in one builder chain.
//!
//! `piko-obs` is the facade over the piko-obs crates: it re-exports them and wires them
//! together, and it is the only crate that installs process-wide state (the global log
//! hub and the `log` crate bridge). It holds no logic of its own.
//!
//! What it gives today:
//! - [`PikoObs::builder`]: run mode, framework log level, console output; `init()`
//!   returns a [`Guard`] that writes every queued line and shuts down when dropped;
//! - [`logger`]: Piko's structured logger (`get_logger`, `add_json_output`,
//!   `add_pretty_output`, `add_file_output`, typed attributes, levels).
//!
//! ```
//! use piko_obs::{PikoObs, RunMode, logger::{self, attr}};
//!
//! let _guard = PikoObs::builder()
//!     .with_run_mode(RunMode::Prod)   // JSON lines on stdout
//!     .with_log_level("info")
//!     .init()
//!     .expect("observability set up");
//! logger::get_logger("monitor").info("Server started", &[attr::string("mode", "prod")]);
//! ```
//!
//! No feature flags yet.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub mod logger;

/// How the service runs: decides the console format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// Development: pretty, coloured console lines.
    #[default]
    Dev,
    /// Production: JSON lines.
    Prod,
}

/// Piko's `RunModeDev`.
pub const RUN_MODE_DEV: RunMode = RunMode::Dev;
/// Piko's `RunModeProd`.
pub const RUN_MODE_PROD: RunMode = RunMode::Prod;

impl RunMode {
    /// `dev` or `prod`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Dev => "dev",
            RunMode::Prod => "prod",
        }
    }
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not a run mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run mode {0:?}: use dev or prod")]
pub struct ParseRunModeError(pub String);

impl FromStr for RunMode {
    type Err = ParseRunModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dev" | "development" => Ok(RunMode::Dev),
            "prod" | "production" => Ok(RunMode::Prod),
            _ => Err(ParseRunModeError(s.to_string())),
        }
    }
}

/// Environment variable that, set to `true`, turns the console output off (as in Piko).
pub const PIKO_DISABLE_CONSOLE_LOG: &str = "PIKO_DISABLE_CONSOLE_LOG";

/// The entry point: `PikoObs::builder()...init()`.
#[derive(Debug)]
pub struct PikoObs;

impl PikoObs {
    /// A builder with the defaults: dev mode, framework level from `PIKO_LOG_LEVEL` or
    /// INFO, a console output, the `log` bridge on, stack traces on ERROR.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Configures and starts piko-obs (Piko's `piko.New(piko.WithLogLevel(..), ...)`).
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    run_mode: RunMode,
    log_level: Option<String>,
    console: Option<bool>,
    log_bridge: bool,
    error_backtraces: bool,
    secret_keys: Option<Vec<String>>,
    shutdown_timeout: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            run_mode: RunMode::Dev,
            log_level: None,
            console: None,
            log_bridge: true,
            error_backtraces: true,
            secret_keys: None,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl Builder {
    /// Dev (pretty console) or prod (JSON console).
    pub fn with_run_mode(mut self, mode: RunMode) -> Self {
        self.run_mode = mode;
        self
    }
    /// The framework level, as a level or directives (`info,myapp/db=debug`). Set here,
    /// it wins over `PIKO_LOG_LEVEL`; without either, INFO. Checked by `init()`.
    pub fn with_log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = Some(level.into());
        self
    }
    /// Whether `init()` adds the console output (default: on, unless
    /// `PIKO_DISABLE_CONSOLE_LOG=true`).
    pub fn with_console_output(mut self, on: bool) -> Self {
        self.console = Some(on);
        self
    }
    /// Whether records of the `log` crate go to the outputs (default: on).
    pub fn with_log_bridge(mut self, on: bool) -> Self {
        self.log_bridge = on;
        self
    }
    /// Whether ERROR records carry a stack trace (default: on).
    pub fn with_error_backtraces(mut self, on: bool) -> Self {
        self.error_backtraces = on;
        self
    }
    /// Replaces the patterns of secret keys whose values are masked.
    pub fn with_secret_keys<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.secret_keys = Some(patterns.into_iter().map(Into::into).collect());
        self
    }
    /// The longest the guard's shutdown may take in all (default 10 s).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Checks the configuration and starts everything. Bad input fails here, with an
    /// error naming the setting.
    pub fn init(self) -> Result<Guard, InitError> {
        let env = |k: &str| std::env::var(k).ok();
        let level = logger::resolve_directives(
            self.log_level.as_deref().map(|l| ("with_log_level", l)),
            logger::PIKO_LOG_LEVEL,
            env,
        )?;
        let hub = logger::hub();
        hub.set_error_backtraces(self.error_backtraces);
        if let Some(keys) = &self.secret_keys {
            hub.set_secret_keys(logger::SecretKeys::new(keys));
        }
        let console = self
            .console
            .unwrap_or_else(|| env(PIKO_DISABLE_CONSOLE_LOG).as_deref() != Some("true"));
        if console {
            match self.run_mode {
                RunMode::Prod => logger::add_output(
                    "console",
                    level,
                    logger::JsonOutput::stdout()
                        .build()
                        .map_err(InitError::Console)?,
                )?,
                RunMode::Dev => logger::add_output(
                    "console",
                    level,
                    logger::PrettyOutput::stdout()
                        .build()
                        .map_err(InitError::Console)?,
                )?,
            };
        }
        if self.log_bridge {
            logger::install_log_bridge()?;
        }
        Ok(Guard {
            shutdown_timeout: self.shutdown_timeout,
            done: AtomicBool::new(false),
        })
    }
}

/// `init()` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A level setting is not valid.
    #[error(transparent)]
    LogLevel(#[from] logger::LevelSettingError),
    /// An output could not be added.
    #[error(transparent)]
    Output(#[from] logger::AddOutputError),
    /// The console writer thread could not start.
    #[error("cannot start the console log output: {0}")]
    Console(std::io::Error),
    /// Another `log` logger is installed.
    #[error(transparent)]
    LogBridge(#[from] logger::LogBridgeError),
}

/// Shuts piko-obs down when dropped: every queued log line is written (within the
/// shutdown timeout) and the outputs are closed. Keep it alive for the life of `main`.
#[must_use = "dropping the guard shuts logging down at once: keep it until main returns"]
#[derive(Debug)]
pub struct Guard {
    shutdown_timeout: Duration,
    done: AtomicBool,
}

impl Guard {
    /// Shuts down now and reports what failed. A second call does nothing.
    pub fn shutdown(&self) -> Result<(), logger::ShutdownError> {
        if self.done.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        logger::hub().shutdown(self.shutdown_timeout)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("piko-obs: {e}");
        }
    }
}
