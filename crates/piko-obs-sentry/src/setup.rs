//! Sentry in a process: [`SentrySetup`] holds the settings given in code (a
//! [`SentryConfig`], or the `SENTRY_*` variables, and the hooks that apply to either)
//! and resolves them; [`global`] holds the client the composing program installed.

use std::sync::Arc;

use crate::{BeforeBreadcrumb, BeforeSend, SentryConfig, SentryConfigError};

/// Sentry's settings given in code: none (no Sentry) until
/// [`with_config`](Self::with_config) or [`with_from_env`](Self::with_from_env).
///
/// ```
/// use piko_obs_sentry::SentryConfig;
/// use piko_obs_sentry::setup::SentrySetup;
/// let setup = SentrySetup::default()
///     .with_config(SentryConfig::new("https://public@sentry.example.com/42"));
/// let config = setup.resolve(&Some("staging".into()), &None).unwrap().unwrap();
/// assert_eq!(config.environment.as_deref(), Some("staging"));
/// assert!(SentrySetup::default().resolve(&None, &None).unwrap().is_none());
/// ```
#[derive(Default)]
pub struct SentrySetup {
    config: Option<SentryConfig>,
    from_env: bool,
    before_send: Option<BeforeSend>,
    before_breadcrumb: Option<BeforeBreadcrumb>,
}

impl std::fmt::Debug for SentrySetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentrySetup")
            .field("config", &self.config)
            .field("from_env", &self.from_env)
            .field("before_send", &self.before_send.is_some())
            .field("before_breadcrumb", &self.before_breadcrumb.is_some())
            .finish()
    }
}

impl SentrySetup {
    /// Sentry with `config`; it wins over the environment.
    pub fn with_config(self, config: SentryConfig) -> Self {
        Self {
            config: Some(config),
            ..self
        }
    }
    /// Sentry when `SENTRY_DSN` is set, with the other `SENTRY_*` variables
    /// ([`SentryConfig::from_env`]), unless a config is given.
    pub fn with_from_env(self) -> Self {
        Self {
            from_env: true,
            ..self
        }
    }
    /// Sentry's `before_send`, whether the settings come from code or the environment.
    pub fn with_before_send(self, f: BeforeSend) -> Self {
        Self {
            before_send: Some(f),
            ..self
        }
    }
    /// Sentry's `before_breadcrumb`, whether the settings come from code or the
    /// environment.
    pub fn with_before_breadcrumb(self, f: BeforeBreadcrumb) -> Self {
        Self {
            before_breadcrumb: Some(f),
            ..self
        }
    }

    /// The configuration to start with, checked, or `None` without Sentry: the one given
    /// in code, else the environment's; `environment` and `release` fill what it left
    /// unset, and the hooks given here replace its own.
    pub fn resolve(
        &self,
        environment: &Option<String>,
        release: &Option<String>,
    ) -> Result<Option<SentryConfig>, SentryConfigError> {
        let mut config = match self.config.clone() {
            Some(c) => {
                c.validate()?;
                Some(c)
            }
            None if self.from_env => SentryConfig::from_env()?,
            None => None,
        };
        if let Some(config) = &mut config {
            if config.environment.is_none() {
                config.environment.clone_from(environment);
            }
            if config.release.is_none() {
                config.release.clone_from(release);
            }
            if self.before_send.is_some() {
                config.before_send.clone_from(&self.before_send);
            }
            if self.before_breadcrumb.is_some() {
                config.before_breadcrumb.clone_from(&self.before_breadcrumb);
            }
        }
        Ok(config)
    }
}

/// The Sentry client the composing program installed.
pub mod global {
    use std::sync::RwLock;

    use super::*;
    use crate::Sentry;

    static INSTALLED: RwLock<Option<Arc<Sentry>>> = RwLock::new(None);

    /// Makes `sentry` the process-wide client.
    pub fn install(sentry: Arc<Sentry>) {
        *INSTALLED.write().unwrap_or_else(|p| p.into_inner()) = Some(sentry);
    }

    /// The installed client, if any.
    pub fn installed() -> Option<Arc<Sentry>> {
        INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records the installed client's counters as `metrics` series.
    pub fn record_metrics() {
        if let Some(s) = installed() {
            s.record_metrics();
        }
    }
}
