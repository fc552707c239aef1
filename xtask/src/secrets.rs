//! The secrets check of `cargo xtask integration`: the example service is given a secret
//! in every setting that takes one (webhook URL and signing key, Sentry DSN, OTLP
//! authorization header, ntfy token, PagerDuty routing key, Alertmanager password and
//! token, an HTTP probe's query token), its deliveries fail against
//! closed ports so that errors are reported, and nothing it prints, answers or writes
//! may contain any of them.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::monitor::monitor_command;
use crate::support::{Reaper, Result, free_port, http_get, signal, wait_bounded};

pub(crate) fn no_secret_in_any_output() -> Result {
    // Ports nothing listens on: every delivery and export fails, and says so.
    let closed = free_port()?;
    let dir = std::env::temp_dir().join(format!("piko-obs-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dead_letters = dir.join("dead-letters.jsonl");
    let secrets = [
        "hookpathSECRETa1b2c3",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "dsnkeySECRETd4e5f6",
        "otlpbearerSECRETg7h8",
        "tk_ntfySECRETi9j0",
        "pdroutingSECRETk1l2m3n4o5p6q7r8",
        "ampassSECRETs9t0u1",
        "amtokenSECRETv2w3x4",
        "probetokenSECRETy5z6",
    ];
    let env = [
        (
            "WEBHOOK_URL",
            format!("http://127.0.0.1:{closed}/hooks/{}", secrets[0]),
        ),
        ("WEBHOOK_SECRET", format!("whsec_{}", secrets[1])),
        (
            "SENTRY_DSN",
            format!("http://{}@127.0.0.1:{closed}/7", secrets[2]),
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{closed}"),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer%20{}", secrets[3]),
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500".to_string()),
        ("NTFY_URL", format!("http://127.0.0.1:{closed}/alerts")),
        ("NTFY_TOKEN", secrets[4].to_string()),
        ("PAGERDUTY_ROUTING_KEY", secrets[5].to_string()),
        (
            "PAGERDUTY_EVENTS_URL",
            format!("http://127.0.0.1:{closed}/v2/enqueue"),
        ),
        (
            "ALERTMANAGER_URL",
            format!(
                "http://127.0.0.1:{closed},http://alerts:{}@127.0.0.1:{closed}/am",
                secrets[6]
            ),
        ),
        ("ALERTMANAGER_TOKEN", secrets[7].to_string()),
        // An HTTP probe whose URL holds a token in its query: its failures are served on
        // /ready, without the query.
        (
            "UPSTREAM_HEALTH_URL",
            format!("http://127.0.0.1:{closed}/health?token={}", secrets[8]),
        ),
        (
            "PIKO_NOTIFICATION_DEAD_LETTER_PATH",
            dead_letters.to_string_lossy().into_owned(),
        ),
    ];
    let (exe, mut cmd) = monitor_command();
    cmd.env("SHUTDOWN_DRAIN_DELAY_MS", "0")
        .env_remove("PIKO_LOG_LEVEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| format!("{exe:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("stdout")?;
    let mut stderr = child.stderr.take().ok_or("stderr")?;
    let mut process = Reaper(child);
    // Every stdout line goes to the channel (for the addresses) and is kept.
    let (tx, rx) = mpsc::channel::<String>();
    let out_reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let err_reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    let mut addrs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while addrs.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .map_err(|_| "the monitor printed no probe and application addresses".to_string())?;
        if line.contains("listening")
            && let Some(a) = line
                .split("\"addr\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
        {
            addrs.push(a.to_string());
        }
    }
    let (probes, app) = (addrs[0].clone(), addrs[1].clone());
    let mut answers = String::new();
    for (addr, path) in [
        (&app, "/"),
        (&app, "/fail"),
        (&probes, "/live"),
        (&probes, "/ready"),
        (&probes, "/startup"),
    ] {
        let (_, body) = http_get(addr, path)?;
        answers.push_str(&body);
    }
    // The HTTP probe's failure is served (so its URL was there to leak).
    if !answers.contains("\"name\":\"upstream-http\"") {
        return Err(format!("/ready does not name the HTTP probe: {answers}"));
    }
    // Let the deliveries and exports fail (and retry) for a while, then read /metrics.
    std::thread::sleep(Duration::from_secs(3));
    let (_, metrics) = http_get(&probes, "/metrics")?;
    answers.push_str(&metrics);
    signal(process.0.id(), "TERM")?;
    let status = wait_bounded(&mut process.0, Duration::from_secs(20))?;
    let printed = out_reader.join().unwrap_or_default();
    let errors = err_reader.join().unwrap_or_default();
    let dead = std::fs::read_to_string(&dead_letters).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    // With every peer down the shutdown reports steps it could not finish (and exits 1):
    // that report is one more output to search.
    if !status.success() && !errors.contains("shutdown:") {
        return Err(format!("monitor exited with {status}: {errors}"));
    }
    // The run did report failures, so error paths were exercised.
    if dead.is_empty() && !printed.contains("not delivered") {
        return Err("no delivery failed: the check did not exercise the error paths".into());
    }
    for (what, text) in [
        ("stdout", &printed),
        ("stderr", &errors),
        ("HTTP answers and /metrics", &answers),
        ("the dead-letter file", &dead),
    ] {
        for s in secrets {
            if text.contains(s) {
                let at = text.find(s).unwrap_or(0);
                let around: String = text[at.saturating_sub(120)..].chars().take(240).collect();
                return Err(format!("a secret appears in {what}: ...{around}..."));
            }
        }
    }
    eprintln!(
        "integration: no secret in {} stdout lines, {} stderr bytes, {} bytes of answers, {} dead letters",
        printed.lines().count(),
        errors.len(),
        answers.len(),
        dead.lines().count()
    );
    Ok(())
}

/// The monitor given a malformed `OTEL_EXPORTER_OTLP_HEADERS` entry (a colon where `=`
/// belongs, so the credential would become the header's name): `init()` fails naming the
/// variable and the entry's position, and nothing printed holds the credential.
pub(crate) fn no_secret_in_a_malformed_header_error() -> Result {
    let closed = free_port()?;
    let secret = "dXNlcjpwYXNzSECRETq1w2";
    let (status, printed) = refused_at_start(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{closed}"),
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("x-team=core,Authorization: Basic {secret}=="),
        ),
    ])?;
    if status.success() || !printed.contains("OTEL_EXPORTER_OTLP_HEADERS") {
        return Err(format!(
            "the malformed header was not refused by name ({status}): {printed}"
        ));
    }
    if !printed.contains("entry 2") {
        return Err(format!(
            "the error does not name the entry's position: {printed}"
        ));
    }
    if printed.contains(secret) || printed.contains("Basic") {
        return Err(format!("the malformed header's text is printed: {printed}"));
    }
    eprintln!("integration: the malformed header is refused by position, its text not printed");
    Ok(())
}

/// An HTTP probe's URL with a password: refused at start, naming the setting, never the
/// password.
pub(crate) fn no_secret_in_a_refused_probe_url() -> Result {
    let closed = free_port()?;
    let secret = "probepassSECRETz7y8";
    let (status, printed) = refused_at_start(&[(
        "UPSTREAM_HEALTH_URL",
        format!("http://probe:{secret}@127.0.0.1:{closed}/health"),
    )])?;
    if status.success() || !printed.contains("UPSTREAM_HEALTH_URL") {
        return Err(format!(
            "the probe URL with a password was not refused by name ({status}): {printed}"
        ));
    }
    if printed.contains(secret) {
        return Err(format!("the probe URL's password is printed: {printed}"));
    }
    eprintln!("integration: the probe URL with a password is refused, the password not printed");
    Ok(())
}

/// Runs the monitor with `env` until it exits (it must refuse to start, within 20 s):
/// its status and all it printed, stdout and stderr, read while it runs.
fn refused_at_start(env: &[(&str, String)]) -> Result<(std::process::ExitStatus, String)> {
    let (exe, mut cmd) = monitor_command();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| format!("{exe:?}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("stdout")?;
    let mut stderr = child.stderr.take().ok_or("stderr")?;
    let mut process = Reaper(child);
    let out_reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stdout.read_to_string(&mut all);
        all
    });
    let err_reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    let status = wait_bounded(&mut process.0, Duration::from_secs(20))?;
    let printed = out_reader.join().unwrap_or_default() + &err_reader.join().unwrap_or_default();
    Ok((status, printed))
}
