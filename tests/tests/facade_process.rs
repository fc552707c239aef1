//! The facade in a fresh process per scenario (`log_probe`), so environment variables
//! and the process-wide hub are real and not shared between cases.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use piko_obs_testkit::parse_json_lines;

fn probe(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_log_probe"));
    cmd.args(args)
        .env_remove("PIKO_LOG_LEVEL")
        .env_remove("LOG_LEVEL")
        .env_remove("PIKO_DISABLE_CONSOLE_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("log_probe runs")
}

/// `(logger, level)` of every line the probe printed.
fn seen(out: &Output) -> BTreeSet<(String, String)> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_json_lines(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .map(|l| {
            (
                l["logger"].as_str().unwrap().to_string(),
                l["level"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn levels_of(set: &BTreeSet<(String, String)>, logger: &str) -> Vec<String> {
    let order = [
        "TRACE", "INTERNAL", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR",
    ];
    order
        .iter()
        .filter(|l| set.contains(&(logger.to_string(), l.to_string())))
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn framework_level_code_wins_over_piko_log_level_which_wins_over_info() {
    let default = seen(&probe(&["framework"], &[]));
    assert_eq!(
        levels_of(&default, "app"),
        ["INFO", "NOTICE", "WARN", "ERROR"]
    );

    let env = seen(&probe(&["framework"], &[("PIKO_LOG_LEVEL", "-6")]));
    assert_eq!(
        levels_of(&env, "app"),
        ["INTERNAL", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR"]
    );

    let code = seen(&probe(
        &["framework", "warn"],
        &[("PIKO_LOG_LEVEL", "trace")],
    ));
    assert_eq!(levels_of(&code, "app"), ["WARN", "ERROR"]);

    let directives = seen(&probe(&["framework", "warn,app/db=debug"], &[]));
    assert_eq!(levels_of(&directives, "app"), ["WARN", "ERROR"]);
    assert_eq!(
        levels_of(&directives, "app/db"),
        ["DEBUG", "INFO", "NOTICE", "WARN", "ERROR"]
    );
}

#[test]
fn output_level_code_wins_over_log_level_which_wins_over_info() {
    let default = seen(&probe(&["output"], &[]));
    assert_eq!(
        levels_of(&default, "app"),
        ["INFO", "NOTICE", "WARN", "ERROR"]
    );
    let env = seen(&probe(&["output"], &[("LOG_LEVEL", "Debug")]));
    assert_eq!(
        levels_of(&env, "app"),
        ["DEBUG", "INFO", "NOTICE", "WARN", "ERROR"]
    );
    let code = seen(&probe(&["output", "error"], &[("LOG_LEVEL", "trace")]));
    assert_eq!(levels_of(&code, "app"), ["ERROR"]);
    // PIKO_LOG_LEVEL is the framework level: it does not change an added output.
    let other = seen(&probe(&["output"], &[("PIKO_LOG_LEVEL", "trace")]));
    assert_eq!(
        levels_of(&other, "app"),
        ["INFO", "NOTICE", "WARN", "ERROR"]
    );
}

#[test]
fn bad_level_text_fails_with_the_setting_value_and_accepted_values() {
    for (args, env, origin) in [
        (
            vec!["framework"],
            vec![("PIKO_LOG_LEVEL", "loud")],
            "environment variable PIKO_LOG_LEVEL",
        ),
        (
            vec!["framework", "verbose"],
            vec![],
            "option with_log_level",
        ),
        (
            vec!["output"],
            vec![("LOG_LEVEL", "info,db=chatty")],
            "environment variable LOG_LEVEL",
        ),
        (vec!["output", "info,=debug"], vec![], "option with_level"),
    ] {
        let out = probe(&args, &env);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(origin), "{err}");
        assert!(
            err.contains("trace, internal, debug") || err.contains("logger name"),
            "{err}"
        );
    }
}

#[test]
fn unwritable_file_path_is_a_clear_error() {
    let out = probe(&["badfile", "/proc/no-such-dir/app.log"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open log file \"/proc/no-such-dir/app.log\""),
        "{err}"
    );
    assert!(err.contains("directory exists and is writable"), "{err}");
}

#[test]
fn dropping_the_guard_loses_no_queued_line() {
    let out = probe(&["flood", "50000"], &[]);
    assert!(out.status.success());
    let lines = parse_json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines.len(), 50_000);
    let distinct: BTreeSet<u64> = lines.iter().map(|l| l["i"].as_u64().unwrap()).collect();
    assert_eq!(distinct.len(), 50_000);
}

#[test]
fn log_crate_records_land_in_the_outputs_at_their_levels() {
    let out = probe(&["bridge"], &[]);
    assert!(out.status.success());
    let lines = parse_json_lines(&String::from_utf8_lossy(&out.stdout));
    let got: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["logger"].as_str().unwrap().to_string(),
                l["level"].as_str().unwrap().to_string(),
                l["msg"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "hyper::proto".into(),
                "INFO".into(),
                "connection 7 accepted".into()
            ),
            ("chatty".into(), "ERROR".into(), "shown at error".into()),
        ]
    );
    assert_eq!(lines[0]["source"]["module"], "log_probe");
    // Key-values are typed fields.
    assert_eq!(lines[0]["peer"], "127.0.0.1");
    assert_eq!(lines[0]["port"], 8080);
    assert_eq!(lines[0]["tls"], true);
    assert_eq!(lines[0]["ratio"], 0.5);
    assert_eq!(lines[1]["error"]["message"], "peer reset");
}

#[test]
fn no_logger_thread_is_left_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let out = probe(&["threads", dir.path().to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let threads: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("thread "))
        .collect();
    assert!(!threads.is_empty());
    assert!(
        !threads.iter().any(|t| t.starts_with("piko-log")),
        "{threads:?}"
    );
    let file = std::fs::read_to_string(dir.path().join("app.log")).unwrap();
    assert!(file.contains("before shutdown"));
}

#[test]
fn tracing_events_land_in_the_outputs_with_their_fields() {
    let out = probe(&["tracing"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = parse_json_lines(&String::from_utf8_lossy(&out.stdout));
    let msgs: Vec<&str> = lines.iter().map(|l| l["msg"].as_str().unwrap()).collect();
    assert_eq!(
        msgs,
        [
            "finished processing request",
            "acquire failed",
            "inside a span"
        ]
    );
    assert_eq!(lines[0]["logger"], "tower_http::trace");
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["latency_ms"], 1.5);
    assert_eq!(lines[0]["path"], "/orders");
    assert_eq!(lines[0]["source"]["module"], "log_probe");
    assert_eq!(lines[1]["level"], "ERROR");
    assert_eq!(lines[1]["error"]["message"], "pool closed");
    assert_eq!(lines[2]["retry"], true);
}

#[test]
fn one_output_on_stdout_so_no_line_is_printed_twice() {
    // A stdout output added before init(): init() adds no console output.
    let out = probe(&["stdout-first"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let once = parse_json_lines(&text)
        .iter()
        .filter(|l| l["msg"] == "once")
        .count();
    assert_eq!(once, 1, "{text}");
    // A second stdout output is refused, naming the first; lines still print once.
    let out = probe(&["stdout-twice"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("standard output already has the output \"json-stdout\""),
        "{err}"
    );
    let once = parse_json_lines(&text)
        .iter()
        .filter(|l| l["msg"] == "once")
        .count();
    assert_eq!(once, 1, "{text}");
}

#[test]
fn init_keeps_the_programs_tracing_subscriber_and_says_what_it_did() {
    // The program's registry has piko-obs's layer: its events reach the outputs.
    let out = probe(&["tracing-app-layer"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = parse_json_lines(&String::from_utf8_lossy(&out.stdout));
    let event = lines
        .iter()
        .find(|l| l["msg"] == "through the program's subscriber")
        .expect("the event reached the console output");
    assert_eq!(event["order_id"], 7);
    assert!(
        lines
            .iter()
            .any(|l| l["msg"] == "the application's tracing subscriber has piko-obs's layer"),
        "{lines:?}"
    );
    // Its own subscriber without the layer: init() still succeeds, says so at NOTICE,
    // and the event goes only where the program sent it.
    let out = probe(&["tracing-app-own"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = parse_json_lines(&String::from_utf8_lossy(&out.stdout));
    let said = lines
        .iter()
        .find(|l| l["logger"] == "piko-obs/logger" && l["level"] == "NOTICE")
        .expect("a NOTICE line about the subscriber");
    assert!(
        said["msg"]
            .as_str()
            .unwrap()
            .contains("add piko_obs::logger::tracing_layer()"),
        "{said}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l["msg"] == "through the program's subscriber")
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("through the program's subscriber"));
}
