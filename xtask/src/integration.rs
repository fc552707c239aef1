//! `cargo xtask integration`: piko-obs checked by real third-party programs, on this
//! machine only, each step bounded in time.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use piko_obs_testkit::sink::Recorded;

use crate::monitor::{Check, Monitor, run_checks, start_monitor};
use crate::support::{
    Reaper, Receiver, Result, cargo, free_port, http_get, jq, pipe_through, root, run as run_cmd,
    signal, wait_bounded, webhook_sink,
};

pub(crate) fn run() -> Result {
    let mut build = cargo();
    build.args([
        "build",
        "--locked",
        "-p",
        "piko-obs",
        "--example",
        "monitor",
        "--example",
        "custom_probe",
        "--example",
        "custom_provider",
        "--example",
        "health_only",
        "--example",
        "run_in_span",
        "-p",
        "piko-obs-tests",
        "--bin",
        "log_probe",
        "-p",
        "piko-obs-testkit",
        "--bin",
        "otlp_receiver",
        "--bin",
        "sentry_receiver",
    ]);
    run_cmd(build)?;
    let checks = [
        Check {
            name: "monitor prod JSON lines read by jq",
            run: monitor_json_with_jq,
        },
        Check {
            name: "rotated log files read by gzip",
            run: rotated_files_with_gzip,
        },
        Check {
            name: "monitor /ready probed by prometheus-blackbox-exporter",
            run: ready_with_blackbox_exporter,
        },
        Check {
            name: "monitor /metrics accepted by promtool check metrics",
            run: metrics_with_promtool,
        },
        Check {
            name: "the guide's Prometheus configuration accepted by promtool check config",
            run: guide_config_with_promtool,
        },
        Check {
            name: "monitor scraped by a Prometheus server: up == 1, a request-latency quantile",
            run: scraped_by_prometheus,
        },
        Check {
            name: "monitor alerts a sink per provider variable (Slack, Discord, PagerDuty, Teams, Google Chat, ntfy, a webhook whose signature openssl verifies), and stdout",
            run: alerts_to_every_provider_and_stdout,
        },
        Check {
            name: "monitor exports spans, metrics and span-correlated log lines to an OTLP receiver",
            run: otlp_to_receiver,
        },
        Check {
            name: "monitor GET /fail: one Sentry event with the error chain, one grouped alert to a webhook",
            run: fail_to_sentry_and_webhook,
        },
        Check {
            name: "monitor given secrets in every setting: none in its output, answers, metrics or dead letters",
            run: crate::secrets::no_secret_in_any_output,
        },
        Check {
            name: "monitor given a malformed OTLP header: init() names its position, never its text",
            run: crate::secrets::no_secret_in_a_malformed_header_error,
        },
        Check {
            name: "monitor given an HTTP probe URL with a password: refused, naming the setting, never the password",
            run: crate::secrets::no_secret_in_a_refused_probe_url,
        },
    ];
    let checks: Vec<Check> = checks
        .into_iter()
        .chain(
            crate::examples::checks()
                .into_iter()
                .chain(crate::alertmanager::checks())
                .map(|(name, run)| Check { name, run }),
        )
        .collect();
    // `cargo xtask integration WORD` runs only the checks whose name holds WORD.
    let only = std::env::args().nth(2);
    let checks: Vec<Check> = checks
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|w| c.name.contains(w)))
        .collect();
    run_checks("integration", &checks)
}

fn monitor_json_with_jq() -> Result {
    let mut monitor = start_monitor(&[])?;
    let mut text = String::new();
    monitor
        .out
        .read_line(&mut text)
        .map_err(|e| e.to_string())?;
    signal(monitor.process.0.id(), "TERM")?;
    let status = wait_bounded(&mut monitor.process.0, Duration::from_secs(15))?;
    std::io::Read::read_to_string(&mut monitor.out, &mut text).map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("monitor exited with {status}"));
    }
    // init()'s start-up summary, before the addresses: one NOTICE line that says what
    // started, and where dead letters go.
    jq(
        r#"map(select(.msg == "piko-obs started")) | length == 1
          and .[0].level == "NOTICE" and .[0].logger == "piko-obs" and .[0].mode == "prod"
          and (.[0].probes | test("^http://127[.]0[.]0[.]1:[0-9]+ /live /ready /startup$"))
          and .[0].metrics == "/metrics"
          and .[0].otlp_traces == "off (no endpoint: OTEL_EXPORTER_OTLP_ENDPOINT unset)"
          and .[0].otlp_logs == .[0].otlp_traces and .[0].sentry == "off"
          and .[0].alert_providers == "stdout"
          and (.[0].dead_letters | endswith(".jsonl"))"#,
        monitor.startup.as_bytes(),
    )
    .map_err(|e| format!("the start-up summary: {e}"))?;
    // The first two lines (the addresses) were read by start_monitor.
    // Log lines only: alerts also go to stdout, as JSON lines of their own.
    jq(
        r#"map(select(has("msg"))) | length == 2
          and .[0].msg == "Server started" and .[0].mode == "prod" and .[0].level == "NOTICE"
          and .[0].logger == "monitor" and (.[0].source.line | type) == "number"
          and (.[0].time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}(Z|[+-][0-9]{2}:[0-9]{2})$"))
          and .[1].msg == "Server stopping" and .[1].signal == "SIGTERM""#,
        text.as_bytes(),
    )
}

fn rotated_files_with_gzip() -> Result {
    let dir = std::env::temp_dir().join(format!("piko-obs-rotate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let probe = root().join("target/debug/log_probe");
        let mut child = Command::new(&probe)
            .args(["rotate", dir.to_str().ok_or("path")?])
            .spawn()
            .map_err(|e| format!("{probe:?}: {e}"))?;
        let status = wait_bounded(&mut child, Duration::from_secs(60))?;
        if !status.success() {
            return Err(format!("log_probe rotate exited with {status}"));
        }
        let mut lines = 0usize;
        let mut gz = 0usize;
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let text = if name.ends_with(".gz") {
                gz += 1;
                let out = Command::new("gzip")
                    .arg("-dc")
                    .arg(&path)
                    .output()
                    .map_err(|e| format!("gzip: {e}"))?;
                if !out.status.success() {
                    return Err(format!("gzip -dc {path:?} failed: {}", out.status));
                }
                String::from_utf8(out.stdout).map_err(|e| e.to_string())?
            } else {
                std::fs::read_to_string(&path).map_err(|e| e.to_string())?
            };
            // The program's lines; piko-obs's own (`Added file output`) are not counted.
            lines += text
                .lines()
                .filter(|l| l.contains("\"msg\":\"rotating\""))
                .count();
        }
        if gz == 0 {
            return Err("no gzipped backup was written".into());
        }
        if lines != 2000 {
            return Err(format!("{lines} lines across the files, expected 2000"));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn ready_with_blackbox_exporter() -> Result {
    let dir = std::env::temp_dir().join(format!("piko-obs-blackbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = dir.join("blackbox.yml");
    std::fs::write(
        &config,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      method: GET\n      preferred_ip_protocol: ip4\n",
    )
    .map_err(|e| e.to_string())?;
    let bb_port = free_port()?;
    let bb_addr = format!("127.0.0.1:{bb_port}");
    let exporter = Command::new("prometheus-blackbox-exporter")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={bb_addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "prometheus-blackbox-exporter: {e} (install Debian's prometheus-blackbox-exporter)"
            )
        })?;
    let _exporter = Reaper(exporter);
    let mut monitor = start_monitor(&[])?;
    let probe_addr = monitor.probes.clone();
    // Wait for the exporter to listen (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while http_get(&bb_addr, "/").is_err() {
        if std::time::Instant::now() > deadline {
            return Err("the blackbox exporter did not start listening within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let probe = |want: &str| -> Result {
        let path = format!("/probe?module=http_2xx&target=http://{probe_addr}/ready");
        let (code, body) = http_get(&bb_addr, &path)?;
        let line = body
            .lines()
            .find(|l| l.starts_with("probe_success "))
            .ok_or_else(|| format!("no probe_success in the exporter's answer ({code}): {body}"))?;
        if line.trim() == format!("probe_success {want}") {
            Ok(())
        } else {
            Err(format!("expected probe_success {want}, got {line:?}"))
        }
    };
    probe("1")?;
    // Make the `upstream` probe unhealthy: readiness answers 503.
    signal(monitor.process.0.id(), "USR1")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match probe("0") {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    signal(monitor.process.0.id(), "TERM")?;
    let status = wait_bounded(&mut monitor.process.0, Duration::from_secs(15))?;
    let _ = std::fs::remove_dir_all(&dir);
    if status.success() {
        Ok(())
    } else {
        Err(format!("monitor exited with {status}"))
    }
}

fn metrics_with_promtool() -> Result {
    let mut monitor = start_monitor(&[])?;
    // Requests first, so the request metrics (and the ERROR line of GET /fail) are in the
    // text promtool checks: a 200, a 500 and a 404 (a path no route matches).
    for (path, want) in [
        ("/", 200),
        ("/", 200),
        ("/fail", 500),
        ("/no/such/page", 404),
    ] {
        let (code, _) = http_get(&monitor.app, path)?;
        if code != want {
            return Err(format!(
                "GET {path} on the application answered {code}, not {want}"
            ));
        }
    }
    let (code, body) = http_get(&monitor.probes, "/metrics")?;
    if code != 200 {
        return Err(format!("/metrics answered {code}"));
    }
    for needed in [
        "process_cpu_seconds_total",
        "piko_obs_log_lines_written_total",
        "# TYPE http_server_request_duration_seconds histogram",
        "http_response_status_code=\"200\"",
        "http_response_status_code=\"500\"",
        "http_server_active_requests{",
    ] {
        if !body.contains(needed) {
            return Err(format!("/metrics has no {needed}:\n{body}"));
        }
    }
    let (status, out, err) = pipe_through(
        "promtool",
        &["check", "metrics"],
        body.as_bytes(),
        Duration::from_secs(30),
        "prometheus",
    )?;
    let report = String::from_utf8_lossy(&out).into_owned() + &err;
    signal(monitor.process.0.id(), "TERM")?;
    let _ = wait_bounded(&mut monitor.process.0, Duration::from_secs(15))?;
    // promtool exits 1 on errors and 3 on lint findings only (a series without HELP, a
    // counter without `_total`, a non-base unit...). Exit 3 is not tolerated: every
    // series the example serves is piko-obs's (its own counters, the request metrics)
    // or `metrics-process`'s, which follow the Prometheus conventions and are all
    // described, so a finding means one of ours lost its HELP or breaks a naming rule,
    // and it is fixed at its cause rather than let through here.
    if status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics: {status}: {}\n{body}",
            report.trim()
        ))
    }
}

fn percent_encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The first sample value of a Prometheus instant-query answer.
fn query_value(prom: &str, query: &str) -> Result<Option<f64>> {
    let (code, body) = http_get(
        prom,
        &format!("/api/v1/query?query={}", percent_encode(query)),
    )?;
    if code != 200 {
        return Err(format!("query {query:?} answered {code}: {body}"));
    }
    Ok(body
        .split("\"value\":[")
        .nth(1)
        .and_then(|rest| rest.split(',').nth(1))
        .and_then(|v| v.trim_start_matches('"').split('"').next())
        .and_then(|v| v.parse::<f64>().ok()))
}

fn scraped_by_prometheus() -> Result {
    let mut monitor = start_monitor(&[])?;
    let dir = std::env::temp_dir().join(format!("piko-obs-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: monitor\n    static_configs:\n      - targets: ['{}']\n",
            monitor.probes
        ),
    )
    .map_err(|e| e.to_string())?;
    let prom = format!("127.0.0.1:{}", free_port()?);
    let server = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("prometheus: {e} (install Debian's prometheus)"))?;
    let _server = Reaper(server);
    let result = (|| -> Result {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut up = false;
        let mut quantile = None;
        while std::time::Instant::now() < deadline {
            for _ in 0..5 {
                let (code, _) = http_get(&monitor.app, "/")?;
                if code != 200 {
                    return Err(format!("GET / on the application answered {code}"));
                }
            }
            if !up {
                up = query_value(&prom, "up{job=\"monitor\"}").unwrap_or(None) == Some(1.0);
            } else {
                quantile = query_value(
                    &prom,
                    "histogram_quantile(0.9, sum by (le) (rate(http_server_request_duration_seconds_bucket{http_route=\"/\"}[10s])))",
                )
                .unwrap_or(None)
                .filter(|v| v.is_finite());
                if quantile.is_some() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        match (up, quantile) {
            (true, Some(q)) => {
                eprintln!(
                    "integration: Prometheus reports up == 1 and a p90 request latency of {q} s"
                );
                Ok(())
            }
            (false, _) => {
                Err("Prometheus never reported up{job=\"monitor\"} == 1 within 60 s".into())
            }
            (true, None) => Err(
                "histogram_quantile over the request histogram returned no number within 60 s"
                    .into(),
            ),
        }
    })();
    signal(monitor.process.0.id(), "TERM")?;
    let _ = wait_bounded(&mut monitor.process.0, Duration::from_secs(15))?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Checks that `got` is `POST path` with the value of each of `headers`.
fn expect_request(got: &Recorded, what: &str, path: &str, headers: &[(&str, &str)]) -> Result {
    if got.method != "POST" || got.path != path {
        return Err(format!(
            "{what}: expected POST {path}, got {} {}\n{:?}",
            got.method, got.path, got.headers
        ));
    }
    for (name, want) in headers {
        if got.header(name) != Some(want) {
            return Err(format!(
                "{what}: expected {name}: {want}, got {:?}",
                got.header(name)
            ));
        }
    }
    Ok(())
}

/// Runs `openssl ARGS` with `input` on its stdin (bounded); its stdout.
fn openssl(args: &[&str], input: &[u8]) -> Result<Vec<u8>> {
    let (status, out, err) =
        pipe_through("openssl", args, input, Duration::from_secs(10), "openssl")?;
    if status.success() {
        Ok(out)
    } else {
        Err(format!("openssl {}: {status}: {err}", args.join(" ")))
    }
}

/// The Standard Webhooks signature `openssl` computes for `got` with `key`:
/// `v1,` and the base64 HMAC-SHA256 of `webhook-id.webhook-timestamp.body`.
fn signature_by_openssl(got: &Recorded, key: &[u8]) -> Result<String> {
    let id = got.header("webhook-id").ok_or("no webhook-id")?;
    let ts = got
        .header("webhook-timestamp")
        .ok_or("no webhook-timestamp")?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&got.body);
    let mac = openssl(
        &[
            "dgst",
            "-sha256",
            "-mac",
            "HMAC",
            "-macopt",
            &format!("hexkey:{hex}"),
            "-binary",
        ],
        &signed,
    )?;
    if mac.len() != 32 {
        return Err(format!("openssl gave a {}-byte HMAC-SHA256", mac.len()));
    }
    let b64 = openssl(&["base64", "-A"], &mac)?;
    Ok(format!("v1,{}", String::from_utf8_lossy(&b64).trim()))
}

/// Verifies the Standard Webhooks signature of `got` with `secret` (`whsec_` and the
/// base64 key, which is decoded, as the webhook provider does), by openssl: the
/// timestamp is within 5 minutes of now, one `v1,` signature of `webhook-signature`
/// matches, and the secret's text used as the key (not decoded) would not.
fn verify_webhook_signature(got: &Recorded, secret: &str) -> Result {
    let ts: u64 = got
        .header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or("no numeric webhook-timestamp")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    if now.abs_diff(ts) > 300 {
        return Err(format!(
            "webhook-timestamp {ts} is not within 5 minutes of {now}"
        ));
    }
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("the secret has no whsec_")?;
    let key = openssl(&["base64", "-d", "-A"], b64.as_bytes())?;
    if key.is_empty() {
        return Err("openssl decoded an empty key".into());
    }
    let expected = signature_by_openssl(got, &key)?;
    let sent = got
        .header("webhook-signature")
        .ok_or("no webhook-signature")?;
    // Several signatures may be sent, space-separated (key rotation).
    if !sent.split(' ').any(|s| s == expected) {
        return Err(format!(
            "webhook-signature {sent:?} does not match the HMAC openssl computes ({expected})"
        ));
    }
    if signature_by_openssl(got, secret.as_bytes())? == expected {
        return Err("the signature does not depend on decoding the secret".into());
    }
    Ok(())
}

/// The signing secret the alerts check gives the monitor (`whsec_` + base64 of 24 bytes).
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The PagerDuty routing key the alerts check gives the monitor.
const ROUTING_KEY: &str = "R0UT1NGKEY0integration0000000000";
/// The ntfy token the alerts check gives the monitor.
const NTFY_TOKEN: &str = "tk_integration0token";

/// The monitor given every provider variable, each pointing at a sink of its own on
/// loopback: each sink receives the start-up alert (`Service started`, priority low)
/// in its platform's shape, the webhook's signature verified by openssl; stdout shows
/// it too.
fn alerts_to_every_provider_and_stdout() -> Result {
    let dir = std::env::temp_dir().join(format!("piko-obs-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dead_letters = dir.join("dead-letters.jsonl");
    // (provider, variable, path on its sink)
    let providers = [
        ("slack", "SLACK_WEBHOOK_URL", "/services/T000/B000/XXXX"),
        ("discord", "DISCORD_WEBHOOK_URL", "/api/webhooks/1/tok"),
        ("pagerduty", "PAGERDUTY_EVENTS_URL", "/v2/enqueue"),
        ("teams", "TEAMS_WEBHOOK_URL", "/workflows/abc"),
        (
            "googlechat",
            "GOOGLE_CHAT_WEBHOOK_URL",
            "/v1/spaces/AAA/messages?key=k&token=t",
        ),
        ("ntfy", "NTFY_URL", "/alerts"),
        ("webhook", "WEBHOOK_URL", "/hooks/alerts"),
    ];
    let mut sinks = Vec::new();
    let mut env: Vec<(&str, String)> = vec![
        ("PAGERDUTY_ROUTING_KEY", ROUTING_KEY.into()),
        ("NTFY_TOKEN", NTFY_TOKEN.into()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("ENVIRONMENT", "integration".into()),
        (
            "PIKO_NOTIFICATION_DEAD_LETTER_PATH",
            dead_letters.to_str().ok_or("path")?.into(),
        ),
    ];
    for (name, variable, path) in providers {
        let sink = webhook_sink()?;
        env.push((variable, sink.url(path)));
        sinks.push((name, path, sink));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut monitor = start_monitor(&env)?;
    // The alert goes to every provider at once: one deadline for all the sinks.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut got = Vec::new();
    for (name, path, sink) in &sinks {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match sink.next_request(left) {
            Some(r) => got.push((*name, *path, r)),
            None => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("the {name} sink received nothing within 15 s"));
            }
        }
    }
    signal(monitor.process.0.id(), "TERM")?;
    let status = wait_bounded(&mut monitor.process.0, Duration::from_secs(15))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut monitor.out, &mut text).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        return Err(format!("monitor exited with {status}"));
    }
    // Nothing more: one alert per provider.
    for (name, _, sink) in &sinks {
        if sink.next_request(Duration::ZERO).is_some() {
            return Err(format!("the {name} sink received more than one request"));
        }
    }
    let json = [("content-type", "application/json")];
    for (name, path, r) in &got {
        let (headers, filter): (&[(&str, &str)], String) = match *name {
            "slack" => (
                &json,
                r#".[0] | .text == "Service started" and .blocks[0].type == "header"
                  and .blocks[0].text.text == ":bulb: Service started"
                  and .blocks[1].text.text == "monitor is up in prod mode""#
                    .into(),
            ),
            "discord" => (
                &json,
                r#".[0] | .embeds[0].title == "Service started"
                  and .embeds[0].description == "monitor is up in prod mode"
                  and .embeds[0].color == 9807270 and .allowed_mentions.parse == []"#
                    .into(),
            ),
            "pagerduty" => (
                &json,
                format!(
                    r#".[0] | .routing_key == "{ROUTING_KEY}" and .event_action == "trigger"
                      and (.dedup_key | length) == 32 and .payload.summary == "Service started"
                      and .payload.severity == "info" and .payload.source == "monitor"
                      and .payload.custom_details.environment == "integration""#
                ),
            ),
            "teams" => (
                &json,
                r#".[0] | .type == "message"
                  and .attachments[0].contentType == "application/vnd.microsoft.card.adaptive"
                  and .attachments[0].content.type == "AdaptiveCard"
                  and .attachments[0].content.body[0].text == "Service started""#
                    .into(),
            ),
            "googlechat" => (
                &json,
                r#".[0] | .cardsV2[0].cardId == "notification-card"
                  and .cardsV2[0].card.header.title == "Service started"
                  and .cardsV2[0].card.header.subtitle == "Low priority"
                  and .cardsV2[0].card.sections[0].widgets[0].textParagraph.text == "monitor is up in prod mode""#
                    .into(),
            ),
            "ntfy" => {
                let auth = format!("Bearer {NTFY_TOKEN}");
                expect_request(
                    r,
                    name,
                    path,
                    &[
                        ("content-type", "text/plain; charset=utf-8"),
                        ("title", "Service started"),
                        ("priority", "low"),
                        ("tags", "bell"),
                        ("authorization", &auth),
                    ],
                )?;
                if !r.body.starts_with(b"monitor is up in prod mode") {
                    return Err(format!(
                        "ntfy: the body is not the message: {}",
                        String::from_utf8_lossy(&r.body)
                    ));
                }
                continue;
            }
            "webhook" => {
                expect_request(r, name, path, &json)?;
                if !r.header("webhook-id").is_some_and(|id| id.starts_with("msg_")) {
                    return Err(format!("webhook: no webhook-id msg_...: {:?}", r.headers));
                }
                verify_webhook_signature(r, WEBHOOK_SECRET)
                    .map_err(|e| format!("webhook signature: {e}"))?;
                (
                    &json,
                    r#".[0] | .title == "Service started" and .message == "monitor is up in prod mode"
                      and .priority == "low" and .source == "monitor" and .service == "monitor"
                      and .environment == "integration"
                      and (.timestamp | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T"))"#
                        .into(),
                )
            }
            other => return Err(format!("no check for the {other} sink")),
        };
        expect_request(r, name, path, headers)?;
        jq(&filter, &r.body).map_err(|e| format!("{name}: {e}"))?;
    }
    let alerts: String = monitor
        .alerts
        .lines()
        .chain(text.lines())
        .filter(|l| l.starts_with("{\"notification\""))
        .map(|l| format!("{l}\n"))
        .collect();
    jq(
        r#"length == 1 and .[0].notification.content.title == "Service started"
          and .[0].notification.context.environment == "integration""#,
        alerts.as_bytes(),
    )
}

fn start_receiver(bin: &str, prefix: &str) -> Result<Receiver> {
    crate::support::start_receiver("debug", bin, prefix)
}

fn otlp_to_receiver() -> Result {
    let Receiver {
        process: mut receiver,
        stdin,
        mut out,
        addr: grpc,
    } = start_receiver("otlp_receiver", "grpc")?;
    let mut monitor = start_monitor(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc.as_str()),
        // The receiver's gRPC port: the default protocol is http/protobuf.
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20integration",
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
    ])?;
    for _ in 0..3 {
        let (code, _) = http_get(&monitor.app, "/")?;
        if code != 200 {
            return Err(format!("GET / answered {code}"));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    signal(monitor.process.0.id(), "TERM")?;
    let status = wait_bounded(&mut monitor.process.0, Duration::from_secs(20))?;
    if !status.success() {
        return Err(format!("monitor exited with {status}"));
    }
    drop(stdin);
    let mut summary = String::new();
    // Skip the http= line; the summary is the last line.
    while out.read_line(&mut summary).map_err(|e| e.to_string())? > 0 {}
    let _ = wait_bounded(&mut receiver.0, Duration::from_secs(10))?;
    let summary = summary.lines().last().unwrap_or("").to_string();
    eprintln!("integration: the OTLP receiver got {summary}");
    jq(
        r#".[0] as $s
          | ($s.spans | map(select(.name == "GET /")) | length) == 3
          and ($s.services | index("monitor") != null)
          and ($s.metrics | index("http.server.request.duration") != null)
          and ([$s.logs[] | select(.body == "Request handled")] | length) == 3
          and ([$s.logs[] | select(.body == "Request handled") | .trace_id] - [$s.spans[].trace_id] | length) == 0
          and ([$s.logs[] | select(.body == "Request handled" and .severity == "INFO")] | length) == 3"#,
        summary.as_bytes(),
    )
}

fn fail_to_sentry_and_webhook() -> Result {
    let Receiver {
        process: mut receiver,
        stdin,
        mut out,
        addr: sentry,
    } = start_receiver("sentry_receiver", "addr")?;
    let dsn = format!("http://integrationkey@{sentry}/7");
    let hook = webhook_sink()?;
    let url = hook.url("/hooks/alerts");
    let Monitor {
        mut process,
        out: mut monitor_out,
        app,
        ..
    } = start_monitor(&[
        ("SENTRY_DSN", dsn.as_str()),
        ("SENTRY_ENVIRONMENT", "integration"),
        ("WEBHOOK_URL", url.as_str()),
    ])?;
    // Its stdout is read as it comes, so that a full pipe never blocks its writers.
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut monitor_out, &mut text);
        text
    });
    let (code, _) = http_get(&app, "/fail")?;
    if code != 500 {
        return Err(format!("GET /fail answered {code}, expected 500"));
    }
    // The error alert is grouped for 10 s; the shutdown sends what is pending.
    std::thread::sleep(Duration::from_millis(500));
    signal(process.0.id(), "TERM")?;
    let status = wait_bounded(&mut process.0, Duration::from_secs(15))?;
    let printed = drain.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("monitor exited with {status}"));
    }
    if !printed.contains("\"msg\":\"Checkout failed\"") {
        return Err("the ERROR line of GET /fail is not in the monitor's output".into());
    }
    drop(stdin);
    let mut events = String::new();
    std::io::Read::read_to_string(&mut out, &mut events).map_err(|e| e.to_string())?;
    let _ = wait_bounded(&mut receiver.0, Duration::from_secs(5))?;
    jq(
        r#".[0] | length == 1 and .[0].message == "Checkout failed" and (.[0].level // "error") == "error"
          and .[0].environment == "integration" and .[0].logger == "monitor"
          and ([.[0].exception.values[] | .type] == ["UpstreamError", "CheckoutError"])
          and .[0].exception.values[0].value == "basket service: connection refused"
          and .[0].extra.path == "/fail""#,
        events.as_bytes(),
    )
    .map_err(|e| {
        let shown: String = events.chars().take(4000).collect();
        format!("Sentry events: {e}; the endpoint received: {shown}")
    })?;
    let mut alerts = Vec::new();
    while let Some(got) = hook.next_request(Duration::from_millis(500)) {
        alerts.extend_from_slice(&got.body);
        alerts.push(b'\n');
    }
    jq(
        r#"map(select(.title == "ERROR: Application Error")) | length == 1
          and .[0].message == "Checkout failed" and .[0].priority == "critical"
          and .[0].fields.occurrences == "1" and .[0].fields.logger == "monitor"
          and (.[0].fields.source | test("monitor.rs:[0-9]+$"))"#,
        &alerts,
    )
    .map_err(|e| format!("alerts: {e}"))
}

/// `promtool check config` on the Prometheus configuration of the guide (the YAML block
/// that starts with `# prometheus.yml`).
fn guide_config_with_promtool() -> Result {
    let guide = root().join("docs/how-to/monitor-production.md");
    let text = std::fs::read_to_string(&guide).map_err(|e| format!("{guide:?}: {e}"))?;
    let block = text
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.starts_with("# prometheus.yml"))
        .ok_or("the guide has no ```yaml block starting with `# prometheus.yml`")?;
    let file = std::env::temp_dir().join(format!("piko-obs-guide-{}.yml", std::process::id()));
    std::fs::write(&file, block).map_err(|e| e.to_string())?;
    let mut child = Command::new("promtool")
        .args(["check", "config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool: {e} (install Debian's prometheus)"))?;
    let status = wait_bounded(&mut child, Duration::from_secs(30))?;
    let mut report = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stdout.take().ok_or("stdout")?, &mut report);
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().ok_or("stderr")?, &mut report);
    let _ = std::fs::remove_file(&file);
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool check config rejected the guide's configuration: {report}"
        ))
    }
}
