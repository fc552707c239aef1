//! How the forwarder groups and limits alerts: [`ErrorForwarderConfig`], checked by
//! [`validate`](ErrorForwarderConfig::validate).

use std::time::Duration;

use piko_obs_logger::Level;

/// How the [`ErrorForwarder`](crate::ErrorForwarder) groups and limits alerts.
///
/// ```
/// use std::time::Duration;
/// use piko_obs_logger::Level;
/// use piko_obs_error_alerts::ErrorForwarderConfig;
///
/// let config = ErrorForwarderConfig::default()
///     .with_threshold(Level::WARN)
///     .with_window(Duration::from_secs(30))
///     .with_max_alerts_per_minute(10)
///     .with_ignored_logger_prefix("noisy/");
/// assert!(config.validate().is_ok());
/// assert_eq!(config.ignored_logger_prefixes, ["piko-obs/", "noisy/"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct ErrorForwarderConfig {
    /// Records below this level are ignored, even when the hub hands them over
    /// (default ERROR).
    pub threshold: Level,
    /// How long a group collects records: a fixed window that starts with the first
    /// record and is not extended by later ones (default 10 s).
    pub window: Duration,
    /// Distinct groups held per window (default 1000); records of further groups are
    /// dropped, counted, and reported as `dropped_groups` in the next alert.
    pub max_groups: usize,
    /// Alerts sent per rolling minute (default 30); groups over the limit are not sent,
    /// and are reported as `rate_limited_groups` in the next alert.
    pub max_alerts_per_minute: u32,
    /// Records of loggers whose name starts with one of these are ignored (default
    /// `piko-obs/`, so that the toolkit's own errors about alert delivery never come
    /// back as alerts).
    pub ignored_logger_prefixes: Vec<String>,
    /// The providers each alert goes to (default empty: the service's default provider).
    pub providers: Vec<String>,
    /// How long a group that was sent must stay quiet (no record in a window) before
    /// its alert is sent again as resolved (default 5 min; `None`: never). See
    /// [`ErrorForwarder`](crate::ErrorForwarder) for what a resolved alert carries.
    pub resolve_after: Option<Duration>,
    /// The period of the rate limit (a minute; shorter in tests).
    pub(crate) rate_period: Duration,
}

impl Default for ErrorForwarderConfig {
    fn default() -> Self {
        ErrorForwarderConfig {
            threshold: Level::ERROR,
            window: ErrorForwarderConfig::DEFAULT_WINDOW,
            max_groups: ErrorForwarderConfig::DEFAULT_MAX_GROUPS,
            max_alerts_per_minute: ErrorForwarderConfig::DEFAULT_MAX_ALERTS_PER_MINUTE,
            ignored_logger_prefixes: vec![ErrorForwarderConfig::DEFAULT_IGNORED_PREFIX.into()],
            rate_period: Duration::from_secs(60),
            providers: Vec::new(),
            resolve_after: Some(ErrorForwarderConfig::DEFAULT_RESOLVE_AFTER),
        }
    }
}

impl ErrorForwarderConfig {
    /// The default window (10 s).
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
    /// The default cap on distinct groups per window.
    pub const DEFAULT_MAX_GROUPS: usize = 1000;
    /// The default number of alerts per rolling minute.
    pub const DEFAULT_MAX_ALERTS_PER_MINUTE: u32 = 30;
    /// The default ignored logger-name prefix: piko-obs's own loggers.
    pub const DEFAULT_IGNORED_PREFIX: &'static str = "piko-obs/";
    /// The default quiet time before a group's alert is resolved (5 min).
    pub const DEFAULT_RESOLVE_AFTER: Duration = Duration::from_secs(300);
    /// What a firing alert's lease adds to the quiet time and two windows (1 min): a
    /// firing alert holds (its `endsAt`) until the forwarder has had time to send it
    /// resolved, with room for a late send; when the process is gone, it ends by itself.
    pub const LEASE_MARGIN: Duration = Duration::from_secs(60);

    /// The defaults: ERROR, 10 s, 1000 groups, 30 alerts a minute, `piko-obs/` ignored.
    pub fn new() -> Self {
        ErrorForwarderConfig::default()
    }
    /// The least severe level forwarded (default ERROR).
    pub fn with_threshold(mut self, level: Level) -> Self {
        self.threshold = level;
        self
    }
    /// The grouping window (default 10 s; must not be zero).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
    /// The cap on distinct groups per window (default 1000; must not be zero).
    pub fn with_max_groups(mut self, max_groups: usize) -> Self {
        self.max_groups = max_groups;
        self
    }
    /// The number of alerts per rolling minute (default 30; must not be zero).
    pub fn with_max_alerts_per_minute(mut self, max: u32) -> Self {
        self.max_alerts_per_minute = max;
        self
    }
    /// Replaces the ignored logger-name prefixes (an empty list ignores none).
    pub fn with_ignored_logger_prefixes<I, S>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ignored_logger_prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }
    /// Adds an ignored logger-name prefix to the list.
    pub fn with_ignored_logger_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.ignored_logger_prefixes.push(prefix.into());
        self
    }
    /// The providers each alert goes to (empty: the service's default provider).
    pub fn with_providers<I, S>(mut self, providers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.providers = providers.into_iter().map(Into::into).collect();
        self
    }
    /// How long a sent group must stay quiet before its alert is sent resolved (default
    /// 5 min; must not be zero).
    pub fn with_resolve_after(mut self, quiet: Duration) -> Self {
        self.resolve_after = Some(quiet);
        self
    }
    /// Sends no resolved alerts (and no lease: a firing alert then holds as long as
    /// the provider's default).
    pub fn without_resolved_alerts(mut self) -> Self {
        self.resolve_after = None;
        self
    }
    /// How long a firing alert holds from the time it is sent: the quiet time, two
    /// windows and [`LEASE_MARGIN`](Self::LEASE_MARGIN); `None` without resolved alerts.
    pub fn lease(&self) -> Option<Duration> {
        self.resolve_after.map(|q| {
            q.saturating_add(self.window.saturating_mul(2))
                .saturating_add(Self::LEASE_MARGIN)
        })
    }
    /// The period of the rate limit, for tests.
    #[cfg(test)]
    pub(crate) fn with_rate_period(mut self, period: Duration) -> Self {
        self.rate_period = period;
        self
    }

    /// Checks the settings: the window, the group cap and the rate must not be zero,
    /// and no ignored prefix may be empty (it would ignore every logger).
    pub fn validate(&self) -> Result<(), ForwarderConfigError> {
        if self.window.is_zero() {
            return Err(ForwarderConfigError::ZeroWindow);
        }
        if self.max_groups == 0 {
            return Err(ForwarderConfigError::ZeroMaxGroups);
        }
        if self.max_alerts_per_minute == 0 {
            return Err(ForwarderConfigError::ZeroRate);
        }
        if self.ignored_logger_prefixes.iter().any(String::is_empty) {
            return Err(ForwarderConfigError::EmptyIgnoredPrefix);
        }
        if self.resolve_after.is_some_and(|d| d.is_zero()) {
            return Err(ForwarderConfigError::ZeroResolveAfter);
        }
        Ok(())
    }

    pub(crate) fn is_ignored(&self, logger: &str) -> bool {
        self.ignored_logger_prefixes
            .iter()
            .any(|p| logger.starts_with(p.as_str()))
    }
}

/// An [`ErrorForwarderConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwarderConfigError {
    /// The window is zero.
    #[error(
        "error forwarder: `window` is zero; give `with_window` a positive duration (default 10s)"
    )]
    ZeroWindow,
    /// The group cap is zero.
    #[error(
        "error forwarder: `max_groups` is zero, so no error could be forwarded; give `with_max_groups` at least 1 (default 1000)"
    )]
    ZeroMaxGroups,
    /// The rate is zero.
    #[error(
        "error forwarder: `max_alerts_per_minute` is zero, so no alert could be sent; give `with_max_alerts_per_minute` at least 1 (default 30)"
    )]
    ZeroRate,
    /// An ignored logger-name prefix is empty.
    #[error(
        "error forwarder: `ignored_logger_prefixes` holds an empty prefix, which would ignore every logger; remove it"
    )]
    EmptyIgnoredPrefix,
    /// The quiet time before an alert is resolved is zero.
    #[error(
        "error forwarder: `resolve_after` is zero, so every alert would be resolved as soon as it is sent; give `with_resolve_after` a positive duration (default 5m) or use `without_resolved_alerts`"
    )]
    ZeroResolveAfter,
}
