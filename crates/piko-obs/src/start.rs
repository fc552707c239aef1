//! `init()`: settings resolved first, then each part started and pushed on one stack,
//! which a failure unwinds and the [`Guard`] shuts down.

use std::sync::Arc;
use std::time::Duration;

use piko_obs_lifecycle::{Stack, Unwind};
use piko_obs_logger::AddedOutput;

use crate::{Builder, Guard, InitError, RunMode, health, logger, metrics, notification, otlp};
use crate::{PIKO_DISABLE_CONSOLE_LOG, sentry, settings};

/// The bound on unwinding a failed `init()`.
const UNWIND_BOUND: Duration = Duration::from_secs(1);

/// The builder's settings with the environment and the defaults applied and checked,
/// before anything starts.
pub(crate) struct Resolved {
    run_mode: RunMode,
    level: logger::Directives,
    probe_server: settings::ProbeServer,
    otlp: otlp::Settings,
    metrics: metrics::MetricsBuilder,
    sentry: Option<sentry::SentryConfig>,
    environment: Option<String>,
    service_name: String,
    console: bool,
    drain_delay: Duration,
}

/// What started, for the `piko-obs started` line and the guard.
#[derive(Default)]
struct Started {
    runtime: Option<tokio::runtime::Handle>,
    pipeline: bool,
    sentry: bool,
    recorder: Option<&'static metrics::Metrics>,
    notifications: Option<notification::NotificationService>,
    forwarder: Option<notification::ErrorForwarder>,
    dead_letters: String,
    health: Option<(health::HealthService, std::net::SocketAddr)>,
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

impl Builder {
    /// Code, then environment, then default, for every setting (see `settings`); every
    /// error names the setting.
    pub(crate) fn resolve(&self) -> Result<Resolved, InitError> {
        let run_mode = settings::run_mode(self.run_mode, &env)?;
        let probe_server = self.health_server.clone().resolve(&env)?;
        let level = logger::resolve_directives(
            self.log_level.as_deref().map(|l| ("with_log_level", l)),
            logger::PIKO_LOG_LEVEL,
            env,
        )?;
        // One environment and one release for every signal.
        let (environment, release) =
            crate::identity(self.environment.clone(), self.release.clone(), env);
        let service_name = self
            .service_name
            .clone()
            .unwrap_or_else(crate::program_name);
        let otlp = self.resolve_otlp(&environment, &release, &service_name)?;
        // Checked whether or not the recorder is installed by this call.
        let metrics = self.metrics_builder()?;
        let sentry = self.resolve_sentry(&environment, &release)?;
        if let Some(c) = &self.error_notifications {
            c.validate().map_err(InitError::ErrorNotifications)?;
            if !self.notifications_enabled {
                return Err(InitError::ErrorNotificationsWithoutNotifications);
            }
        }
        let console = self
            .console
            .unwrap_or_else(|| env(PIKO_DISABLE_CONSOLE_LOG).as_deref() != Some("true"));
        let drain_delay = self.drain_delay.unwrap_or(match run_mode {
            RunMode::Prod => Duration::from_secs(5),
            RunMode::Dev => Duration::ZERO,
        });
        Ok(Resolved {
            run_mode,
            level,
            probe_server,
            otlp,
            metrics,
            sentry,
            environment,
            service_name,
            console,
            drain_delay,
        })
    }

    fn resolve_otlp(
        &self,
        environment: &Option<String>,
        release: &Option<String>,
        service_name: &str,
    ) -> Result<otlp::Settings, InitError> {
        let mut config = self.otlp_config.clone();
        if config.environment.is_none() {
            config.environment.clone_from(environment);
        }
        if config.service_version.is_none() {
            config.service_version.clone_from(release);
        }
        if let Some(text) = &self.otlp_protocol {
            config.protocol = Some(otlp::Protocol::parse(text).ok_or_else(|| {
                InitError::Otlp(format!(
                    "with_otlp_protocol: unknown protocol {:?}; use grpc or http/protobuf",
                    text.trim()
                ))
            })?);
        }
        config
            .resolve(env, service_name)
            .map_err(|e| InitError::Otlp(e.to_string()))
    }

    fn resolve_sentry(
        &self,
        environment: &Option<String>,
        release: &Option<String>,
    ) -> Result<Option<sentry::SentryConfig>, InitError> {
        let mut config = match self.sentry.clone() {
            Some(c) => {
                c.validate().map_err(InitError::Sentry)?;
                Some(c)
            }
            None if self.sentry_from_env => {
                sentry::SentryConfig::from_env().map_err(InitError::Sentry)?
            }
            None => None,
        };
        if let Some(config) = &mut config {
            if config.environment.is_none() {
                config.environment.clone_from(environment);
            }
            if config.release.is_none() {
                config.release.clone_from(release);
            }
            if self.sentry_before_send.is_some() {
                config.before_send.clone_from(&self.sentry_before_send);
            }
            if self.sentry_before_breadcrumb.is_some() {
                config
                    .before_breadcrumb
                    .clone_from(&self.sentry_before_breadcrumb);
            }
        }
        Ok(config)
    }

    /// Starts every part in order, each pushed on one stack: a failure unwinds what
    /// started, and the guard shuts the stack down in reverse order. The probe server
    /// starts last, so that the documented shutdown order (drain, probe server, error
    /// forwarder, dispatcher, Sentry, OpenTelemetry, logs) is the reverse of the start.
    pub(crate) fn start(mut self, r: Resolved) -> Result<Guard, InitError> {
        let parts = Unwind::new(UNWIND_BOUND);
        self.start_logging(&r, &parts)?;
        let mut started = Started::default();
        if self.health_enabled || self.notifications_enabled || r.otlp.enabled || r.sentry.is_some()
        {
            // piko-obs's runtime, for the probe server, the dispatcher and the exporters.
            let runtime = piko_runtime()?;
            started.runtime = Some(runtime.handle().clone());
            parts.push(crate::OwnRuntime::new(runtime));
        }
        let pipeline = self.start_otlp(&r, &started, &parts)?;
        started.pipeline = pipeline.is_some();
        if let (Some(config), Some(rt)) = (&r.sentry, &started.runtime) {
            sentry::start(config, rt, &parts)?;
            started.sentry = true;
        }
        started.recorder = self.start_metrics(&r, pipeline.as_ref(), &parts)?;
        self.start_notifications(&r, &mut started, &parts)?;
        self.start_health(&r, &mut started, &parts)?;
        let parts = parts.keep();
        // Installed once everything started: a failed init() leaves none behind.
        if let Some(s) = &started.notifications {
            notification::install(s.clone());
        }
        if let Some(f) = &started.forwarder {
            notification::install_forwarder(f.clone());
        }
        self.announce(&r, &started);
        let stack = Stack::new();
        stack.push(logger::hub().clone());
        stack.append(parts);
        Ok(Guard {
            shutdown_timeout: self.shutdown_timeout,
            drain_delay: r.drain_delay,
            health: started.health.as_ref().map(|(s, _)| s.clone()),
            health_addr: started.health.map(|(_, a)| a),
            stack,
        })
    }

    /// The hub's settings, the console output and the `log` and `tracing` bridges.
    fn start_logging(&self, r: &Resolved, parts: &Unwind) -> Result<(), InitError> {
        let hub = logger::hub();
        hub.set_error_backtraces(self.error_backtraces);
        if let Some(keys) = &self.secret_keys {
            hub.set_secret_keys(logger::SecretKeys::new(keys));
        }
        logger::set_framework_level(r.level.clone());
        if r.console {
            let console = match r.run_mode {
                RunMode::Prod => logger::add_console(
                    r.level.clone(),
                    logger::JsonOutput::stdout()
                        .build()
                        .map_err(InitError::Console)?,
                ),
                RunMode::Dev => logger::add_console(
                    r.level.clone(),
                    logger::PrettyOutput::stdout()
                        .build()
                        .map_err(InitError::Console)?,
                ),
            };
            // None when the program added a stdout output of its own before init().
            if let Some(id) = console? {
                parts.push(AddedOutput::new(hub, id, "console output"));
            }
        }
        if self.log_bridge {
            logger::install_log_bridge()?;
        }
        if self.tracing_bridge {
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

    /// The OTLP pipeline and its log output, when export is on.
    fn start_otlp(
        &self,
        r: &Resolved,
        started: &Started,
        parts: &Unwind,
    ) -> Result<Option<otlp::Pipeline>, InitError> {
        let Some(rt) = started.runtime.as_ref().filter(|_| r.otlp.enabled) else {
            if env("OTEL_PROPAGATORS").is_some() {
                // Export off (no endpoint, or `OTEL_SDK_DISABLED`): context still
                // propagates as the variable says; without it, the global propagator is
                // left as it is.
                otlp::install_propagators(&r.otlp);
            }
            return Ok(None);
        };
        let p = otlp::start(&r.otlp, rt, r.metrics.buckets())
            .map_err(|e| InitError::Otlp(e.to_string()))?;
        parts.push(p.clone());
        let id = logger::add_output(
            "otlp",
            r.level.clone(),
            otlp::OtelLogOutput::new(&p.logger_provider).with_span_events(self.otlp_span_events),
        )?;
        parts.push(otlp::Detach {
            output: AddedOutput::new(logger::hub(), id, "otlp output"),
        });
        Ok(Some(p))
    }

    /// The `metrics` recorder: served on the health server's `/metrics`, and, with OTLP
    /// on, exported over OTLP too, with or without the health server.
    fn start_metrics(
        &self,
        r: &Resolved,
        pipeline: Option<&otlp::Pipeline>,
        parts: &Unwind,
    ) -> Result<Option<&'static metrics::Metrics>, InitError> {
        if !self.health_metrics_enabled
            || self.health_metrics_render.is_some()
            || !(self.health_enabled || pipeline.is_some())
        {
            return Ok(None);
        }
        // The same buckets over OTLP as on `/metrics`: the pipeline has a view for each.
        let mut builder = r.metrics.clone();
        if pipeline.is_some() {
            // The recorder is installed once per process; the slot in it takes the
            // recorder of each pipeline started, this one's below.
            builder = builder.with_extra_recorder(otlp::metrics_slot().clone());
        }
        let (installed, fresh) = metrics::install(builder)?;
        if let Some(p) = pipeline {
            if fresh {
                otlp::slot_installed();
            }
            use opentelemetry::metrics::MeterProvider as _;
            if otlp::slot_in_recorder() {
                otlp::metrics_slot().set(Some(otlp::OtelRecorder::new(
                    p.meter_provider.meter("piko-obs"),
                )));
            } else {
                logger::get_logger("piko-obs/otlp").warn(
                    "metrics recorded with the `metrics` macros are not exported over OTLP: \
                     an earlier init() in this process installed the recorder without OTLP",
                    &[],
                );
            }
        }
        let upkeep = metrics::Upkeep::start(installed.clone(), Duration::from_secs(5))
            .map_err(InitError::Runtime)?;
        parts.push(upkeep);
        Ok(Some(installed))
    }

    /// The notification service with its dispatcher, and the error forwarder.
    fn start_notifications(
        &mut self,
        r: &Resolved,
        started: &mut Started,
        parts: &Unwind,
    ) -> Result<(), InitError> {
        started.dead_letters = "off (notifications off)".into();
        let Some(rt) = started
            .runtime
            .clone()
            .filter(|_| self.notifications_enabled)
        else {
            return Ok(());
        };
        let setup = crate::NotificationSetup {
            providers: std::mem::take(&mut self.notification_providers),
            from_env: self.notification_providers_from_env,
            default: self.notification_default.take(),
            dead_letter_path: self.notification_dead_letter_path.take(),
            dead_letter_max_bytes: self.notification_dead_letter_max_bytes,
            dead_letter_store: self.notification_dead_letter_store.take(),
            retry: self.notification_retry.take(),
            dispatcher: self.notification_dispatcher,
            environment: r.environment.clone(),
            service_name: r.service_name.clone(),
            run_mode: r.run_mode,
        };
        let (service, dispatcher, location) = setup.start(&rt)?;
        parts.push(notification::Delivery::new(&service, &dispatcher, &rt));
        started.dead_letters = location;
        if let Some(config) = self.error_notifications.take() {
            let threshold = config.threshold;
            // Alerts go to every provider unless the config names some.
            let config = if config.providers.is_empty() {
                config.with_providers(service.providers())
            } else {
                if let Some(unknown) = config.providers.iter().find(|p| !service.has_provider(p)) {
                    return Err(InitError::ErrorNotificationsProvider(unknown.clone()));
                }
                config
            };
            let f = notification::ErrorForwarder::start(&rt, service.clone(), config)
                .map_err(InitError::ErrorNotifications)?;
            let id =
                logger::add_output(notification::ERROR_FORWARDER_OUTPUT, threshold, f.clone())?;
            // Closing its output hands the pending groups to the dispatcher.
            parts.push(
                AddedOutput::new(logger::hub(), id, "error forwarder")
                    .with_floor(Duration::from_millis(100)),
            );
            started.forwarder = Some(f);
        }
        started.notifications = Some(service);
        Ok(())
    }

    /// The health service, its probes and the probe server, then the drain.
    fn start_health(
        &mut self,
        r: &Resolved,
        started: &mut Started,
        parts: &Unwind,
    ) -> Result<(), InitError> {
        let Some(rt) = started.runtime.clone().filter(|_| self.health_enabled) else {
            return Ok(());
        };
        let service = health::HealthService::new(r.service_name.clone(), self.health_timeout)
            .map_err(|_| InitError::HealthTimeout)?;
        health::log_probe_panics(&service);
        for register in std::mem::take(&mut self.probes) {
            register(&service)?;
        }
        let p = &r.probe_server;
        let mut server = health::ServerBuilder::new(service.clone())
            .with_bind_address(p.bind.clone())
            .with_port(p.port)
            .with_live_path(p.live.clone())
            .with_ready_path(p.ready.clone())
            .with_startup_path(p.startup.clone())
            .with_metrics_path(p.metrics.clone())
            .with_response_cache(self.health_response_cache)
            .with_header_read_timeout(self.health_header_read_timeout)
            .with_idle_timeout(self.health_idle_timeout)
            .with_max_connections(self.health_max_connections);
        if let Some(tls) = self.health_tls.clone() {
            server = server.with_tls(tls);
        }
        if let Some(render) = self.metrics_render(&service, started.recorder) {
            server = server.with_metrics(render);
        }
        let running = {
            let _enter = rt.enter();
            server.start()?
        };
        health::set_server_counters(running.counters());
        started.health = Some((service.clone(), running.local_addr()));
        parts.push(running);
        parts.push(health::Drain::new(&service, r.drain_delay));
        Ok(())
    }

    /// What `/metrics` serves: the application's render, or the installed recorder's.
    fn metrics_render(
        &mut self,
        service: &health::HealthService,
        recorder: Option<&'static metrics::Metrics>,
    ) -> Option<health::MetricsRender> {
        if !self.health_metrics_enabled {
            return None;
        }
        match (self.health_metrics_render.clone(), recorder) {
            (Some(render), _) => Some(render),
            (None, Some(installed)) => {
                piko_obs_health::telemetry::observe_metrics(service);
                Some(Arc::new(move || installed.render()) as _)
            }
            (None, None) => None,
        }
    }

    /// One line that says what started (never a secret: no DSN, header or URL
    /// credentials).
    fn announce(&self, r: &Resolved, started: &Started) {
        let otlp_shown = |signal: &str| {
            if started.pipeline {
                format!(
                    "{} {}",
                    r.otlp.protocol.as_str(),
                    settings::shown_url(&r.otlp.signal_url(signal))
                )
            } else {
                settings::otlp_off_reason(self.otlp_config.enabled, &env).to_string()
            }
        };
        let p = &r.probe_server;
        let custom_metrics = self.health_metrics_enabled && self.health_metrics_render.is_some();
        let (probes, metrics_path) = match &started.health {
            Some((_, addr)) => (
                format!(
                    "{}://{addr} {} {} {}",
                    if self.health_tls.is_some() {
                        "https"
                    } else {
                        "http"
                    },
                    p.live,
                    p.ready,
                    p.startup
                ),
                if (self.health_metrics_enabled && started.recorder.is_some()) || custom_metrics {
                    p.metrics.clone()
                } else {
                    "off".into()
                },
            ),
            None => ("off".into(), "off".into()),
        };
        let providers = started
            .notifications
            .as_ref()
            .map(|service| service.providers().join(","))
            .unwrap_or_else(|| "off".into());
        logger::get_logger("piko-obs").notice(
            "piko-obs started",
            &[
                logger::attr::string("mode", r.run_mode.as_str()),
                logger::attr::string("probes", &probes),
                logger::attr::string("metrics", &metrics_path),
                logger::attr::string("otlp_traces", &otlp_shown("traces")),
                logger::attr::string("otlp_metrics", &otlp_shown("metrics")),
                logger::attr::string("otlp_logs", &otlp_shown("logs")),
                logger::attr::string("sentry", if started.sentry { "on" } else { "off" }),
                logger::attr::string("alert_providers", &providers),
                logger::attr::string("dead_letters", &started.dead_letters),
            ],
        );
    }
}

fn piko_runtime() -> Result<tokio::runtime::Runtime, InitError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("piko-obs-runtime")
        .enable_all()
        .build()
        .map_err(InitError::Runtime)
}
