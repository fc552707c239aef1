//! Sentry for piko-obs.
//!
//! What it is for: ERROR records of the log hub become Sentry events whose exception is
//! the record's error chain (the type and message of each source), with the logger name,
//! the fields as extra data (and chosen ones as tags), the source location, the stack
//! and the current span's trace and span ids as the trace context; lower records become
//! breadcrumbs. Thresholds, not level lists: [`SentryConfig::event_level`] (default
//! ERROR) and [`SentryConfig::breadcrumb_level`] (default INFO).
//!
//! What is in it:
//! - [`SentryConfig`]: DSN, environment, release, sample rates, debug, thresholds, tag
//!   keys, scrub patterns and the transport's bounds, from code or from `SENTRY_*`
//!   variables; an invalid DSN is an error that names the field and never repeats it.
//! - [`Sentry`]: a started client, its bounded [`HttpTransport`] (rustls, connect and
//!   request timeouts, a queue whose drops are counted, a flush that returns at its
//!   bound) and the drain to add to the log hub ([`Sentry::drain`], a
//!   `sentry_slog::SentryDrain`).
//! - [`scrub`]: secret-looking keys are replaced in every event and breadcrumb before it
//!   leaves the process.
//!
//! The crate never touches global state on its own: [`Sentry::start`] builds a client
//! and a Sentry hub of its own, and the drain sends through that hub whatever thread
//! logs. [`setup`] holds what the composing program calls to run it in a process:
//! [`setup::start`] adds the panic and context integrations and the drain to the
//! process-wide log hub, [`setup::install`] binds the client to Sentry's main hub (for
//! panics and direct `sentry::capture_*` calls), and [`setup::enable`] does both on a
//! runtime of its own.
//!
//! ```no_run
//! use std::sync::Arc;
//! use piko_obs_logger::Hub;
//! use piko_obs_sentry::{Sentry, SentryConfig};
//!
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let config = SentryConfig::new("https://public@sentry.example.com/42")
//!     .with_environment("production");
//! let sentry = Sentry::start(&config, rt.handle()).unwrap();
//! let hub = Hub::builder().build();
//! hub.add_drain("sentry", sentry.min_level(), sentry.drain()).unwrap();
//! hub.get_logger("shop").error("payment failed", &[]);
//! assert!(sentry.close(std::time::Duration::from_secs(2)));
//! ```
//!
//! Feature flags: none.

pub mod config;
pub mod drain;
mod lifecycle;
pub mod ratelimit;
pub mod scrub;
pub mod setup;
pub mod telemetry;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

pub use config::{
    BeforeBreadcrumb, BeforeSend, SentryConfig, SentryConfigError, default_scrub_patterns,
};
pub use drain::{DrainOptions, HubDrain, TraceSource, exception_chain, sentry_drain};
pub use lifecycle::EventsDropped;
pub use transport::{ErrorHook, HttpTransport, TransportError, TransportStats};

use piko_obs_logger::{Level, SecretKeys};
use sentry_core::{Client, ClientOptions, Hub, Scope};

/// A started Sentry client: its options, its transport and the drain for the log hub.
pub struct Sentry {
    client: Arc<Client>,
    hub: Arc<Hub>,
    transport: Arc<HttpTransport>,
    drain_options: DrainOptions,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Sentry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentry")
            .field("transport", &self.transport)
            .field("drain", &self.drain_options)
            .finish_non_exhaustive()
    }
}

/// Hooks a [`Sentry`] is started with.
#[derive(Default)]
#[must_use]
pub struct StartOptions {
    customize: Option<Box<dyn FnOnce(ClientOptions) -> ClientOptions>>,
    on_transport_error: Option<ErrorHook>,
    trace_source: Option<TraceSource>,
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("customize", &self.customize.is_some())
            .field("on_transport_error", &self.on_transport_error.is_some())
            .field("trace_source", &self.trace_source.is_some())
            .finish()
    }
}

impl StartOptions {
    /// Changes the client options before the client is built (the facade adds Sentry's
    /// default integrations here).
    pub fn customize(mut self, f: impl FnOnce(ClientOptions) -> ClientOptions + 'static) -> Self {
        self.customize = Some(Box::new(f));
        self
    }
    /// Hears of each envelope the transport could not send.
    pub fn on_transport_error(
        mut self,
        f: impl Fn(&TransportError) + Send + Sync + 'static,
    ) -> Self {
        self.on_transport_error = Some(Arc::new(f));
        self
    }
    /// Where the drain finds the current span's ids.
    pub fn trace_source(mut self, f: TraceSource) -> Self {
        self.trace_source = Some(f);
        self
    }
}

impl Sentry {
    /// Checks `config` and starts a client whose transport runs on `handle`.
    pub fn start(
        config: &SentryConfig,
        handle: &tokio::runtime::Handle,
    ) -> Result<Sentry, SentryConfigError> {
        Sentry::start_with(config, handle, StartOptions::default())
    }

    /// [`start`](Self::start) with hooks.
    pub fn start_with(
        config: &SentryConfig,
        handle: &tokio::runtime::Handle,
        start: StartOptions,
    ) -> Result<Sentry, SentryConfigError> {
        config.validate()?;
        let transport = HttpTransport::start(config, handle, start.on_transport_error)?;
        let secrets = Arc::new(SecretKeys::new(&config.scrub_patterns));
        // `ClientOptions` is non-exhaustive: fill a default one.
        let mut options = ClientOptions::default()
            .sample_rate(config.sample_rate)
            .traces_sample_rate(config.traces_sample_rate);
        options.dsn = Some(config.dsn()?);
        options.debug = config.debug;
        options.release = config.release.clone().map(Into::into);
        options.environment = config.environment.clone().map(Into::into);
        options.max_breadcrumbs = config.max_breadcrumbs;
        options.send_default_pii = false;
        options.default_integrations = false;
        options.shutdown_timeout = config.shutdown_timeout;
        options.transport = Some(Arc::new(transport.clone()));
        // piko-obs's scrubbing first, then the application's hook, which never sees a
        // secret piko-obs would have masked.
        let (s, user) = (secrets.clone(), config.before_send.clone());
        options.before_send = Some(Arc::new(move |e| {
            let e = scrub::scrub_event(e, &s);
            match &user {
                Some(f) => f(e),
                None => Some(e),
            }
        }));
        let (s, user) = (secrets, config.before_breadcrumb.clone());
        options.before_breadcrumb = Some(Arc::new(move |b| {
            let b = scrub::scrub_breadcrumb(b, &s);
            match &user {
                Some(f) => f(b),
                None => Some(b),
            }
        }));
        if let Some(customize) = start.customize {
            options = customize(options);
        }
        let client = Arc::new(Client::with_options(options));
        let mut drain_options = DrainOptions::from_config(config);
        if let Some(t) = start.trace_source {
            drain_options = drain_options.with_trace_source(t);
        }
        Ok(Sentry {
            hub: Arc::new(Hub::new(Some(client.clone()), Arc::new(Scope::default()))),
            client,
            transport,
            drain_options,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The client, to bind to other Sentry hubs ([`setup::install`] binds it to the main
    /// hub, for panics and direct `sentry::capture_*` calls).
    pub fn client(&self) -> Arc<Client> {
        self.client.clone()
    }

    /// The Sentry hub of this client that the drain sends through: its scope holds the
    /// breadcrumbs of every thread's log lines.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// The drain to add to the log hub: a `sentry_slog::SentryDrain` run on
    /// [`hub`](Self::hub).
    pub fn drain(&self) -> HubDrain {
        sentry_drain(self.drain_options.clone(), self.hub.clone())
    }

    /// The lowest level the drain uses: the filter to give the log hub.
    pub fn min_level(&self) -> Level {
        self.drain_options.min_level()
    }

    /// The transport's counters.
    pub fn stats(&self) -> TransportStats {
        self.transport.stats()
    }

    /// Sends what is queued, waiting at most `timeout`; whether everything went.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.client.flush(Some(timeout))
    }

    /// Flushes within `timeout` and shuts the transport down; later events are dropped
    /// and counted. Whether everything queued was sent. A second close is harmless.
    pub fn close(&self, timeout: Duration) -> bool {
        self.client.close(Some(timeout))
    }

    /// The bound configured for the flush at shutdown.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }
}
