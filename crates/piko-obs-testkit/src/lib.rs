//! The test helpers of the piko-obs workspace: real parts that record what arrives, so
//! that a suite can check what piko-obs sent. Nothing here stands in for a part of
//! piko-obs, and nothing here depends on one (a crate's suite takes this crate as a
//! dev-dependency without a second copy of its own types).
//!
//! What's here:
//! - [`Capture`]: a writer that keeps every byte, and [`parse_json_lines`] to read JSON
//!   lines back;
//! - [`http::http_get`]: the one HTTP GET of the workspace, over a fresh loopback
//!   connection with bounded connect and read, and its async form for any method,
//!   [`http::http_request`];
//! - [`sink::Sink`]: a webhook sink, a real HTTP/1.1 server that records every request
//!   and answers from a script;
//! - `otlp::OtlpReceiver` (feature `otlp`): an OTLP receiver over gRPC and HTTP on the
//!   official protobuf definitions, with `pki::TestPki` for its TLS;
//! - `sentry::events` (feature `sentry`): the events of the envelopes a sink received;
//! - [`child::rerun_in_child`]: a test run again in a child process, for tests whose
//!   subject is the process's own stdout or stderr.
//! - [`thread_names`], [`thread_files`] and [`sched_field`]: a process's threads and
//!   how the kernel schedules them, from `/proc`.
//!
//! ```
//! use std::io::Write as _;
//!
//! let mut out = piko_obs_testkit::Capture::new();
//! writeln!(out, r#"{{"level":"INFO","msg":"ready"}}"#).unwrap();
//! assert_eq!(out.json_lines()[0]["msg"], "ready");
//! ```

pub mod child;
pub mod http;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "otlp")]
pub mod pki;
#[cfg(feature = "sentry")]
pub mod sentry;
pub mod sink;

pub use child::{ChildRun, rerun_in_child, rerun_in_child_expecting, rerun_in_child_with};
#[cfg(feature = "axum")]
pub use http::serve_axum;
pub use http::{Response, http_get, http_get_with, http_request, http_request_on};

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

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

/// File `file` of `/proc/PID/task/TID/` (`sched`, `schedstat`, ...) of each thread of
/// process `pid` (`"self"` for this one) named `comm`.
///
/// ```
/// use std::sync::mpsc::channel;
///
/// let (started, running) = channel();
/// let (stop, stopped) = channel::<()>();
/// let thread = std::thread::Builder::new()
///     .name("doc-sleeper".into())
///     .spawn(move || {
///         started.send(()).unwrap();
///         let _ = stopped.recv();
///     })
///     .unwrap();
/// running.recv().unwrap();
/// let files = piko_obs_testkit::thread_files("self", "doc-sleeper", "sched");
/// assert_eq!(files.len(), 1);
/// drop(stop);
/// thread.join().unwrap();
/// ```
pub fn thread_files(pid: &str, comm: &str, file: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|name| name.trim() == comm)
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join(file)).ok())
        .collect()
}

/// The number on line `field` (`policy`, `se.slice`, ...) of a thread's `sched` file
/// ([`thread_files`]), where the kernel shows it.
///
/// ```
/// let sched = "policy                                       :                    6\n";
/// assert_eq!(piko_obs_testkit::sched_field(sched, "policy"), Some(6));
/// assert_eq!(piko_obs_testkit::sched_field(sched, "se.slice"), None);
/// ```
pub fn sched_field(sched: &str, field: &str) -> Option<u64> {
    let line = sched.lines().find(|l| l.starts_with(field))?;
    line.rsplit(' ').next()?.trim().parse().ok()
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
