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

use std::sync::Arc;
use std::time::{Duration, Instant};

use piko_obs_sentry::setup::SentrySetup;
pub use piko_obs_sentry::setup::global::installed;
pub use piko_obs_sentry::*;

use piko_obs_lifecycle::Unwind;

use crate::Builder;
use crate::{InitError, logger};

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
    piko_obs_sentry::setup::global::install(s.clone());
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

impl Builder {
    /// Sends ERROR log lines to Sentry as events (and lower ones as breadcrumbs), with
    /// these settings. An invalid DSN fails `init()`.
    pub fn with_sentry(self, config: SentryConfig) -> Self {
        self.sentry_with(|s| s.with_config(config))
    }

    /// Sends ERROR log lines to Sentry when `SENTRY_DSN` is set, with the other
    /// `SENTRY_*` variables (see [`SentryConfig::from_env`]). A setting given
    /// with [`with_sentry`](Self::with_sentry) wins.
    pub fn with_sentry_from_env(self) -> Self {
        self.sentry_with(|s| s.with_from_env())
    }

    /// Runs `f` on each Sentry event after piko-obs has scrubbed its secrets, as Sentry's
    /// `before_send` (return `None` to drop the event), whether Sentry's settings come
    /// from [`with_sentry`](Self::with_sentry) or the environment.
    pub fn with_sentry_before_send(
        self,
        f: impl Fn(::sentry::protocol::Event<'static>) -> Option<::sentry::protocol::Event<'static>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.sentry_with(|s| s.with_before_send(Arc::new(f)))
    }

    /// Runs `f` on each Sentry breadcrumb after piko-obs has scrubbed its secrets, as
    /// Sentry's `before_breadcrumb` (return `None` to drop it).
    pub fn with_sentry_before_breadcrumb(
        self,
        f: impl Fn(::sentry::protocol::Breadcrumb) -> Option<::sentry::protocol::Breadcrumb>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.sentry_with(|s| s.with_before_breadcrumb(Arc::new(f)))
    }

    /// Applies a setter of Sentry's settings.
    fn sentry_with(mut self, set: impl FnOnce(SentrySetup) -> SentrySetup) -> Self {
        self.sentry = set(std::mem::take(&mut self.sentry));
        self
    }
}
