//! Sentry: ERROR log lines become Sentry events with their error chain and the current
//! span's trace context; lower lines become breadcrumbs; panics are reported too.
//!
//! Turn it on with [`Builder::with_sentry`](crate::Builder::with_sentry) (a
//! [`SentryConfig`]) or [`Builder::with_sentry_from_env`](crate::Builder::with_sentry_from_env)
//! (`SENTRY_DSN` and the other `SENTRY_*` variables), or on its own with [`enable`], like
//! Piko's `sentry.Enable`. `init()` checks the DSN, starts the client with piko-obs's
//! transport (rustls, timeouts, a bounded queue), binds it to Sentry's main hub with the
//! panic and context integrations, and adds a `sentry` output to the log hub. The guard
//! flushes it within its bound. Envelopes are counted in
//! `piko_obs_sentry_envelopes_total{outcome}`.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use piko_obs_sentry::*;

use piko_obs_lifecycle::Unwind;

use crate::Builder;
use crate::{InitError, logger};

static INSTALLED: RwLock<Option<Arc<Sentry>>> = RwLock::new(None);

/// The Sentry client `init()` or [`enable`] started, if any.
pub fn installed() -> Option<Arc<Sentry>> {
    INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Starts Sentry on `handle`, binds it to Sentry's main hub and adds the `sentry` log
/// output, both pushed on `parts`. Transport failures are logged as WARN, at most one a
/// minute.
pub(crate) fn start(
    config: &SentryConfig,
    handle: &tokio::runtime::Handle,
    parts: &Unwind,
) -> Result<Arc<Sentry>, InitError> {
    let last_report = std::sync::Mutex::new(None::<Instant>);
    let start = StartOptions::default()
        // Sentry's own defaults, and the panic (a panic on any thread is an event with its
        // stack) and context (OS, runtime, device) integrations, which the defaults would
        // add only with `default_integrations`, off in piko-obs's options.
        .customize(|mut options| {
            options.integrations.push(Arc::new(
                ::sentry::integrations::panic::PanicIntegration::new(),
            ));
            options.integrations.push(Arc::new(
                ::sentry::integrations::contexts::ContextIntegration::new(),
            ));
            ::sentry::apply_defaults(options)
        })
        .trace_source(Arc::new(trace_ids))
        .on_transport_error(move |e| {
            let mut last = last_report.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
                return;
            }
            *last = Some(Instant::now());
            logger::get_logger("piko-obs/sentry").warn(
                "sentry event not delivered",
                &[piko_obs_logger::attr::string("reason", &e.reason)],
            );
        });
    let s = Arc::new(Sentry::start_with(config, handle, start).map_err(InitError::Sentry)?);
    // Panics and direct `sentry::capture_*` calls go through the main hub; log lines go
    // through the client's own hub (see `Sentry::drain`).
    ::sentry::Hub::main().bind_client(Some(s.client()));
    parts.push(s.clone());
    let id = logger::add_drain("sentry", s.min_level(), s.drain())?;
    parts.push(piko_obs_logger::AddedOutput::new(
        logger::hub(),
        id,
        "sentry output",
    ));
    *INSTALLED.write().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
    Ok(s)
}

/// The trace and span ids of the current OpenTelemetry span, with OTLP compiled in.
fn trace_ids() -> Option<(String, String)> {
    #[cfg(feature = "otlp")]
    return crate::otlp::current_span_ids();
    #[cfg(not(feature = "otlp"))]
    None
}

/// Sentry on its own, without the rest of `init()`: starts the client on a small runtime
/// of its own, binds it, and adds the `sentry` output to the global log hub. Keep the
/// returned guard; dropping it flushes within the config's shutdown timeout.
///
/// ```no_run
/// let _sentry = piko_obs::sentry::enable(
///     piko_obs::sentry::SentryConfig::new("https://public@sentry.example.com/42")
///         .with_environment("production"),
/// )
/// .expect("a valid DSN");
/// ```
pub fn enable(config: SentryConfig) -> Result<SentryGuard, InitError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("piko-obs-sentry")
        .enable_all()
        .build()
        .map_err(InitError::Runtime)?;
    let parts = Unwind::new(Duration::from_secs(1));
    let handle = runtime.handle().clone();
    parts.push(crate::OwnRuntime::new(runtime));
    let sentry = start(&config, &handle, &parts)?;
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
    parts: piko_obs_lifecycle::Stack,
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

/// The Sentry settings given to the builder.
#[derive(Default)]
pub(crate) struct InCode {
    pub(crate) config: Option<SentryConfig>,
    pub(crate) from_env: bool,
    pub(crate) before_send: Option<BeforeSend>,
    pub(crate) before_breadcrumb: Option<BeforeBreadcrumb>,
}

impl Builder {
    /// Sends ERROR log lines to Sentry as events (and lower ones as breadcrumbs), with
    /// these settings. An invalid DSN fails `init()`.
    pub fn with_sentry(mut self, config: SentryConfig) -> Self {
        self.sentry.config = Some(config);
        self
    }

    /// Sends ERROR log lines to Sentry when `SENTRY_DSN` is set, with the other
    /// `SENTRY_*` variables (see [`SentryConfig::from_env`]). A setting given
    /// with [`with_sentry`](Self::with_sentry) wins.
    pub fn with_sentry_from_env(mut self) -> Self {
        self.sentry.from_env = true;
        self
    }

    /// Runs `f` on each Sentry event after piko-obs has scrubbed its secrets, as Sentry's
    /// `before_send` (return `None` to drop the event), whether Sentry's settings come
    /// from [`with_sentry`](Self::with_sentry) or the environment.
    pub fn with_sentry_before_send(
        mut self,
        f: impl Fn(::sentry::protocol::Event<'static>) -> Option<::sentry::protocol::Event<'static>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.sentry.before_send = Some(Arc::new(f));
        self
    }

    /// Runs `f` on each Sentry breadcrumb after piko-obs has scrubbed its secrets, as
    /// Sentry's `before_breadcrumb` (return `None` to drop it).
    pub fn with_sentry_before_breadcrumb(
        mut self,
        f: impl Fn(::sentry::protocol::Breadcrumb) -> Option<::sentry::protocol::Breadcrumb>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.sentry.before_breadcrumb = Some(Arc::new(f));
        self
    }
}

impl Builder {
    pub(crate) fn resolve_sentry(
        &self,
        environment: &Option<String>,
        release: &Option<String>,
    ) -> Result<Option<SentryConfig>, InitError> {
        let mut config = match self.sentry.config.clone() {
            Some(c) => {
                c.validate().map_err(InitError::Sentry)?;
                Some(c)
            }
            None if self.sentry.from_env => SentryConfig::from_env().map_err(InitError::Sentry)?,
            None => None,
        };
        if let Some(config) = &mut config {
            if config.environment.is_none() {
                config.environment.clone_from(environment);
            }
            if config.release.is_none() {
                config.release.clone_from(release);
            }
            if self.sentry.before_send.is_some() {
                config.before_send.clone_from(&self.sentry.before_send);
            }
            if self.sentry.before_breadcrumb.is_some() {
                config
                    .before_breadcrumb
                    .clone_from(&self.sentry.before_breadcrumb);
            }
        }
        Ok(config)
    }
}
