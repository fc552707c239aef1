//! `cargo xtask bench probes`: the latency of `/ready` while wrk saturates the
//! application's port, piko-obs's probe server against the same route on the
//! application's runtime, sampled alternately in the same rounds; once with the server
//! as xtask starts it (its probe thread under `SCHED_DEADLINE` where the process has
//! `CAP_SYS_NICE`), once with that capability taken away (`setpriv`), where the thread
//! has only its short time slice.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::median as median_of;
use crate::support::{Reaper, Result};
use crate::wrk::start_server;

/// Rounds of the probe latency comparison, and the samples of each side per round.
const PROBE_ROUNDS: usize = 4;
const PROBE_SAMPLES: usize = 250;
/// piko-obs's `/ready` p99 must be at most this share of the in-application route's.
const PROBE_BOUND: f64 = 0.5;

/// `setpriv` arguments that start the server without `CAP_SYS_NICE`, as in a container
/// that was not given it.
const WITHOUT_SYS_NICE: &[&str] = &[
    "setpriv",
    "--inh-caps=-sys_nice",
    "--bounding-set=-sys_nice",
    "--",
];

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

/// How process `pid`'s probe server thread is scheduled, from
/// `/proc/PID/task/TID/sched`: its policy, and its time slice where the kernel shows it.
fn probe_thread_scheduling(pid: u32) -> String {
    let Some(text) = probe_thread_file(pid, "sched") else {
        return "not shown by this kernel".into();
    };
    let field = |name: &str| piko_obs_testkit::sched_field(&text, name);
    match field("policy") {
        Some(6) => "`SCHED_DEADLINE`".into(),
        Some(0) => match field("se.slice") {
            Some(ns) => format!("`SCHED_OTHER` with a time slice of {} µs", ns / 1000),
            None => "`SCHED_OTHER`".into(),
        },
        Some(other) => format!("policy {other}"),
        None => "not shown by this kernel".into(),
    }
}

/// A file of `/proc/PID/task/TID/` for process `pid`'s `piko-obs-probes` thread.
fn probe_thread_file(pid: u32, name: &str) -> Option<String> {
    piko_obs_testkit::thread_files(&pid.to_string(), "piko-obs-probes", name)
        .into_iter()
        .next()
}

/// The prober (this thread) under `SCHED_FIFO` while it lives, when `chrt` may set it:
/// it stands for the kubelet, which runs outside the pod and does not queue behind the
/// application's busy threads. Its children (wrk, the servers) keep the ordinary policy
/// (`--reset-on-fork`). Dropped, the thread goes back to `SCHED_OTHER`.
struct RealtimeProber {
    tid: Option<String>,
}

impl RealtimeProber {
    fn start() -> Self {
        let tid = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let set = tid.as_ref().is_some_and(|tid| {
            Command::new("chrt")
                .args(["--fifo", "--reset-on-fork", "--pid", "1", tid])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        RealtimeProber {
            tid: tid.filter(|_| set),
        }
    }

    fn is_realtime(&self) -> bool {
        self.tid.is_some()
    }
}

impl Drop for RealtimeProber {
    fn drop(&mut self) {
        if let Some(tid) = &self.tid {
            let _ = Command::new("chrt")
                .args(["--other", "--pid", "0", tid])
                .status();
        }
    }
}

/// What one server start measured, round by round.
#[derive(Default)]
struct Measured {
    /// piko-obs's p99 over the application's, per round.
    ratios: Vec<f64>,
    /// (p99, p50) in ms, per round: piko-obs's, the application's.
    ours: Vec<(f64, f64)>,
    theirs: Vec<(f64, f64)>,
    /// The probe thread's mean wait for a core per wake-up (µs) and its wake-ups.
    waits: Vec<(f64, f64)>,
    /// The p99s of the prober's own wait and of the probe thread's during a request to
    /// piko-obs (ms).
    own: Vec<(f64, f64)>,
    /// Each side's request time less the prober's own wait: p99s and their ratio.
    rest: Vec<(f64, f64, f64)>,
    /// Requests that failed or answered other than 200: piko-obs's, the application's.
    failed: [usize; 2],
    loads: Vec<f64>,
    /// How the probe thread was scheduled.
    scheduling: String,
}

/// A round's samples of each side: the request times, and for piko-obs's side the
/// prober's and the probe thread's waits for a core.
#[derive(Default)]
struct Round {
    ours: Vec<f64>,
    theirs: Vec<f64>,
    ours_own: Vec<f64>,
    ours_thread: Vec<f64>,
    ours_rest: Vec<f64>,
    theirs_rest: Vec<f64>,
}

/// Starts the probe server (through `wrapper`, when not empty) and measures it in
/// [`PROBE_ROUNDS`] rounds of wrk.
fn measure(wrapper: &[&str]) -> Result<Measured> {
    let (server, mut addr) = start_server("probe_p99_server", wrapper)?;
    let pid = server.0.id();
    let app = addr("app=")?;
    let probe: SocketAddr = addr("probe=")?.parse().map_err(|e| format!("{e}"))?;
    let app_ready: SocketAddr = app.parse().map_err(|e| format!("{e}"))?;
    let mut m = Measured {
        // Read once the server has printed its addresses, so after `init()` returned.
        scheduling: probe_thread_scheduling(pid),
        ..Measured::default()
    };
    for round in 1..=PROBE_ROUNDS {
        eprintln!("xtask: probes round {round} of {PROBE_ROUNDS}");
        m.loads.push(crate::report::load_average());
        let flood = Command::new("wrk")
            .args(["-t2", "-c50", "-d8s", "--timeout", "5s"])
            .arg(format!("http://{app}/"))
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("wrk: {e} (install Debian's wrk: apt-get install wrk)"))?;
        let flood = Reaper(flood);
        // Let wrk open its connections and saturate the application first.
        std::thread::sleep(Duration::from_millis(500));
        let before = probe_thread_schedstat(pid);
        let r = sample(pid, probe, app_ready, &mut m.failed);
        if let (Some(x), Some(y)) = (before, probe_thread_schedstat(pid))
            && y[2] > x[2]
        {
            let runs = y[2] - x[2];
            m.waits
                .push(((y[1] - x[1]) as f64 / runs as f64 / 1e3, runs as f64));
        }
        drop(flood);
        if !r.ours_own.is_empty() && !r.theirs_rest.is_empty() {
            m.own
                .push((quantile(r.ours_own, 0.99), quantile(r.ours_thread, 0.99)));
            let (ra, rb) = (quantile(r.ours_rest, 0.99), quantile(r.theirs_rest, 0.99));
            m.rest.push((ra, rb, ra / rb));
        }
        let (pa, pb) = (
            quantile(r.ours.clone(), 0.99),
            quantile(r.theirs.clone(), 0.99),
        );
        m.ratios.push(pa / pb);
        m.ours.push((pa, quantile(r.ours, 0.5)));
        m.theirs.push((pb, quantile(r.theirs, 0.5)));
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(server);
    Ok(m)
}

/// One round's requests: the two sides asked alternately every 5 ms, for at most 7 s.
fn sample(pid: u32, probe: SocketAddr, app: SocketAddr, failed: &mut [usize; 2]) -> Round {
    let mut r = Round::default();
    let deadline = Instant::now() + Duration::from_secs(7);
    for i in 0..2 * PROBE_SAMPLES {
        if Instant::now() >= deadline {
            break;
        }
        // Alternate which side is asked first.
        let order = if i % 2 == 0 {
            [probe, app]
        } else {
            [app, probe]
        };
        for target in order {
            let (own0, thread0) = (own_wait(), probe_thread_schedstat(pid));
            let took = ready_latency(target).map(|d| d.as_secs_f64() * 1e3);
            let (own1, thread1) = (own_wait(), probe_thread_schedstat(pid));
            let own_ms = own0.zip(own1).map(|(x, y)| y - x);
            match took {
                Some(ms) if target == probe => {
                    r.ours.push(ms);
                    if let Some(w) = own_ms {
                        r.ours_own.push(w);
                        r.ours_rest.push(ms - w);
                    }
                    if let (Some(x), Some(y)) = (thread0, thread1) {
                        r.ours_thread.push((y[1] - x[1]) as f64 / 1e6);
                    }
                }
                Some(ms) => {
                    r.theirs.push(ms);
                    r.theirs_rest.extend(own_ms.map(|w| ms - w));
                }
                None => failed[usize::from(target != probe)] += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    r
}

/// The `q` quantile of `v` (nearest rank).
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or(f64::NAN)
}

/// The lowest, median and highest of `v`.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(0.0, f64::max);
    (lo, median_of(v.to_vec()), hi)
}

/// The result column of a row: met, or not met with what the measurements say of it.
fn result(m: &Measured) -> String {
    let (_, ratio, _) = spread(&m.ratios);
    let rest_ratio = median_of(m.rest.iter().map(|r| r.2).collect());
    if ratio <= PROBE_BOUND && m.failed[0] == 0 {
        "met".to_string()
    } else if !m.rest.is_empty() && rest_ratio <= PROBE_BOUND {
        "**not met**: most of piko-obs's p99 is the prober's own wait for a core, which \
         both sides pay alike: taken out of each request, piko-obs's p99 is within the \
         bound (below)"
            .to_string()
    } else if !m.own.is_empty() && !m.waits.is_empty() {
        format!(
            "**not met**: at p99 the probe server's thread itself waits {:.2} ms for a core \
             during a request, though its mean wait per wake-up is {:.0} µs: the cores are \
             held by wrk's two threads and the application's two busy workers, and an \
             ordinary thread that wakes, or is preempted part-way through an answer, can \
             wait for the kernel's next tick (below)",
            median_of(m.own.iter().map(|o| o.1).collect()),
            median_of(m.waits.iter().map(|w| w.0).collect()),
        )
    } else {
        "**not met**: see where the time goes, below".to_string()
    }
}

/// The paragraph under the table for one run: the probe thread's mean wait per
/// wake-up, the p99s of the prober's own wait and of the probe thread's during a
/// request, and the p99s of the requests less the prober's own wait (medians over the
/// rounds).
fn where_the_time_goes(what: &str, m: &Measured) -> String {
    let col = |v: Vec<f64>| median_of(v);
    if m.waits.is_empty() || m.own.is_empty() || m.rest.is_empty() {
        return format!("{what}: the threads' `schedstat` could not be read.");
    }
    let ratios: Vec<f64> = m.rest.iter().map(|r| r.2).collect();
    let (lo, ratio, hi) = spread(&ratios);
    format!(
        "{what}: the probe server's thread ran as {}; it waited {:.0} µs for a core per \
         wake-up on average ({:.0} wake-ups a round), and {:.2} ms at p99 during a request; \
         the prober itself waited {:.2} ms at p99 during a request to piko-obs. Each \
         request's time less the prober's own wait: p99 {:.2} ms for piko-obs, {:.2} ms for \
         the application, ratio {ratio:.2} (range {lo:.2}-{hi:.2}). Requests that failed or \
         answered other than 200 (left out of the percentiles): {} to piko-obs, {} to the \
         application.",
        m.scheduling,
        col(m.waits.iter().map(|w| w.0).collect()),
        col(m.waits.iter().map(|w| w.1).collect()),
        col(m.own.iter().map(|o| o.1).collect()),
        col(m.own.iter().map(|o| o.0).collect()),
        col(m.rest.iter().map(|r| r.0).collect()),
        col(m.rest.iter().map(|r| r.1).collect()),
        m.failed[0],
        m.failed[1],
    )
}

/// Two table rows for one run: its p99s and ratio against the bound, and its p50s.
fn rows(md: &mut String, goal: &str, m: &Measured) {
    let col = |v: &[(f64, f64)], p99: bool| {
        median_of(v.iter().map(|x| if p99 { x.0 } else { x.1 }).collect())
    };
    let (lo, ratio, hi) = spread(&m.ratios);
    let _ = writeln!(
        md,
        "| {goal}: at most {PROBE_BOUND} x the in-application route's | {:.2} ms | {:.2} ms | {ratio:.2} | {lo:.2}-{hi:.2} | {PROBE_BOUND:.2} | {} |",
        col(&m.ours, true),
        col(&m.theirs, true),
        result(m),
    );
    let _ = writeln!(
        md,
        "| the medians (p50), for scale (no bound) | {:.2} ms | {:.2} ms | | | | |",
        col(&m.ours, false),
        col(&m.theirs, false),
    );
}

/// `cargo xtask bench probes`: the section of `docs/performance.md`.
pub(crate) fn probes() -> Result<String> {
    let prober = RealtimeProber::start();
    let granted = measure(&[])?;
    let without = measure(WITHOUT_SYS_NICE)?;
    let realtime = prober.is_realtime();
    drop(prober);
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
         prober share the machine's cores. The server runs twice: as xtask starts it, and \
         under `setpriv --bounding-set=-sys_nice`, as in a container that was not given \
         `CAP_SYS_NICE`; each row names how the kernel scheduled the probe thread that time \
         (`policy` in `/proc/PID/task/TID/sched`): `SCHED_DEADLINE` where the process has \
         `CAP_SYS_NICE`, else its short time slice. {}\n",
        if realtime {
            "The prober runs under `SCHED_FIFO` (`chrt --fifo --reset-on-fork`, its \
             children ordinary): it stands for the kubelet, which runs outside the pod and \
             does not queue behind the application's busy threads; as an ordinary thread, \
             its own wait for a core (one 4 ms scheduler tick at p99 on this machine) falls \
             on both sides alike and hides the servers' difference."
        } else {
            "The prober runs as an ordinary thread (`chrt` could not make it `SCHED_FIFO` \
             here), so its own wait for a core falls on both sides alike."
        }
    );
    md.push_str("| goal | piko-obs p99 | in-application p99 | ratio (median) | range | bound | result |\n|---|---:|---:|---:|---:|---:|---|\n");
    let goal = |how: &str, m: &Measured| {
        format!(
            "`/ready` p99 while the application's port is saturated, the server {how} (the \
             probe thread as {})",
            m.scheduling
        )
    };
    rows(&mut md, &goal("as xtask starts it", &granted), &granted);
    rows(&mut md, &goal("without `CAP_SYS_NICE`", &without), &without);
    let _ = writeln!(
        md,
        "\nWhere the time goes, in the same rounds (each a median over the rounds), from the \
         threads' `schedstat` (`/proc/PID/task/TID/schedstat`, time spent waiting for a \
         core) read around each request.\n\n- {}\n- {}\n",
        where_the_time_goes("As xtask starts the server", &granted),
        where_the_time_goes("Without `CAP_SYS_NICE`", &without),
    );
    let mut loads = granted.loads.clone();
    loads.extend(&without.loads);
    let _ = writeln!(
        md,
        "{}",
        crate::report::measured_under("at the start of each round", &loads)
    );
    Ok(md)
}
