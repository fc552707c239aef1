//! The `monitor` example as a user runs it: `monitor prod` writes JSON lines, `monitor`
//! (dev) pretty ones; both log `Server started` with the mode and stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use piko_obs_testkit::{Response, http_get};

/// Cargo builds the package's examples before its integration tests, next to `deps/`.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join("monitor")
}

/// The example with `args`, both servers on free ports, no drain delay, no level from
/// the environment, and its dead letters in the temporary folder.
fn monitor(args: &[&str]) -> Command {
    let mut cmd = Command::new(example());
    cmd.args(args)
        .env_remove("PIKO_LOG_LEVEL")
        .env_remove("LOG_LEVEL")
        .env("HEALTH_PORT", "0")
        .env("APP_PORT", "0")
        .env("SHUTDOWN_DRAIN_DELAY_MS", "0")
        .env(
            "PIKO_NOTIFICATION_DEAD_LETTER_PATH",
            std::env::temp_dir().join(format!(
                "piko-obs-monitor-test-{}.jsonl",
                std::process::id()
            )),
        )
        .stdout(Stdio::piped());
    cmd
}

/// Starts the example, waits for its first line, sends SIGTERM, returns all output.
fn run(args: &[&str]) -> (String, String, Option<i32>) {
    run_with(args, &[])
}

/// [`run`] with more environment variables.
fn run_with(args: &[&str], env: &[(&str, &str)]) -> (String, String, Option<i32>) {
    let mut cmd = monitor(args);
    cmd.envs(env.iter().copied());
    run_cmd(cmd)
}

/// Starts `cmd` (the example), waits for its first line, sends SIGTERM, returns all output.
fn run_cmd(mut cmd: Command) -> (String, String, Option<i32>) {
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("the monitor example was built");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "monitor did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (first + &rest, err, code)
}

#[test]
fn prod_writes_json_lines_and_stops_on_sigterm() {
    let (out, err, code) = run(&["prod"]);
    assert_eq!(code, Some(0), "{err}");
    let all: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    // The start-up alert goes to stdout as a JSON line of its own.
    let alerts: Vec<&serde_json::Value> = all
        .iter()
        .filter(|l| l.get("notification").is_some())
        .collect();
    assert_eq!(alerts.len(), 1, "{out}");
    assert_eq!(
        alerts[0]["notification"]["content"]["title"],
        "Service started"
    );
    assert_eq!(alerts[0]["notification"]["context"]["source"], "monitor");
    // init()'s summary of what it started, from piko-obs's own logger.
    let started = all
        .iter()
        .find(|l| l["msg"] == "piko-obs started")
        .expect("init()'s summary");
    assert_eq!(started["level"], "NOTICE");
    assert_eq!(started["mode"], "prod");
    assert_eq!(started["alert_providers"], "stdout");
    let probes = started["probes"].as_str().unwrap();
    assert!(
        probes.starts_with("http://127.0.0.1:") && probes.ends_with(" /live /ready /startup"),
        "{probes}"
    );
    let lines: Vec<&serde_json::Value> = all.iter().filter(|l| l["logger"] == "monitor").collect();
    assert_eq!(lines[0]["msg"], "Health probes listening");
    assert!(lines[0]["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(lines[1]["msg"], "Application listening");
    assert_eq!(lines[2]["msg"], "Server started");
    assert_eq!(lines[2]["mode"], "prod");
    assert_eq!(lines[2]["level"], "NOTICE");
    assert_eq!(lines[2]["logger"], "monitor");
    assert_eq!(lines.last().unwrap()["msg"], "Server stopping");
    assert_eq!(lines.last().unwrap()["signal"], "SIGTERM");
}

#[test]
fn log_level_governs_the_services_lines_and_each_prints_once() {
    let (out, err, code) = run_with(&["prod"], &[("LOG_LEVEL", "error")]);
    assert_eq!(code, Some(0), "{err}");
    let all: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    // The service's INFO and NOTICE lines are below LOG_LEVEL=error ...
    assert!(
        !all.iter().any(|l| l["logger"] == "monitor"),
        "LOG_LEVEL=error let a line of the service through: {out}"
    );
    // ... and piko-obs's own keep PIKO_LOG_LEVEL (unset: INFO).
    assert!(
        all.iter()
            .any(|l| l["logger"] == "piko-obs/logger" && l["msg"] == "Added JSON console output"),
        "{out}"
    );
    // With the service's lines on, none is printed twice.
    let (out, err, code) = run(&["prod"]);
    assert_eq!(code, Some(0), "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    let count = lines.len();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), count, "{out}");
    let (out, _, _) = run_with(&["prod"], &[("PIKO_LOG_LEVEL", "warn")]);
    assert!(!out.contains("Added JSON console output"), "{out}");
    assert!(out.contains("\"msg\":\"Server started\""), "{out}");
}

#[test]
fn without_home_the_service_starts_with_dead_letters_in_memory_and_stderr() {
    let mut cmd = monitor(&["prod"]);
    cmd.env_remove("HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("PIKO_NOTIFICATION_DEAD_LETTER_PATH")
        .current_dir(std::env::temp_dir());
    let (out, err, code) = run_cmd(cmd);
    assert_eq!(code, Some(0), "the service starts: {err}");
    let started: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["msg"] == "piko-obs started")
        .expect("init()'s summary");
    let dead_letters = started["dead_letters"].as_str().unwrap();
    assert!(
        dead_letters.starts_with("memory and stderr (no default file"),
        "{dead_letters}"
    );
}

#[test]
fn dev_is_the_default_and_writes_pretty_lines() {
    let (out, err, code) = run(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("=== NOTIFICATION ===\nPriority: low\nSource: monitor\n"),
        "{out}"
    );
    assert!(out.contains("Title: Service started\n"), "{out}");
    let first = out.lines().find(|l| l.contains("Server started")).unwrap();
    assert!(first.contains(" | NOTICE | "), "{first}");
    assert!(
        first.contains(" | Server started | mode=dev | monitor.rs:"),
        "{first}"
    );
    assert!(!first.contains('\u{1b}'), "NO_COLOR is honoured");
}

#[test]
fn help_lists_the_variables_and_a_bad_mode_is_an_error() {
    let help = Command::new(example()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for var in [
        "PIKO_LOG_LEVEL",
        "LOG_LEVEL",
        "NO_COLOR",
        "PIKO_DISABLE_CONSOLE_LOG",
        "SLACK_WEBHOOK_URL",
        "DISCORD_WEBHOOK_URL",
        "PAGERDUTY_ROUTING_KEY",
        "PAGERDUTY_EVENTS_URL",
        "TEAMS_WEBHOOK_URL",
        "GOOGLE_CHAT_WEBHOOK_URL",
        "NTFY_URL",
        "WEBHOOK_URL",
        "WEBHOOK_SECRET",
        "PIKO_NOTIFICATION_DEAD_LETTER_PATH",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/json",
        "OTEL_PROPAGATORS",
        "b3multi",
        "otlp,console",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        "OTEL_LOGRECORD_ATTRIBUTE_",
        "APP_BIND_ADDRESS",
        "PIKO_HEALTH_BIND_ADDRESS",
        "PIKO_HEALTH_PORT",
    ] {
        assert!(text.contains(var), "{var} missing from --help");
    }
    for var in [
        "UPSTREAM_HEALTH_URL",
        "HEALTH_PORT",
        "APP_PORT",
        "SHUTDOWN_DRAIN_DELAY_MS",
        "SIGUSR1",
    ] {
        assert!(text.contains(var), "{var} missing from --help");
    }
    let bad = Command::new(example()).arg("staging").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown run mode \"staging\""));
    let bad = Command::new(example())
        .env("HEALTH_PORT", "ninety")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("HEALTH_PORT=\"ninety\" is not a valid number")
    );
}

#[test]
fn requests_to_the_application_are_counted_on_metrics() {
    let mut child = monitor(&["prod"]).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // The start-up alert is a stdout line too, written by another writer: skip it.
    let mut addr = || loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "no address line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(a) = v["addr"].as_str() {
            return a.parse::<SocketAddr>().unwrap();
        }
    };
    let probes = addr();
    let app = addr();
    for _ in 0..3 {
        let Response {
            status: code, body, ..
        } = http_get(app, "/").unwrap();
        assert_eq!((code, body.as_str()), (200, "hello from monitor\n"));
    }
    let Response {
        status: code, body, ..
    } = http_get(app, "/fail").unwrap();
    assert_eq!((code, body.as_str()), (500, "checkout failed\n"));
    assert_eq!(http_get(app, "/no/such/page").unwrap().status, 404);
    let Response {
        status: code,
        body: metrics,
        ..
    } = http_get(probes, "/metrics").unwrap();
    assert_eq!(code, 200);
    let count = |route: &str, status: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("http_server_request_duration_seconds_count{")
                    && l.contains(&format!("http_route=\"{route}\""))
                    && l.contains("http_request_method=\"GET\"")
                    && l.contains(&format!("http_response_status_code=\"{status}\""))
            })
            .unwrap_or_else(|| panic!("no {route} {status} in the request histogram:\n{metrics}"))
            .to_string()
    };
    assert!(count("/", "200").ends_with(" 3"), "{metrics}");
    assert!(count("/fail", "500").ends_with(" 1"), "{metrics}");
    // Paths no route matched are not recorded, so raw paths never become series.
    assert!(!metrics.contains("/no/such/page"), "{metrics}");
    // Every promised process metric, with a plausible value.
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = value("process_start_time_seconds");
    assert!(
        start <= now + 1.0 && start > now - 3600.0,
        "started at {start}, now {now}"
    );
    let cpu = value("process_cpu_seconds_total");
    assert!(
        cpu >= 0.0 && cpu <= (now - start + 1.0) * 64.0,
        "{cpu} s of CPU since {start}"
    );
    let rss = value("process_resident_memory_bytes");
    let virt = value("process_virtual_memory_bytes");
    assert!(rss > 1e6 && rss < 1e11, "{rss}");
    assert!(virt >= rss, "virtual {virt} < resident {rss}");
    let open = value("process_open_fds");
    let max = value("process_max_fds");
    assert!(open > 0.0 && open <= max, "{open} open of {max}");
    let threads = value("process_threads");
    assert!((2.0..10_000.0).contains(&threads), "{threads}");
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no HELP:\n{metrics}"
        );
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "monitor did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}
