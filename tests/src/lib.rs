//! Support for the workspace tests: real writers that record what arrives, and helpers
//! to read JSON lines back. Nothing here stands in for a part of piko-obs.

/// The guide `docs/how-to/monitor-production.md`, compiled: each of its Rust blocks is a
/// doctest of this crate (the tests crate, which is never packaged, so no published
/// crate includes a file from outside itself).
#[cfg(doctest)]
#[doc = include_str!("../../docs/how-to/monitor-production.md")]
pub struct MonitorProductionGuide;

/// The reference pages' Rust blocks, compiled as doctests of this crate.
#[cfg(doctest)]
pub mod reference_docs {
    #[doc = include_str!("../../docs/reference/health.md")]
    pub struct Health;
    #[doc = include_str!("../../docs/reference/lifecycle.md")]
    pub struct Lifecycle;
    #[doc = include_str!("../../docs/reference/logger.md")]
    pub struct Logger;
    #[doc = include_str!("../../docs/reference/metrics.md")]
    pub struct Metrics;
    #[doc = include_str!("../../docs/reference/notification.md")]
    pub struct Notification;
    #[doc = include_str!("../../docs/reference/otlp.md")]
    pub struct Otlp;
    #[doc = include_str!("../../docs/reference/sentry.md")]
    pub struct Sentry;
}

/// The README's Rust blocks (the quick start), compiled as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct Readme;

pub mod fuzz;
pub mod otlp;
pub mod pki;
pub mod sentry;
pub mod sink;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A writer that keeps every byte written to it, shareable between the output under
/// test and the test.
#[derive(Clone, Default, Debug)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// A new, empty capture.
    pub fn new() -> Capture {
        Capture::default()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("capture lock").clone()).expect("UTF-8 output")
    }

    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_string).collect()
    }

    /// Each line parsed as JSON; panics on a line that does not parse.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        parse_json_lines(&self.text())
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Parses every line of `text` as one JSON object, leaving out `init()`'s start-up
/// summary; panics naming the first bad line.
pub fn parse_json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("line {i} is not JSON ({e}): {l:?}"))
        })
        .filter(|v: &serde_json::Value| !is_startup_summary(v))
        .collect()
}

/// Whether `line` is `init()`'s start-up summary (`piko-obs started`, NOTICE), which
/// [`parse_json_lines`] leaves out so that tests see their own lines only.
pub fn is_startup_summary(line: &serde_json::Value) -> bool {
    line["logger"] == "piko-obs" && line["msg"] == "piko-obs started"
}

/// Names of this process's threads (from `/proc/self/task`).
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A response read by [`http_get`].
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `content-type` header, empty when absent.
    pub content_type: String,
    /// The body.
    pub body: String,
}

/// `GET path` on `addr` over a fresh HTTP/1.1 connection, with connect and read
/// timeouts; an error when the server cannot be reached.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    http_get_with(addr, path, &[])
}

/// [`http_get`] with more request headers (`traceparent`, say).
pub fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))?;
    let content_type = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok(Response {
        status,
        content_type,
        body: body.to_string(),
    })
}

/// A health service with five probes that answer at once, as the health benchmarks use.
pub fn five_instant_probes() -> piko_obs::health::HealthService {
    use piko_obs::health::{HealthService, Status, probe_fn};
    let health = HealthService::new("bench", Duration::from_secs(5)).expect("service");
    for name in ["cache", "db", "queue", "search", "storage"] {
        health
            .register(probe_fn(
                name,
                move |_, _| async move { Status::healthy(name) },
            ))
            .expect("probe");
    }
    health
}

/// What a test run again in a child process printed, and how it ended.
#[derive(Debug)]
pub struct ChildRun {
    /// How it ended.
    pub status: std::process::ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr (empty when it was closed).
    pub stderr: String,
}

/// Runs the test `name` of this test binary again, alone and without output capture,
/// in a child process with the variable `env` set (the test sees it and does its
/// child's part), for tests whose subject is the process's own stdout or stderr. With
/// `close_stderr`, the child's stderr is a pipe closed at once (writes to it fail).
/// Both outputs are read while it runs; it is killed past `limit` (which panics).
pub fn rerun_in_child(name: &str, env: &str, close_stderr: bool, limit: Duration) -> ChildRun {
    rerun_in_child_with(name, &[(env, "1")], close_stderr, limit)
}

/// [`rerun_in_child`] with the variables `vars` set in the child (its part is told by
/// one of them, and given what it needs, such as an address, by the others).
pub fn rerun_in_child_with(
    name: &str,
    vars: &[(&str, &str)],
    close_stderr: bool,
    limit: Duration,
) -> ChildRun {
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("child test process");
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = child.stderr.take();
    let stderr = read(if close_stderr {
        drop(stderr);
        None
    } else {
        stderr.map(|p| Box::new(p) as _)
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("child status") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish in its child process within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ChildRun {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// A dispatcher for `service` (started on the current tokio runtime) whose dead letters
/// go to a JSON-lines file at `path`, attached to `service`; and the file store.
pub fn attach_file_dispatcher(
    service: &piko_obs_notify::NotificationService,
    path: &std::path::Path,
    config: piko_obs_notify::DispatcherConfig,
) -> (
    piko_obs_notify::Dispatcher,
    Arc<piko_obs_notify_providers::FileDeadLetterStore>,
) {
    let store = Arc::new(
        piko_obs_notify_providers::FileDeadLetterStore::open(path).expect("dead-letter file"),
    );
    let d = piko_obs_notify::Dispatcher::start(
        &tokio::runtime::Handle::current(),
        service,
        store.clone(),
        config,
    )
    .expect("dispatcher");
    service.attach_dispatcher(d.clone()).expect("attach");
    (d, store)
}

/// [`rerun_in_child`] (stderr kept), then checks that the child passed and printed
/// `marker` (the line a child's part prints once its checks are done); returns its run.
pub fn rerun_in_child_expecting(name: &str, env: &str, marker: &str, limit: Duration) -> ChildRun {
    let run = rerun_in_child(name, env, false, limit);
    assert!(
        run.status.success() && run.stdout.contains(marker),
        "{name} in its child process: {}, no {marker:?} in\n{}\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    run
}

/// Serves the router `make` builds (given the address it will listen on) on a free
/// loopback port, on a runtime of its own: the runtime (dropping it stops the server)
/// and the address.
pub fn serve_axum(
    make: impl FnOnce(SocketAddr) -> axum::Router,
) -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let router = make(addr);
    runtime.spawn(async move { axum::serve(listener, router).await });
    (runtime, addr)
}
