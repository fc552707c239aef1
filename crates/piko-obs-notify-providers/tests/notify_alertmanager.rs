//! The Alertmanager provider against webhook sinks on loopback standing for
//! Alertmanager's API: the alert it posts, field by field; every URL of a list; the
//! answers that are retried and those that are not; authentication; the dead-letter
//! file and its replay; no secret in errors or `Debug`. (Debian's real
//! `prometheus-alertmanager` is run by `cargo xtask integration`.)

mod support;

use std::time::{Duration, SystemTime};

use piko_obs_notify::{
    DispatcherConfig, Notification, NotificationService, Notifier, Priority, RetryPolicy,
    SendError, alert,
};
use piko_obs_notify_providers::{ALERTMANAGER, AlertmanagerNotifier, DEFAULT_LEASE, HttpClient};
use piko_obs_testkit::sink::{Reply, Sink};

fn http() -> HttpClient {
    HttpClient::with_timeouts(Duration::from_secs(2), Duration::from_secs(3)).unwrap()
}

fn sample() -> Notification {
    let mut n = Notification::new("Disk almost full", "95% used on /var");
    n.content.fields.insert("volume", "/var");
    n.content.fields.insert("used.percent", "95");
    n.content
        .fields
        .insert("summary", "a field named like an annotation");
    n.context.priority = Priority::High;
    n.context.source = "disk-monitor".into();
    n.context.environment = "production".into();
    n.context.service = "orders".into();
    n.context.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".into();
    n.context.timestamp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    n.provider_options.insert(alert::LABELS, "volume");
    n
}

/// A port with nothing listening on it (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn parse_time(v: &serde_json::Value) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .map(SystemTime::from)
        .unwrap()
}

#[tokio::test]
async fn a_notification_is_posted_as_one_alert_with_labels_and_annotations() {
    let sink = Sink::start();
    let am = AlertmanagerNotifier::new(&http(), [sink.url("")])
        .unwrap()
        .with_instance("orders-7d9f-abcde")
        .unwrap()
        .with_label("team", "storage")
        .unwrap()
        .with_generator_url("https://grafana.example/d/disk")
        .unwrap();
    let before = SystemTime::now();
    am.send(&sample()).await.expect("accepted");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v2/alerts")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    let alerts = body.as_array().expect("an array of alerts");
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(
        a["labels"],
        serde_json::json!({
            "alertname": "Disk almost full",
            "service": "orders",
            "environment": "production",
            "severity": "warning",
            "instance": "orders-7d9f-abcde",
            "team": "storage",
            "volume": "/var",
        })
    );
    assert_eq!(
        a["annotations"],
        serde_json::json!({
            "summary": "Disk almost full",
            "description": "95% used on /var",
            "used_percent": "95",
            "field_summary": "a field named like an annotation",
            "priority": "high",
            "source": "disk-monitor",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        })
    );
    assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
    let ends = parse_time(&a["endsAt"]);
    // Sent to the millisecond.
    let ends_ms = ends + Duration::from_millis(1);
    assert!(ends_ms >= before + DEFAULT_LEASE, "{}", a["endsAt"]);
    assert!(ends <= SystemTime::now() + DEFAULT_LEASE, "{}", a["endsAt"]);
    assert_eq!(a["generatorURL"], "https://grafana.example/d/disk");
}

#[tokio::test]
async fn the_alert_options_set_name_lease_end_and_link() {
    let sink = Sink::start();
    let am = AlertmanagerNotifier::new(&http(), [sink.url("/api/v2/alerts")])
        .unwrap()
        .with_label_fields(["used.percent"]);
    // A firing alert with its own lease and name; the user's labelled field.
    let mut n = sample();
    n.provider_options
        .insert(alert::ALERTNAME, "DiskAlmostFull");
    n.provider_options.insert(alert::LEASE_SECS, "90");
    n.provider_options
        .insert(alert::GENERATOR_URL, "http://127.0.0.1:8080/graph");
    n.context.priority = Priority::Critical;
    let sent = SystemTime::now();
    am.send(&n).await.unwrap();
    // The same alert resolved at a given time.
    n.provider_options.insert(alert::STATUS, alert::RESOLVED);
    n.provider_options
        .insert(alert::ENDS_AT, "2023-11-14T22:15:00Z");
    am.send(&n).await.unwrap();
    // A resolved alert without an end ends now; one that ends before it starts starts
    // at its end (Alertmanager refuses a start after the end).
    let mut early = sample();
    early
        .provider_options
        .insert(alert::STATUS, alert::RESOLVED);
    early
        .provider_options
        .insert(alert::ENDS_AT, "2020-01-01T00:00:00Z");
    am.send(&early).await.unwrap();
    let got = sink.wait_for(3, Duration::from_secs(5));
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].path, "/api/v2/alerts", "a full URL is kept");
    let firing = &got[0].json()[0];
    assert_eq!(firing["labels"]["alertname"], "DiskAlmostFull");
    assert_eq!(firing["labels"]["severity"], "critical");
    assert_eq!(firing["labels"]["used_percent"], "95");
    assert_eq!(firing["generatorURL"], "http://127.0.0.1:8080/graph");
    let lease = parse_time(&firing["endsAt"]).duration_since(sent).unwrap();
    assert!(
        lease >= Duration::from_secs(89) && lease <= Duration::from_secs(91),
        "{lease:?}"
    );
    let resolved = &got[1].json()[0];
    assert_eq!(resolved["labels"], firing["labels"], "the same alert");
    assert_eq!(resolved["endsAt"], "2023-11-14T22:15:00.000Z");
    let early = &got[2].json()[0];
    assert_eq!(early["startsAt"], "2020-01-01T00:00:00.000Z");
    assert_eq!(early["endsAt"], "2020-01-01T00:00:00.000Z");
}

#[tokio::test]
async fn every_url_gets_the_alert_and_one_acceptance_is_enough() {
    let (a, b) = (Sink::start(), Sink::start());
    let down = format!("http://127.0.0.1:{}", closed_port());
    let am = AlertmanagerNotifier::from_url_list(
        &http(),
        &format!("{}, {} ,{down}", a.url(""), b.url("/prefix/")),
    )
    .unwrap();
    assert_eq!(am.url_count(), 3);
    am.send(&sample()).await.expect("two of three accepted");
    let (ga, gb) = (
        a.wait_for(1, Duration::from_secs(5)),
        b.wait_for(1, Duration::from_secs(5)),
    );
    assert_eq!(ga.len(), 1);
    assert_eq!(gb.len(), 1);
    assert_eq!(
        gb[0].path, "/prefix/api/v2/alerts",
        "a route prefix is kept"
    );
    assert_eq!(ga[0].body, gb[0].body, "the same alert to each");
    // One failing with 500, the other refusing with 400: the send fails, retried.
    a.script([Reply::status(500)]);
    b.script([Reply::status(400)]);
    let e = am.send(&sample()).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    let text = e.to_string();
    assert!(text.contains("none of the 3 Alertmanagers"), "{text}");
    assert!(
        text.contains("status 500") && text.contains("status 400"),
        "{text}"
    );
    assert!(text.contains("request failed"), "{text}");
    assert!(!text.contains("127.0.0.1"), "no URL in the error: {text}");
}

#[tokio::test]
async fn a_4xx_is_a_clear_error_not_retried_and_a_5xx_is_retried() {
    let sink = Sink::start();
    let am = AlertmanagerNotifier::new(&http(), [sink.url("")]).unwrap();
    // Alertmanager's answer to an alert it refuses, quoted in the error.
    sink.script([Reply::status(400)
        .header("content-type", "application/json")
        .echoing()]);
    let e = am.send(&sample()).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(!e.is_retryable(), "{e}");
    assert!(
        e.to_string()
            .starts_with("alertmanager returned status 400"),
        "{e}"
    );
    for status in [500, 503, 429] {
        sink.script([Reply::status(status)]);
        let e = am.send(&sample()).await.unwrap_err();
        assert!(e.is_retryable(), "{status}: {e}");
    }
    // Through the service: a 503 is retried, and the second attempt delivers.
    let service = NotificationService::builder()
        .with_retry_policy(fast_retries(2))
        .build();
    service.register(ALERTMANAGER, am.clone()).unwrap();
    sink.script([Reply::status(503)]);
    let before = sink.requests().len();
    service
        .send_with_retries(sample())
        .await
        .expect("delivered on retry");
    let got = sink.wait_for(before + 2, Duration::from_secs(5));
    assert_eq!(got.len(), before + 2);
    // The same alert again; only its end moves on with the time of sending.
    let (first, again) = (&got[before].json()[0], &got[before + 1].json()[0]);
    for key in ["labels", "annotations", "startsAt"] {
        assert_eq!(first[key], again[key], "{key}");
    }
    // A 400 is tried once.
    sink.script([Reply::status(400)]);
    let before = sink.requests().len();
    assert!(service.send_with_retries(sample()).await.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.requests().len(), before + 1);
}

fn fast_retries(n: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_retries(n)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(100), 2.0)
        .unwrap()
}

#[tokio::test]
async fn credentials_are_sent_and_never_shown() {
    const TOKEN: &str = "am-token-Zq81xLm0";
    const PASSWORD: &str = "pa55-Wq9zLk";
    let sink = Sink::with_default(Reply::status(401).echoing());
    let bearer = AlertmanagerNotifier::new(&http(), [sink.url("")])
        .unwrap()
        .with_bearer_token(TOKEN)
        .unwrap();
    let basic = AlertmanagerNotifier::new(&http(), [sink.url("")])
        .unwrap()
        .with_basic_auth("alerts", PASSWORD)
        .unwrap();
    let in_url = AlertmanagerNotifier::new(
        &http(),
        [format!("http://alerts:{PASSWORD}@{}", sink.addr())],
    )
    .unwrap();
    for am in [&bearer, &basic, &in_url] {
        let e = am.send(&sample()).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("status 401"), "{text}");
        assert!(!text.contains(TOKEN) && !text.contains(PASSWORD), "{text}");
        let debug = format!("{am:?}");
        assert!(
            !debug.contains(TOKEN) && !debug.contains(PASSWORD),
            "{debug}"
        );
    }
    let got = sink.wait_for(3, Duration::from_secs(5));
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    use base64::Engine as _;
    let basic_value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("alerts:{PASSWORD}"))
    );
    assert_eq!(got[1].header("authorization"), Some(basic_value.as_str()));
    assert_eq!(got[2].header("authorization"), Some(basic_value.as_str()));
}

#[test]
fn bad_settings_are_clear_errors_naming_the_field() {
    let http = http();
    let none: [&str; 0] = [];
    let e = AlertmanagerNotifier::new(&http, none).unwrap_err();
    assert_eq!(e.setting, "alertmanager URL");
    let e = AlertmanagerNotifier::from_url_list(&http, "http://127.0.0.1:9093,ftp://x/SECRET")
        .unwrap_err();
    assert_eq!(e.setting, "alertmanager URL");
    assert!(!e.to_string().contains("SECRET"), "{e}");
    let am = AlertmanagerNotifier::new(&http, ["http://127.0.0.1:9093"]).unwrap();
    let e = am.clone().with_label("alert-name", "x").unwrap_err();
    assert_eq!(e.setting, "alertmanager label name");
    let e = am.clone().with_label("severity", "x").unwrap_err();
    assert!(e.reason.contains("set by the provider"), "{e}");
    assert!(am.clone().with_label("team", " ").is_err());
    assert!(am.clone().with_instance("").is_err());
    assert!(am.clone().with_lease(Duration::from_millis(10)).is_err());
    assert!(am.clone().with_generator_url("not a url").is_err());
    let e = am.clone().with_bearer_token("a\nb").unwrap_err();
    assert_eq!(e.setting, "alertmanager bearer token");
    assert!(am.with_basic_auth("a:b", "c").is_err());
}

// Multi-threaded: the dispatcher's workers run while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_nobody_accepts_is_dead_lettered_and_a_replay_delivers_it() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let am = AlertmanagerNotifier::new(&http(), [url.as_str()]).unwrap();
    let service = NotificationService::builder()
        .with_retry_policy(fast_retries(2))
        .build();
    service.register(ALERTMANAGER, am).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dlq.jsonl");
    let (d, _) = support::attach_file_dispatcher(&service, &path, DispatcherConfig::default());
    let n = sample();
    service.enqueue(n.clone()).unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while d.stats().dead_lettered < 1 && std::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = d.stats();
    assert_eq!((s.dead_lettered, s.retried), (1, 2), "{s:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["providers"], serde_json::json!([ALERTMANAGER]));
    assert_eq!(line["attempts"], 3);
    assert_eq!(line["notification"]["context"]["id"], n.context.id.as_str());
    assert!(!line["last_error"].as_str().unwrap().contains(&url));
    // Alertmanager comes up on that port: the replay delivers the alert.
    let sink = Sink::with_default_on(&format!("127.0.0.1:{port}"), Reply::status(200));
    let (queued, unreadable) = {
        let d = d.clone();
        tokio::task::spawn_blocking(move || d.replay())
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!((queued, unreadable), (1, 0));
    let got = sink.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()[0]["labels"]["volume"], "/var");
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.stats.delivered, 1);
}

#[tokio::test]
async fn a_send_error_names_the_provider() {
    // A sink that never answers within the client's total timeout.
    let sink = Sink::with_default(Reply::status(200).after(Duration::from_secs(10)));
    let quick =
        HttpClient::with_timeouts(Duration::from_secs(1), Duration::from_millis(300)).unwrap();
    let am = AlertmanagerNotifier::new(&quick, [sink.url("")]).unwrap();
    let e = am.send(&sample()).await.unwrap_err();
    assert!(
        matches!(
            e,
            SendError::Timeout {
                provider: ALERTMANAGER,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retryable());
}

#[tokio::test]
async fn https_with_an_internal_ca_is_trusted_only_when_given() {
    let pki = piko_obs_testkit::pki::TestPki::generate();
    let sink = Sink::start_tls(&pki.server_tls(false));
    let url = format!("https://127.0.0.1:{}", sink.addr().port());
    // The platform's roots do not know the test CA: the handshake fails, retried.
    let plain = AlertmanagerNotifier::new(&http(), [url.as_str()]).unwrap();
    let e = plain.send(&sample()).await.unwrap_err();
    assert!(matches!(e, SendError::Transport { .. }), "{e:?}");
    assert!(e.is_retryable());
    // Given the CA, it posts over TLS.
    let trusting =
        HttpClient::with_extra_roots(Duration::from_secs(2), Duration::from_secs(3), &pki.ca_pem)
            .unwrap();
    let am = AlertmanagerNotifier::new(&trusting, [url.as_str()]).unwrap();
    am.send(&sample()).await.expect("accepted over TLS");
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/api/v2/alerts");
    let e = HttpClient::with_extra_roots(Duration::from_secs(1), Duration::from_secs(1), "none")
        .unwrap_err();
    assert_eq!(e.setting, "http client CA certificates");
}
