//! The integration checks with Debian's `prometheus-alertmanager`: three replicas of
//! the example service post their ERROR alerts to it (`ALERTMANAGER_URL`), and a
//! webhook sink stands for the team's receiver. The configuration is the one shipped in
//! `docs/examples/alertmanager.yml`, checked by `amtool check-config`, with only the
//! receiver's URL and the group timers made short. Loopback only; every wait bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use piko_obs_testkit::sink::Sink;

use crate::monitor::{Monitor, NamedCheck, start_monitor};
use crate::support::{
    Reaper, Result, free_port, http_get, jq, root, signal, wait_bounded, webhook_sink,
};

/// The checks, in the order `cargo xtask integration` runs them.
pub(crate) fn checks() -> Vec<NamedCheck> {
    vec![
        (
            "the shipped Alertmanager configuration accepted by amtool check-config",
            shipped_config_with_amtool as fn() -> Result,
        ),
        (
            "three monitors GET /fail: Alertmanager sends one notification holding all three, then one resolved",
            one_notification_for_the_fleet_then_resolved,
        ),
        (
            "two clustered Alertmanager peers, every replica posting to both: one notification",
            one_notification_from_a_cluster,
        ),
        (
            "Alertmanager stopped: alerts retried, then dead-lettered; started again: a replay (SIGUSR2) delivers them",
            dead_lettered_then_replayed,
        ),
    ]
}

/// The example configuration shipped with the documentation.
const SHIPPED: &str = "docs/examples/alertmanager.yml";

/// What the checks change in the shipped configuration: the receiver's URL, and
/// timers short enough for a test (each must be found, so that the two stay in step).
fn test_config(receiver: &str) -> Result<String> {
    let path = root().join(SHIPPED);
    let mut text = std::fs::read_to_string(&path).map_err(|e| format!("{path:?}: {e}"))?;
    for (from, to) in [
        ("http://127.0.0.1:5001/alerts", receiver),
        ("group_wait: 30s", "group_wait: 2s"),
        ("group_interval: 5m", "group_interval: 1s"),
    ] {
        if !text.contains(from) {
            return Err(format!("{SHIPPED} no longer holds `{from}`"));
        }
        text = text.replace(from, to);
    }
    Ok(text)
}

/// `amtool check-config FILE`, bounded: its report when it succeeds.
fn amtool_check(file: &Path) -> Result<String> {
    let mut child = Command::new("amtool")
        .arg("check-config")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("amtool: {e} (install Debian's prometheus-alertmanager)"))?;
    let mut out = child.stdout.take().ok_or("stdout")?;
    let mut err = child.stderr.take().ok_or("stderr")?;
    let status = wait_bounded(&mut child, Duration::from_secs(30))?;
    let mut report = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut report);
    let _ = std::io::Read::read_to_string(&mut err, &mut report);
    if status.success() && report.contains("SUCCESS") {
        Ok(report)
    } else {
        Err(format!(
            "amtool check-config {file:?} failed ({status}): {report}"
        ))
    }
}

fn shipped_config_with_amtool() -> Result {
    amtool_check(&root().join(SHIPPED))?;
    let dir = scratch("amtool")?;
    let file = dir.join("alertmanager.yml");
    std::fs::write(&file, test_config("http://127.0.0.1:9/hook")?).map_err(|e| e.to_string())?;
    let result = amtool_check(&file).map(drop);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A fresh directory under the temporary one.
fn scratch(what: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("piko-obs-am-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{dir:?}: {e}"))?;
    Ok(dir)
}

/// Runs `body` with a fresh directory, a webhook sink standing for the receiver, and
/// the test configuration pointing at it, written to `alertmanager.yml` in the
/// directory; removes the directory afterwards.
fn scenario(what: &str, body: impl FnOnce(&Path, &Path, &Sink) -> Result) -> Result {
    let dir = scratch(what)?;
    let result = (|| {
        let sink = webhook_sink()?;
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, test_config(&sink.url("/alerts"))?).map_err(|e| e.to_string())?;
        body(&dir, &config, &sink)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A running Alertmanager.
struct Alertmanager {
    /// Killed when dropped.
    _process: Reaper,
    /// `127.0.0.1:PORT` of its API.
    web: String,
}

/// How long a peer of the test cluster waits per rank before it notifies itself
/// (default 15 s): enough for the gossip of two peers on loopback.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts `prometheus-alertmanager` with `config` and its data in `dir/data-N`, on
/// `web`; in a cluster when `cluster` gives its gossip port and its peer's, else with
/// HA off. Waits (at most 20 s) until `/-/ready` answers 200.
fn start_alertmanager(
    dir: &Path,
    config: &Path,
    n: usize,
    web: &str,
    cluster: Option<(u16, u16)>,
) -> Result<Alertmanager> {
    let mut cmd = Command::new("prometheus-alertmanager");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.join(format!("data-{n}")).display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match cluster {
        Some((listen, peer)) => {
            cmd.arg(format!("--cluster.listen-address=127.0.0.1:{listen}"))
                .arg(format!("--cluster.peer=127.0.0.1:{peer}"))
                .arg(format!(
                    "--cluster.peer-timeout={}s",
                    PEER_TIMEOUT.as_secs()
                ))
                .arg("--cluster.gossip-interval=50ms")
                .arg("--cluster.pushpull-interval=1s");
        }
        None => {
            cmd.arg("--cluster.listen-address=");
        }
    }
    let child = cmd.spawn().map_err(|e| {
        format!("prometheus-alertmanager: {e} (install Debian's prometheus-alertmanager)")
    })?;
    let process = Reaper(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if matches!(http_get(web, "/-/ready"), Ok((200, _))) {
            return Ok(Alertmanager {
                _process: process,
                web: web.to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("Alertmanager on {web} not ready within 20 s"))
}

/// The three replicas of the example service, each its own `instance`, posting to
/// `urls`; their stdout read on threads of their own.
struct Replicas {
    monitors: Vec<(Reaper, String, String)>,
    drains: Vec<std::thread::JoinHandle<String>>,
}

fn start_replicas(dir: &Path, urls: &str, extra: &[(&str, &str)]) -> Result<Replicas> {
    let mut replicas = Replicas {
        monitors: Vec::new(),
        drains: Vec::new(),
    };
    for i in 1..=3 {
        let instance = format!("replica-{i}");
        let dead_letters = dead_letter_file(dir, i);
        let dead_letters = dead_letters.to_string_lossy();
        let mut env = vec![
            ("ALERTMANAGER_URL", urls),
            ("ALERTMANAGER_INSTANCE", instance.as_str()),
            ("ERROR_ALERT_WINDOW_MS", "500"),
            ("PIKO_NOTIFICATION_DEAD_LETTER_PATH", dead_letters.as_ref()),
        ];
        env.extend_from_slice(extra);
        let Monitor {
            process,
            mut out,
            probes,
            app,
            ..
        } = start_monitor(&env)?;
        replicas.drains.push(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
            text
        }));
        replicas.monitors.push((process, probes, app));
    }
    Ok(replicas)
}

fn dead_letter_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("dead-letters-{i}.jsonl"))
}

impl Replicas {
    /// `GET /fail` on each: one ERROR line each.
    fn fail(&self) -> Result {
        for (_, _, app) in &self.monitors {
            let (code, _) = http_get(app, "/fail")?;
            if code != 500 {
                return Err(format!("GET /fail answered {code}, expected 500"));
            }
        }
        Ok(())
    }

    /// SIGTERM to each, and a bounded wait for each to exit 0.
    fn stop(mut self) -> Result {
        for (p, _, _) in &self.monitors {
            signal(p.0.id(), "TERM")?;
        }
        for (p, _, _) in &mut self.monitors {
            let status = wait_bounded(&mut p.0, Duration::from_secs(20))?;
            if !status.success() {
                return Err(format!("a monitor exited with {status}"));
            }
        }
        for d in self.drains {
            let _ = d.join();
        }
        Ok(())
    }
}

/// The webhook notifications the sink received: bodies as JSON lines.
#[derive(Default)]
struct Notifications(Vec<u8>);

impl Notifications {
    /// Takes what arrived until `done` holds (a jq filter over all of them, as an
    /// array) or `within` passes.
    fn until(&mut self, received: &Sink, done: &str, within: Duration) -> Result {
        let deadline = Instant::now() + within;
        loop {
            while let Some(got) = received.next_request(Duration::ZERO) {
                self.0.extend_from_slice(&got.body);
                self.0.push(b'\n');
            }
            if !self.0.is_empty() && jq(done, &self.0).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "within {within:?}, the receiver got nothing matching `{done}`; it got: {}",
                    String::from_utf8_lossy(&self.0)
                        .chars()
                        .take(3000)
                        .collect::<String>()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Takes what arrives during `wait`.
    fn during(&mut self, received: &Sink, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Some(got) = received.next_request(left) {
                self.0.extend_from_slice(&got.body);
                self.0.push(b'\n');
            }
        }
    }

    fn check(&self, filter: &str) -> Result {
        jq(filter, &self.0).map_err(|e| {
            format!(
                "{e}; the receiver got: {}",
                String::from_utf8_lossy(&self.0)
                    .chars()
                    .take(3000)
                    .collect::<String>()
            )
        })
    }
}

/// The forwarded error's notifications (the start-up alerts are another group).
const ERRORS: &str = r#"map(select(.groupLabels.alertname == "ApplicationError"))"#;

/// A notification of the error group, firing, holding the alerts of the three
/// replicas, one error group, critical, the message as its description.
const ALL_THREE_FIRING: &str = r#"map(select(.groupLabels.alertname == "ApplicationError" and .status == "firing"
      and (.alerts | length) == 3 and all(.alerts[]; .status == "firing")))
    | length >= 1
    and (.[0] | ([.alerts[].labels.instance] | sort) == ["replica-1", "replica-2", "replica-3"]
      and (.groupLabels.error_group | test("^[0-9a-f]{16}$"))
      and .commonLabels.severity == "critical" and .commonLabels.service == "monitor"
      and .commonAnnotations.description == "Checkout failed"
      and all(.alerts[]; .annotations.logger == "monitor" and (.annotations.source | test("monitor.rs:[0-9]+$"))))"#;

fn one_notification_for_the_fleet_then_resolved() -> Result {
    scenario("fleet", |dir, config, received| {
        let am = start_alertmanager(dir, config, 1, &format!("127.0.0.1:{}", free_port()?), None)?;
        let replicas = start_replicas(
            dir,
            &format!("http://{}", am.web),
            // Quiet for long enough that the group's first notification (after
            // group_wait, 2 s) goes out before any replica resolves its alert.
            &[("ERROR_ALERT_RESOLVE_AFTER_MS", "6000")],
        )?;
        replicas.fail()?;
        let mut got = Notifications::default();
        got.until(received, ALL_THREE_FIRING, Duration::from_secs(20))?;
        // Then the replicas go quiet: each sends its alert resolved, and Alertmanager
        // its receivers the resolved group.
        got.until(
            received,
            &format!(
                r#"{ERRORS} | any(.status == "resolved" and all(.alerts[]; .status == "resolved"))"#
            ),
            Duration::from_secs(20),
        )?;
        // One notification of the group firing with all three, not one per replica.
        got.check(&format!(
            r#"{ERRORS} | map(select(all(.alerts[]; .status == "firing"))) | length == 1"#
        ))?;
        replicas.stop()?;
        drop(am);
        Ok(())
    })
}

fn one_notification_from_a_cluster() -> Result {
    scenario("cluster", |dir, config, received| {
        let (g1, g2) = (free_port()?, free_port()?);
        let (w1, w2) = (
            format!("127.0.0.1:{}", free_port()?),
            format!("127.0.0.1:{}", free_port()?),
        );
        let peer1 = start_alertmanager(dir, config, 1, &w1, Some((g1, g2)))?;
        let peer2 = start_alertmanager(dir, config, 2, &w2, Some((g2, g1)))?;
        let replicas = start_replicas(
            dir,
            &format!("http://{w1},http://{w2}"),
            &[("ERROR_ALERT_RESOLVE_AFTER_MS", "60000")],
        )?;
        replicas.fail()?;
        let mut got = Notifications::default();
        got.until(received, ALL_THREE_FIRING, Duration::from_secs(30))?;
        // The second peer notifies only if the first's notification log has not
        // reached it after its wait: watch past that.
        got.during(received, PEER_TIMEOUT + Duration::from_secs(3));
        got.check(&format!(
            r#"{ERRORS} | map(select(.status == "firing")) | length == 1"#
        ))?;
        // Each peer holds the three alerts: every replica posted to both.
        for peer in [&peer1, &peer2] {
            let (code, body) = http_get(
                &peer.web,
                "/api/v2/alerts?filter=alertname%3D%22ApplicationError%22",
            )?;
            if code != 200 {
                return Err(format!(
                    "GET /api/v2/alerts on {} answered {code}",
                    peer.web
                ));
            }
            jq(
                // The answer may come chunked: its chunk sizes read as numbers.
                r#"[.[] | arrays[]] | ([.[].labels.instance] | sort) == ["replica-1", "replica-2", "replica-3"]"#,
                body.as_bytes(),
            )
            .map_err(|e| format!("the alerts of {}: {e}: {body}", peer.web))?;
        }
        replicas.stop()?;
        drop((peer1, peer2));
        Ok(())
    })
}

/// The value of the first sample of `name` in a `/metrics` answer.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn dead_lettered_then_replayed() -> Result {
    scenario("replay", |dir, config, received| {
        let web = format!("127.0.0.1:{}", free_port()?);
        let am = start_alertmanager(dir, config, 1, &web, None)?;
        let replicas = start_replicas(
            dir,
            &format!("http://{web}"),
            &[
                ("ERROR_ALERT_RESOLVE_AFTER_MS", "60000"),
                // Two attempts for the error alert: two failures, under the five that
                // open the circuit breaker (for 30 s, which would make the replay fail
                // again).
                ("NOTIFICATION_MAX_RETRIES", "1"),
                ("NOTIFICATION_RETRY_DELAY_MS", "100"),
            ],
        )?;
        // Alertmanager works (it holds the three start-up alerts), then stops.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = http_get(&web, "/api/v2/alerts")?;
            let up = jq(
                r#"[.[] | arrays[] | select(.labels.alertname == "Service started")] | length == 3"#,
                body.as_bytes(),
            );
            if up.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "Alertmanager did not get the start-up alerts: {body}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(am);
        replicas.fail()?;
        // Each replica tries twice, then writes the alert to its dead-letter
        // file: wait (bounded) until every file holds it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut missing = Vec::new();
        loop {
            missing.clear();
            for i in 1..=3 {
                let text = std::fs::read_to_string(dead_letter_file(dir, i)).unwrap_or_default();
                let held = jq(
                    r#"any(.notification.content.title == "ERROR: Application Error"
                        and .notification.content.message == "Checkout failed"
                        and .providers == ["alertmanager"] and .attempts == 2
                        and (.last_error | test("alertmanager")))"#,
                    text.as_bytes(),
                );
                if held.is_err() {
                    missing.push(i);
                }
            }
            if missing.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the dead-letter files of replicas {missing:?} hold no alert after 20 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The retries and the dead letter are counted.
        for (_, probes, _) in &replicas.monitors {
            let (_, text) = http_get(probes, "/metrics")?;
            let retried = metric(&text, "piko_obs_notifications_retried_total").unwrap_or(0.0);
            let dead = metric(&text, "piko_obs_notifications_dead_lettered_total").unwrap_or(0.0);
            if retried < 1.0 || dead < 1.0 {
                return Err(format!(
                    "{probes}/metrics: {retried} retries and {dead} dead letters, expected at least 1 and 1"
                ));
            }
        }
        // Alertmanager is started again; a replay sends what the files hold.
        let am = start_alertmanager(dir, config, 1, &web, None)?;
        for (p, _, _) in &replicas.monitors {
            signal(p.0.id(), "USR2")?;
        }
        let mut got = Notifications::default();
        got.until(received, ALL_THREE_FIRING, Duration::from_secs(20))?;
        replicas.stop()?;
        drop(am);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_are_read_by_exact_name() {
        let text = "# HELP x\nfoo_total_more 7\nfoo_total 3\nfoo_total{a=\"b\"} 4\n";
        assert_eq!(metric(text, "foo_total"), Some(3.0));
        assert_eq!(metric(text, "bar"), None);
    }
}
