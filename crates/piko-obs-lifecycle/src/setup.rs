//! The settings every part shares, as a composer takes them: the run mode, the service's
//! name, its identity (environment and release) and the shutdown's bounds, each given in
//! code or left to the environment, then resolved once before anything starts.
//!
//! ```
//! use std::time::Duration;
//! use piko_obs_lifecycle::settings::RunMode;
//! use piko_obs_lifecycle::setup::ServiceSetup;
//!
//! let env = |k: &str| (k == "PIKO_RUN_MODE").then(|| "prod".to_string());
//! let service = ServiceSetup::default().with_service_name("billing").resolve(&env).unwrap();
//! assert_eq!(service.run_mode, RunMode::Prod);
//! assert_eq!(service.service_name, "billing");
//! // Prod keeps serving 5 s after readiness turns UNHEALTHY, unless told otherwise.
//! assert_eq!(service.drain_delay, Duration::from_secs(5));
//! assert_eq!(service.shutdown_timeout, Duration::from_secs(10));
//! ```

use std::time::Duration;

use crate::settings::{EnvSettingError, Identity, RunMode, program_name};

/// The default bound on the whole shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The default drain delay in prod (dev has none).
pub const DEFAULT_PROD_DRAIN_DELAY: Duration = Duration::from_secs(5);

/// The shared settings given in code; what is not given is read from the environment or
/// defaulted by [`ServiceSetup::resolve`].
#[derive(Debug, Clone)]
pub struct ServiceSetup {
    run_mode: Option<RunMode>,
    service_name: Option<String>,
    environment: Option<String>,
    release: Option<String>,
    drain_delay: Option<Duration>,
    shutdown_timeout: Duration,
}

impl Default for ServiceSetup {
    fn default() -> Self {
        ServiceSetup {
            run_mode: None,
            service_name: None,
            environment: None,
            release: None,
            drain_delay: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl ServiceSetup {
    /// Dev or prod, winning over `PIKO_RUN_MODE`.
    pub fn with_run_mode(mut self, mode: RunMode) -> Self {
        self.run_mode = Some(mode);
        self
    }

    /// The service's name (default: the program's file name).
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The deployment environment, winning over the variables [`Identity::resolve`] reads.
    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// The release, winning over the variables [`Identity::resolve`] reads.
    pub fn with_release(mut self, release: impl Into<String>) -> Self {
        self.release = Some(release.into());
        self
    }

    /// How long the shutdown keeps serving after readiness turns UNHEALTHY (default:
    /// [`DEFAULT_PROD_DRAIN_DELAY`] in prod, zero in dev).
    pub fn with_drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = Some(delay);
        self
    }

    /// The bound on the whole shutdown (default [`DEFAULT_SHUTDOWN_TIMEOUT`]).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Code, then the environment read through `env`, then the defaults; a bad
    /// `PIKO_RUN_MODE` fails, naming the variable.
    pub fn resolve(
        &self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Service, EnvSettingError> {
        let run_mode = RunMode::resolve(self.run_mode, env)?;
        let identity = Identity::resolve(self.environment.clone(), self.release.clone(), env);
        let drain_delay = self.drain_delay.unwrap_or(match run_mode {
            RunMode::Prod => DEFAULT_PROD_DRAIN_DELAY,
            RunMode::Dev => Duration::ZERO,
        });
        Ok(Service {
            run_mode,
            service_name: self.service_name.clone().unwrap_or_else(program_name),
            identity,
            drain_delay,
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}

/// The shared settings resolved: what every part that needs one of them is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Dev or prod.
    pub run_mode: RunMode,
    /// The service's name.
    pub service_name: String,
    /// The environment and the release every signal names.
    pub identity: Identity,
    /// How long the shutdown keeps serving after readiness turns UNHEALTHY.
    pub drain_delay: Duration,
    /// The bound on the whole shutdown.
    pub shutdown_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_wins_then_environment_then_default() {
        let env = |k: &str| match k {
            "PIKO_RUN_MODE" => Some("prod".to_string()),
            "ENVIRONMENT" => Some("staging".to_string()),
            "PIKO_SERVICE_VERSION" => Some("2.1".to_string()),
            _ => None,
        };
        let from_env = ServiceSetup::default().resolve(&env).unwrap();
        assert_eq!(from_env.run_mode, RunMode::Prod);
        assert_eq!(from_env.drain_delay, DEFAULT_PROD_DRAIN_DELAY);
        assert_eq!(from_env.identity.environment.as_deref(), Some("staging"));
        assert_eq!(from_env.identity.release.as_deref(), Some("2.1"));
        assert_eq!(from_env.service_name, program_name());
        let in_code = ServiceSetup::default()
            .with_run_mode(RunMode::Dev)
            .with_environment("production")
            .with_release("3.0")
            .with_drain_delay(Duration::from_millis(300))
            .with_shutdown_timeout(Duration::from_secs(2))
            .resolve(&env)
            .unwrap();
        assert_eq!(in_code.run_mode, RunMode::Dev);
        assert_eq!(in_code.drain_delay, Duration::from_millis(300));
        assert_eq!(in_code.shutdown_timeout, Duration::from_secs(2));
        assert_eq!(in_code.identity.environment.as_deref(), Some("production"));
        assert_eq!(in_code.identity.release.as_deref(), Some("3.0"));
        let dev = ServiceSetup::default().resolve(&|_: &str| None).unwrap();
        assert_eq!(
            (dev.run_mode, dev.drain_delay),
            (RunMode::Dev, Duration::ZERO)
        );
    }

    #[test]
    fn a_bad_run_mode_names_its_variable() {
        let env = |k: &str| (k == "PIKO_RUN_MODE").then(|| "staging".to_string());
        let e = ServiceSetup::default().resolve(&env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable PIKO_RUN_MODE=\"staging\": use dev or prod"
        );
    }
}
