//! The logger's start-up settings as a composer takes them: the framework level, the
//! console output, the `log` and `tracing` bridges, stack traces on ERROR and the secret
//! keys, each given in code or left to the environment, then resolved once before
//! anything starts. Resolving touches nothing process-wide: the composer applies the
//! result to the hub it owns ([`LoggerSettings::configure`]) and installs the bridges.
//!
//! ```
//! use piko_obs_logger::{Level, setup::{LoggerSetup, PIKO_DISABLE_CONSOLE_LOG}};
//!
//! let env = |k: &str| match k {
//!     "PIKO_LOG_LEVEL" => Some("debug".to_string()),
//!     k if k == PIKO_DISABLE_CONSOLE_LOG => Some("true".to_string()),
//!     _ => None,
//! };
//! let settings = LoggerSetup::default().resolve("Config.level", &env).unwrap();
//! assert_eq!(settings.level.default_level(), Level::DEBUG);
//! assert!(!settings.console);
//! let err = LoggerSetup::default().with_level("chatty").resolve("Config.level", &env);
//! assert!(err.unwrap_err().to_string().starts_with("option Config.level: "));
//! ```

use crate::{Directives, Hub, LevelSettingError, PIKO_LOG_LEVEL, SecretKeys, resolve_directives};

/// Environment variable that, set to `true`, turns the console output off (as in Piko).
pub const PIKO_DISABLE_CONSOLE_LOG: &str = "PIKO_DISABLE_CONSOLE_LOG";

/// The logger's settings given in code; what is not given is read from the environment
/// or defaulted by [`LoggerSetup::resolve`].
#[derive(Debug, Clone)]
pub struct LoggerSetup {
    level: Option<String>,
    console: Option<bool>,
    log_bridge: bool,
    tracing_bridge: bool,
    error_backtraces: bool,
    secret_keys: Option<Vec<String>>,
}

impl Default for LoggerSetup {
    /// No level or console setting in code, both bridges on, no stack traces, the
    /// default secret keys.
    fn default() -> Self {
        LoggerSetup {
            level: None,
            console: None,
            log_bridge: true,
            tracing_bridge: true,
            error_backtraces: false,
            secret_keys: None,
        }
    }
}

impl LoggerSetup {
    /// The framework level, as a level or directives, winning over `PIKO_LOG_LEVEL`.
    pub fn with_level(mut self, level: impl Into<String>) -> Self {
        self.level = Some(level.into());
        self
    }

    /// Whether the console output starts, winning over [`PIKO_DISABLE_CONSOLE_LOG`].
    pub fn with_console(mut self, on: bool) -> Self {
        self.console = Some(on);
        self
    }

    /// Whether records of the `log` crate go to the outputs (default on).
    pub fn with_log_bridge(mut self, on: bool) -> Self {
        self.log_bridge = on;
        self
    }

    /// Whether `tracing` events go to the outputs (default on).
    pub fn with_tracing_bridge(mut self, on: bool) -> Self {
        self.tracing_bridge = on;
        self
    }

    /// Whether ERROR records carry a stack trace (default off).
    pub fn with_error_backtraces(mut self, on: bool) -> Self {
        self.error_backtraces = on;
        self
    }

    /// Replaces the patterns of secret keys whose values are masked.
    pub fn with_secret_keys<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        patterns: I,
    ) -> Self {
        self.secret_keys = Some(patterns.into_iter().map(Into::into).collect());
        self
    }

    /// Code, then the environment read through `env`, then the defaults. A bad level
    /// fails naming `level_setting` (the name the composer gives the level setting in
    /// code) or `PIKO_LOG_LEVEL`.
    pub fn resolve(
        &self,
        level_setting: &str,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<LoggerSettings, LevelSettingError> {
        let in_code = self.level.as_deref().map(|l| (level_setting, l));
        Ok(LoggerSettings {
            level: resolve_directives(in_code, PIKO_LOG_LEVEL, env)?,
            console: self
                .console
                .unwrap_or_else(|| env(PIKO_DISABLE_CONSOLE_LOG).as_deref() != Some("true")),
            log_bridge: self.log_bridge,
            tracing_bridge: self.tracing_bridge,
            error_backtraces: self.error_backtraces,
            secret_keys: self.secret_keys.clone(),
        })
    }
}

/// The logger's settings resolved.
#[derive(Debug, Clone)]
pub struct LoggerSettings {
    /// The framework level (and the console output's).
    pub level: Directives,
    /// Whether the console output starts.
    pub console: bool,
    /// Whether the `log` bridge is installed.
    pub log_bridge: bool,
    /// Whether the `tracing` bridge is installed.
    pub tracing_bridge: bool,
    /// Whether ERROR records carry a stack trace.
    pub error_backtraces: bool,
    /// The patterns of secret keys, when given in code.
    pub secret_keys: Option<Vec<String>>,
}

impl LoggerSettings {
    /// Applies the stack-trace and secret-key settings to `hub`.
    pub fn configure(&self, hub: &Hub) {
        hub.set_error_backtraces(self.error_backtraces);
        if let Some(keys) = &self.secret_keys {
            hub.set_secret_keys(SecretKeys::new(keys));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Level;

    #[test]
    fn code_wins_then_environment_then_default() {
        let env = |k: &str| match k {
            PIKO_LOG_LEVEL => Some("warn".to_string()),
            PIKO_DISABLE_CONSOLE_LOG => Some("true".to_string()),
            _ => None,
        };
        let from_env = LoggerSetup::default().resolve("level", &env).unwrap();
        assert_eq!(from_env.level.default_level(), Level::WARN);
        assert!(!from_env.console && from_env.log_bridge && from_env.tracing_bridge);
        assert!(!from_env.error_backtraces && from_env.secret_keys.is_none());
        let in_code = LoggerSetup::default()
            .with_level("error")
            .with_console(true)
            .with_log_bridge(false)
            .with_tracing_bridge(false)
            .with_error_backtraces(true)
            .with_secret_keys(["pin"])
            .resolve("level", &env)
            .unwrap();
        assert_eq!(in_code.level.default_level(), Level::ERROR);
        assert!(in_code.console && !in_code.log_bridge && !in_code.tracing_bridge);
        assert!(in_code.error_backtraces);
        assert_eq!(in_code.secret_keys, Some(vec!["pin".to_string()]));
        let defaults = LoggerSetup::default()
            .resolve("level", &|_: &str| None)
            .unwrap();
        assert_eq!(defaults.level.default_level(), Level::INFO);
        assert!(defaults.console);
    }

    #[test]
    fn a_bad_level_names_where_it_came_from() {
        let env = |k: &str| (k == PIKO_LOG_LEVEL).then(|| "chatty".to_string());
        let e = LoggerSetup::default().resolve("level", &env).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environment variable PIKO_LOG_LEVEL: "),
            "{e}"
        );
        let e = LoggerSetup::default()
            .with_level("loud")
            .resolve("Config.level", &env);
        assert!(
            e.unwrap_err()
                .to_string()
                .starts_with("option Config.level: ")
        );
    }

    #[test]
    fn configure_sets_the_hubs_stack_traces_and_secret_keys() {
        use crate::{FlushError, Output, Record};
        use std::sync::{Arc, Mutex};
        /// Whether each record carried a stack and masked `card_pin`.
        #[derive(Default)]
        struct Seen(Mutex<Vec<(bool, bool)>>);
        impl Output for Seen {
            fn write(&self, r: &Record<'_>) {
                let seen = (r.stack().is_some(), r.is_secret("card_pin"));
                self.0.lock().unwrap().push(seen);
            }
            fn flush(&self, _: std::time::Duration) -> Result<(), FlushError> {
                Ok(())
            }
        }
        let hub = Hub::builder().build();
        let seen = Arc::new(Seen::default());
        hub.add_output("seen", Level::INFO, seen.clone()).unwrap();
        hub.get_logger("before").error("failed", &[]);
        let settings = LoggerSetup::default()
            .with_error_backtraces(true)
            .with_secret_keys(["pin"])
            .resolve("level", &|_: &str| None)
            .unwrap();
        settings.configure(&hub);
        hub.get_logger("after").error("failed", &[]);
        assert_eq!(*seen.0.lock().unwrap(), [(false, false), (true, true)]);
    }
}
