//! The error forwarder of a process: [`ForwarderSetup`] holds its configuration, checks
//! it and starts the forwarder on a notification service; [`global`] holds the
//! process-wide forwarder once the composing program installs it.

use std::sync::RwLock;
use std::time::Duration;

use piko_obs_lifecycle::Unwind;
use piko_obs_logger::{AddOutputError, AddedOutput, Level, global as logs};
use piko_obs_notify::NotificationService;

use crate::{ERROR_FORWARDER_OUTPUT, ErrorForwarder, ErrorForwarderConfig, ForwarderConfigError};

/// The error forwarder's settings: none (no forwarder) until
/// [`with_config`](Self::with_config).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use piko_obs_error_alerts::ErrorForwarderConfig;
/// use piko_obs_error_alerts::setup::ForwarderSetup;
/// let service = piko_obs_notify::NotificationService::default();
/// let setup = ForwarderSetup::default().with_config(ErrorForwarderConfig::default());
/// setup.check(true).unwrap();
/// let started = setup.start(&tokio::runtime::Handle::current(), &service).unwrap();
/// assert!(started.is_some());
/// # });
/// ```
#[derive(Debug, Default)]
pub struct ForwarderSetup {
    config: Option<ErrorForwarderConfig>,
}

impl ForwarderSetup {
    /// Forward log lines as alerts with `config`.
    pub fn with_config(self, config: ErrorForwarderConfig) -> Self {
        Self {
            config: Some(config),
        }
    }

    /// Checks the configuration before anything starts: valid settings, and a
    /// notification service to send through (`notifications`).
    pub fn check(&self, notifications: bool) -> Result<(), ForwarderSetupError> {
        if let Some(c) = &self.config {
            c.validate().map_err(ForwarderSetupError::Config)?;
            if !notifications {
                return Err(ForwarderSetupError::WithoutNotifications);
            }
        }
        Ok(())
    }

    /// Starts the forwarder on `runtime`, sending through `service`: alerts go to every
    /// provider of `service` unless the configuration names some, which must be
    /// registered. `None` when no forwarder is configured.
    pub fn start(
        self,
        runtime: &tokio::runtime::Handle,
        service: &NotificationService,
    ) -> Result<Option<StartedForwarder>, ForwarderSetupError> {
        let Some(config) = self.config else {
            return Ok(None);
        };
        let threshold = config.threshold;
        let config = if config.providers.is_empty() {
            config.with_providers(service.providers())
        } else {
            if let Some(unknown) = config.providers.iter().find(|p| !service.has_provider(p)) {
                return Err(ForwarderSetupError::UnknownProvider(unknown.clone()));
            }
            config
        };
        let forwarder = ErrorForwarder::start(runtime, service.clone(), config)
            .map_err(ForwarderSetupError::Config)?;
        Ok(Some(StartedForwarder {
            forwarder,
            threshold,
        }))
    }
}

impl ForwarderSetup {
    /// [`start`](Self::start) as a part of a process: the forwarder is added to the
    /// process-wide log hub as the [`ERROR_FORWARDER_OUTPUT`] output at its threshold,
    /// pushed on `parts`; closing that output (given at least 100 ms) hands the pending
    /// groups to the notification dispatcher.
    pub fn start_part(
        self,
        runtime: &tokio::runtime::Handle,
        service: &NotificationService,
        parts: &Unwind,
    ) -> Result<Option<StartedForwarder>, ForwarderSetupError> {
        let Some(f) = self.start(runtime, service)? else {
            return Ok(None);
        };
        let id = logs::add_output(ERROR_FORWARDER_OUTPUT, f.threshold, f.forwarder.clone())?;
        let output = AddedOutput::new(logs::hub(), id, "error forwarder");
        parts.push(output.with_floor(Duration::from_millis(100)));
        Ok(Some(f))
    }
}

/// What [`ForwarderSetup::start`] started: the forwarder, to add to a log hub at its
/// threshold.
#[derive(Debug, Clone)]
pub struct StartedForwarder {
    /// The forwarder, an `Output` of the log hub.
    pub forwarder: ErrorForwarder,
    /// The least level it forwards.
    pub threshold: Level,
}

impl StartedForwarder {
    /// Makes the forwarder the process-wide one of [`global`].
    pub fn install(&self) {
        *global::INSTALLED.write().unwrap_or_else(|p| p.into_inner()) =
            Some(self.forwarder.clone());
    }
}

/// Why the error forwarder cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwarderSetupError {
    /// A setting cannot work.
    #[error("error forwarder: {0}")]
    Config(ForwarderConfigError),
    /// The configuration names a provider the service does not have.
    #[error(
        "error forwarder: provider {0:?} is not registered; register it or remove it from ErrorForwarderConfig::with_providers"
    )]
    UnknownProvider(String),
    /// There is no notification service to send through.
    #[error("the error forwarder needs a notification service")]
    WithoutNotifications,
    /// The forwarder's output could not be added to the log hub.
    #[error(transparent)]
    Output(#[from] AddOutputError),
}

/// The process-wide error forwarder, once installed ([`StartedForwarder::install`]).
pub mod global {
    use super::*;

    pub(super) static INSTALLED: RwLock<Option<ErrorForwarder>> = RwLock::new(None);

    /// The installed error forwarder, if there is one.
    pub fn error_forwarder() -> Option<ErrorForwarder> {
        INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records the installed forwarder's counters as `metrics` series.
    pub fn record_metrics() {
        if let Some(f) = error_forwarder() {
            crate::telemetry::record_metrics(&f);
        }
    }
}
