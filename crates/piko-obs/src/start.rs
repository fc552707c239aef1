//! `init()`: settings resolved first, then each part started and pushed on one stack,
//! which a failure unwinds and the [`Guard`] shuts down.

use std::time::Duration;

use piko_obs_lifecycle::runtime::OwnRuntime;
#[cfg(any(feature = "otlp", feature = "sentry"))]
use piko_obs_lifecycle::settings::Identity;
use piko_obs_lifecycle::setup::Service;
use piko_obs_lifecycle::{Stack, Unwind};
use piko_obs_logger::setup::LoggerSettings;

#[cfg(feature = "health")]
use crate::health;
#[cfg(feature = "metrics")]
use crate::metrics;
#[cfg(feature = "otlp")]
use crate::otlp;
#[cfg(feature = "sentry")]
use crate::sentry;
use crate::{Builder, Guard, InitError, RunMode, logger};

/// The bound on unwinding a failed `init()`.
const UNWIND_BOUND: Duration = Duration::from_secs(1);

/// The builder's settings with the environment and the defaults applied and checked,
/// before anything starts.
pub(crate) struct Resolved {
    pub(crate) service: Service,
    pub(crate) logger: LoggerSettings,
    #[cfg(feature = "health")]
    pub(crate) probe_server: piko_obs_health_warp::ProbeServer,
    #[cfg(feature = "otlp")]
    pub(crate) otlp: otlp::Settings,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: metrics::MetricsBuilder,
    #[cfg(feature = "sentry")]
    pub(crate) sentry: Option<sentry::SentryConfig>,
}

/// What started, for the `piko-obs started` line and the guard.
#[derive(Default)]
pub(crate) struct Started {
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    #[cfg(feature = "otlp")]
    pub(crate) pipeline: Option<otlp::Pipeline>,
    #[cfg(feature = "sentry")]
    pub(crate) sentry: bool,
    #[cfg(feature = "metrics")]
    pub(crate) recorder: Option<&'static metrics::Metrics>,
    #[cfg(feature = "notify")]
    pub(crate) notifications: Option<piko_obs_notify_providers::setup::Started>,
    #[cfg(feature = "notify")]
    pub(crate) forwarder: Option<piko_obs_error_alerts::setup::StartedForwarder>,
    pub(crate) dead_letters: String,
    #[cfg(feature = "health")]
    pub(crate) health: Option<health::ServingServer>,
}

pub(crate) fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

impl Builder {
    /// Code, then environment, then default, for every setting (see `settings`); every
    /// error names the setting.
    pub(crate) fn resolve(&self) -> Result<Resolved, InitError> {
        let service = self.service.resolve(&env)?;
        let logger = self.logger.resolve("with_log_level", &env)?;
        #[cfg(feature = "notify")]
        self.error_notifications.check(self.notify.enabled())?;
        #[cfg(any(feature = "otlp", feature = "sentry"))]
        let Identity {
            environment,
            release,
        } = &service.identity;
        Ok(Resolved {
            #[cfg(feature = "health")]
            probe_server: self.health.resolve(&env)?,
            #[cfg(feature = "otlp")]
            otlp: self.resolve_otlp(environment, release, &service.service_name)?,
            // Checked whether or not the recorder is installed by this call.
            #[cfg(feature = "metrics")]
            metrics: self.metrics.builder()?,
            #[cfg(feature = "sentry")]
            sentry: self
                .sentry
                .resolve(environment, release)
                .map_err(sentry::setup::SetupError::from)?,
            service,
            logger,
        })
    }

    /// Whether any part needs piko-obs's runtime.
    fn needs_runtime(&self, r: &Resolved) -> bool {
        let _ = r;
        [
            #[cfg(feature = "health")]
            self.health.needs_runtime(),
            #[cfg(feature = "notify")]
            self.notify.enabled(),
            #[cfg(feature = "otlp")]
            r.otlp.enabled,
            #[cfg(feature = "sentry")]
            r.sentry.is_some(),
        ]
        .contains(&true)
    }

    /// Starts every part in order, each pushed on one stack: a failure unwinds what
    /// started, and the guard shuts the stack down in reverse order. The probe server
    /// starts last, so that the documented shutdown order (drain, probe server, error
    /// forwarder, dispatcher, Sentry, OpenTelemetry, logs) is the reverse of the start.
    #[cfg_attr(not(any(feature = "notify", feature = "health")), allow(unused_mut))]
    pub(crate) fn start(mut self, r: Resolved) -> Result<Guard, InitError> {
        let parts = Unwind::new(UNWIND_BOUND);
        Self::start_logging(&r, &parts)?;
        let mut started = Started {
            dead_letters: "off (notifications off)".into(),
            ..Started::default()
        };
        if self.needs_runtime(&r) {
            // piko-obs's runtime: the dispatcher, the exporters, Sentry's transport (the probe
            // server serves on a thread of its own unless told otherwise, and needs none).
            let runtime = OwnRuntime::start().map_err(InitError::Runtime)?;
            started.runtime = Some(runtime.handle().clone());
            parts.push(runtime);
        }
        #[cfg(feature = "otlp")]
        self.start_otlp(&r, &mut started, &parts)?;
        #[cfg(feature = "sentry")]
        if let (Some(config), Some(rt)) = (&r.sentry, &started.runtime) {
            sentry::start(config, rt, &parts)?;
            started.sentry = true;
        }
        #[cfg(feature = "metrics")]
        self.start_metrics(&r, &mut started, &parts)?;
        #[cfg(feature = "notify")]
        self.start_notifications(&r, &mut started, &parts)?;
        #[cfg(feature = "health")]
        self.start_health(&r, &mut started, &parts)?;
        let parts = parts.keep();
        // Installed once everything started: a failed init() leaves none behind.
        #[cfg(feature = "notify")]
        started.install_notifications();
        self.announce(&r, &started);
        let stack = Stack::new();
        stack.push(logger::hub().clone());
        stack.append(parts);
        Ok(Guard {
            shutdown_timeout: r.service.shutdown_timeout,
            drain_delay: r.service.drain_delay,
            #[cfg(feature = "health")]
            health: started.health.as_ref().map(|s| s.service.clone()),
            #[cfg(feature = "health")]
            health_addr: started.health.map(|s| s.addr),
            #[cfg(not(feature = "health"))]
            health_addr: None,
            stack,
        })
    }

    /// The hub's settings, the console output and the `log` and `tracing` bridges.
    fn start_logging(r: &Resolved, parts: &Unwind) -> Result<(), InitError> {
        r.logger.configure(logger::hub());
        logger::set_framework_level(r.logger.level.clone());
        let format = match r.service.run_mode {
            RunMode::Prod => logger::ConsoleFormat::Json,
            RunMode::Dev => logger::ConsoleFormat::Pretty,
        };
        // None when the program added a stdout output of its own before init().
        if r.logger.console
            && let Some(console) = logger::start_console(format, r.logger.level.clone())?
        {
            parts.push(console);
        }
        if r.logger.log_bridge {
            logger::install_log_bridge()?;
        }
        #[cfg(feature = "otlp")]
        if r.logger.tracing_bridge {
            // Said when the application's own subscriber was there first.
            let route = logger::install_tracing_bridge();
            let said = logger::get_logger("piko-obs/logger");
            match route {
                logger::TracingRoute::Installed => {}
                logger::TracingRoute::ApplicationLayer => said.info(route.describe(), &[]),
                _ => said.notice(route.describe(), &[]),
            }
        }
        Ok(())
    }

    /// One line that says what started (never a secret: no DSN, header or URL
    /// credentials).
    fn announce(&self, r: &Resolved, started: &Started) {
        let (probes, metrics_path) = started.shown_probes();
        let otlp = |signal: &str| self.shown_otlp(r, started, signal);
        #[cfg(feature = "sentry")]
        let sentry = if started.sentry { "on" } else { "off" };
        #[cfg(not(feature = "sentry"))]
        let sentry = "off (the sentry feature is off)";
        #[cfg(feature = "notify")]
        let providers = started
            .notifications
            .as_ref()
            .map(|n| n.service.providers().join(","))
            .unwrap_or_else(|| "off".into());
        #[cfg(not(feature = "notify"))]
        let providers = "off (the notify feature is off)".to_string();
        logger::get_logger("piko-obs").notice(
            "piko-obs started",
            &[
                logger::attr::string("mode", r.service.run_mode.as_str()),
                logger::attr::string("probes", &probes),
                logger::attr::string("metrics", &metrics_path),
                logger::attr::string("otlp_traces", &otlp("traces")),
                logger::attr::string("otlp_metrics", &otlp("metrics")),
                logger::attr::string("otlp_logs", &otlp("logs")),
                logger::attr::string("sentry", sentry),
                logger::attr::string("alert_providers", &providers),
                logger::attr::string("dead_letters", &started.dead_letters),
            ],
        );
    }

    /// Where an OTLP signal goes, or why it is off.
    fn shown_otlp(&self, r: &Resolved, started: &Started, signal: &str) -> String {
        let _ = (r, started, signal);
        #[cfg(feature = "otlp")]
        return self
            .otlp
            .shown(&r.otlp, started.pipeline.is_some(), signal, env);
        #[cfg(not(feature = "otlp"))]
        "off (the otlp feature is off)".to_string()
    }
}

impl Started {
    /// The probe server's part of the summary (`ServingServer::shown`), or `off`.
    fn shown_probes(&self) -> (String, String) {
        #[cfg(feature = "health")]
        if let Some(server) = &self.health {
            return server.shown();
        }
        ("off".into(), "off".into())
    }
}
