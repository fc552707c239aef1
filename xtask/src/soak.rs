//! `cargo xtask soak [--minutes N]`: the example service under steady load for N minutes
//! (default 10; fractions such as 0.5 allowed) while its OTLP collector, its Sentry
//! endpoint and its webhook stop, hang and come back; then an account of every request,
//! log line, span, Sentry event and alert, and of the service's resident memory.
//!
//! Everything runs on 127.0.0.1. The peers are real programs or servers on fixed ports:
//! - "up": the testkit's OTLP receiver (`otlp_receiver`, gRPC) and Sentry endpoint
//!   (`sentry_receiver`) as processes, and its webhook sink (a thread here);
//! - "stopped": the process is killed (the sink's listener closed), so connections are
//!   refused;
//! - "hanging": a listener on the same port that accepts connections and never answers;
//! - back "up": a new process (a new sink) on the same port.
//!
//! Each peer cycles up (half a cycle), stopped (a quarter), hanging (a quarter), with
//! cycles of two minutes (shorter for short runs), the three peers a sixth of a cycle
//! apart; the last 15 % of the run (15 to 90 s) every peer is up, so that what was held
//! back can go out. Then the load stops, `/metrics` is scraped, the service gets SIGTERM
//! and must exit 0 within its shutdown bound, and the receivers hand over what they got.
//!
//! It fails when an account does not balance, when the service does not exit 0 in time,
//! or when its memory grows without bound: the final resident set may not exceed twice
//! the one measured after the first minute (a fifth of the run for runs under five
//! minutes) plus 20 MiB. Every loop is bounded in count and in time.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use piko_obs_testkit::sink::{Recorded, Reply, Sink};

use crate::report::machine;
use crate::support::{
    Reaper, Receiver, Result, cargo, free_port, http_get, root, run as run_cmd, signal,
    wait_bounded,
};

/// Requests per second of the load.
const RATE: u64 = 100;
/// One request in this many is `GET /fail` (an ERROR line, a Sentry event, an alert).
const FAIL_EVERY: u64 = 50;
/// How often the service's resident set is sampled.
const RSS_EVERY: Duration = Duration::from_secs(5);
/// The longest fault cycle, in seconds.
const MAX_CYCLE: f64 = 120.0;
/// How long the service may take to exit after SIGTERM: its guard's shutdown timeout
/// (10 s by default) plus margin.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(15);
/// Sockets a hanging peer holds at most (the oldest is closed past this).
const HANG_HELD: usize = 512;
/// The span processor's batch and queue sizes (`piko-obs-otlp`).
const SPAN_BATCH: u64 = 512;
const SPAN_QUEUE: u64 = 2048;
/// The log-record processor's batch and queue sizes (`piko-obs-otlp`).
const LOG_BATCH: u64 = 512;
const LOG_QUEUE: u64 = 2048;
/// The Sentry transport's queue (`piko-obs-sentry`'s default capacity is smaller).
const SENTRY_QUEUE: u64 = 1000;

pub(crate) fn run(args: &[String]) -> Result {
    let minutes = parse_minutes(args)?;
    let mut build = cargo();
    build.args([
        "build",
        "--locked",
        "-p",
        "piko-obs",
        "--example",
        "monitor",
        "-p",
        "piko-obs-testkit",
        "--bin",
        "otlp_receiver",
        "--bin",
        "sentry_receiver",
    ]);
    run_cmd(build)?;
    let started = SystemTime::now();
    let outcome = soak(minutes)?;
    let text = outcome.render(minutes, started);
    println!("{text}");
    let dir = root().join("target/soak");
    let _ = std::fs::create_dir_all(&dir);
    let saved = dir.join("report.md");
    if std::fs::write(&saved, &text).is_ok() {
        eprintln!("soak: report saved to {}", saved.display());
    }
    let failed: Vec<&str> = outcome
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "soak: {} check(s) failed: {}",
            failed.len(),
            failed.join("; ")
        ))
    }
}

/// The monitor's stdout output in prod, the one its lines are written through.
const STDOUT_OUTPUT: &str = "json-stdout";

fn parse_minutes(args: &[String]) -> Result<f64> {
    let usage = "usage: cargo xtask soak [--minutes N]  (N > 0, fractions allowed; default 10)";
    let value = match args {
        [] => return Ok(10.0),
        [flag, n] if flag == "--minutes" => n.as_str(),
        [flag] if flag.starts_with("--minutes=") => &flag["--minutes=".len()..],
        _ => return Err(usage.into()),
    };
    value
        .parse::<f64>()
        .ok()
        .filter(|m| m.is_finite() && *m > 0.0 && *m <= 24.0 * 60.0)
        .ok_or_else(|| format!("--minutes {value:?}: {usage}"))
}

// ---------------------------------------------------------------------------------------
// Peers

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Up,
    Stopped,
    Hanging,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Otlp,
    Sentry,
    Webhook,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Otlp => "OTLP receiver",
            Kind::Sentry => "Sentry endpoint",
            Kind::Webhook => "webhook sink",
        }
    }
}

enum Running {
    Nothing,
    Process(Receiver),
    Sink(Sink),
    Hang(Hang),
}

/// One peer of the service, on a fixed port, and what its instances received.
struct Peer {
    kind: Kind,
    addr: SocketAddr,
    /// Where in its cycle the peer is at the start (a share of a cycle).
    offset: f64,
    state: State,
    running: Running,
    /// Times it was stopped, hung, brought (back) up.
    stops: u32,
    hangs: u32,
    starts: u32,
    /// Connections the hanging listeners accepted and never answered.
    hung_connections: Arc<AtomicU64>,
    /// The closing summaries of the receiver processes (one line each).
    summaries: Vec<String>,
    /// Receiver processes whose summary could not be read.
    lost_summaries: u32,
    /// What the webhook sinks received.
    webhook: WebhookLog,
}

impl Peer {
    fn new(kind: Kind, offset: f64) -> Result<Peer> {
        let port = free_port()?;
        Ok(Peer {
            kind,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            offset,
            state: State::Stopped,
            running: Running::Nothing,
            stops: 0,
            hangs: 0,
            starts: 0,
            hung_connections: Arc::new(AtomicU64::new(0)),
            summaries: Vec::new(),
            lost_summaries: 0,
            webhook: WebhookLog::default(),
        })
    }

    fn set(&mut self, to: State, at: f64) -> Result {
        if to == self.state {
            return Ok(());
        }
        self.tear_down();
        match to {
            State::Up => {
                self.running = match self.kind {
                    Kind::Otlp => Running::Process(spawn_receiver(
                        "otlp_receiver",
                        "grpc",
                        &[
                            ("GRPC_ADDR", self.addr.to_string()),
                            ("HTTP_ADDR", "127.0.0.1:0".into()),
                        ],
                    )?),
                    Kind::Sentry => Running::Process(spawn_receiver(
                        "sentry_receiver",
                        "addr",
                        &[("BIND_ADDR", self.addr.to_string())],
                    )?),
                    Kind::Webhook => Running::Sink(start_sink(self.addr)?),
                };
                self.starts += 1;
            }
            State::Stopped => self.stops += 1,
            State::Hanging => {
                self.running =
                    Running::Hang(Hang::start(self.addr, self.hung_connections.clone())?);
                self.hangs += 1;
            }
        }
        eprintln!(
            "soak: {at:>7.1} s  {} {:?} -> {to:?}",
            self.kind.name(),
            self.state
        );
        self.state = to;
        Ok(())
    }

    /// Ends what runs on the port: kills a receiver process (after reading its summary),
    /// closes a sink or a hanging listener.
    fn tear_down(&mut self) {
        match std::mem::replace(&mut self.running, Running::Nothing) {
            Running::Nothing => {}
            Running::Process(r) => {
                let first = if self.kind == Kind::Otlp { '{' } else { '[' };
                match stop_receiver(r, first) {
                    Ok(s) => self.summaries.push(s),
                    Err(e) => {
                        eprintln!("soak: {}: {e}", self.kind.name());
                        self.lost_summaries += 1;
                    }
                }
            }
            Running::Sink(s) => self.webhook.add(&s.requests()),
            Running::Hang(h) => h.stop(),
        }
    }
}

/// Where a peer should be `t` seconds into the run.
fn planned(offset: f64, t: f64, faults_end: f64, cycle: f64) -> State {
    if t >= faults_end {
        return State::Up;
    }
    let phase = ((t / cycle) + offset).fract();
    if phase < 0.5 {
        State::Up
    } else if phase < 0.75 {
        State::Stopped
    } else {
        State::Hanging
    }
}

/// Binds `addr`, retrying for a while: the port was just released by a killed process.
fn bind_retry(addr: SocketAddr) -> Result<TcpListener> {
    retry_on(addr, || TcpListener::bind(addr))
}

/// Starts the testkit's webhook sink on `addr` (answering 200 to every request),
/// retrying for a while like [`bind_retry`].
fn start_sink(addr: SocketAddr) -> Result<Sink> {
    retry_on(addr, || Sink::try_on(&addr.to_string(), Reply::status(200)))
}

/// Calls `bind` until it succeeds, at most 50 times 100 ms apart.
fn retry_on<T>(addr: SocketAddr, bind: impl Fn() -> std::io::Result<T>) -> Result<T> {
    let mut last = String::new();
    for _ in 0..50 {
        match bind() {
            Ok(l) => return Ok(l),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("bind {addr}: {last}"))
}

/// Starts a receiver program of the tests with `env`, like `integration`'s
/// `start_receiver`; retries while its fixed port is not free yet.
fn spawn_receiver(bin: &str, prefix: &str, env: &[(&str, String)]) -> Result<Receiver> {
    let exe = root().join("target/debug").join(bin);
    let mut last = String::new();
    for _ in 0..20 {
        let mut child = Command::new(&exe)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{exe:?}: {e}"))?;
        let stdin = child.stdin.take().ok_or("stdin")?;
        let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
        let mut err = child.stderr.take().ok_or("stderr")?;
        let process = Reaper(child);
        let mut line = String::new();
        // The program prints its address at once, or fails (and exits) when it cannot bind.
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        if let Some(addr) = line
            .trim()
            .strip_prefix(prefix)
            .and_then(|l| l.strip_prefix('='))
        {
            // Its stderr stays drained, so that it never blocks on a full pipe.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut err, &mut std::io::stderr());
            });
            return Ok(Receiver {
                process,
                stdin,
                out,
                addr: addr.to_string(),
            });
        }
        drop(process);
        let mut why = String::new();
        let _ = err.read_to_string(&mut why);
        last = why
            .lines()
            .find(|l| l.contains("bind"))
            .unwrap_or(&why)
            .to_string();
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!("{bin} did not start: {last}"))
}

/// Closes a receiver's stdin, reads its summary (the line starting with `first`), then
/// kills it: the port is closed at once, without a graceful goodbye.
fn stop_receiver(r: Receiver, first: char) -> Result<String> {
    let Receiver {
        mut process,
        stdin,
        out,
        ..
    } = r;
    drop(stdin);
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut out = out;
        let mut line = String::new();
        // Bounded: ends at the summary or when the process is killed (end of file).
        loop {
            line.clear();
            match out.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) if line.starts_with(first) => {
                    let _ = tx.send(Some(std::mem::take(&mut line)));
                    return;
                }
                Ok(_) => {}
            }
        }
    });
    let got = rx.recv_timeout(Duration::from_secs(30));
    let _ = process.0.kill();
    let _ = wait_bounded(&mut process.0, Duration::from_secs(10));
    let _ = reader.join();
    match got {
        Ok(Some(summary)) => Ok(summary),
        _ => Err("the receiver printed no summary within 30 s".into()),
    }
}

/// A listener that accepts connections and never answers.
struct Hang {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hang {
    fn start(addr: SocketAddr, accepted: Arc<AtomicU64>) -> Result<Hang> {
        let listener = bind_retry(addr)?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = VecDeque::new();
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        held.push_back(s);
                        if held.len() > HANG_HELD {
                            held.pop_front();
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Hang {
            stop,
            thread: Some(thread),
        })
    }

    /// Closes the listener and every held connection.
    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        self.halt();
    }
}

/// What the webhook sinks received, across their restarts.
#[derive(Default)]
struct WebhookLog {
    requests: u64,
    /// Alert keys (title and timestamp) and how many times each arrived.
    keys: HashMap<String, u32>,
}

impl WebhookLog {
    /// Counts what a sink received before it stopped.
    fn add(&mut self, requests: &[Recorded]) {
        for r in requests {
            self.requests += 1;
            if let Some(key) = alert_key(&r.text()) {
                *self.keys.entry(key).or_default() += 1;
            }
        }
    }
}

/// The first JSON string value of `key` in `text` (no unescaping: keys compare as is).
fn json_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let start = text.find(&pat)? + pat.len();
    let rest = &text[start..];
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(&rest[..i]),
            _ => escaped = false,
        }
    }
    None
}

/// An alert's identity in every place it shows up (stdout, webhook body, dead-letter
/// file): its title and its timestamp, the fraction of a second written with 9 digits.
fn alert_key(text: &str) -> Option<String> {
    let title = json_str(text, "title")?;
    let ts = json_str(text, "timestamp")?;
    let (secs, frac) = ts.split_once('.').unwrap_or((ts.trim_end_matches('Z'), ""));
    let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
    Some(format!("{title}@{secs}.{digits:0<9}"))
}

// ---------------------------------------------------------------------------------------
// Load, output and memory

#[derive(Default)]
struct Load {
    sent: AtomicU64,
    root_ok: AtomicU64,
    fail_ok: AtomicU64,
    unexpected: AtomicU64,
    failed: AtomicU64,
    slowest_us: AtomicU64,
}

/// `GET /` (and one `GET /fail` in [`FAIL_EVERY`]) at [`RATE`] per second until `stop`
/// or `until`, each over a fresh connection with a 2 s connect and a 15 s read timeout.
fn run_load(app: String, stop: Arc<AtomicBool>, until: Instant, load: Arc<Load>) {
    let start = Instant::now();
    let seconds = until.saturating_duration_since(start).as_secs() + 1;
    let mut next = start;
    let interval = Duration::from_micros(1_000_000 / RATE);
    for i in 1..=RATE * seconds {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || now >= until {
            return;
        }
        if next > now {
            std::thread::sleep(next - now);
        }
        // Behind schedule (a slow answer): no burst to catch up.
        next = next.max(Instant::now() - interval) + interval;
        let path = if i % FAIL_EVERY == 0 { "/fail" } else { "/" };
        load.sent.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        match http_get(&app, path) {
            Ok((200, _)) if path == "/" => load.root_ok.fetch_add(1, Ordering::Relaxed),
            Ok((500, _)) if path == "/fail" => load.fail_ok.fetch_add(1, Ordering::Relaxed),
            Ok((code, _)) => {
                eprintln!("soak: GET {path} answered {code}");
                load.unexpected.fetch_add(1, Ordering::Relaxed)
            }
            Err(e) => {
                eprintln!("soak: GET {path}: {e}");
                load.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        load.slowest_us
            .fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// What the service printed on stdout.
#[derive(Default)]
struct Printed {
    log_lines: u64,
    request_handled: u64,
    checkout_failed: u64,
    error_lines: u64,
    other_lines: u64,
    /// WARN and ERROR lines by level, logger and message (at most 50 kinds).
    notable: HashMap<String, u64>,
    /// Alerts printed by the stdout provider, by key.
    alerts: HashMap<String, u32>,
}

impl Printed {
    fn take(&mut self, line: &str) {
        if line.starts_with("{\"notification\"") {
            if let Some(k) = alert_key(line) {
                *self.alerts.entry(k).or_default() += 1;
            }
        } else if line.starts_with("{\"time\"") {
            self.log_lines += 1;
            match json_str(line, "msg") {
                Some("Request handled") => self.request_handled += 1,
                Some("Checkout failed") => self.checkout_failed += 1,
                _ => {}
            }
            let level = json_str(line, "level");
            if level == Some("ERROR") {
                self.error_lines += 1;
            }
            if let Some(level @ ("WARN" | "ERROR")) = level {
                let kind = format!(
                    "{level} {}: {}",
                    json_str(line, "logger").unwrap_or("?"),
                    json_str(line, "msg").unwrap_or("?")
                );
                if self.notable.len() < 50 || self.notable.contains_key(&kind) {
                    *self.notable.entry(kind).or_default() += 1;
                }
            }
        } else if !line.trim().is_empty() {
            self.other_lines += 1;
        }
    }
}

/// The running example service: its process, the rest of its stdout, the addresses of
/// its probe server and of its application routes.
struct Service {
    process: Reaper,
    out: BufReader<std::process::ChildStdout>,
    probes: String,
    app: String,
}

/// Starts the example like `integration`'s `start_monitor` (prod mode, free ports, no
/// drain delay), reading its address lines among the others it prints first (the
/// OpenTelemetry SDK's, alerts), which are counted into `printed`.
fn start_service(env: &[(&str, &str)], printed: &Mutex<Printed>) -> Result<Service> {
    let (exe, mut cmd) = crate::monitor::monitor_command();
    let mut child = cmd
        .env("SHUTDOWN_DRAIN_DELAY_MS", "0")
        .env_remove("PIKO_LOG_LEVEL")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{exe:?}: {e}"))?;
    let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
    let process = Reaper(child);
    let (mut probes, mut app) = (None, None);
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if out.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            break;
        }
        printed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(&line);
        let addr = json_str(&line, "addr").map(str::to_string);
        match json_str(&line, "msg") {
            Some("Health probes listening") => probes = addr,
            Some("Application listening") => app = addr,
            _ => {}
        }
        if let (Some(probes), Some(app)) = (&probes, &app) {
            return Ok(Service {
                process,
                out,
                probes: probes.clone(),
                app: app.clone(),
            });
        }
    }
    Err("the service printed no probe and application addresses".into())
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------
// Metrics

/// The sum of the samples of `name` whose labels include every pair of `labels`.
fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labelset, value) = if let Some(r) = rest.strip_prefix('{') {
                let (set, v) = r.split_once('}')?;
                (set, v)
            } else if rest.starts_with(' ') {
                ("", rest)
            } else {
                return None;
            };
            labels
                .iter()
                .all(|(k, v)| labelset.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.split_whitespace().next()?.parse::<f64>().ok())
                .flatten()
        })
        .sum::<f64>() as u64
}

/// The values of label `label` in the samples of `name`.
fn label_values(body: &str, name: &str, label: &str) -> Vec<String> {
    let mut v: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|r| {
            let pat = format!("{label}=\"");
            let rest = &r[r.find(&pat)? + pat.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

// ---------------------------------------------------------------------------------------
// The run

/// One line of the account.
struct Check {
    name: String,
    figures: String,
    ok: bool,
}

struct Outcome {
    duration: Duration,
    cycle: f64,
    faults_end: f64,
    rss: Vec<(f64, u64)>,
    baseline: (f64, u64),
    shutdown: Option<Duration>,
    exit: String,
    peers: Vec<String>,
    figures: Vec<(String, String)>,
    checks: Vec<Check>,
}

/// The soak run, phase by phase: set-up, load and faults, wind-down, accounting, report.
fn soak(minutes: f64) -> Result<Outcome> {
    let plan = Plan::new(minutes);
    let started = set_up()?;
    let loaded = load_with_faults(&plan, started)?;
    let facts = wind_down(&plan, loaded)?;
    let account = account(&facts);
    Ok(outcome(&plan, facts, account))
}

/// The shape of a run: its length, its fault cycles, when the memory baseline is taken.
struct Plan {
    /// Seconds of load.
    total: f64,
    /// Seconds into the run when the faults end and every peer stays up.
    faults_end: f64,
    /// Seconds of one fault cycle.
    cycle: f64,
    /// Seconds into the run when the memory baseline is taken.
    baseline_at: f64,
}

impl Plan {
    fn new(minutes: f64) -> Plan {
        let total = minutes * 60.0;
        let recovery = (0.15 * total).clamp(15.0, 90.0).min(total / 2.0);
        let faults_end = total - recovery;
        let cycle = (faults_end / 2.0).clamp(6.0, MAX_CYCLE);
        let baseline_at = if total >= 300.0 { 60.0 } else { total / 5.0 };
        eprintln!(
            "soak: {total:.0} s of load at {RATE} requests/s; faults until {faults_end:.0} s in cycles of {cycle:.0} s; memory baseline at {baseline_at:.0} s"
        );
        Plan {
            total,
            faults_end,
            cycle,
            baseline_at,
        }
    }
}

/// What the set-up started: the peers, the service, and the thread reading its stdout.
struct Started {
    dir: std::path::PathBuf,
    dead_letters: std::path::PathBuf,
    peers: Vec<Peer>,
    service: Reaper,
    probes: String,
    app: String,
    printed: Arc<Mutex<Printed>>,
    drain: JoinHandle<()>,
}

/// Set-up: a clean `target/soak`, the three peers up, and the service started against
/// them, its stdout read as it comes (a full pipe would block its log writer).
fn set_up() -> Result<Started> {
    let dir = root().join("target/soak");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dead_letters = dir.join("dead-letters.jsonl");

    let mut peers = vec![
        Peer::new(Kind::Otlp, 0.0)?,
        Peer::new(Kind::Sentry, 1.0 / 6.0)?,
        Peer::new(Kind::Webhook, 2.0 / 6.0)?,
    ];
    for p in &mut peers {
        p.set(State::Up, 0.0)?;
    }
    let otlp = format!("http://{}", peers[0].addr);
    let dsn = format!("http://soakkey@{}/7", peers[1].addr);
    let webhook = format!("http://{}/hooks/alerts", peers[2].addr);
    let printed = Arc::new(Mutex::new(Printed::default()));
    let Service {
        process: service,
        out,
        probes,
        app,
    } = start_service(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
            // The receiver's gRPC port: the default protocol is http/protobuf.
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
            ("SENTRY_DSN", dsn.as_str()),
            ("SENTRY_ENVIRONMENT", "soak"),
            ("WEBHOOK_URL", webhook.as_str()),
            ("ENVIRONMENT", "soak"),
            (
                "PIKO_NOTIFICATION_DEAD_LETTER_PATH",
                dead_letters.to_str().ok_or("path")?,
            ),
        ],
        &printed,
    )?;
    let reading = printed.clone();
    let drain = std::thread::spawn(move || {
        let mut out = out;
        let mut line = String::new();
        // Bounded: ends when the service exits (end of file).
        loop {
            line.clear();
            match out.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => reading
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(&line),
            }
        }
    });
    Ok(Started {
        dir,
        dead_letters,
        peers,
        service,
        probes,
        app,
        printed,
        drain,
    })
}

/// What the load-and-faults phase leaves: the set-up, when the load started, the
/// request counters and the memory samples.
struct Loaded {
    started: Started,
    start: Instant,
    load: Arc<Load>,
    rss: Vec<(f64, u64)>,
}

/// Load and faults: the load runs on its own thread while every 250 ms the peers are
/// moved to where their cycles put them and the service's memory is sampled. Fails when
/// a peer cannot change state or the service exits during the run.
fn load_with_faults(plan: &Plan, mut started: Started) -> Result<Loaded> {
    let pid = started.service.0.id();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(plan.total);
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (app, stop, load) = (started.app.clone(), stop.clone(), load.clone());
        std::thread::spawn(move || run_load(app, stop, until, load))
    };

    let mut rss: Vec<(f64, u64)> = Vec::new();
    let mut next_rss = start;
    let mut next_progress = start + Duration::from_secs(30);
    let mut failure = None;
    // Bounded: one tick every 250 ms until `until`.
    let ticks = (plan.total * 4.0).ceil() as u64 + 1;
    for _ in 0..ticks {
        let now = Instant::now();
        if now >= until {
            break;
        }
        let t = now.duration_since(start).as_secs_f64();
        for p in &mut started.peers {
            let want = planned(p.offset, t, plan.faults_end, plan.cycle);
            if let Err(e) = p.set(want, t) {
                failure = Some(format!("{}: {e}", p.kind.name()));
            }
        }
        if failure.is_some() {
            break;
        }
        if now >= next_rss {
            if let Some(kib) = rss_kib(pid) {
                rss.push((t, kib));
            }
            next_rss += RSS_EVERY;
        }
        if now >= next_progress {
            eprintln!(
                "soak: {t:>7.1} s  {} requests, {} failed, RSS {} MiB",
                load.sent.load(Ordering::Relaxed),
                load.failed.load(Ordering::Relaxed),
                rss.last().map_or(0, |r| r.1 / 1024)
            );
            next_progress += Duration::from_secs(30);
        }
        if started
            .service
            .0
            .try_wait()
            .map_err(|e| e.to_string())?
            .is_some()
        {
            failure = Some("the service exited during the run".into());
            break;
        }
        std::thread::sleep(Duration::from_millis(250).min(until.saturating_duration_since(now)));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = loader.join();
    if let Some(f) = failure {
        return Err(f);
    }
    Ok(Loaded {
        started,
        start,
        load,
        rss,
    })
}

/// The requests of the load, as the client counted them.
struct Requests {
    sent: u64,
    root_ok: u64,
    fail_ok: u64,
    unexpected: u64,
    failed: u64,
    slowest_us: u64,
}

impl Requests {
    /// The counters of the load, read once it has stopped.
    fn counted_by(load: &Load) -> Requests {
        Requests {
            sent: load.sent.load(Ordering::Relaxed),
            root_ok: load.root_ok.load(Ordering::Relaxed),
            fail_ok: load.fail_ok.load(Ordering::Relaxed),
            unexpected: load.unexpected.load(Ordering::Relaxed),
            failed: load.failed.load(Ordering::Relaxed),
            slowest_us: load.slowest_us.load(Ordering::Relaxed),
        }
    }

    fn answered(&self) -> u64 {
        self.root_ok + self.fail_ok + self.unexpected
    }
}

/// Everything the accounting reads, gathered once the service has exited.
struct Facts {
    /// The `/metrics` scrape taken after the load, before SIGTERM.
    scrape: String,
    requests: Requests,
    /// What the service printed on stdout, to its end.
    printed: Printed,
    /// Non-empty lines of the dead-letter file, and its alerts by key.
    dead_letter_lines: u64,
    dead_letter_keys: HashMap<String, u32>,
    rss: Vec<(f64, u64)>,
    /// The memory sample at the baseline time (or the last one).
    baseline: (f64, u64),
    final_rss: u64,
    /// How the service exited, how long it took when it exited 0, and in any case.
    exit: String,
    shutdown: Option<Duration>,
    shutdown_took: Duration,
    peers: Vec<Peer>,
    /// From the start of the load to the end of the wind-down.
    duration: Duration,
}

impl Facts {
    /// The sum of the samples of metric `name` in the scrape.
    fn m(&self, name: &str) -> u64 {
        metric(&self.scrape, name, &[])
    }

    /// The sum of the samples of metric `name` with `labels` in the scrape.
    fn ml(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        metric(&self.scrape, name, labels)
    }
}

/// Wind-down: the last spans go out, `/metrics` is scraped, the service gets SIGTERM
/// and is waited for within [`SHUTDOWN_BOUND`], the peers are torn down (the receivers
/// hand over what they got), and the stdout lines and dead letters are read.
fn wind_down(plan: &Plan, loaded: Loaded) -> Result<Facts> {
    let Loaded {
        started,
        start,
        load,
        mut rss,
    } = loaded;
    let Started {
        dir,
        dead_letters,
        mut peers,
        mut service,
        probes,
        printed,
        drain,
        ..
    } = started;
    let pid = service.0.id();
    // The last spans go out with the next batch (every second).
    std::thread::sleep(Duration::from_secs(3));
    let (code, scrape) = http_get(&probes, "/metrics")?;
    if code != 200 {
        return Err(format!("/metrics answered {code}"));
    }
    let final_rss = rss_kib(pid).unwrap_or(0);
    rss.push((start.elapsed().as_secs_f64(), final_rss));
    std::fs::write(dir.join("metrics.txt"), &scrape).map_err(|e| e.to_string())?;

    signal(pid, "TERM")?;
    let t = Instant::now();
    let (exit, shutdown) = match wait_bounded(&mut service.0, SHUTDOWN_BOUND) {
        Ok(s) => (s.to_string(), s.success().then(|| t.elapsed())),
        Err(e) => (e, None),
    };
    let shutdown_took = t.elapsed();
    let _ = drain.join();
    for p in &mut peers {
        p.tear_down();
    }
    let duration = start.elapsed();

    let printed = std::mem::take(&mut *printed.lock().unwrap_or_else(|p| p.into_inner()));
    let (dead_letter_lines, dead_letter_keys) = read_dead_letters(&dead_letters);
    let baseline = rss
        .iter()
        .find(|(t, _)| *t >= plan.baseline_at)
        .or(rss.last())
        .copied()
        .unwrap_or((0.0, 0));
    Ok(Facts {
        scrape,
        requests: Requests::counted_by(&load),
        printed,
        dead_letter_lines,
        dead_letter_keys,
        rss,
        baseline,
        final_rss,
        exit,
        shutdown,
        shutdown_took,
        peers,
        duration,
    })
}

/// The dead-letter file: its non-empty lines, and its alerts by key.
fn read_dead_letters(path: &std::path::Path) -> (u64, HashMap<String, u32>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    let mut keys: HashMap<String, u32> = HashMap::new();
    for l in text.lines() {
        if let Some(k) = alert_key(l) {
            *keys.entry(k).or_default() += 1;
        }
    }
    (lines, keys)
}

/// The account of a run: its checks and the figures reported beside them, in order.
#[derive(Default)]
struct Account {
    checks: Vec<Check>,
    figures: Vec<(String, String)>,
}

impl Account {
    fn check(&mut self, name: &str, figures: String, ok: bool) {
        self.checks.push(Check {
            name: name.into(),
            figures,
            ok,
        });
    }
}

/// Accounting: every check, subject by subject.
fn account(facts: &Facts) -> Account {
    let mut account = Account::default();
    account_memory_and_shutdown(facts, &mut account);
    account_requests(facts, &mut account);
    account_log_lines(facts, &mut account);
    account_spans(facts, &mut account);
    account_log_records(facts, &mut account);
    account_sentry(facts, &mut account);
    account_error_alerts(facts, &mut account);
    account_notifications(facts, &mut account);
    account_alert_delivery(facts, &mut account);
    account
}

fn account_memory_and_shutdown(facts: &Facts, account: &mut Account) {
    let (baseline, final_rss) = (facts.baseline, facts.final_rss);
    let peak = facts.rss.iter().map(|r| r.1).max().unwrap_or(0);
    let bound = 2 * baseline.1 + 20 * 1024;
    account.check(
        "memory bounded: final RSS <= 2 x RSS at the baseline + 20 MiB",
        format!(
            "baseline {} at {:.0} s, peak {}, final {}, bound {}",
            mib(baseline.1),
            baseline.0,
            mib(peak),
            mib(final_rss),
            mib(bound)
        ),
        final_rss > 0 && final_rss <= bound,
    );
    account.check(
        "the service exits 0 within its bound after SIGTERM",
        format!(
            "{} after {:.2} s (bound {} s)",
            facts.exit,
            facts.shutdown_took.as_secs_f64(),
            SHUTDOWN_BOUND.as_secs()
        ),
        facts.shutdown.is_some(),
    );
}

fn account_requests(facts: &Facts, account: &mut Account) {
    let Requests {
        sent,
        root_ok,
        fail_ok,
        unexpected,
        failed,
        slowest_us,
    } = facts.requests;
    let answered = facts.requests.answered();
    account.check(
        "requests: sent = answered + failed, none failed",
        format!(
            "{sent} sent = {answered} answered ({root_ok} GET / 200, {fail_ok} GET /fail 500, {unexpected} other) + {failed} failed; slowest {:.1} ms",
            slowest_us as f64 / 1000.0
        ),
        sent == answered + failed && failed == 0 && unexpected == 0,
    );
    let server_root = facts.ml(
        "http_server_request_duration_seconds_count",
        &[("http_route", "/")],
    );
    let server_fail = facts.ml(
        "http_server_request_duration_seconds_count",
        &[("http_route", "/fail")],
    );
    account.check(
        "requests: the service's request metrics count every answer",
        format!(
            "GET / {server_root} (client {root_ok}), GET /fail {server_fail} (client {fail_ok})"
        ),
        server_root == root_ok && server_fail == fail_ok,
    );
}

fn account_log_lines(facts: &Facts, account: &mut Account) {
    let outputs = label_values(&facts.scrape, "piko_obs_log_lines_accepted_total", "output");
    for o in &outputs {
        let l = [("output", o.as_str())];
        let accepted = facts.ml("piko_obs_log_lines_accepted_total", &l);
        let written = facts.ml("piko_obs_log_lines_written_total", &l);
        let dropped = facts.ml("piko_obs_log_lines_dropped_total", &l);
        let errors = facts.ml("piko_obs_log_write_errors_total", &l);
        let queued = accepted.saturating_sub(written);
        // Lines dropped on a failed write were accepted first; lines dropped on a full
        // queue were not. With no failed write: accepted = written + still queued.
        let ok = written <= accepted
            && queued <= 64
            && (errors > 0 || o != STDOUT_OUTPUT || dropped == 0);
        account.check(
            &format!("log output {o}: accepted = written + queued (+ failed writes)"),
            format!(
                "{accepted} accepted, {written} written, {queued} queued, {dropped} dropped, {errors} failed writes"
            ),
            ok,
        );
    }
    // The service's own stdout output (it replaced the console output of init()).
    let console_written = facts.ml(
        "piko_obs_log_lines_written_total",
        &[("output", STDOUT_OUTPUT)],
    );
    let (printed, requests) = (&facts.printed, &facts.requests);
    account.check(
        "log lines: every request's line is on stdout (lines logged = lines read)",
        format!(
            "{} lines read after exit (>= {console_written} written at the scrape); `Request handled` {} for {} GET /, `Checkout failed` {} for {} GET /fail",
            printed.log_lines,
            printed.request_handled,
            requests.root_ok,
            printed.checkout_failed,
            requests.fail_ok
        ),
        printed.log_lines >= console_written
            && printed.request_handled == requests.root_ok
            && printed.checkout_failed == requests.fail_ok,
    );
}

/// How many times `needle` occurs in the summaries of `peer`'s receivers.
fn received(peer: &Peer, needle: &str) -> u64 {
    peer.summaries
        .iter()
        .map(|s| s.matches(needle).count() as u64)
        .sum()
}

fn account_spans(facts: &Facts, account: &mut Account) {
    let ended = facts.m("piko_obs_spans_ended_total");
    let exported = facts.m("piko_obs_spans_exported_total");
    let sdropped = facts.m("piko_obs_spans_dropped_total");
    let sfailed = facts.m("piko_obs_spans_export_failed_total");
    let settled = exported + sdropped + sfailed;
    let squeued = ended.saturating_sub(settled);
    account.check(
        "spans: ended = exported + dropped + failed + queued",
        format!(
            "{ended} ended = {exported} exported + {sdropped} dropped + {sfailed} failed + {squeued} queued or in flight"
        ),
        settled <= ended
            && squeued <= SPAN_QUEUE + SPAN_BATCH
            && ended == facts.requests.answered(),
    );
    let otlp_peer = &facts.peers[0];
    let received_spans = received(otlp_peer, "{\"name\":");
    let received_logs = received(otlp_peer, "{\"body\":");
    // A receiver is killed right after it hands over its summary: exports answered in
    // between are counted as exported but missing from the summary (at most a batch or
    // so per stop); the spans queued at the scrape are exported at shutdown.
    let slack = SPAN_BATCH * (u64::from(otlp_peer.stops) + 1) + squeued;
    account.check(
        "spans: the receivers got what was exported",
        format!(
            "{received_spans} spans (and {received_logs} log records) in {} receiver summaries, {} lost; {exported} exported at the scrape + {squeued} queued",
            otlp_peer.summaries.len(),
            otlp_peer.lost_summaries
        ),
        otlp_peer.lost_summaries == 0 && received_spans.abs_diff(exported + squeued) <= slack,
    );
}

fn account_log_records(facts: &Facts, account: &mut Account) {
    // OTLP log records: the `otlp` output hands each line it writes to the SDK, whose
    // processor counts it as emitted (the lines it drops are the SDK's own reports from
    // inside an export, which are not exported).
    let lemitted = facts.m("piko_obs_log_records_emitted_total");
    let lexported = facts.m("piko_obs_log_records_exported_total");
    let ldropped = facts.m("piko_obs_log_records_dropped_total");
    let lfailed = facts.m("piko_obs_log_records_export_failed_total");
    let otlp_written = facts.ml("piko_obs_log_lines_written_total", &[("output", "otlp")]);
    let lsettled = lexported + ldropped + lfailed;
    let lqueued = lemitted.saturating_sub(lsettled);
    account.check(
        "log records: emitted = exported + dropped + failed + queued",
        format!(
            "{lemitted} emitted ({otlp_written} lines written by the otlp output) = {lexported} exported + {ldropped} dropped + {lfailed} failed + {lqueued} queued or in flight"
        ),
        lsettled <= lemitted
            && lqueued <= LOG_QUEUE + LOG_BATCH
            && lemitted == otlp_written
            && lemitted > 0,
    );
    // As for spans: what a receiver answered between its summary and its kill is
    // missing from the summaries; the records queued at the scrape go out at shutdown.
    let otlp_peer = &facts.peers[0];
    let received_logs = received(otlp_peer, "{\"body\":");
    let lslack = LOG_BATCH * (u64::from(otlp_peer.stops) + 1) + lqueued;
    account.check(
        "log records: the receivers got what was exported",
        format!(
            "{received_logs} log records in {} receiver summaries, {} lost; {lexported} exported at the scrape + {lqueued} queued",
            otlp_peer.summaries.len(),
            otlp_peer.lost_summaries
        ),
        otlp_peer.lost_summaries == 0 && received_logs.abs_diff(lexported + lqueued) <= lslack,
    );
    account.figures.push((
        "OTLP log records received".into(),
        received_logs.to_string(),
    ));
    let mut notable: Vec<(&String, &u64)> = facts.printed.notable.iter().collect();
    notable.sort();
    account.figures.push((
        "WARN and ERROR lines".into(),
        notable
            .iter()
            .map(|(k, n)| format!("{n} x {k}"))
            .collect::<Vec<_>>()
            .join("; "),
    ));
}

fn account_sentry(facts: &Facts, account: &mut Account) {
    let o = |outcome: &str| facts.ml("piko_obs_sentry_envelopes_total", &[("outcome", outcome)]);
    let (queued, ssent, sfail, limited, sdrop) = (
        o("queued"),
        o("sent"),
        o("failed"),
        o("rate_limited"),
        o("dropped"),
    );
    let error_lines = facts.printed.error_lines;
    let spending = queued.saturating_sub(ssent + sfail + limited);
    account.check(
        "Sentry: queued = sent + failed + rate-limited + pending; queued + dropped = ERROR lines",
        format!(
            "{queued} queued = {ssent} sent + {sfail} failed + {limited} rate-limited + {spending} pending; {sdrop} dropped; {error_lines} ERROR lines"
        ),
        ssent + sfail + limited <= queued
            && spending <= SENTRY_QUEUE
            && queued + sdrop == error_lines,
    );
    let sentry_peer = &facts.peers[1];
    let events = received(sentry_peer, "\"event_id\":");
    account.check(
        "Sentry: the endpoints got what was sent",
        format!(
            "{events} events in {} summaries, {} lost; {ssent} sent at the scrape + {spending} pending",
            sentry_peer.summaries.len(),
            sentry_peer.lost_summaries
        ),
        sentry_peer.lost_summaries == 0
            && events.abs_diff(ssent + spending) <= u64::from(sentry_peer.stops) + spending + 1,
    );
}

fn account_error_alerts(facts: &Facts, account: &mut Account) {
    let records = facts.m("piko_obs_error_notifications_records_total");
    let rdropped = facts.m("piko_obs_error_notifications_records_dropped_total");
    let groups = facts.m("piko_obs_error_notifications_sent_total");
    let handoff = facts.m("piko_obs_error_notifications_handoff_failed_total");
    let gdropped = facts.m("piko_obs_error_notifications_groups_dropped_total");
    let limited_groups = facts.m("piko_obs_error_notifications_rate_limited_total");
    account.check(
        "error alerts: every ERROR line grouped",
        format!(
            "{records} records grouped + {rdropped} dropped for {} ERROR lines; {groups} alerts handed over, {handoff} refused, {gdropped} groups dropped, {limited_groups} rate-limited",
            facts.printed.error_lines
        ),
        records + rdropped == facts.printed.error_lines,
    );
}

fn account_notifications(facts: &Facts, account: &mut Account) {
    let enq = facts.m("piko_obs_notifications_enqueued_total");
    let delivered = facts.m("piko_obs_notifications_delivered_total");
    let retried = facts.m("piko_obs_notifications_retried_total");
    let dead = facts.m("piko_obs_notifications_dead_lettered_total");
    let dead_err = facts.m("piko_obs_notifications_dead_letter_errors_total");
    let ndropped = facts.m("piko_obs_notifications_dropped_total");
    let pending = facts.m("piko_obs_notifications_queued")
        + facts.m("piko_obs_notifications_in_flight")
        + facts.m("piko_obs_notifications_waiting_retry");
    // Alerts refused by a full queue are dead-lettered without being enqueued: the
    // right side can only be larger.
    account.check(
        "alerts: enqueued = delivered + dead-lettered + pending (at the scrape)",
        format!(
            "{enq} enqueued; {delivered} delivered + {dead} dead-lettered + {dead_err} dead-letter errors + {ndropped} dropped + {pending} pending; {retried} retries"
        ),
        enq <= delivered + dead + dead_err + ndropped + pending && ndropped == 0 && dead_err == 0,
    );
}

fn account_alert_delivery(facts: &Facts, account: &mut Account) {
    let (printed, dl_keys, dl_lines) = (
        &facts.printed,
        &facts.dead_letter_keys,
        facts.dead_letter_lines,
    );
    let dead = facts.m("piko_obs_notifications_dead_lettered_total");
    let webhook_log = &facts.peers[2].webhook;
    let mut lost = Vec::new();
    for k in printed.alerts.keys().chain(dl_keys.keys()) {
        if !webhook_log.keys.contains_key(k) && !dl_keys.contains_key(k) {
            lost.push(k.clone());
        }
    }
    let handed: std::collections::HashSet<&String> =
        printed.alerts.keys().chain(dl_keys.keys()).collect();
    let both = webhook_log
        .keys
        .keys()
        .filter(|k| dl_keys.contains_key(*k))
        .count();
    let dup = webhook_log.keys.values().filter(|n| **n > 1).count();
    account.check(
        "alerts: each one reached the webhook or the dead-letter file (after exit)",
        format!(
            "{} alerts; {} at the webhook ({} requests, {dup} received twice or more), {} in the dead-letter file ({dl_lines} lines; {both} in both); {} lost",
            handed.len(),
            webhook_log.keys.len(),
            webhook_log.requests,
            dl_keys.len(),
            lost.len()
        ),
        lost.is_empty()
            && dl_lines >= dead
            && dl_lines as usize == dl_keys.values().map(|n| *n as usize).sum::<usize>(),
    );
    if !lost.is_empty() {
        eprintln!("soak: alerts lost: {lost:?}");
    }
    account.figures.push((
        "webhook provider: delivered / failed attempts (at the scrape)".into(),
        format!(
            "{} / {}",
            facts.ml(
                "piko_obs_notification_provider_delivered_total",
                &[("provider", "webhook")]
            ),
            facts.ml(
                "piko_obs_notification_provider_failed_attempts_total",
                &[("provider", "webhook")]
            )
        ),
    ));
}

/// Report: what the run did and found, for [`Outcome::render`].
fn outcome(plan: &Plan, facts: Facts, account: Account) -> Outcome {
    let peers = facts
        .peers
        .iter()
        .map(|p| {
            format!(
                "{}: stopped {} times, hung {} times ({} connections held unanswered), started {} times",
                p.kind.name(),
                p.stops,
                p.hangs,
                p.hung_connections.load(Ordering::Relaxed),
                p.starts
            )
        })
        .collect();
    Outcome {
        duration: facts.duration,
        cycle: plan.cycle,
        faults_end: plan.faults_end,
        rss: facts.rss,
        baseline: facts.baseline,
        shutdown: facts.shutdown,
        exit: facts.exit,
        peers,
        figures: account.figures,
        checks: account.checks,
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Outcome {
    /// The first resident-set sample of each minute, as `T s N MiB, ...`.
    fn rss_by_minute(&self) -> String {
        let marks: Vec<String> = self
            .rss
            .iter()
            .scan(-1i64, |last, (t, kib)| {
                let minute = (*t / 60.0).floor() as i64;
                let show = minute != *last;
                *last = minute;
                Some(show.then(|| format!("{t:.0} s {}", mib(*kib))))
            })
            .flatten()
            .collect();
        marks.join(", ")
    }

    fn render(&self, minutes: f64, started: SystemTime) -> String {
        let mut s = String::new();
        let since = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(
            s,
            "soak: `cargo xtask soak --minutes {minutes}`, started at {since} (Unix time), ran {:.1} s; {}",
            self.duration.as_secs_f64(),
            machine()
        );
        let _ = writeln!(
            s,
            "soak: load {RATE} requests/s (GET /, one GET /fail in {FAIL_EVERY}); faults for the first {:.0} s in cycles of {:.0} s",
            self.faults_end, self.cycle
        );
        for p in &self.peers {
            let _ = writeln!(s, "soak: {p}");
        }
        let _ = writeln!(s, "soak: RSS over time: {}", self.rss_by_minute());
        let _ = writeln!(
            s,
            "soak: RSS baseline {} at {:.0} s; shutdown {} ({})",
            mib(self.baseline.1),
            self.baseline.0,
            self.shutdown
                .map_or("not within its bound".into(), |d| format!(
                    "{:.2} s",
                    d.as_secs_f64()
                )),
            self.exit
        );
        for (k, v) in &self.figures {
            let _ = writeln!(s, "soak: {k}: {v}");
        }
        for c in &self.checks {
            let _ = writeln!(
                s,
                "soak: {} {}: {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.figures
            );
        }
        let _ = writeln!(s, "\n| account | figures | balanced |\n|---|---|---|");
        for c in &self.checks {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                c.name,
                c.figures.replace('|', "\\|"),
                if c.ok { "yes" } else { "**no**" }
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_across_formats() {
        let stdout = r#"{"notification":{"content":{"title":"ERROR: Application Error","message":"x"},"context":{"timestamp":"2026-11-25T22:59:25.394481950Z"}}}"#;
        let webhook =
            r#"{"timestamp":"2026-11-25T22:59:25.39448195Z","title":"ERROR: Application Error"}"#;
        assert_eq!(alert_key(stdout), alert_key(webhook));
        assert!(alert_key(stdout).is_some());
    }

    #[test]
    fn metrics_are_summed_by_label() {
        let body = "# HELP x\nx_total{output=\"console\"} 3\nx_total{output=\"otlp\"} 4\nx_total_more 9\ny 2\n";
        assert_eq!(metric(body, "x_total", &[]), 7);
        assert_eq!(metric(body, "x_total", &[("output", "otlp")]), 4);
        assert_eq!(metric(body, "y", &[]), 2);
        assert_eq!(label_values(body, "x_total", "output"), ["console", "otlp"]);
    }

    #[test]
    fn the_schedule_ends_up() {
        assert_eq!(planned(0.0, 1.0, 100.0, 20.0), State::Up);
        assert_eq!(planned(0.0, 11.0, 100.0, 20.0), State::Stopped);
        assert_eq!(planned(0.0, 16.0, 100.0, 20.0), State::Hanging);
        assert_eq!(planned(0.5, 101.0, 100.0, 20.0), State::Up);
        assert_eq!(parse_minutes(&["--minutes".into(), "0.5".into()]), Ok(0.5));
        assert!(parse_minutes(&["--minutes".into(), "-1".into()]).is_err());
    }
}
