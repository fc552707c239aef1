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

pub use piko_obs_sentry::setup::SentryGuard;
use piko_obs_sentry::setup::SpanIds;
pub use piko_obs_sentry::setup::global::installed;
pub use piko_obs_sentry::*;

use piko_obs_lifecycle::Unwind;

use crate::{Builder, InitError};

/// The trace context of events: the current OpenTelemetry span's ids, with OTLP
/// compiled in.
#[cfg(feature = "otlp")]
const SPAN_IDS: SpanIds = crate::otlp::current_span_ids;
#[cfg(not(feature = "otlp"))]
const SPAN_IDS: SpanIds = || None;

/// Starts Sentry on `handle` with its `sentry` log output, both pushed on `parts`, and
/// installs it ([`setup::start`], [`setup::install`]).
pub(crate) fn start(
    config: &SentryConfig,
    handle: &tokio::runtime::Handle,
    parts: &Unwind,
) -> Result<(), InitError> {
    setup::install(&setup::start(config, handle, SPAN_IDS, parts)?);
    Ok(())
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
    Ok(setup::enable(&config, SPAN_IDS)?)
}

impl Builder {
    delegate! { sentry:
        /// Sends ERROR log lines to Sentry as events (and lower ones as breadcrumbs), with
        /// these settings. An invalid DSN fails `init()`.
        fn with_sentry(config: SentryConfig) => with_config(config);

        /// Sends ERROR log lines to Sentry when `SENTRY_DSN` is set, with the other
        /// `SENTRY_*` variables (see [`SentryConfig::from_env`]). A setting given
        /// with [`with_sentry`](Self::with_sentry) wins.
        fn with_sentry_from_env() => with_from_env();

        /// Runs `f` on each Sentry event after piko-obs has scrubbed its secrets, as Sentry's
        /// `before_send` (return `None` to drop the event), whether Sentry's settings come
        /// from [`with_sentry`](Self::with_sentry) or the environment.
        fn with_sentry_before_send(f: impl Fn(::sentry::protocol::Event<'static>) -> Option<::sentry::protocol::Event<'static>> + Send + Sync + 'static) => with_before_send(Arc::new(f));

        /// Runs `f` on each Sentry breadcrumb after piko-obs has scrubbed its secrets, as
        /// Sentry's `before_breadcrumb` (return `None` to drop it).
        fn with_sentry_before_breadcrumb(f: impl Fn(::sentry::protocol::Breadcrumb) -> Option<::sentry::protocol::Breadcrumb> + Send + Sync + 'static) => with_before_breadcrumb(Arc::new(f));
    }
}
