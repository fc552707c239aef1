//! What the Sentry integration is told: [`SentryConfig`], read from code or from the
//! `SENTRY_*` environment variables, and checked before anything starts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use piko_obs_logger::Level;
use sentry_core::types::Dsn;

/// `SENTRY_DSN`: where events go (`https://<public key>@<host>/<project id>`).
pub const ENV_DSN: &str = "SENTRY_DSN";
/// `SENTRY_ENVIRONMENT`: the environment put on every event.
pub const ENV_ENVIRONMENT: &str = "SENTRY_ENVIRONMENT";
/// `SENTRY_RELEASE`: the release put on every event.
pub const ENV_RELEASE: &str = "SENTRY_RELEASE";
/// `SENTRY_SAMPLE_RATE`: the share of events sent, from 0 to 1.
pub const ENV_SAMPLE_RATE: &str = "SENTRY_SAMPLE_RATE";
/// `SENTRY_TRACES_SAMPLE_RATE`: the share of Sentry transactions sent, from 0 to 1.
pub const ENV_TRACES_SAMPLE_RATE: &str = "SENTRY_TRACES_SAMPLE_RATE";
/// `SENTRY_DEBUG`: `true` makes the Sentry SDK print what it does.
pub const ENV_DEBUG: &str = "SENTRY_DEBUG";

/// Key patterns scrubbed by default: the log hub's secret keys
/// ([`piko_obs_logger::SecretKeys::DEFAULT_PATTERNS`]) plus `session` and `api-key`.
/// Values under a key containing one of them (case-insensitive) are replaced by
/// [`piko_obs_logger::REDACTED`] in events and breadcrumbs.
pub fn default_scrub_patterns() -> Vec<String> {
    piko_obs_logger::SecretKeys::DEFAULT_PATTERNS
        .iter()
        .chain(&["session", "api-key"])
        .map(|p| p.to_string())
        .collect()
}

/// The Sentry integration's settings. Start from [`SentryConfig::new`] (a DSN) or
/// [`SentryConfig::from_env`]; every other field has a default.
///
/// Thresholds, not level lists: records at or above [`event_level`](Self::event_level)
/// (default ERROR) become events, records at or above
/// [`breadcrumb_level`](Self::breadcrumb_level) (default INFO) become breadcrumbs.
///
/// The DSN is a credential: `Debug` never prints it.
///
/// ```
/// use piko_obs_sentry::SentryConfig;
/// use piko_obs_logger::Level;
///
/// let config = SentryConfig::new("https://public@sentry.example.com/42")
///     .with_environment("production")
///     .with_release("shop@1.4.2")
///     .with_event_level(Level::WARN);
/// config.validate().unwrap();
/// assert!(!format!("{config:?}").contains("public@"));
/// ```
#[derive(Clone)]
#[must_use]
pub struct SentryConfig {
    dsn: Option<String>,
    /// The environment put on every event (`SENTRY_ENVIRONMENT`).
    pub environment: Option<String>,
    /// The release put on every event (`SENTRY_RELEASE`).
    pub release: Option<String>,
    /// Share of events sent, 0 to 1 (default 1).
    pub sample_rate: f32,
    /// Share of Sentry transactions sent, 0 to 1 (default 0: traces go to OpenTelemetry).
    pub traces_sample_rate: f32,
    /// Whether the Sentry SDK prints what it does (default false).
    pub debug: bool,
    /// Records at or above this level become events (default ERROR).
    pub event_level: Level,
    /// Records at or above this level, and below the event level, become breadcrumbs
    /// (default INFO).
    pub breadcrumb_level: Level,
    /// Breadcrumbs kept for the next event (default 100).
    pub max_breadcrumbs: usize,
    /// Fields that become event tags as well as extra data (default none).
    pub tag_keys: Vec<&'static str>,
    /// Key patterns scrubbed from events, breadcrumbs and request data
    /// (default [`default_scrub_patterns`]).
    pub scrub_patterns: Vec<String>,
    /// Envelopes waiting for the transport; past it they are dropped and counted
    /// (default 100).
    pub queue_capacity: usize,
    /// Bound on connecting to Sentry (default 2 s).
    pub connect_timeout: Duration,
    /// Bound on one request to Sentry (default 5 s).
    pub request_timeout: Duration,
    /// Bound on the flush when the client is closed (default 2 s).
    pub shutdown_timeout: Duration,
    /// The application's `before_send`, run on each event after piko-obs has scrubbed
    /// its secrets ([`SentryConfig::with_before_send`]).
    pub before_send: Option<BeforeSend>,
    /// The application's `before_breadcrumb`, run on each breadcrumb after piko-obs has
    /// scrubbed its secrets ([`SentryConfig::with_before_breadcrumb`]).
    pub before_breadcrumb: Option<BeforeBreadcrumb>,
}

/// A hook that changes or drops (`None`) an event before it is sent.
pub type BeforeSend = std::sync::Arc<
    dyn Fn(sentry_core::protocol::Event<'static>) -> Option<sentry_core::protocol::Event<'static>>
        + Send
        + Sync,
>;

/// A hook that changes or drops (`None`) a breadcrumb before it is recorded.
pub type BeforeBreadcrumb = std::sync::Arc<
    dyn Fn(sentry_core::protocol::Breadcrumb) -> Option<sentry_core::protocol::Breadcrumb>
        + Send
        + Sync,
>;

impl fmt::Debug for SentryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentryConfig")
            .field("dsn", &self.dsn.as_ref().map(|_| piko_obs_logger::REDACTED))
            .field("environment", &self.environment)
            .field("release", &self.release)
            .field("sample_rate", &self.sample_rate)
            .field("traces_sample_rate", &self.traces_sample_rate)
            .field("debug", &self.debug)
            .field("event_level", &self.event_level)
            .field("breadcrumb_level", &self.breadcrumb_level)
            .field("tag_keys", &self.tag_keys)
            .field("queue_capacity", &self.queue_capacity)
            .field("before_send", &self.before_send.is_some())
            .field("before_breadcrumb", &self.before_breadcrumb.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for SentryConfig {
    fn default() -> Self {
        SentryConfig {
            dsn: None,
            environment: None,
            release: None,
            sample_rate: 1.0,
            traces_sample_rate: 0.0,
            debug: false,
            event_level: Level::ERROR,
            breadcrumb_level: Level::INFO,
            max_breadcrumbs: 100,
            tag_keys: Vec::new(),
            scrub_patterns: default_scrub_patterns(),
            queue_capacity: 100,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(2),
            before_send: None,
            before_breadcrumb: None,
        }
    }
}

/// A setting that cannot be used. Names the field (and the variable it came from) and
/// says how to fix it; never repeats a DSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sentry {field}: {problem}")]
pub struct SentryConfigError {
    /// The field or variable.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl SentryConfigError {
    fn new(field: &'static str, problem: impl Into<String>) -> SentryConfigError {
        SentryConfigError {
            field,
            problem: problem.into(),
        }
    }
}

impl SentryConfig {
    /// Runs `f` on each event after piko-obs has scrubbed its secrets, as Sentry's
    /// `before_send`: return the event (changed or not) to send it, `None` to drop it.
    pub fn with_before_send(
        mut self,
        f: impl Fn(
            sentry_core::protocol::Event<'static>,
        ) -> Option<sentry_core::protocol::Event<'static>>
        + Send
        + Sync
        + 'static,
    ) -> SentryConfig {
        self.before_send = Some(std::sync::Arc::new(f));
        self
    }

    /// Runs `f` on each breadcrumb after piko-obs has scrubbed its secrets, as Sentry's
    /// `before_breadcrumb`: return it to keep it, `None` to drop it.
    pub fn with_before_breadcrumb(
        mut self,
        f: impl Fn(sentry_core::protocol::Breadcrumb) -> Option<sentry_core::protocol::Breadcrumb>
        + Send
        + Sync
        + 'static,
    ) -> SentryConfig {
        self.before_breadcrumb = Some(std::sync::Arc::new(f));
        self
    }

    /// Settings that send to `dsn`, with every other field at its default.
    pub fn new(dsn: impl Into<String>) -> SentryConfig {
        SentryConfig {
            dsn: Some(dsn.into()),
            ..SentryConfig::default()
        }
    }

    /// Settings from the `SENTRY_*` variables ([`ENV_DSN`], [`ENV_ENVIRONMENT`],
    /// [`ENV_RELEASE`], [`ENV_SAMPLE_RATE`], [`ENV_TRACES_SAMPLE_RATE`], [`ENV_DEBUG`]).
    /// `Ok(None)` when `SENTRY_DSN` is unset or empty; an error names the variable that
    /// cannot be read.
    pub fn from_env() -> Result<Option<SentryConfig>, SentryConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) over any source of variables.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<SentryConfig>, SentryConfigError> {
        let Some(dsn) = lookup(ENV_DSN).filter(|d| !d.trim().is_empty()) else {
            return Ok(None);
        };
        let mut c = SentryConfig::new(dsn.trim());
        c.environment = lookup(ENV_ENVIRONMENT).filter(|v| !v.is_empty());
        c.release = lookup(ENV_RELEASE).filter(|v| !v.is_empty());
        if let Some(v) = lookup(ENV_SAMPLE_RATE) {
            c.sample_rate = parse_rate(ENV_SAMPLE_RATE, &v)?;
        }
        if let Some(v) = lookup(ENV_TRACES_SAMPLE_RATE) {
            c.traces_sample_rate = parse_rate(ENV_TRACES_SAMPLE_RATE, &v)?;
        }
        if let Some(v) = lookup(ENV_DEBUG) {
            c.debug = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" | "" => false,
                _ => {
                    return Err(SentryConfigError::new(
                        ENV_DEBUG,
                        format!("{v:?} is not a boolean; use true or false"),
                    ));
                }
            };
        }
        c.validate()?;
        Ok(Some(c))
    }

    /// Sets the DSN.
    pub fn with_dsn(mut self, dsn: impl Into<String>) -> SentryConfig {
        self.dsn = Some(dsn.into());
        self
    }
    /// Sets the environment.
    pub fn with_environment(mut self, environment: impl Into<String>) -> SentryConfig {
        self.environment = Some(environment.into());
        self
    }
    /// Sets the release.
    pub fn with_release(mut self, release: impl Into<String>) -> SentryConfig {
        self.release = Some(release.into());
        self
    }
    /// Sets the share of events sent (0 to 1).
    pub fn with_sample_rate(mut self, rate: f32) -> SentryConfig {
        self.sample_rate = rate;
        self
    }
    /// Sets the share of Sentry transactions sent (0 to 1).
    pub fn with_traces_sample_rate(mut self, rate: f32) -> SentryConfig {
        self.traces_sample_rate = rate;
        self
    }
    /// Turns the SDK's own debug output on or off.
    pub fn with_debug(mut self, debug: bool) -> SentryConfig {
        self.debug = debug;
        self
    }
    /// Records at or above `level` become events.
    pub fn with_event_level(mut self, level: Level) -> SentryConfig {
        self.event_level = level;
        self
    }
    /// Records at or above `level` (and below the event level) become breadcrumbs.
    pub fn with_breadcrumb_level(mut self, level: Level) -> SentryConfig {
        self.breadcrumb_level = level;
        self
    }
    /// Fields that also become tags.
    pub fn with_tag_keys(mut self, keys: impl IntoIterator<Item = &'static str>) -> SentryConfig {
        self.tag_keys = keys.into_iter().collect();
        self
    }
    /// Adds a key pattern to scrub.
    pub fn with_scrub_pattern(mut self, pattern: impl Into<String>) -> SentryConfig {
        self.scrub_patterns.push(pattern.into());
        self
    }
    /// Sets the transport's queue capacity.
    pub fn with_queue_capacity(mut self, n: usize) -> SentryConfig {
        self.queue_capacity = n;
        self
    }
    /// Sets the bounds on connecting and on one request.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> SentryConfig {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }
    /// Sets the bound on the flush when the client is closed.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> SentryConfig {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether a DSN is set.
    pub fn has_dsn(&self) -> bool {
        self.dsn.is_some()
    }

    /// The parsed DSN.
    pub fn dsn(&self) -> Result<Dsn, SentryConfigError> {
        let raw = self.dsn.as_deref().ok_or_else(|| {
            SentryConfigError::new(
                "dsn",
                format!("no DSN is set; set {ENV_DSN} or SentryConfig::new(dsn)"),
            )
        })?;
        Dsn::from_str(raw.trim()).map_err(|e| {
            SentryConfigError::new(
                "dsn",
                format!(
                    "not a valid DSN ({e}); expected https://<public key>@<host>/<project id>, \
                     as shown in the Sentry project's Client Keys page"
                ),
            )
        })
    }

    /// Checks every field. [`crate::Sentry::start`] calls it.
    pub fn validate(&self) -> Result<(), SentryConfigError> {
        self.dsn()?;
        check_rate("sample_rate", self.sample_rate)?;
        check_rate("traces_sample_rate", self.traces_sample_rate)?;
        if self.queue_capacity == 0 {
            return Err(SentryConfigError::new(
                "queue_capacity",
                "must be at least 1 (the default is 100)",
            ));
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ] {
            if d.is_zero() {
                return Err(SentryConfigError::new(
                    field,
                    "must be longer than zero; without a bound a dead Sentry can hang shutdown",
                ));
            }
        }
        if let Some(k) = self.tag_keys.iter().find(|k| k.is_empty() || k.len() > 32) {
            return Err(SentryConfigError::new(
                "tag_keys",
                format!("{k:?}: Sentry tag keys are 1 to 32 characters"),
            ));
        }
        Ok(())
    }
}

fn parse_rate(field: &'static str, v: &str) -> Result<f32, SentryConfigError> {
    let rate: f32 = v.trim().parse().map_err(|_| {
        SentryConfigError::new(
            field,
            format!("{v:?} is not a number; use a value from 0 to 1"),
        )
    })?;
    check_rate(field, rate)?;
    Ok(rate)
}

fn check_rate(field: &'static str, rate: f32) -> Result<(), SentryConfigError> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(SentryConfigError::new(
            field,
            format!("{rate} is outside 0 to 1; use a value from 0 (none) to 1 (all)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn no_dsn_in_the_environment_means_no_sentry() {
        assert!(SentryConfig::from_lookup(env(&[])).unwrap().is_none());
        assert!(
            SentryConfig::from_lookup(env(&[(ENV_DSN, " ")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn environment_variables_are_read() {
        let c = SentryConfig::from_lookup(env(&[
            (ENV_DSN, "https://abc@o1.ingest.example.com/7"),
            (ENV_ENVIRONMENT, "staging"),
            (ENV_RELEASE, "shop@2"),
            (ENV_SAMPLE_RATE, "0.5"),
            (ENV_DEBUG, "true"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.environment.as_deref(), Some("staging"));
        assert_eq!(c.release.as_deref(), Some("shop@2"));
        assert_eq!(c.sample_rate, 0.5);
        assert!(c.debug);
        assert_eq!(c.dsn().unwrap().project_id().value(), "7");
    }

    #[test]
    fn a_bad_dsn_names_the_field_and_never_echoes_the_key() {
        let e = SentryConfig::new("ftp://supersecretkey@host/1")
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "dsn");
        let text = e.to_string();
        assert!(
            text.contains("https://<public key>@<host>/<project id>"),
            "{text}"
        );
        assert!(!text.contains("supersecretkey"), "{text}");
        let e = SentryConfig::new("https://key@host/")
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "dsn");
    }

    #[test]
    fn bad_rates_and_bounds_are_refused() {
        let e = SentryConfig::from_lookup(env(&[
            (ENV_DSN, "https://k@h/1"),
            (ENV_SAMPLE_RATE, "lots"),
        ]))
        .unwrap_err();
        assert_eq!(e.field, ENV_SAMPLE_RATE);
        let e = SentryConfig::new("https://k@h/1")
            .with_traces_sample_rate(1.5)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "traces_sample_rate");
        let e = SentryConfig::new("https://k@h/1")
            .with_timeouts(Duration::ZERO, Duration::from_secs(1))
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "connect_timeout");
        let e = SentryConfig::from_lookup(env(&[(ENV_DSN, "https://k@h/1"), (ENV_DEBUG, "maybe")]))
            .unwrap_err();
        assert_eq!(e.field, ENV_DEBUG);
    }

    #[test]
    fn debug_output_hides_the_dsn() {
        let c = SentryConfig::new("https://verysecret@h/1");
        assert!(!format!("{c:?}").contains("verysecret"));
    }
}
