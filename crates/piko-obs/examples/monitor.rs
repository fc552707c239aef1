//! The example service of the guide "How to monitor a production deployment".
//!
//! `monitor dev` (the default) writes pretty console lines, `monitor prod` JSON lines.
//! It serves application routes on `127.0.0.1:8080` (`APP_BIND_ADDRESS`, `APP_PORT`), recorded in the
//! request metrics: `GET /`, and `GET /fail`, which logs an ERROR with a two-level error
//! chain and answers 500. Health probes and `/metrics` on `127.0.0.1:9090`
//! (`/live`, `/ready`, `/startup`, `/metrics`), with one
//! custom probe, `upstream`, that SIGUSR1 switches between healthy and unhealthy, and
//! SIGUSR2 replays the dead-letter file (alerts that could not be delivered). Alerts
//! go to stdout and to a provider for each notification variable that is set; it sends
//! one, `Service started`, to all of them at start-up, and ERROR lines are forwarded to
//! them as grouped alerts. With `SENTRY_DSN` set, ERROR lines are Sentry events too. It logs `Server started` with the
//! run mode, then runs until SIGTERM or SIGINT, and shuts down in order: readiness
//! fails, the drain delay passes, the probe server stops, pending error alerts are
//! queued, queued notifications are delivered or dead-lettered, Sentry is flushed, the
//! OpenTelemetry exporters flush, and every queued line is written. `--help` lists the
//! environment variables it reads.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use piko_obs::RunMode;
use piko_obs::health::{HttpProbe, Status, probe_fn};
use piko_obs::logger::{self, attr};
use piko_obs::notification::{self, Priority, StdoutFormat, StdoutNotifier};
use piko_obs::otlp;
use warp::Filter;

const USAGE: &str = "usage: monitor [dev|prod] [--help]

Runs the piko-obs example service until SIGTERM or SIGINT.

  dev    pretty, coloured console lines (default)
  prod   JSON lines

Signals:
  SIGUSR1                   switch the `upstream` probe between healthy and unhealthy
  SIGUSR2                   replay the dead-letter file: send again the alerts that
                            could not be delivered
  SIGTERM, SIGINT           shut down in order

Environment:
  APP_PORT                  port of the application routes GET / and GET /fail
                            (default 8080; 0 picks one)
  APP_BIND_ADDRESS          their IP address (default 127.0.0.1; 0.0.0.0 in a container)
  HEALTH_PORT               port of the health probes and /metrics (default 9090; 0 picks
                            one); wins over PIKO_HEALTH_PORT
  PIKO_HEALTH_BIND_ADDRESS  IP address of the probe server (default 127.0.0.1)
  PIKO_HEALTH_PORT, PIKO_HEALTH_LIVE_PATH, PIKO_HEALTH_READY_PATH,
  PIKO_HEALTH_STARTUP_PATH, PIKO_HEALTH_METRICS_PATH
                            the probe server's port and paths (toolkit defaults)
  UPSTREAM_HEALTH_URL       an HTTP dependency checked for readiness (http://host/health)
  SHUTDOWN_DRAIN_DELAY_MS   drain delay before the probe server stops (default 5000 in
                            prod, 0 in dev)
  LOG_LEVEL                 level or directives of the service's lines (default info)
  PIKO_LOG_LEVEL            level or directives of piko-obs's own lines (default info)
  NO_COLOR, FORCE_COLOR     console colours in dev mode
  PIKO_DISABLE_CONSOLE_LOG  set to true to turn off the console output of init(),
                            which prints until the service adds its own
  ENVIRONMENT               the environment named in alerts

OpenTelemetry (traces, metrics and logs over OTLP when an endpoint is set, or to stdout):
  OTEL_EXPORTER_OTLP_ENDPOINT   the collector (http://host:4318, https://...)
  OTEL_EXPORTER_OTLP_PROTOCOL   http/protobuf (default), http/json or grpc
  OTEL_EXPORTER_OTLP_HEADERS    key=value,... sent with every export
  OTEL_EXPORTER_OTLP_TIMEOUT    milliseconds per export (default 10000)
  OTEL_PROPAGATORS              tracecontext,baggage (default), b3, b3multi, jaeger,
                                xray, ottrace or none, in the order given
  OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE
                                cumulative (default), delta or lowmemory
  OTEL_{TRACES,METRICS,LOGS}_EXPORTER
                                otlp (default), console (to stdout, for debugging; no
                                endpoint needed), otlp,console (both), or none;
                                prometheus for metrics (/metrics only)
  OTEL_TRACES_SAMPLER           parentbased_always_on (default), always_on, always_off,
                                traceidratio, parentbased_traceidratio (ARG 0 to 1),
                                jaeger_remote or parentbased_jaeger_remote (ARG
                                endpoint=URL,pollingIntervalMs=N,initialSamplingRate=R)
  OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
  OTEL_TRACES_SAMPLER_ARG, OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRIC_EXPORT_TIMEOUT,
  OTEL_SDK_DISABLED, OTEL_LOG_LEVEL, OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_*,
  OTEL_BSP_*, OTEL_BLRP_*,
  OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
  OTEL_METRICS_EXEMPLAR_FILTER, the attribute limits OTEL_ATTRIBUTE_*_LIMIT,
  OTEL_SPAN_*_LIMIT, OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT, OTEL_LINK_ATTRIBUTE_COUNT_LIMIT,
  OTEL_LOGRECORD_ATTRIBUTE_*_LIMIT (docs/reference/otlp.md)

Sentry (ERROR lines as events, lower lines as breadcrumbs, when a DSN is set):
  SENTRY_DSN                https://<public key>@<host>/<project id>
  SENTRY_ENVIRONMENT, SENTRY_RELEASE, SENTRY_SAMPLE_RATE, SENTRY_TRACES_SAMPLE_RATE,
  SENTRY_DEBUG

Alerts (stdout always; one provider for each variable set; ERROR lines are forwarded
to them, grouped by message and call site over a window, and sent resolved once quiet):
  SLACK_WEBHOOK_URL         Slack incoming webhook
  DISCORD_WEBHOOK_URL       Discord webhook
  PAGERDUTY_ROUTING_KEY     PagerDuty Events API v2 integration key
  PAGERDUTY_EVENTS_URL      PagerDuty events endpoint (default the US one)
  TEAMS_WEBHOOK_URL         Microsoft Teams Workflows webhook
  TEAMS_WEBHOOK_FORMAT      workflows (default) or messagecard
  GOOGLE_CHAT_WEBHOOK_URL   Google Chat space webhook
  NTFY_URL                  ntfy server and topic (https://ntfy.sh/alerts)
  NTFY_TOKEN                ntfy access token
  WEBHOOK_URL               any webhook (JSON)
  WEBHOOK_SECRET            sign webhook requests (Standard Webhooks)
  ALERTMANAGER_URL          Prometheus Alertmanager(s), comma-separated: every peer
                            of an HA cluster (http://am-0:9093,http://am-1:9093);
                            user:password@ in a URL for basic auth
  ALERTMANAGER_TOKEN        bearer token for Alertmanager
  ALERTMANAGER_CA_FILE      PEM file of a CA to trust for https:// Alertmanagers
  ALERTMANAGER_INSTANCE     the alerts' `instance` label (default the host name)
  ERROR_ALERT_WINDOW_MS     how long ERROR lines are grouped (default 10000)
  ERROR_ALERT_RESOLVE_AFTER_MS
                            how long a group must stay quiet before its alert is sent
                            resolved (default 300000)
  NOTIFICATION_MAX_RETRIES  retries of a failed alert before it is dead-lettered
                            (default 5)
  NOTIFICATION_RETRY_DELAY_MS
                            the first wait before a retry, doubled each time
                            (default 2000)
  PIKO_NOTIFICATION_DEAD_LETTER_PATH
                            where undeliverable alerts are kept (default
                            ~/.local/state/piko-obs/notifications.dead-letter.jsonl; when
                            that is not writable, in memory and on stderr)";

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("--help" | "-h")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let mode: RunMode = match arg.as_deref().unwrap_or("dev").parse() {
        Ok(m) => m,
        Err(e) => return usage_error(&e.to_string()),
    };
    // Set, HEALTH_PORT is given in code (which wins over PIKO_HEALTH_PORT).
    let health_port: Option<u16> = match std::env::var("HEALTH_PORT") {
        Ok(v) if v.trim().is_empty() => None,
        Err(_) => None,
        Ok(_) => match env_number("HEALTH_PORT", 9090) {
            Ok(p) => Some(p),
            Err(e) => return usage_error(&e),
        },
    };
    let app_bind: std::net::IpAddr = match env_number("APP_BIND_ADDRESS", [127, 0, 0, 1].into()) {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
    };
    let app_port: u16 = match env_number("APP_PORT", 8080) {
        Ok(p) => p,
        Err(e) => return usage_error(&e),
    };
    // Signal handlers first, so a SIGTERM during start-up still shuts down in order.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        let _in = runtime.enter();
        Signals {
            term: signal(SignalKind::terminate()).expect("a SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("a SIGINT handler"),
            usr1: signal(SignalKind::user_defined1()).expect("a SIGUSR1 handler"),
            usr2: signal(SignalKind::user_defined2()).expect("a SIGUSR2 handler"),
        }
    };
    let (forwarding, retry) = match alert_settings() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let upstream_down = Arc::new(AtomicBool::new(false));
    let down = upstream_down.clone();
    let mut builder = piko_obs::builder()
        .with_run_mode(mode)
        .with_service_name("monitor")
        .with_notification_provider(
            notification::provider::STDOUT,
            StdoutNotifier::new(match mode {
                RunMode::Prod => StdoutFormat::Json,
                RunMode::Dev => StdoutFormat::Human,
            }),
        )
        .with_notification_providers_from_env()
        .with_notification_retry_policy(retry)
        .with_error_notifications(forwarding)
        .with_sentry_from_env()
        .with_custom_health_probe(probe_fn("upstream", move |_, _| {
            let is_down = down.load(Ordering::SeqCst);
            async move {
                if is_down {
                    Status::unhealthy("upstream", "maintenance switch on (SIGUSR1)")
                } else {
                    Status::healthy("upstream")
                }
            }
        }));
    if let Some(port) = health_port {
        builder = builder.with_health_probe_port(port);
    }
    // A dependency checked over HTTP for readiness; a URL with user info is refused
    // here, and its query is never shown in the probe's answers.
    if let Ok(url) = std::env::var("UPSTREAM_HEALTH_URL") {
        match HttpProbe::new("upstream-http", &url) {
            Ok(probe) => builder = builder.with_custom_health_probe(probe),
            Err(e) => return usage_error(&format!("UPSTREAM_HEALTH_URL: {e}")),
        }
    }
    if std::env::var_os("SHUTDOWN_DRAIN_DELAY_MS").is_some() {
        match env_number("SHUTDOWN_DRAIN_DELAY_MS", 0u64) {
            Ok(ms) => builder = builder.with_shutdown_drain_delay(Duration::from_millis(ms)),
            Err(e) => return usage_error(&e),
        }
    }
    let guard = match builder.init() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("monitor: {e}");
            return ExitCode::from(2);
        }
    };
    // As in the guide's first program: the program's own output, at LOG_LEVEL, takes
    // standard output over from the console output of init() (no line twice); piko-obs's
    // own lines keep PIKO_LOG_LEVEL.
    let added = match mode {
        RunMode::Prod => logger::add_json_output(),
        RunMode::Dev => logger::add_pretty_output(),
    };
    if let Err(e) = added {
        eprintln!("monitor: {e}");
        return ExitCode::from(2);
    }
    let log = logger::get_logger("monitor");
    if let Some(addr) = guard.health_addr() {
        log.info("Health probes listening", &[attr::display("addr", &addr)]);
    }

    let app = match runtime.block_on(tokio::net::TcpListener::bind((app_bind, app_port))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "monitor: cannot listen on {app_bind}:{app_port} (APP_BIND_ADDRESS, APP_PORT): {e}"
            );
            return ExitCode::from(2);
        }
    };
    if let Ok(addr) = app.local_addr() {
        log.info("Application listening", &[attr::display("addr", &addr)]);
    }
    // Each request runs in its own span (a child of the caller's `traceparent`, if it
    // sent one), and its log lines carry the span's ids.
    let requests = log.clone();
    let hello = warp::path::end()
        .and(warp::get())
        .and(otlp::warp_trace_context())
        .and_then(move |parent: otlp::Context| {
            let log = requests.clone();
            async move {
                let reply =
                    otlp::run_in_span_from(&parent, &log, "GET /", vec![], |log| async move {
                        log.info("Request handled", &[attr::string("path", "/")]);
                        Ok::<_, std::convert::Infallible>("hello from monitor\n")
                    })
                    .await
                    .unwrap_or_else(|never| match never {});
                Ok::<_, warp::Rejection>(reply)
            }
        });
    let failures = log.clone();
    let fail = warp::path("fail")
        .and(warp::path::end())
        .and(warp::get())
        .and(otlp::warp_trace_context())
        .and_then(move |parent: otlp::Context| {
            let log = failures.clone();
            async move {
                let reply =
                    otlp::run_in_span_from(&parent, &log, "GET /fail", vec![], |log| async move {
                        let err = CheckoutError(UpstreamError("connection refused"));
                        log.error(
                            "Checkout failed",
                            &[attr::error(&err), attr::string("path", "/fail")],
                        );
                        Ok::<_, std::convert::Infallible>(warp::reply::with_status(
                            "checkout failed\n",
                            warp::http::StatusCode::INTERNAL_SERVER_ERROR,
                        ))
                    })
                    .await
                    .unwrap_or_else(|never| match never {});
                Ok::<_, warp::Rejection>(reply)
            }
        });
    let routes = piko_obs::metrics::http::warp_route("/", hello)
        .or(piko_obs::metrics::http::warp_route("/fail", fail));
    runtime.spawn(warp::serve(routes).incoming(app).run());
    log.notice("Server started", &[attr::string("mode", mode.as_str())]);
    if let Some(service) = notification::service() {
        let sent = service
            .notification()
            .title("Service started")
            .message(format!("monitor is up in {} mode", mode.as_str()))
            .priority(Priority::Low)
            .to_providers(service.providers())
            .enqueue();
        if let Err(e) = sent {
            log.warn("Start-up alert not queued", &[attr::display("error", &e)]);
        }
    }
    let signal = runtime.block_on(wait_for_signal(signals, &log, &upstream_down));
    log.notice("Server stopping", &[attr::string("signal", signal)]);
    if let Err(e) = guard.shutdown() {
        eprintln!("monitor: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The error forwarding and retry settings, from `ERROR_ALERT_*` and
/// `NOTIFICATION_*` (the defaults when unset).
fn alert_settings() -> Result<
    (
        notification::ErrorForwarderConfig,
        notification::RetryPolicy,
    ),
    String,
> {
    let mut forwarding = notification::ErrorForwarderConfig::new();
    if std::env::var_os("ERROR_ALERT_WINDOW_MS").is_some() {
        let ms = env_number("ERROR_ALERT_WINDOW_MS", 10_000)?;
        forwarding = forwarding.with_window(Duration::from_millis(ms));
    }
    if std::env::var_os("ERROR_ALERT_RESOLVE_AFTER_MS").is_some() {
        let ms = env_number("ERROR_ALERT_RESOLVE_AFTER_MS", 300_000)?;
        forwarding = forwarding.with_resolve_after(Duration::from_millis(ms));
    }
    let mut retry = notification::RetryPolicy::default()
        .with_max_retries(env_number("NOTIFICATION_MAX_RETRIES", 5)?);
    let delay = Duration::from_millis(env_number("NOTIFICATION_RETRY_DELAY_MS", 2_000)?);
    retry = retry
        .with_backoff(delay, retry.max_delay.max(delay), retry.factor)
        .map_err(|e| format!("NOTIFICATION_RETRY_DELAY_MS: {e}"))?;
    Ok((forwarding, retry))
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid number")),
    }
}

fn usage_error(e: &str) -> ExitCode {
    eprintln!("monitor: {e}\n\n{USAGE}");
    ExitCode::from(2)
}

/// What `GET /fail` logs: an error with a source.
#[derive(Debug)]
struct CheckoutError(UpstreamError);

impl std::fmt::Display for CheckoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("checkout could not load the basket")
    }
}

impl std::error::Error for CheckoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The cause of [`CheckoutError`].
#[derive(Debug)]
struct UpstreamError(&'static str);

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "basket service: {}", self.0)
    }
}

impl std::error::Error for UpstreamError {}

/// Queues the dead-letter file's alerts again (on a blocking thread: it reads the file).
async fn replay_dead_letters(log: &logger::Logger) {
    let Some(dispatcher) = notification::service().and_then(|s| s.dispatcher().cloned()) else {
        return;
    };
    match tokio::task::spawn_blocking(move || dispatcher.replay()).await {
        Ok(Ok((queued, unreadable))) => log.notice(
            "Dead letters replayed",
            &[
                attr::uint("queued", queued as u64),
                attr::uint("unreadable", unreadable as u64),
            ],
        ),
        Ok(Err(e)) => log.warn("Dead letters not replayed", &[attr::display("error", &e)]),
        Err(e) => log.warn("Dead letters not replayed", &[attr::display("error", &e)]),
    }
}

/// The signals the service answers, registered at start-up.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

async fn wait_for_signal(
    mut signals: Signals,
    log: &logger::Logger,
    upstream_down: &AtomicBool,
) -> &'static str {
    loop {
        tokio::select! {
            _ = signals.term.recv() => return "SIGTERM",
            _ = signals.int.recv() => return "SIGINT",
            _ = signals.usr1.recv() => {
                let now_down = !upstream_down.fetch_xor(true, Ordering::SeqCst);
                log.warn("Upstream switch", &[attr::bool("down", now_down)]);
            }
            _ = signals.usr2.recv() => replay_dead_letters(log).await,
        }
    }
}
