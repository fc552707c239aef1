//! The example service under test and the running of named checks, shared by
//! `integration`, `deploy`, `examples` and `alertmanager`. It uses only `support`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::{Reaper, Result, root};

/// A check: its name, and the function that runs it.
pub(crate) type NamedCheck = (&'static str, fn() -> Result);

/// One named check of `integration` or `deploy`.
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) run: fn() -> Result,
}

/// Runs every check, reporting each as `{what}: ok` or `{what}: FAIL`; fails if one did.
pub(crate) fn run_checks(what: &str, checks: &[Check]) -> Result {
    let mut failed = 0;
    for c in checks {
        match (c.run)() {
            Ok(()) => eprintln!("{what}: ok   {}", c.name),
            Err(e) => {
                failed += 1;
                eprintln!("{what}: FAIL {}: {e}", c.name);
            }
        }
    }
    println!("{what}: {} passed, {failed} failed", checks.len() - failed);
    if failed > 0 {
        Err(format!("{failed} {what} check(s) failed"))
    } else {
        Ok(())
    }
}

/// The running example: its process, the rest of its stdout, and the addresses of its
/// probe server and application route, read from its first two lines.
pub(crate) struct Monitor {
    pub(crate) process: Reaper,
    pub(crate) out: BufReader<std::process::ChildStdout>,
    pub(crate) probes: String,
    pub(crate) app: String,
    /// Alert lines printed before the address lines.
    pub(crate) alerts: String,
    /// Log lines printed before the address lines (`init()`'s start-up summary).
    pub(crate) startup: String,
}

/// Starts the monitor example with both servers on free ports.
pub(crate) fn start_monitor(extra_env: &[(&str, &str)]) -> Result<Monitor> {
    start_monitor_with(extra_env, Stdio::inherit())
}

/// The monitor example (built by `cargo build --examples`) in prod mode with both its
/// ports free ones, and its path for error messages.
pub(crate) fn monitor_command() -> (std::path::PathBuf, Command) {
    let exe = root().join("target/debug/examples/monitor");
    let mut cmd = Command::new(&exe);
    cmd.arg("prod").env("HEALTH_PORT", "0").env("APP_PORT", "0");
    (exe, cmd)
}

/// [`start_monitor`] with its stderr going to `stderr` (`Stdio::piped()` to read it from
/// `Monitor::process`).
pub(crate) fn start_monitor_with(extra_env: &[(&str, &str)], stderr: Stdio) -> Result<Monitor> {
    let (exe, mut cmd) = monitor_command();
    cmd.env("SHUTDOWN_DRAIN_DELAY_MS", "0")
        .env(
            "PIKO_NOTIFICATION_DEAD_LETTER_PATH",
            std::env::temp_dir().join(format!("piko-obs-monitor-{}.jsonl", std::process::id())),
        )
        .env_remove("PIKO_LOG_LEVEL")
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| format!("{exe:?}: {e}"))?;
    let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
    let process = Reaper(child);
    let mut alerts = String::new();
    let mut startup = String::new();
    let mut addr_of = |what: &str| -> Result<String> {
        let mut line = String::new();
        // Alerts are printed to stdout too, by another writer: keep them aside, and the
        // log lines before the address (init()'s start-up summary).
        while line.is_empty() || !line.contains("\"addr\":\"") {
            if line.starts_with("{\"notification\"") {
                alerts.push_str(&line);
            } else {
                startup.push_str(&line);
            }
            line.clear();
            if out.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                break;
            }
        }
        line.split("\"addr\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_string)
            .ok_or_else(|| format!("no {what} address in the line: {line}"))
    };
    let probes = addr_of("probe")?;
    let app = addr_of("application")?;
    Ok(Monitor {
        process,
        out,
        probes,
        app,
        alerts,
        startup,
    })
}
