//! Project automation, run as `cargo xtask <command>`:
//!
//! - `ci`: format check, `cargo deny check licenses bans sources` (when cargo-deny is
//!   installed), clippy with `-D warnings`, docs with `-D warnings`, every test, then
//!   `integration` and `deploy`;
//! - `integration`: the toolkit against real third-party programs and peers: the example
//!   service's JSON lines read by `jq`, rotated log files read by `gzip`, its readiness
//!   probed by Debian's `prometheus-blackbox-exporter`, its `/metrics` checked by
//!   `promtool` and scraped by a Prometheus server, the guide's Prometheus configuration
//!   checked by `promtool`, its alerts received by a sink per provider variable (the
//!   webhook's Standard Webhooks signature verified by `openssl`), its three OpenTelemetry
//!   signals by an OTLP receiver, its Sentry events by a Sentry endpoint, a run given
//!   secrets searched for them, and every other example run and checked;
//! - `deploy`: the operator's kit in `deploy/` and the `Dockerfile`, each file checked by
//!   a real tool: `kubernetes-validate --strict`, a JSON schema for the Prometheus
//!   Operator monitors, `promtool check config|rules` and `promtool test rules`, the
//!   Grafana dashboard's expressions parsed by promtool and matched against the example's
//!   `/metrics`, the image's `HEALTHCHECK` command run against the example, the example
//!   with its probes moved by `PIKO_HEALTH_*` and with an unwritable `HOME`;
//! - `soak [--minutes N]`: the example service under load for N minutes (default 10)
//!   while its OTLP collector, Sentry endpoint and webhook stop, hang and come back; then
//!   the accounting of requests, log lines, spans, events and alerts, and its memory;
//! - `fuzz [--minutes N] [--cases C]`: the fuzz targets in rounds of C cases per property
//!   (default 100,000), each round with a new seed, until N minutes are spent (default
//!   60); then the runs, cases and time per property;
//! - `bench [NAME]`: the benchmarks (`logger` with criterion, `health` with wrk, `metrics`
//!   with criterion and wrk, `notification` and `otlp` with criterion), all or
//!   the one named, then their sections of `docs/performance.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

mod bench;
mod deploy;
mod examples;
mod fuzz;
mod integration;
mod secrets;
mod soak;
mod wrk;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("integration") => integration::run(),
        Some("deploy") => deploy::run(),
        Some("soak") => soak::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("bench") => bench::run(args.get(1).map(String::as_str)),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | integration | deploy | soak [--minutes N] | fuzz [--minutes N] [--cases C] | bench [logger | health | metrics | notification | otlp]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (this crate's parent).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command to completion, echoing it, and fails if it fails.
fn run(mut cmd: Command) -> Result {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: $ {shown}");
    let start = Instant::now();
    let status = cmd.status().map_err(|e| format!("{shown}: {e}"))?;
    eprintln!("xtask: ({:.1} s)", start.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

fn ci() -> Result {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    // Licences, banned or duplicate crates, sources (deny.toml); the advisories check
    // needs the RustSec database from GitHub, so it is not run here.
    let deny_installed = cargo()
        .args(["deny", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if deny_installed {
        let mut deny = cargo();
        deny.args([
            "deny",
            "--locked",
            "check",
            "--hide-inclusion-graph",
            "licenses",
            "bans",
            "sources",
        ]);
        run(deny)?;
    } else {
        eprintln!("xtask: cargo-deny is not installed: `cargo install cargo-deny --locked`");
    }
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    // Each provider feature builds alone, warning-free.
    for feature in [
        "",
        "slack",
        "discord",
        "pagerduty",
        "teams",
        "googlechat",
        "ntfy",
        "webhook",
        "stdout",
    ] {
        let mut check = cargo();
        check.args([
            "clippy",
            "--locked",
            "-p",
            "piko-obs-notify-providers",
            "--no-default-features",
            "--features",
            feature,
            "--",
            "-D",
            "warnings",
        ]);
        run(check)?;
    }
    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;
    let mut test = cargo();
    test.args(["test", "--workspace", "--locked"]);
    run(test)?;
    integration::run()?;
    deploy::run()
}

/// Waits for `child` at most `limit`, killing it after.
fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "process {} did not finish within {limit:?}",
                child.id()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A short description of this machine, for benchmark reports.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(String::from("?"), |kb| {
            format!("{:.0} GiB", kb as f64 / 1048576.0)
        });
    let rustc = Command::new("rustc")
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut s = String::new();
    let _ = write!(s, "{cpu}, {cores} cores, {mem} RAM, {rustc}");
    s
}
