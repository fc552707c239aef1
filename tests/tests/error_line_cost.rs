//! What the first ERROR line costs a fresh process with the facade's defaults: its
//! resident memory grows by at most 5 MiB (no stack trace is captured and symbolised
//! unless `with_error_backtraces(true)`), and the line carries no trace.

use std::time::Duration;

use piko_obs::logger::attr;

/// Set in the child process that runs the test's own part.
const CHILD: &str = "PIKO_TEST_ERROR_LINE_COST_CHILD";

/// What the child prints before its figure.
const MARKER: &str = "first ERROR grew resident memory by KiB: ";

/// The process's resident memory, in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn the_first_error_line_adds_at_most_5_mib_by_default() {
    if std::env::var_os(CHILD).is_some() {
        first_error_line();
        return;
    }
    // Resident memory is the process's: measure in a fresh child process.
    let run = piko_obs_testkit::rerun_in_child_expecting(
        "the_first_error_line_adds_at_most_5_mib_by_default",
        CHILD,
        MARKER,
        Duration::from_secs(60),
    );
    let grown: u64 = run
        .stdout
        .lines()
        .find_map(|l| l.split_once(MARKER).map(|(_, v)| v))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no figure in:\n{}", run.stdout));
    assert!(
        grown <= 5 * 1024,
        "the first ERROR line grew RSS by {grown} KiB"
    );
}

fn first_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_notification_dead_letter_path(dir.path().join("dead.jsonl"))
        .init()
        .unwrap();
    piko_obs::logger::add_file_output(&path).unwrap();
    let log = piko_obs::logger::get_logger("cost");
    let fields = |i| [attr::string("path", "/orders"), attr::int("status", i)];
    // Warm the path with INFO lines, so only what ERROR adds is measured.
    for i in 0..100 {
        log.info("request handled", &fields(i));
    }
    piko_obs::logger::hub()
        .flush(Duration::from_secs(5))
        .unwrap();
    let before = resident_kib();
    log.error("request failed", &fields(500));
    piko_obs::logger::hub()
        .flush(Duration::from_secs(5))
        .unwrap();
    let after = resident_kib();
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().last().unwrap();
    assert!(line.contains("request failed"), "{line}");
    assert!(!line.contains("stack_trace"), "no trace by default: {line}");
    println!("{MARKER}{}", after.saturating_sub(before));
    guard.shutdown().unwrap();
}
