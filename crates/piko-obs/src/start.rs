//! `init()`: settings resolved first, then each part started and pushed on one stack,
//! which a failure unwinds and the [`Guard`] shuts down.

use std::time::Duration;

use piko_obs_lifecycle::runtime::OwnRuntime;
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

/// What started, for the later parts, the `piko-obs started` line and the guard.
#[derive(Default)]
pub(crate) struct Started {
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    #[cfg(feature = "otlp")]
    pub(crate) pipeline: Option<otlp::Pipeline>,
    #[cfg(feature = "metrics")]
    pub(crate) recorder: Option<&'static metrics::Metrics>,
    #[cfg(feature = "health")]
    pub(crate) health: Option<health::ServingServer>,
    /// Process-wide installs made once everything started: a failed `init()` leaves none.
    pub(crate) installs: Vec<Box<dyn FnOnce()>>,
    /// The start-up line's fields in order, as each part left them (never a secret: no
    /// DSN, header or URL credentials).
    shown: Vec<(&'static str, String)>,
}

impl Started {
    /// Nothing started yet: every field of the start-up line says off, and why when its
    /// feature is compiled out.
    fn new() -> Self {
        let off = |on: bool, feature: &str| match on {
            true => "off".to_string(),
            false => format!("off (the {feature} feature is off)"),
        };
        let otlp = off(cfg!(feature = "otlp"), "otlp");
        Started {
            shown: vec![
                ("mode", String::new()),
                ("probes", "off".into()),
                ("metrics", "off".into()),
                ("otlp_traces", otlp.clone()),
                ("otlp_metrics", otlp.clone()),
                ("otlp_logs", otlp),
                ("sentry", off(cfg!(feature = "sentry"), "sentry")),
                ("alert_providers", off(cfg!(feature = "notify"), "notify")),
                ("dead_letters", "off (notifications off)".into()),
            ],
            ..Started::default()
        }
    }

    /// Sets the start-up line's field `key`.
    pub(crate) fn show(&mut self, key: &str, value: impl Into<String>) {
        if let Some(field) = self.shown.iter_mut().find(|f| f.0 == key) {
            field.1 = value.into();
        }
    }

    /// One line that says what started.
    fn announce(&self) {
        let fields: Vec<_> = self
            .shown
            .iter()
            .map(|(key, value)| logger::attr::string(key, value))
            .collect();
        logger::get_logger("piko-obs").notice("piko-obs started", &fields);
    }
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
        Ok(Resolved {
            #[cfg(feature = "health")]
            probe_server: self.health.resolve(&env)?,
            #[cfg(feature = "otlp")]
            otlp: self
                .otlp
                .resolve(
                    &service.identity.environment,
                    &service.identity.release,
                    &service.service_name,
                    env,
                )
                .map_err(otlp::setup::SetupError::Config)?,
            // Checked whether or not the recorder is installed by this call.
            #[cfg(feature = "metrics")]
            metrics: self.metrics.builder()?,
            #[cfg(feature = "sentry")]
            sentry: self
                .sentry
                .resolve(&service.identity.environment, &service.identity.release)
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
        let mut started = Started::new();
        started.show("mode", r.service.run_mode.as_str());
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
            started.show("sentry", "on");
        }
        #[cfg(feature = "metrics")]
        self.start_metrics(&r, &mut started, &parts)?;
        #[cfg(feature = "notify")]
        self.start_notifications(&r, &mut started, &parts)?;
        #[cfg(feature = "health")]
        self.start_health(&r, &mut started, &parts)?;
        let parts = parts.keep();
        started.installs.drain(..).for_each(|install| install());
        started.announce();
        let stack = Stack::new();
        stack.push(logger::hub().clone());
        stack.append(parts);
        Ok(Guard {
            shutdown_timeout: r.service.shutdown_timeout,
            #[cfg(feature = "health")]
            server: started.health,
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
            logger::install_tracing_bridge().report(&logger::get_logger("piko-obs/logger"));
        }
        Ok(())
    }
}
