//! wrk comparisons for `cargo xtask bench health` and `cargo xtask bench metrics`: one
//! server process serves the measured route and a bare peer on one runtime; wrk drives
//! each in rounds, each bounded in time, on loopback only. The order flips every round
//! (measured first in odd rounds, last in even ones), so neither side always runs first
//! on a cold or a warm machine; [`ROUNDS`] is even, so each goes first equally often.
//!
//! `cargo xtask bench probes`: the latency of `/ready` while wrk saturates the
//! application's port, piko-obs's probe server against the same route on the
//! application's runtime, sampled alternately in the same rounds.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
fn start_server(bin: &str) -> Result<(Reaper, impl FnMut(&str) -> Result<String>)> {
    build_release_bins("piko-obs-tests", &[bin])?;
    let exe = root().join("target/release").join(bin);
    let mut child = Command::new(&exe)
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
    let (server, mut addr) = start_server(c.bin)?;
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

/// Rounds of the probe latency comparison, and the samples of each side per round.
const PROBE_ROUNDS: usize = 4;
const PROBE_SAMPLES: usize = 250;
/// piko-obs's `/ready` p99 must be at most this share of the in-application route's.
const PROBE_BOUND: f64 = 0.5;

/// One `GET /ready` over a fresh connection, as the kubelet asks: the time until the
/// whole answer is read, or `None` when it is not a 200 within the timeouts.
fn ready_latency(addr: SocketAddr) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = Vec::new();
    s.read_to_end(&mut text).ok()?;
    text.starts_with(b"HTTP/1.1 200").then(|| started.elapsed())
}

/// How long the calling thread has waited for a core, in milliseconds
/// (`/proc/thread-self/schedstat`).
fn own_wait() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(ns as f64 / 1e6)
}

/// The `schedstat` of process `pid`'s probe server thread (`piko-obs-probes`): time on
/// a CPU and time waiting for one, in nanoseconds, and the times it was run.
fn probe_thread_schedstat(pid: u32) -> Option<[u64; 3]> {
    let text = probe_thread_file(pid, "schedstat")?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// The time slice of process `pid`'s probe server thread, in microseconds, where the
/// kernel shows it (`se.slice` in `/proc/PID/task/TID/sched`).
fn probe_thread_slice(pid: u32) -> Option<f64> {
    let text = probe_thread_file(pid, "sched")?;
    let line = text.lines().find(|l| l.starts_with("se.slice"))?;
    let ns: f64 = line.rsplit(' ').next()?.trim().parse().ok()?;
    Some(ns / 1e3)
}

/// A file of `/proc/PID/task/TID/` for process `pid`'s `piko-obs-probes` thread.
fn probe_thread_file(pid: u32, name: &str) -> Option<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let task = tasks.flatten().find(|t| {
        std::fs::read_to_string(t.path().join("comm"))
            .is_ok_and(|comm| comm.trim() == "piko-obs-probes")
    })?;
    std::fs::read_to_string(task.path().join(name)).ok()
}

/// The paragraph under the `probes` table: the probe thread's mean wait per wake-up,
/// the p99s of the prober's own wait and of the probe thread's during a request, and
/// the p99s of the requests less the prober's own wait (medians over the rounds).
fn where_the_time_goes(
    waits: &[(f64, f64)],
    own: &[(f64, f64)],
    rest: &[(f64, f64, f64)],
) -> String {
    let col = |v: Vec<f64>| median_of(v);
    if waits.is_empty() || own.is_empty() || rest.is_empty() {
        return "\nWhere the time goes: the threads' `schedstat` could not be read.".into();
    }
    let ratios: Vec<f64> = rest.iter().map(|r| r.2).collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    format!(
        "\nWhere the time goes, in the same rounds (each a median over the rounds), from the \
         threads' `schedstat` (`/proc/PID/task/TID/schedstat`, time spent waiting for a core) \
         read around each request: the probe server's thread (`piko-obs-probes`) waited \
         {:.0} µs for a core per wake-up on average ({:.0} wake-ups a round), and {:.2} ms \
         at p99 during a request; the prober itself waited {:.2} ms at p99 during a request \
         to piko-obs. Each request's time less the prober's own wait: p99 {:.2} ms for \
         piko-obs, {:.2} ms for the application, ratio {:.2} (range {lo:.2}-{hi:.2}).",
        col(waits.iter().map(|w| w.0).collect()),
        col(waits.iter().map(|w| w.1).collect()),
        col(own.iter().map(|o| o.1).collect()),
        col(own.iter().map(|o| o.0).collect()),
        col(rest.iter().map(|r| r.0).collect()),
        col(rest.iter().map(|r| r.1).collect()),
        median_of(ratios),
    )
}

/// The `q` quantile of `v` (nearest rank).
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or(f64::NAN)
}

/// `cargo xtask bench probes`: the section of `docs/performance.md`.
pub(crate) fn probes() -> Result<String> {
    let (server, mut addr) = start_server("probe_p99_server")?;
    let pid = server.0.id();
    let app = addr("app=")?;
    let probe: SocketAddr = addr("probe=")?.parse().map_err(|e| format!("{e}"))?;
    let app_ready: SocketAddr = app.parse().map_err(|e| format!("{e}"))?;
    // Read once the server has printed its addresses, so after `init()` returned.
    let slice = probe_thread_slice(pid);
    let (mut ratios, mut ours, mut theirs, mut loads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Per round: the probe thread's mean wait for a core per wake-up (µs) and its
    // wake-ups; the p99s of the prober's own wait during a request to piko-obs, and of
    // the probe thread's; and of each side's request time less the prober's own wait.
    let (mut waits, mut own, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    // Requests that failed or answered other than 200: piko-obs's, the application's.
    let mut failed = [0usize; 2];
    for round in 1..=PROBE_ROUNDS {
        eprintln!("xtask: probes round {round} of {PROBE_ROUNDS}");
        let load = crate::report::load_average();
        let flood = Command::new("wrk")
            .args([
                "-t2",
                "-c50",
                "-d8s",
                "--timeout",
                "5s",
                &format!("http://{app}/"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("wrk: {e} (install Debian's wrk: apt-get install wrk)"))?;
        let flood = Reaper(flood);
        // Let wrk open its connections and saturate the application first.
        std::thread::sleep(Duration::from_millis(500));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        // The prober's own wait for a core during each request, and the probe thread's
        // during each request to piko-obs; each request's time less the prober's wait.
        let (mut a_own, mut a_thread, mut a_rest, mut b_rest) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let before = probe_thread_schedstat(pid);
        let deadline = Instant::now() + Duration::from_secs(7);
        for i in 0..2 * PROBE_SAMPLES {
            if Instant::now() >= deadline {
                break;
            }
            // Alternate which side is asked first.
            let (first, second) = if i % 2 == 0 {
                (probe, app_ready)
            } else {
                (app_ready, probe)
            };
            for target in [first, second] {
                let (own0, thread0) = (own_wait(), probe_thread_schedstat(pid));
                let took = ready_latency(target).map(|d| d.as_secs_f64() * 1e3);
                let (own1, thread1) = (own_wait(), probe_thread_schedstat(pid));
                let own_ms = own0.zip(own1).map(|(x, y)| y - x);
                match took {
                    Some(ms) if target == probe => {
                        a.push(ms);
                        if let Some(w) = own_ms {
                            a_own.push(w);
                            a_rest.push(ms - w);
                        }
                        if let (Some(x), Some(y)) = (thread0, thread1) {
                            a_thread.push((y[1] - x[1]) as f64 / 1e6);
                        }
                    }
                    Some(ms) => {
                        b.push(ms);
                        b_rest.extend(own_ms.map(|w| ms - w));
                    }
                    None => failed[usize::from(target != probe)] += 1,
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let (Some(x), Some(y)) = (before, probe_thread_schedstat(pid))
            && y[2] > x[2]
        {
            let runs = y[2] - x[2];
            waits.push(((y[1] - x[1]) as f64 / runs as f64 / 1e3, runs as f64));
        }
        drop(flood);
        if !a_own.is_empty() && !b_rest.is_empty() {
            own.push((quantile(a_own, 0.99), quantile(a_thread, 0.99)));
            let (ra, rb) = (quantile(a_rest, 0.99), quantile(b_rest, 0.99));
            rest.push((ra, rb, ra / rb));
        }
        let (pa, pb) = (quantile(a.clone(), 0.99), quantile(b.clone(), 0.99));
        ratios.push(pa / pb);
        ours.push((pa, quantile(a, 0.5)));
        theirs.push((pb, quantile(b, 0.5)));
        loads.push(load);
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(server);
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    let ratio = median_of(ratios);
    let col = |v: &[(f64, f64)], p99: bool| {
        median_of(v.iter().map(|x| if p99 { x.0 } else { x.1 }).collect())
    };
    let mut md = String::from("## probes\n\n");
    let _ = writeln!(
        md,
        "`/ready` latency while `wrk -t2 -c50` saturates the application's port \
         (`tests/src/bin/probe_p99_server.rs`): piko-obs's probe server (started by \
         `init()`, on its own thread and port) against the same route served by the \
         application's router on its own runtime and port, the one wrk floods (what a \
         service writes without piko-obs), both answering the same bytes. Each sample is one `GET` \
         over a fresh connection, as the kubelet asks, timed until the whole answer is \
         read; the two sides are asked alternately every 5 ms, {PROBE_SAMPLES} times each \
         per round at most, in {PROBE_ROUNDS} rounds of 8 s of wrk. Ratios are taken \
         within a round; the table gives their median and range. wrk, the server and the \
         prober share the machine's cores.\n"
    );
    md.push_str("| goal | piko-obs p99 | in-application p99 | ratio (median) | range | bound | result |\n|---|---:|---:|---:|---:|---:|---|\n");
    let rest_ratio = median_of(rest.iter().map(|r| r.2).collect());
    let result = if ratio <= PROBE_BOUND && failed[0] == 0 {
        "met".to_string()
    } else if !rest.is_empty() && rest_ratio <= PROBE_BOUND {
        "**not met**: most of piko-obs's p99 is the prober's own wait for a core, which \
         wrk's two threads and the application's two busy workers hold, and which both \
         sides pay alike: taken out of each request, piko-obs's p99 is within the bound \
         (below)"
            .to_string()
    } else if !own.is_empty() && !waits.is_empty() {
        format!(
            "**not met**: at p99 the probe server's thread itself waits {:.2} ms for a core \
             during a request, though its mean wait per wake-up is {:.0} µs, and the prober \
             {:.2} ms: the cores are held by wrk's two threads and the application's two \
             busy workers, and the short time slice does not take these waits away (below)",
            median_of(own.iter().map(|o| o.1).collect()),
            median_of(waits.iter().map(|w| w.0).collect()),
            median_of(own.iter().map(|o| o.0).collect()),
        )
    } else {
        "**not met**: see where the time goes, below".to_string()
    };
    let _ = writeln!(
        md,
        "| `/ready` p99 while the application's port is saturated: at most {PROBE_BOUND} x the in-application route's | {:.2} ms | {:.2} ms | {ratio:.2} | {lo:.2}-{hi:.2} | {PROBE_BOUND:.2} | {result} |",
        col(&ours, true),
        col(&theirs, true),
    );
    let _ = writeln!(
        md,
        "| the medians (p50), for scale (no bound) | {:.2} ms | {:.2} ms | | | | |",
        col(&ours, false),
        col(&theirs, false),
    );
    let _ = writeln!(md, "{}", where_the_time_goes(&waits, &own, &rest));
    let _ = writeln!(
        md,
        "\nThe probe server's thread ran with a time slice of {} (`se.slice` in \
         `/proc/PID/task/TID/sched`).",
        slice.map_or("(not shown by this kernel)".to_string(), |us| format!(
            "{us:.0} µs"
        ))
    );
    let _ = writeln!(
        md,
        "\nRequests that failed or answered other than 200 (left out of the percentiles): {} to piko-obs, {} to the application. {}",
        failed[0],
        failed[1],
        crate::report::measured_under("at the start of each round", &loads)
    );
    Ok(md)
}
