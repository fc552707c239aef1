//! The health crates alone, without the `piko_obs` facade: `piko_obs_health` (the
//! aggregating service and the `Probe` port) and `piko_obs_health_warp` (the probe
//! server), for a service that wants Kubernetes probes and nothing else (no global
//! logger, no metrics recorder, no notification service).
//!
//! It builds a `HealthService` with one probe, `process` (HEALTHY, its message the
//! uptime; registered for liveness too, being about the process itself), starts the `ServerBuilder` on `127.0.0.1:HEALTH_PORT` in its own tokio
//! runtime, prints `addr=<ADDR>` (the address bound) as the first line on stdout, and
//! serves `/live`, `/ready` and `/startup` (each 200 with `"state":"HEALTHY"`; `/metrics`
//! answers 404, no recorder being set). On SIGTERM or SIGINT it prints `stopping on
//! <SIGNAL>` on stderr, signals drain (`/ready` answers 503 from then on), waits
//! `SHUTDOWN_DRAIN_DELAY_MS`, and stops the server, letting requests in flight finish
//! for at most 5 s.
//!
//! ```sh
//! cargo run -p piko-obs --example health_only
//! curl -s http://127.0.0.1:9090/ready
//! ```
//!
//! Environment: `HEALTH_PORT` (default 9090; 0 picks a free port),
//! `SHUTDOWN_DRAIN_DELAY_MS` (default 0).
//!
//! Exit: it serves until SIGTERM or SIGINT, then exits 0; 2 on a bad setting or when the
//! server cannot start (the port is in use, say).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use piko_obs_health::{HealthService, ProbeOptions, Status, probe_fn};
use piko_obs_health_warp::ServerBuilder;
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let (port, drain_delay) = match (
        env_number("HEALTH_PORT", 9090u16),
        env_number("SHUTDOWN_DRAIN_DELAY_MS", 0u64),
    ) {
        (Ok(port), Ok(ms)) => (port, Duration::from_millis(ms)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("health_only: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(serve(port, drain_delay))
}

/// Serves the probes on `port` until SIGTERM or SIGINT, then drains and stops.
async fn serve(port: u16, drain_delay: Duration) -> ExitCode {
    // Signal handlers first, so a SIGTERM during start-up still stops in order.
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("health_only: cannot handle SIGTERM and SIGINT: {e}");
            return ExitCode::from(2);
        }
    };
    // Each probe gets 5 s unless its options say otherwise.
    let service = HealthService::new("health_only", Duration::from_secs(5))
        .expect("a timeout greater than zero");
    let started = Instant::now();
    // About this process itself, not a dependency: it answers liveness too (probes
    // answer readiness and startup unless asked).
    let registered = service.register_with(
        probe_fn("process", move |_kind, _deadline| {
            let uptime = started.elapsed();
            async move { Status::healthy("process").with_message(format!("up for {uptime:.1?}")) }
        }),
        ProbeOptions::default().with_liveness(),
    );
    if let Err(e) = registered {
        eprintln!("health_only: {e}");
        return ExitCode::from(2);
    }
    // Binds at once on the current runtime: a port in use fails here.
    let server = match ServerBuilder::new(service.clone()).with_port(port).start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("health_only: {e}");
            return ExitCode::from(2);
        }
    };
    println!("addr={}", server.local_addr());

    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    eprintln!("health_only: stopping on {name}");
    // Readiness answers UNHEALTHY from now on, so load balancers stop sending traffic
    // while the drain delay passes; then the server stops.
    service.signal_drain();
    tokio::time::sleep(drain_delay).await;
    server.shutdown(Duration::from_secs(5)).await;
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
