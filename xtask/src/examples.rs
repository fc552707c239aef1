//! The integration checks of the facade's examples other than `monitor`: each example is
//! run for a few seconds and checked against what its documentation promises. Loopback
//! only; every wait is bounded, and a process left running by a failing check is killed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::monitor::NamedCheck;
use crate::support::{Reaper, Result, http_get, jq, root, signal, wait_bounded};

/// The checks, by name, in the order `cargo xtask integration` runs them.
pub(crate) fn checks() -> Vec<NamedCheck> {
    vec![
        (
            "custom_probe: /ready goes HEALTHY, DEGRADED, UNHEALTHY, HEALTHY; SIGTERM exits 0",
            custom_probe as fn() -> Result,
        ),
        (
            "custom_provider: the notification and one grouped ERROR alert in its JSON-lines file",
            custom_provider,
        ),
        (
            "health_only: /live, /ready, /startup HEALTHY without the facade; SIGTERM exits 0",
            health_only,
        ),
        (
            "run_in_span: nested spans to an OTLP receiver, log lines carrying their trace id",
            run_in_span,
        ),
    ]
}

/// The built example `name` (`cargo build -p piko-obs --example NAME`), as a command with
/// stdout piped and stderr inherited.
fn example(name: &str) -> Command {
    let mut cmd = Command::new(root().join("target/debug/examples").join(name));
    cmd.env_remove("PIKO_LOG_LEVEL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Starts `cmd` and reads its stdout on a thread of its own, line by line, so that reads
/// can be bounded in time and a full pipe never blocks the process.
fn spawn(mut cmd: Command) -> Result<(Reaper, mpsc::Receiver<String>)> {
    let shown = format!("{:?}", cmd.get_program());
    let mut child: Child = cmd.spawn().map_err(|e| format!("{shown}: {e}"))?;
    let out = child.stdout.take().ok_or("stdout")?;
    let process = Reaper(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((process, rx))
}

/// The first line holding `needle`, waiting at most `limit`; the lines before it are
/// skipped.
fn line_with(lines: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no line with {needle:?} within {limit:?}"));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("the output ended without a line with {needle:?}"));
            }
        }
    }
}

/// Every line until the output ends, waiting at most `limit`.
fn rest(lines: &mpsc::Receiver<String>, limit: Duration) -> Result<Vec<String>> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => out.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(out),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("the output did not end within {limit:?}"));
            }
        }
    }
}

/// The text of the first `"key":"..."` in a JSON text (the top-level one for the keys
/// that come first, as `state` in a health answer).
fn first_string(json: &str, key: &str) -> Option<String> {
    json.split(&format!("\"{key}\":\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(str::to_string)
}

/// A fresh, empty temporary directory for one check.
fn temp_dir(what: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("piko-obs-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{dir:?}: {e}"))?;
    Ok(dir)
}

/// `custom_probe prod`: the probe address from its JSON log; `/ready` answers 200
/// HEALTHY, 200 DEGRADED (orders DEGRADED, the non-critical retries UNHEALTHY), 503
/// UNHEALTHY while `/live` stays 200, then 200 HEALTHY, in that order; it logs the four
/// steps; SIGTERM ends it with 0 within 10 s.
fn custom_probe() -> Result {
    let mut cmd = example("custom_probe");
    cmd.arg("prod")
        .env("HEALTH_PORT", "0")
        // Each state lasts 600 ms; answers are cached for 250 ms (the facade's default),
        // so each state is answered fresh for 350 ms or more: room for a slow machine.
        .env("STEP_MS", "600")
        .env("SHUTDOWN_DRAIN_DELAY_MS", "0");
    let (mut process, lines) = spawn(cmd)?;
    let listening = line_with(
        &lines,
        "\"msg\":\"Health probes listening\"",
        Duration::from_secs(10),
    )?;
    let addr = first_string(&listening, "addr")
        .ok_or_else(|| format!("no addr in the line: {listening}"))?;
    const ORDER: [&str; 4] = ["HEALTHY", "DEGRADED", "UNHEALTHY", "HEALTHY"];
    // The states seen, each once per run of equal answers. The first HEALTHY may be
    // over before the first request; the other three must all be seen, in order.
    let mut seen: Vec<&'static str> = Vec::new();
    let mut degraded = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(seen.len() >= 3 && ORDER.ends_with(&seen)) {
        if Instant::now() >= deadline {
            return Err(format!(
                "/ready went {seen:?} within 10 s, expected {ORDER:?}"
            ));
        }
        let (code, body) = http_get(&addr, "/ready")?;
        let state = match first_string(&body, "state").as_deref() {
            Some("HEALTHY") => "HEALTHY",
            Some("DEGRADED") => "DEGRADED",
            Some("UNHEALTHY") => "UNHEALTHY",
            _ => return Err(format!("/ready answered {code} without a state: {body}")),
        };
        let expected_code = if state == "UNHEALTHY" { 503 } else { 200 };
        if code != expected_code {
            return Err(format!("/ready answered {code} for {state}: {body}"));
        }
        if seen.last() != Some(&state) {
            seen.push(state);
            if !(ORDER.starts_with(&seen) || ORDER[1..].starts_with(&seen)) {
                return Err(format!("/ready went {seen:?}, expected {ORDER:?}"));
            }
            match state {
                "DEGRADED" => degraded = body,
                "UNHEALTHY" => {
                    let (live, live_body) = http_get(&addr, "/live")?;
                    if live != 200
                        || first_string(&live_body, "state").as_deref() != Some("HEALTHY")
                    {
                        return Err(format!(
                            "/live answered {live} while only readiness probes failed: {live_body}"
                        ));
                    }
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    jq(
        r#".[0].state == "DEGRADED"
          and (.[0].dependencies | map({(.name): .state}) | add) == {"orders": "DEGRADED", "retries": "UNHEALTHY"}"#,
        degraded.as_bytes(),
    )
    .map_err(|e| format!("the DEGRADED answer: {e}"))?;
    // The steps logged since the address line, up to `Queue steps done`.
    let mut steps = Vec::new();
    loop {
        let line = line_with(&lines, "\"msg\":\"Queue step", Duration::from_secs(5))?;
        if line.contains("\"msg\":\"Queue steps done\"") {
            break;
        }
        steps.push(first_string(&line, "step").unwrap_or_default());
    }
    if steps != ["healthy", "degraded", "unhealthy", "healthy again"] {
        return Err(format!("custom_probe logged the steps {steps:?}"));
    }
    signal(process.0.id(), "TERM")?;
    let status = wait_bounded(&mut process.0, Duration::from_secs(10))?;
    if !status.success() {
        return Err(format!("custom_probe exited with {status}"));
    }
    let stopping = line_with(&lines, "\"msg\":\"Stopping\"", Duration::from_secs(5))?;
    if stopping.contains("\"signal\":\"SIGTERM\"") {
        Ok(())
    } else {
        Err(format!(
            "the Stopping line does not name SIGTERM: {stopping}"
        ))
    }
}

/// `custom_provider`: exits 0 within 15 s, and its `ALERTS_FILE` holds the builder's
/// notification and one grouped alert `ERROR: Application Error` with `occurrences` 1.
fn custom_provider() -> Result {
    let dir = temp_dir("custom-provider")?;
    let result = (|| {
        let alerts = dir.join("alerts.jsonl");
        let mut cmd = example("custom_provider");
        cmd.env("ALERTS_FILE", &alerts)
            .env("PIKO_NOTIFICATION_DEAD_LETTER_PATH", dir.join("dead.jsonl"));
        let (mut process, lines) = spawn(cmd)?;
        let status = wait_bounded(&mut process.0, Duration::from_secs(15))?;
        let printed = rest(&lines, Duration::from_secs(5))?;
        if !status.success() {
            return Err(format!(
                "custom_provider exited with {status}; it printed:\n{}",
                printed.join("\n")
            ));
        }
        let text = std::fs::read_to_string(&alerts).map_err(|e| format!("{alerts:?}: {e}"))?;
        jq(
            r#"length == 2
              and (map(select(.title == "Deploy finished"))
                   | length == 1 and .[0].message == "custom_provider 1.0.0 is live"
                     and .[0].fields.version == "1.0.0" and .[0].context.priority == "low"
                     and .[0].context.service == "custom_provider")
              and (map(select(.title == "ERROR: Application Error"))
                   | length == 1 and .[0].message == "Payment gateway unreachable"
                     and .[0].fields.occurrences == "1" and .[0].fields.logger == "custom_provider"
                     and .[0].context.priority == "critical")"#,
            text.as_bytes(),
        )
        .map_err(|e| format!("{alerts:?}: {e}"))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// `health_only`: prints `addr=ADDR`; `/live`, `/ready` and `/startup` answer 200 with
/// the state HEALTHY; SIGTERM ends it with 0 within 10 s.
fn health_only() -> Result {
    let mut cmd = example("health_only");
    cmd.env("HEALTH_PORT", "0")
        .env("SHUTDOWN_DRAIN_DELAY_MS", "0");
    let (mut process, lines) = spawn(cmd)?;
    let first = line_with(&lines, "addr=", Duration::from_secs(10))?;
    let addr = first
        .strip_prefix("addr=")
        .ok_or_else(|| format!("expected addr=ADDR first, got {first:?}"))?
        .trim()
        .to_string();
    for path in ["/live", "/ready", "/startup"] {
        let (code, body) = http_get(&addr, path)?;
        if code != 200 {
            return Err(format!("{path} answered {code}: {body}"));
        }
        jq(
            r#".[0].state == "HEALTHY" and .[0].name == "health_only"
              and (.[0].dependencies | map(.name)) == ["process"]"#,
            body.as_bytes(),
        )
        .map_err(|e| format!("{path}: {e}"))?;
    }
    signal(process.0.id(), "TERM")?;
    let status = wait_bounded(&mut process.0, Duration::from_secs(10))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("health_only exited with {status}"))
    }
}

/// `run_in_span` exporting to the tests' OTLP receiver: exits 0 within 15 s; the receiver
/// got the spans `checkout` and `charge card` with one trace id, and `refund`; the lines
/// the example printed inside those two spans carry that trace id (and the span ids
/// differ between them), the exported log records too.
fn run_in_span() -> Result {
    let exe = root().join("target/debug/otlp_receiver");
    let mut receiver_cmd = Command::new(&exe);
    receiver_cmd
        .env_remove("GRPC_ADDR")
        .env_remove("HTTP_ADDR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let (mut receiver, receiver_lines) = spawn(receiver_cmd)?;
    // The receiver runs until its stdin closes.
    let stdin = receiver.0.stdin.take().ok_or("the receiver's stdin")?;
    let grpc = line_with(&receiver_lines, "grpc=", Duration::from_secs(10))?
        .trim()
        .trim_start_matches("grpc=")
        .to_string();

    let mut cmd = example("run_in_span");
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &grpc);
    // The receiver's gRPC port: the default protocol is http/protobuf.
    cmd.env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    let (mut process, lines) = spawn(cmd)?;
    let status = wait_bounded(&mut process.0, Duration::from_secs(15))?;
    let printed = rest(&lines, Duration::from_secs(5))?;
    if !status.success() {
        return Err(format!("run_in_span exited with {status}"));
    }
    drop(stdin);
    let summary = rest(&receiver_lines, Duration::from_secs(10))?
        .pop()
        .unwrap_or_default();
    let _ = wait_bounded(&mut receiver.0, Duration::from_secs(10))?;
    eprintln!("integration: the OTLP receiver got {summary}");
    let mut input = summary;
    for line in printed.iter().filter(|l| l.starts_with('{')) {
        input.push('\n');
        input.push_str(line);
    }
    jq(
        r#".[0] as $s | .[1:] as $lines
          | [$s.spans[] | select(.name == "checkout") | .trace_id] as $t
          | ($t | length) == 1 and ($t[0] | test("^[0-9a-f]{32}$")) and $t[0] != ("0" * 32)
          and [$s.spans[] | select(.name == "charge card") | .trace_id] == $t
          and ([$s.spans[] | select(.name == "refund")] | length) == 1
          and ($s.services | index("run_in_span") != null)
          and ([$lines[] | select(.msg == ("Checkout started", "Charging card", "Card charged", "Checkout completed"))]
               | length == 4 and all(.trace_id == $t[0]))
          and ([$lines[] | select(.msg == "Checkout started")][0].span_id
               != [$lines[] | select(.msg == "Charging card")][0].span_id)
          and ([$lines[] | select(.msg == "Refund failed")]
               | length == 1 and .[0].level == "WARN"
                 and .[0].error.message == "card issuer declined the refund")
          and ([$s.logs[] | select(.body == ("Checkout started", "Charging card")) | .trace_id] == [$t[0], $t[0]])"#,
        input.as_bytes(),
    )
}
