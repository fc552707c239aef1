//! Sentry in a process: [`SentrySetup`] holds the settings given in code (a
//! [`SentryConfig`], or the `SENTRY_*` variables, and the hooks that apply to either)
//! and resolves them; [`start`] starts the client with Sentry's panic and context
//! integrations and adds its output to the process-wide log hub; [`install`] binds it to
//! Sentry's main hub and [`global`]; [`enable`] does all of it on a runtime of its own.
//! Only the composing program calls [`start`], [`install`] and [`enable`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use piko_obs_lifecycle::runtime::OwnRuntime;
use piko_obs_lifecycle::{Stack, Unwind};
use piko_obs_logger::{AddOutputError, AddedOutput, attr, global as logs};

use crate::{
    BeforeBreadcrumb, BeforeSend, Sentry, SentryConfig, SentryConfigError, StartOptions,
    TransportStats,
};

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

/// Where the trace and span ids (hex) of the current span come from: the trace context
/// of events.
pub type SpanIds = fn() -> Option<(String, String)>;

/// Why Sentry could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A setting cannot work (the DSN, a rate, a bound).
    #[error(transparent)]
    Config(#[from] SentryConfigError),
    /// The `sentry` output could not be added to the log hub.
    #[error(transparent)]
    Output(#[from] AddOutputError),
    /// The runtime of [`enable`] could not start.
    #[error("cannot start the Sentry runtime: {0}")]
    Runtime(std::io::Error),
}

/// Starts Sentry on `handle` with Sentry's own defaults and its panic (a panic on any
/// thread is an event with its stack) and context (OS, runtime, device) integrations,
/// the trace context from `span_ids`, and adds the `sentry` output to the process-wide
/// log hub; the client and the output are pushed on `parts`. An envelope that cannot be
/// delivered is logged as WARN (`sentry event not delivered`), at most once a minute.
/// Nothing is bound to Sentry's main hub: see [`install`].
pub fn start(
    config: &SentryConfig,
    handle: &tokio::runtime::Handle,
    span_ids: SpanIds,
    parts: &Unwind,
) -> Result<Arc<Sentry>, SetupError> {
    let last_report = Mutex::new(None::<Instant>);
    let options = StartOptions::default()
        // The integrations the defaults would add only with `default_integrations`, off
        // in piko-obs's options.
        .customize(|mut options| {
            use ::sentry::integrations::{contexts::ContextIntegration, panic::PanicIntegration};
            options.integrations.push(Arc::new(PanicIntegration::new()));
            options
                .integrations
                .push(Arc::new(ContextIntegration::new()));
            ::sentry::apply_defaults(options)
        })
        .trace_source(Arc::new(span_ids))
        .on_transport_error(move |e| {
            let mut last = last_report.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
                return;
            }
            *last = Some(Instant::now());
            let reason = attr::string("reason", &e.reason);
            logs::get_logger("piko-obs/sentry").warn("sentry event not delivered", &[reason]);
        });
    let s = Arc::new(Sentry::start_with(config, handle, options)?);
    parts.push(s.clone());
    let id = logs::add_drain("sentry", s.min_level(), s.drain())?;
    parts.push(AddedOutput::new(logs::hub(), id, "sentry output"));
    Ok(s)
}

/// Binds `sentry` to Sentry's main hub (panics and direct `sentry::capture_*` calls go
/// through it; log lines go through the client's own hub, see [`Sentry::drain`]) and
/// makes it the client of [`global`].
pub fn install(sentry: &Arc<Sentry>) {
    ::sentry::Hub::main().bind_client(Some(sentry.client()));
    global::install(sentry.clone());
}

/// Sentry on its own: [`start`] on a small runtime of its own, then [`install`]. Keep
/// the returned guard; dropping it flushes within the config's shutdown timeout.
///
/// ```no_run
/// use piko_obs_sentry::{SentryConfig, setup};
/// let config = SentryConfig::new("https://public@sentry.example.com/42");
/// let _sentry = setup::enable(&config, || None).expect("a valid DSN");
/// ```
pub fn enable(config: &SentryConfig, span_ids: SpanIds) -> Result<SentryGuard, SetupError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("piko-obs-sentry")
        .enable_all()
        .build()
        .map_err(SetupError::Runtime)?;
    // The runtime is the stack's first part: it stops last, and a failed start unwinds it.
    let runtime = OwnRuntime::new(runtime);
    let handle = runtime.handle().clone();
    let parts = Unwind::new(Duration::from_secs(1));
    parts.push(runtime);
    let sentry = start(config, &handle, span_ids, &parts)?;
    install(&sentry);
    Ok(SentryGuard {
        sentry,
        parts: parts.keep(),
    })
}

/// Keeps the Sentry client of [`enable`] running; flushes and stops it when dropped.
#[must_use = "dropping the guard stops Sentry at once"]
#[derive(Debug)]
pub struct SentryGuard {
    sentry: Arc<Sentry>,
    /// The runtime, the client and its log output.
    parts: Stack,
}

impl SentryGuard {
    /// The client's transport counters.
    pub fn stats(&self) -> TransportStats {
        self.sentry.stats()
    }
}

impl Drop for SentryGuard {
    fn drop(&mut self) {
        // Within the client's own bound; the parts report nothing more a drop could act on.
        let _ = self
            .parts
            .shutdown(self.sentry.shutdown_timeout() + Duration::from_millis(200));
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
