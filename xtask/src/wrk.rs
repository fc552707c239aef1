//! wrk comparisons for `cargo xtask bench health` and `cargo xtask bench metrics`: one
//! server process serves the measured route and a bare peer on one runtime; wrk drives
//! each in rounds, each bounded in time, on loopback only. The order flips every round
//! (measured first in odd rounds, last in even ones), so neither side always runs first
//! on a cold or a warm machine; [`ROUNDS`] is even, so each goes first equally often.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::report::{machine, median as median_of, today};
use crate::support::{Reaper, Result, build_release_bins, root};

/// Rounds per comparison: even, so each side goes first in half of them.
const ROUNDS: usize = 4;
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

/// One comparison: a server binary of `piko-obs-tests` that prints `measured=ADDR` and
/// `bare=ADDR`, the path both serve, and the goal.
struct Comparison {
    section: &'static str,
    bin: &'static str,
    path: &'static str,
    about: &'static str,
    goal: &'static str,
    measured: &'static str,
    bare: &'static str,
    bound: f64,
    /// A third server the binary may print (`PREFIX=ADDR`), measured in the same rounds
    /// and reported beside the goal, without a bound: (prefix, what it is).
    extra: Option<(&'static str, &'static str)>,
}

const HEALTH: Comparison = Comparison {
    section: "health",
    bin: "health_bench_server",
    path: "/ready",
    about: "Requests per second of the probe server's `/ready` with five instant probes, \
            with the facade's default settings (the 250 ms response cache on; \
            `tests/src/bin/health_bench_server.rs`), against a bare warp route on the same \
            runtime serving the same bytes (a `/ready` answer captured at start-up); the same \
            probe server with the response cache off is measured in the same rounds",
    goal: "`/ready` with 5 instant probes: at least 0.9 of the bare route",
    measured: "`/ready` req/s",
    bare: "bare req/s",
    bound: 0.9,
    extra: Some((
        "uncached=",
        "`/ready` with 5 instant probes and the response cache off (no bound)",
    )),
};

const METRICS_HTTP: Comparison = Comparison {
    section: "metrics-http",
    bin: "metrics_bench_server",
    path: "/",
    about: "Requests per second of the example service's `GET /` wrapped in the request \
            metrics (`warp_route`: the duration histogram and the in-flight gauge, recorded \
            into piko-obs's installed recorder), against the same warp route without them, \
            on the same runtime (`tests/src/bin/metrics_bench_server.rs`)",
    goal: "`GET /` with request metrics: at least 0.9 of the same route without them",
    measured: "with metrics req/s",
    bare: "without req/s",
    bound: 0.9,
    extra: None,
};

pub(crate) fn health() -> Result<String> {
    compare(&HEALTH)
}

pub(crate) fn metrics_http() -> Result<String> {
    compare(&METRICS_HTTP)
}

/// A bench server of `piko-obs-tests`, built and started, and a reader of the
/// `PREFIX=ADDR` lines it prints.
/// Builds and starts server `bin` of the tests crate, run through `wrapper` (a program
/// and its arguments, such as `setpriv`) when it is not empty; the reader gives the
/// addresses it prints, one line each, after their prefix.
pub(crate) fn start_server(
    bin: &str,
    wrapper: &[&str],
) -> Result<(Reaper, impl FnMut(&str) -> Result<String>)> {
    build_release_bins("piko-obs-tests", &[bin])?;
    let exe = root().join("target/release").join(bin);
    let mut command = match wrapper {
        [program, args @ ..] => {
            let mut c = Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        [] => Command::new(&exe),
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{exe:?}: {e}"))?;
    let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
    let addr = move |prefix: &str| -> Result<String> {
        let mut line = String::new();
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        line.trim()
            .strip_prefix(prefix)
            .map(str::to_string)
            .ok_or_else(|| format!("expected {prefix}ADDR, got {line:?}"))
    };
    Ok((Reaper(child), addr))
}

fn compare(c: &Comparison) -> Result<String> {
    let (server, mut addr) = start_server(c.bin, &[])?;
    let measured = format!("http://{}{}", addr("measured=")?, c.path);
    let bare = format!("http://{}{}", addr("bare=")?, c.path);
    let extra = match c.extra {
        Some((prefix, what)) => Some((format!("http://{}{}", addr(prefix)?, c.path), what)),
        None => None,
    };
    let mut extra_ratios = Vec::new();
    let mut extra_rps = Vec::new();
    let mut ratios = Vec::new();
    let mut measured_rps = Vec::new();
    let mut bare_rps = Vec::new();
    for round in 1..=ROUNDS {
        eprintln!("xtask: {} round {round} of {ROUNDS}", c.section);
        // Odd rounds: measured, bare, extra; even rounds: extra, bare, measured.
        let urls: Vec<&str> = [Some(measured.as_str()), Some(bare.as_str())]
            .into_iter()
            .chain([extra.as_ref().map(|(url, _)| url.as_str())])
            .flatten()
            .collect();
        let mut order: Vec<usize> = (0..urls.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        let mut rps = vec![0.0; urls.len()];
        for i in order {
            rps[i] = wrk(urls[i])?;
        }
        let (m, b) = (rps[0], rps[1]);
        if let Some(&x) = rps.get(2) {
            extra_rps.push(x);
            extra_ratios.push(x / b);
        }
        measured_rps.push(m);
        bare_rps.push(b);
        ratios.push(m / b);
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
    let bare_median = median_of(bare_rps);
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    let ratio = median_of(ratios);
    let mut md = String::new();
    let _ = writeln!(md, "## {}\n", c.section);
    let _ = writeln!(
        md,
        "{}, both driven by `wrk -t2 -c50 -d{SECONDS}s` on loopback, {ROUNDS} rounds \
         the order flipping every round so neither side always goes first. wrk and the \
         server share the machine's cores.\n",
        c.about
    );
    let _ = writeln!(
        md,
        "| goal | {} | {} | ratio (median) | range | bound | result |\n|---|---:|---:|---:|---:|---:|---|",
        c.measured, c.bare
    );
    let _ = writeln!(
        md,
        "| {} | {:.0} | {:.0} | {:.2} | {:.2}-{:.2} | {:.2} | {} |",
        c.goal,
        median_of(measured_rps),
        bare_median,
        ratio,
        lo,
        hi,
        c.bound,
        if ratio >= c.bound {
            "met"
        } else {
            "**not met**"
        }
    );
    if let Some((_, what)) = extra {
        let (lo, hi) = (
            extra_ratios.iter().copied().fold(f64::INFINITY, f64::min),
            extra_ratios.iter().copied().fold(0.0, f64::max),
        );
        let _ = writeln!(
            md,
            "| {what} | {:.0} | {:.0} | {:.2} | {lo:.2}-{hi:.2} | | |",
            median_of(extra_rps),
            bare_median,
            median_of(extra_ratios),
        );
    }
    let _ = writeln!(md, "\nMeasured {} on {}.", today(), machine());
    Ok(md)
}
