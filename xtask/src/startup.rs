//! `cargo xtask bench startup`: the time from a process's start to its first `200` on
//! `/ready`, for a service with every piko-obs subsystem on (its OTLP receiver, Sentry
//! endpoint and three alert sinks running here) against the same program with piko-obs
//! off, started alternately; the section of `docs/performance.md`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{load_average, measured_under, median};
use crate::support::{
    Reaper, Result, build_release_bins, free_port, root, start_receiver, webhook_sink,
};

/// Starts of each program.
const STARTS: usize = 8;
/// piko-obs may add at most this much to the start-up, in milliseconds.
const BOUND_MS: f64 = 20.0;

/// Whether `GET /ready` on `port` answers 200 now.
fn ready(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

/// Starts the program (`on` or `off`) and times it until `/ready` answers 200.
fn start(mode: &str, env: &[(&str, String)]) -> Result<Duration> {
    let (health, app) = (free_port()?, free_port()?);
    let exe = root().join("target/release/startup_bench_server");
    let started = Instant::now();
    let child = Command::new(&exe)
        .arg(mode)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("HEALTH_PORT", health.to_string())
        .env("APP_PORT", app.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{exe:?}: {e}"))?;
    let child = Reaper(child);
    let port = if mode == "on" { health } else { app };
    loop {
        if ready(port) {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!("{mode}: no 200 on /ready within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = started.elapsed();
    drop(child);
    Ok(took)
}

/// Runs the comparison and returns the section.
pub(crate) fn section() -> Result<String> {
    build_release_bins("piko-obs-tests", &["startup_bench_server"])?;
    build_release_bins("piko-obs-testkit", &["otlp_receiver", "sentry_receiver"])?;
    let otlp = start_receiver("release", "otlp_receiver", "grpc")?;
    let sentry = start_receiver("release", "sentry_receiver", "addr")?;
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.addr.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
        ("SENTRY_DSN", format!("http://startupkey@{}/7", sentry.addr)),
        (
            "PIKO_NOTIFICATION_DEAD_LETTER_PATH",
            std::env::temp_dir()
                .join(format!("piko-obs-startup-{}.jsonl", std::process::id()))
                .display()
                .to_string(),
        ),
    ];
    let mut sinks = Vec::new();
    for (var, path) in [
        ("SLACK_WEBHOOK_URL", "/services/T000/B000/XXXX"),
        ("DISCORD_WEBHOOK_URL", "/api/webhooks/1/token"),
        ("WEBHOOK_URL", "/hooks/alerts"),
    ] {
        let sink = webhook_sink()?;
        env.push((var, sink.url(path)));
        sinks.push(sink);
    }
    let (mut on, mut off, mut added, mut loads) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..STARTS {
        eprintln!("xtask: startup {} of {STARTS}", i + 1);
        loads.push(load_average());
        // Alternate which program starts first.
        let (a, b) = if i % 2 == 0 {
            ("on", "off")
        } else {
            ("off", "on")
        };
        let mut took = [Duration::ZERO; 2];
        for mode in [a, b] {
            took[usize::from(mode == "off")] = start(mode, &env)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        let (t_on, t_off) = (took[0].as_secs_f64() * 1e3, took[1].as_secs_f64() * 1e3);
        on.push(t_on);
        off.push(t_off);
        added.push(t_on - t_off);
    }
    let lo = added.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = added.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let plus = median(added);
    let alerts: usize = sinks.iter().map(|s| s.requests().len()).sum();
    let mut md = String::from("## startup\n\n");
    let _ = writeln!(
        md,
        "The time from a process's start (`spawn`) to its first `200` on `/ready` \
         (`tests/src/bin/startup_bench_server.rs`, polled every millisecond over fresh \
         connections): with piko-obs and every subsystem on, as the `monitor` example \
         sets it up (the probe server, OTLP over gRPC to the tests' OTLP receiver, Sentry \
         to the tests' Sentry endpoint, Slack, Discord and webhook alerts to three local \
         sinks, the process metrics), `/ready` on its probe port; against the same program \
         with piko-obs off, `/ready` served on its application port. {STARTS} starts of \
         each, alternating which goes first; the figure is the median of the differences \
         of each pair, the range theirs.\n"
    );
    md.push_str(
        "| goal | with piko-obs | without | added (median) | range | bound | result |\n|---|---:|---:|---:|---:|---:|---|\n",
    );
    let _ = writeln!(
        md,
        "| start to the first `200` on `/ready`, every subsystem on: piko-obs adds at most {BOUND_MS:.0} ms | {:.1} ms | {:.1} ms | {plus:.1} ms | {lo:.1} to {hi:.1} ms | {BOUND_MS:.0} ms | {} |",
        median(on),
        median(off),
        if plus <= BOUND_MS {
            "met"
        } else {
            "**not met**"
        },
    );
    let _ = writeln!(
        md,
        "\nThe program sends no alert, so the sinks received {alerts} requests: its providers are set up by `init()` (its start-up line lists `alert_providers: discord,slack,webhook`, OTLP and Sentry on). {}",
        measured_under("before each pair", &loads)
    );
    Ok(md)
}
