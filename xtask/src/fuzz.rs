//! `cargo xtask fuzz [--minutes N] [--cases C]`: the fuzz targets (`tests/tests/fuzz_*.rs`,
//! property tests on proptest) in rounds until N minutes are spent (default 60).
//!
//! Each round runs every target's release test binary once, with `PIKO_FUZZ_CASES=C`
//! (default 100,000 cases per property) and a new random seed, one after the other, so a
//! long run explores new input in every round instead of repeating one seed. A round is
//! not started past the deadline, so the run overshoots it by at most one target's run.
//! Each run is bounded (30 minutes; a run past that is killed and counted as a failure).
//!
//! The logs of every run are kept in `target/fuzz/`; the totals (runs, cases and time per
//! property) are printed and saved to `target/fuzz/report.md`. A failing run stops the
//! command with an error and keeps its log, which holds proptest's shrunk input: fix the
//! bug and keep that input as a `regression_*` test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::report::{machine, today};
use crate::support::{Result, cargo, root, wait_bounded};

/// The fuzz targets, in the order each round runs them.
const TARGETS: [&str; 4] = [
    "fuzz_parsers",
    "fuzz_formatters",
    "fuzz_headers",
    "fuzz_dead_letters",
];
/// The longest one target's run may take.
const RUN_BOUND: Duration = Duration::from_secs(30 * 60);

/// Runs and totals of one property.
#[derive(Default)]
struct Totals {
    runs: u64,
    cases: u64,
    secs: f64,
}

pub(crate) fn run(args: &[String]) -> Result {
    let (minutes, cases) = parse_args(args)?;
    let executables = build()?;
    let dir = root().join("target/fuzz");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let started = SystemTime::now();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(minutes * 60.0);
    let mut totals: BTreeMap<(&str, String), Totals> = BTreeMap::new();
    let mut rounds = 0u64;
    let mut failure = None;
    'rounds: while Instant::now() < deadline {
        rounds += 1;
        for (target, exe) in &executables {
            if Instant::now() >= deadline {
                break 'rounds;
            }
            let log = dir.join(format!("round{rounds:03}-{target}.log"));
            match run_target(exe, cases, &log) {
                Ok(text) => {
                    for (property, n, secs) in parse_lines(&text) {
                        let t = totals.entry((target, property)).or_default();
                        t.runs += 1;
                        t.cases += n;
                        t.secs += secs;
                    }
                }
                Err(e) => {
                    failure = Some(format!(
                        "round {rounds}, {target}: {e} (log: {})",
                        log.display()
                    ));
                    break 'rounds;
                }
            }
        }
        eprintln!(
            "fuzz: round {rounds} done after {:.1} min",
            start.elapsed().as_secs_f64() / 60.0
        );
    }
    let report = render(
        &totals,
        rounds,
        cases,
        start.elapsed(),
        started,
        failure.as_deref(),
    );
    println!("{report}");
    let saved = dir.join("report.md");
    if std::fs::write(&saved, &report).is_ok() {
        eprintln!("fuzz: report saved to {}", saved.display());
    }
    match failure {
        Some(f) => Err(format!("fuzz: a property failed: {f}")),
        None => Ok(()),
    }
}

fn parse_args(args: &[String]) -> Result<(f64, u32)> {
    let usage = "usage: cargo xtask fuzz [--minutes N] [--cases C]  (N > 0, fractions allowed, default 60; C cases per property and round, default 100000)";
    let mut minutes = 60.0;
    let mut cases = 100_000u32;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, v.to_string()),
            None => (
                flag.as_str(),
                it.next().cloned().ok_or_else(|| usage.to_string())?,
            ),
        };
        match name {
            "--minutes" => {
                minutes = value
                    .parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && *m > 0.0 && *m <= 24.0 * 60.0)
                    .ok_or_else(|| format!("--minutes {value:?}: {usage}"))?;
            }
            "--cases" => {
                cases = value
                    .parse::<u32>()
                    .ok()
                    .filter(|c| *c > 0)
                    .ok_or_else(|| format!("--cases {value:?}: {usage}"))?;
            }
            _ => return Err(usage.into()),
        }
    }
    Ok((minutes, cases))
}

/// Builds the targets' release test binaries; their paths by target name.
fn build() -> Result<Vec<(&'static str, PathBuf)>> {
    let mut cmd = cargo();
    cmd.args(["test", "--release", "--locked", "-p", "piko-obs-tests"]);
    for t in TARGETS {
        cmd.args(["--test", t]);
    }
    cmd.args(["--no-run", "--message-format=json"]);
    cmd.stderr(Stdio::inherit());
    eprintln!("xtask: $ {cmd:?}");
    let out = cmd.output().map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the fuzz targets failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = Vec::new();
    for target in TARGETS {
        let exe = text
            .lines()
            .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
            .filter(|l| json_str(l, "name") == Some(target))
            .find_map(|l| json_str(l, "executable"))
            .ok_or_else(|| format!("cargo did not report the executable of {target}"))?;
        found.push((target, PathBuf::from(exe)));
    }
    Ok(found)
}

/// The first string value of `key` in one line of cargo's JSON (paths and names here
/// hold no escapes).
fn json_str<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// Runs one target binary with its output in `log`; the log's text, or why it failed.
fn run_target(exe: &PathBuf, cases: u32, log: &PathBuf) -> Result<String> {
    let file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--nocapture", "--test-threads", "1"])
        .env("PIKO_FUZZ_CASES", cases.to_string())
        .current_dir(root().join("tests"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let status = wait_bounded(&mut child, RUN_BOUND)?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if status.success() {
        Ok(text)
    } else {
        Err(format!("exited with {status}"))
    }
}

/// The `fuzz <property>: N cases in T s` reports of the harness (`tests/src/fuzz.rs`),
/// which stderr may put at the end of the test runner's `test <name> ... ` line.
fn parse_lines(text: &str) -> Vec<(String, u64, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = &l[l.find("fuzz ")? + "fuzz ".len()..];
            let (name, rest) = rest.split_once(": ")?;
            let (n, rest) = rest.split_once(" cases in ")?;
            let secs = rest.strip_suffix(" s")?.parse().ok()?;
            Some((name.to_string(), n.parse().ok()?, secs))
        })
        .collect()
}

fn render(
    totals: &BTreeMap<(&str, String), Totals>,
    rounds: u64,
    cases: u32,
    wall: Duration,
    started: SystemTime,
    failure: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Fuzz run\n\nStarted {} (UTC, seconds since the epoch: {}), {:.1} minutes of wall time, {rounds} round(s) of {cases} cases per property, on {}.\n",
        today(),
        started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        wall.as_secs_f64() / 60.0,
        machine(),
    );
    let _ = writeln!(
        s,
        "| target | property | runs | cases | time |\n|---|---|---:|---:|---:|"
    );
    let mut all_cases = 0u64;
    let mut all_secs = 0.0;
    for ((target, property), t) in totals {
        all_cases += t.cases;
        all_secs += t.secs;
        let _ = writeln!(
            s,
            "| `{target}` | `{property}` | {} | {} | {:.0} s |",
            t.runs,
            group(t.cases),
            t.secs
        );
    }
    let _ = writeln!(
        s,
        "| all | {} properties | | {} | {:.0} s |",
        totals.len(),
        group(all_cases),
        all_secs
    );
    match failure {
        Some(f) => {
            let _ = writeln!(s, "\n**Failed**: {f}");
        }
        None => {
            let _ = writeln!(s, "\nNo property failed.");
        }
    }
    s
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_lines_are_read() {
        let text = "running 3 tests\ntest fuzz_json ... fuzz json_line_round_trips: 1000 cases in 0.52 s\ntest a ... ok\nfuzz x: 7 cases in 1 s\nfuzz broken: many cases in 1 s\n";
        let got = parse_lines(text);
        assert_eq!(
            got,
            vec![
                ("json_line_round_trips".to_string(), 1000, 0.52),
                ("x".to_string(), 7, 1.0)
            ]
        );
    }

    #[test]
    fn arguments_are_checked() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_args(&[]).unwrap(), (60.0, 100_000));
        assert_eq!(
            parse_args(&args(&["--minutes", "90", "--cases=5000"])).unwrap(),
            (90.0, 5000)
        );
        assert!(parse_args(&args(&["--minutes", "0"])).is_err());
        assert!(parse_args(&args(&["--cases", "-1"])).is_err());
        assert!(parse_args(&args(&["--what", "1"])).is_err());
        assert!(parse_args(&args(&["--minutes"])).is_err());
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(12_345_678), "12,345,678");
    }
}
