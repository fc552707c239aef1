//! A probe of your own: the `piko_obs::health::Probe` port implemented by a "queue
//! depth" probe that reads a shared counter.
//!
//! Two queues are watched, both for readiness only (a deep queue is a reason to stop
//! sending traffic, not to restart the process, so `/live` stays HEALTHY):
//! - `orders`, critical: HEALTHY below 100 waiting messages, DEGRADED from 100,
//!   UNHEALTHY from 1000;
//! - `retries`, registered non-critical with `with_custom_health_probe_options`: when it
//!   is UNHEALTHY the whole is only DEGRADED.
//!
//! The example moves the queues through four steps, one every `STEP_MS` milliseconds,
//! and logs each (`Queue step` with `step`, `orders`, `retries` and `expect`, the state
//! `/ready` answers with):
//!
//! | step | orders | retries | `GET /ready` |
//! |---|---|---|---|
//! | `healthy` | 10 | 0 | 200, `"state":"HEALTHY"` |
//! | `degraded` | 500 | 5000 | 200, `"state":"DEGRADED"` (orders DEGRADED, retries UNHEALTHY but not critical) |
//! | `unhealthy` | 5000 | 0 | 503, `"state":"UNHEALTHY"` |
//! | `healthy again` | 10 | 0 | 200, `"state":"HEALTHY"` |
//!
//! The probe server answers each path from its last answer for 250 ms (the facade's
//! default response cache, `with_health_response_cache`), so an answer may lag a step by
//! that much: keep `STEP_MS` well above it.
//!
//! It prints, on stdout (pretty lines with `dev`, the default; JSON lines with `prod`):
//! `Health probes listening` with the probe server's `addr`, one `Queue step` line per
//! step, `Queue steps done`, and `Stopping` with the `signal` at the end.
//!
//! Run it, and watch `/ready` from another shell:
//!
//! ```sh
//! cargo run -p piko-obs --example custom_probe -- prod
//! watch -n 0.2 curl -s -w '%{http_code}\n' http://127.0.0.1:9090/ready
//! ```
//!
//! Environment: `HEALTH_PORT` (default 9090; 0 picks a free port), `STEP_MS` (default
//! 1000), `SHUTDOWN_DRAIN_DELAY_MS` (default 5000 in prod, 0 in dev), `PIKO_LOG_LEVEL`.
//!
//! Exit: after the last step it keeps serving until SIGTERM or SIGINT (which may also
//! come during the steps), then shuts down in order (readiness fails, the drain delay
//! passes, the probe server stops, the log is flushed) and exits 0; it exits 1 if the
//! shutdown reports a failure and 2 on a bad argument or setting.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use piko_obs::RunMode;
use piko_obs::health::{CheckKind, Probe, ProbeOptions, Status};
use piko_obs::logger::{self, attr};
use piko_obs::signal::ShutdownSignals;

/// A readiness probe of one queue: its state follows the number of waiting messages.
#[derive(Debug)]
struct QueueDepthProbe {
    /// The name it reports under.
    name: String,
    /// Messages waiting, updated by the code that fills and drains the queue.
    depth: Arc<AtomicUsize>,
    /// From this depth on, the queue is DEGRADED.
    degraded_at: usize,
    /// From this depth on, the queue is UNHEALTHY.
    unhealthy_at: usize,
}

impl QueueDepthProbe {
    /// A probe named `name` reading `depth`, with the example's thresholds (100, 1000).
    fn new(name: &str, depth: Arc<AtomicUsize>) -> QueueDepthProbe {
        QueueDepthProbe {
            name: name.to_string(),
            depth,
            degraded_at: 100,
            unhealthy_at: 1000,
        }
    }
}

impl Probe for QueueDepthProbe {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads the counter: quick, so the deadline never matters here; a probe that does
    /// I/O should finish before `_deadline` (the service abandons it there anyway).
    async fn check(&self, _kind: CheckKind, _deadline: Instant) -> Status {
        let depth = self.depth.load(Ordering::Relaxed);
        let waiting = format!("{depth} messages waiting");
        if depth >= self.unhealthy_at {
            Status::unhealthy(
                &self.name,
                format!("{waiting} (limit {})", self.unhealthy_at),
            )
        } else if depth >= self.degraded_at {
            Status::degraded(
                &self.name,
                format!("{waiting} (degraded from {})", self.degraded_at),
            )
        } else {
            Status::healthy(&self.name).with_message(waiting)
        }
    }
}

/// The steps: name, orders depth, retries depth, the state `/ready` then answers.
const STEPS: [(&str, usize, usize, &str); 4] = [
    ("healthy", 10, 0, "HEALTHY"),
    ("degraded", 500, 5000, "DEGRADED"),
    ("unhealthy", 5000, 0, "UNHEALTHY"),
    ("healthy again", 10, 0, "HEALTHY"),
];

/// Usage, printed by `--help` and on a bad argument.
const USAGE: &str = "usage: custom_probe [dev|prod] [--help]

Moves two queue-depth probes through healthy, degraded, unhealthy and healthy again,
one step every STEP_MS, then serves the probes until SIGTERM or SIGINT.

Environment:
  HEALTH_PORT               port of /live, /ready, /startup, /metrics (default 9090; 0 picks one)
  STEP_MS                   milliseconds between steps (default 1000)
  SHUTDOWN_DRAIN_DELAY_MS   drain delay before the probe server stops (default 5000 in
                            prod, 0 in dev)";

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
    let (health_port, step) = match (
        env_number("HEALTH_PORT", 9090u16),
        env_number("STEP_MS", 1000u64),
    ) {
        (Ok(port), Ok(step)) => (port, Duration::from_millis(step)),
        (Err(e), _) | (_, Err(e)) => return usage_error(&e),
    };
    // Signal handlers first, so a SIGTERM during start-up still shuts down in order.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut signals = {
        let _in = runtime.enter();
        ShutdownSignals::register().expect("SIGTERM and SIGINT handlers")
    };

    let orders = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let readiness_only = ProbeOptions::default().only(&[CheckKind::Readiness]);
    let mut builder = piko_obs::builder()
        .with_run_mode(mode)
        .with_service_name("custom_probe")
        .with_health_probe_port(health_port)
        .with_custom_health_probe_options(
            QueueDepthProbe::new("orders", orders.clone()),
            readiness_only,
        )
        .with_custom_health_probe_options(
            QueueDepthProbe::new("retries", retries.clone()),
            readiness_only.non_critical(),
        );
    if std::env::var_os("SHUTDOWN_DRAIN_DELAY_MS").is_some() {
        match env_number("SHUTDOWN_DRAIN_DELAY_MS", 0u64) {
            Ok(ms) => builder = builder.with_shutdown_drain_delay(Duration::from_millis(ms)),
            Err(e) => return usage_error(&e),
        }
    }
    let guard = match builder.init() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("custom_probe: {e}");
            return ExitCode::from(2);
        }
    };
    let log = logger::get_logger("custom_probe");
    if let Some(addr) = guard.health_addr() {
        log.info("Health probes listening", &[attr::display("addr", &addr)]);
    }

    let signal = runtime.block_on(async {
        for (i, (name, orders_depth, retries_depth, expect)) in STEPS.into_iter().enumerate() {
            if i > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(step) => {}
                    signal = signals.recv() => return signal,
                }
            }
            orders.store(orders_depth, Ordering::Relaxed);
            retries.store(retries_depth, Ordering::Relaxed);
            log.info(
                "Queue step",
                &[
                    attr::string("step", name),
                    attr::uint("orders", orders_depth as u64),
                    attr::uint("retries", retries_depth as u64),
                    attr::string("expect", expect),
                ],
            );
        }
        log.info(
            "Queue steps done",
            &[attr::string("waiting_for", "SIGTERM or SIGINT")],
        );
        signals.recv().await
    });
    log.notice("Stopping", &[attr::string("signal", signal.as_str())]);
    if let Err(e) = guard.shutdown() {
        eprintln!("custom_probe: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Reads the number in the variable `name`, or `default` when it is not set.
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid number")),
    }
}

/// Prints `e` and the usage on stderr; exit code 2.
fn usage_error(e: &str) -> ExitCode {
    eprintln!("custom_probe: {e}\n\n{USAGE}");
    ExitCode::from(2)
}
