//! The guide's first program (`examples/guide_first_program.rs`) as a user runs it:
//! each line once, at its level, in the run mode's format; `LOG_LEVEL` governs the
//! program's lines and `PIKO_LOG_LEVEL` piko-obs's own.

use std::path::PathBuf;
use std::process::Command;

/// Cargo builds the package's examples before its integration tests, next to `deps/`.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join("guide_first_program")
}

/// Runs the program with `args` and `env` (and no level variables but those), returns
/// its standard output.
fn run(args: &[&str], env: &[(&str, &str)]) -> String {
    let dead_letters = std::env::temp_dir().join(format!(
        "piko-obs-guide-first-program-{}.jsonl",
        std::process::id()
    ));
    let out = Command::new(example())
        .args(args)
        .env_remove("LOG_LEVEL")
        .env_remove("PIKO_LOG_LEVEL")
        .env_remove("PIKO_DISABLE_CONSOLE_LOG")
        .env("NO_COLOR", "1")
        .env("PIKO_NOTIFICATION_DEAD_LETTER_PATH", &dead_letters)
        .envs(env.iter().copied())
        .output()
        .expect("the guide_first_program example was built");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The JSON lines of a prod run; fails on a line that is not JSON.
fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{out}")))
        .collect()
}

fn with_msg<'a>(lines: &'a [serde_json::Value], msg: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["msg"] == msg).collect()
}

#[test]
fn prod_prints_each_line_once_as_json() {
    let out = run(&["prod"], &[]);
    let lines = json_lines(&out);
    let started = with_msg(&lines, "Server started");
    assert_eq!(started.len(), 1, "{out}");
    assert_eq!(started[0]["level"], "INFO");
    assert_eq!(started[0]["logger"], "myapp");
    assert_eq!(started[0]["mode"], "prod");
    // piko-obs's own line about the output, once, naming the level in force.
    let added = with_msg(&lines, "Added JSON console output");
    assert_eq!(added.len(), 1, "{out}");
    assert_eq!(added[0]["logger"], "piko-obs/logger");
    assert_eq!(added[0]["filter"], "INFO,piko-obs=INFO");
    // No line twice (the console output of init() and the program's are not both on).
    let mut texts: Vec<&str> = out.lines().collect();
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(texts.len(), out.lines().count(), "{out}");
}

#[test]
fn dev_prints_each_line_once_in_pretty_form() {
    for args in [&["dev"][..], &[]] {
        let out = run(args, &[]);
        assert!(
            out.lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
            "{out}"
        );
        let started: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("Server started"))
            .collect();
        assert_eq!(started.len(), 1, "{out}");
        let cells: Vec<&str> = started[0].split(" | ").map(str::trim).collect();
        assert_eq!(cells[1], "INFO", "{}", started[0]);
        assert!(cells.contains(&"myapp"), "{}", started[0]);
        assert!(cells.contains(&"mode=dev"), "{}", started[0]);
        assert_eq!(
            out.lines()
                .filter(|l| l.contains("Added pretty console output"))
                .count(),
            1,
            "{out}"
        );
    }
}

#[test]
fn log_level_governs_the_programs_lines() {
    let out = run(&["prod"], &[("LOG_LEVEL", "error")]);
    let lines = json_lines(&out);
    assert!(with_msg(&lines, "Server started").is_empty(), "{out}");
    // piko-obs's own lines keep the framework level (INFO).
    assert_eq!(
        with_msg(&lines, "Added JSON console output").len(),
        1,
        "{out}"
    );
    let out = run(&["prod"], &[("LOG_LEVEL", "notice")]);
    assert!(
        with_msg(&json_lines(&out), "Server started").is_empty(),
        "{out}"
    );
}

#[test]
fn piko_log_level_governs_piko_obs_lines() {
    let out = run(&["prod"], &[("PIKO_LOG_LEVEL", "warn")]);
    let lines = json_lines(&out);
    assert!(
        with_msg(&lines, "Added JSON console output").is_empty(),
        "{out}"
    );
    // The program's lines keep LOG_LEVEL's (here the default, INFO).
    assert_eq!(with_msg(&lines, "Server started").len(), 1, "{out}");
    // Directives that name piko-obs's loggers in LOG_LEVEL win for that output.
    let out = run(
        &["prod"],
        &[
            ("PIKO_LOG_LEVEL", "warn"),
            ("LOG_LEVEL", "info,piko-obs=info"),
        ],
    );
    assert_eq!(
        with_msg(&json_lines(&out), "Added JSON console output").len(),
        1,
        "{out}"
    );
}
