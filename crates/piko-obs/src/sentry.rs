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
        .trace_source(Arc::new(crate::otlp::current_span_ids))
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
