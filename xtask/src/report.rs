//! What every measured report states: the date, the machine and its load, medians, and
//! the numbers read from a benchmark's one-line JSON.

use std::fmt::Write as _;
use std::process::{Command, Stdio};

/// The date, from `date` (the xtask has no date crate).
pub(crate) fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A short description of this machine, for benchmark reports.
pub(crate) fn machine() -> String {
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

/// The median of `v` (the mean of the middle two when their number is even).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The 1-minute load average, from `/proc/loadavg` (NaN where there is none).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// A number field of a one-line JSON object a benchmark writes (NaN when absent).
pub(crate) fn field(json: &str, name: &str) -> f64 {
    json.split(&format!("\"{name}\":"))
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// The closing lines of a measured section: the load averages (1 min) sampled at `when`,
/// then the date and the machine.
pub(crate) fn measured_under(when: &str, loads: &[f64]) -> String {
    let loads: Vec<String> = loads.iter().map(|l| format!("{l:.2}")).collect();
    format!(
        "Load average (1 min) {when}: {}.\n\nMeasured {} on {}.",
        loads.join(", "),
        today(),
        machine()
    )
}
