//! `cargo xtask bench health`: wrk against the probe server's `/ready` (five instant
//! probes) and a bare warp route serving the same bytes, in one server process, rounds
//! alternating between the two, each bounded in time, on loopback only.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::bench::{median as median_of, today};
use crate::integration::Reaper;
use crate::{Result, cargo, machine, root, run};

const ROUNDS: usize = 3;
const SECONDS: u32 = 5;

fn wrk(url: &str) -> Result<f64> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c50",
            &format!("-d{SECONDS}s"),
            "--timeout",
            "5s",
            url,
        ])
        .output()
        .map_err(|e| format!("wrk: {e} (install Debian's wrk: apt-get install wrk)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk saw errors against {url}:\n{text}"));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output:\n{text}"))
}

pub(crate) fn health() -> Result<String> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "piko-obs-tests",
        "--bin",
        "health_bench_server",
    ]);
    run(build)?;
    let exe = root().join("target/release/health_bench_server");
    let mut child = Command::new(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{exe:?}: {e}"))?;
    let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
    let server = Reaper(child);
    let mut addr = |prefix: &str| -> Result<String> {
        let mut line = String::new();
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        line.trim()
            .strip_prefix(prefix)
            .map(str::to_string)
            .ok_or_else(|| format!("expected {prefix}ADDR, got {line:?}"))
    };
    let ready = format!("http://{}/ready", addr("ready=")?);
    let bare = format!("http://{}/ready", addr("bare=")?);
    let mut ratios = Vec::new();
    let mut ready_rps = Vec::new();
    let mut bare_rps = Vec::new();
    for round in 1..=ROUNDS {
        eprintln!("xtask: health round {round} of {ROUNDS}");
        let r = wrk(&ready)?;
        let b = wrk(&bare)?;
        ready_rps.push(r);
        bare_rps.push(b);
        ratios.push(r / b);
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    let ratio = median_of(ratios);
    let mut md = String::new();
    md.push_str("## health\n\n");
    let _ = writeln!(
        md,
        "Requests per second of the probe server's `/ready` with five instant probes \
         (`tests/src/bin/health_bench_server.rs`), against a bare warp route on the same \
         runtime serving the same bytes (a `/ready` answer captured at start-up), both \
         driven by `wrk -t2 -c50 -d{SECONDS}s` on loopback, {ROUNDS} rounds alternating \
         between the two. wrk and the server share the machine's cores.\n"
    );
    md.push_str(
        "| goal | `/ready` req/s | bare req/s | ratio (median) | range | bound | result |\n|---|---:|---:|---:|---:|---:|---|\n",
    );
    let _ = writeln!(
        md,
        "| `/ready` with 5 instant probes: at least 0.9 of the bare route | {:.0} | {:.0} | {:.2} | {:.2}-{:.2} | 0.90 | {} |",
        median_of(ready_rps),
        median_of(bare_rps),
        ratio,
        lo,
        hi,
        if ratio >= 0.9 { "met" } else { "**not met**" }
    );
    let _ = writeln!(md, "\nMeasured {} on {}.", today(), machine());
    Ok(md)
}
