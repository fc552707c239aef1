//! Sentry, error alerts and the guard's shutdown through the facade: an ERROR logged just
//! before shutdown still reaches Sentry and becomes one grouped alert; a shutdown facing a
//! collector, a Sentry and a webhook that all accept connections and never answer ends
//! within its bound with every log line written; bad settings fail `init()`.

use std::time::{Duration, Instant};

use piko_obs::InitError;
use piko_obs::logger::{self, Level, attr};
use piko_obs::notification::{ErrorForwarderConfig, HttpClient, WebhookNotifier};
use piko_obs::sentry::SentryConfig;
use piko_obs_logger_drains::JsonOutput;
use piko_obs_testkit::Capture;
use piko_obs_testkit::otlp::{Mode, OtlpReceiver};
use piko_obs_testkit::sentry::events;
use piko_obs_testkit::sink::{Reply, Sink};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Debug)]
struct Declined;
impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card declined")
    }
}
impl std::error::Error for Declined {}

#[derive(Debug)]
struct PaymentFailed(Declined);
impl std::fmt::Display for PaymentFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payment failed")
    }
}
impl std::error::Error for PaymentFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn an_error_logged_just_before_shutdown_reaches_sentry_and_one_alert() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let sentry = Sink::start();
    let hooks = Sink::start();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_service_name("payments")
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_notification_provider(
            "webhook",
            WebhookNotifier::new(&HttpClient::new().unwrap(), &hooks.url("/alerts")).unwrap(),
        )
        .with_error_notifications(ErrorForwarderConfig::new())
        .with_sentry(
            SentryConfig::new(format!("http://pk@{}/3", sentry.addr()))
                .with_environment("test")
                .with_release("payments@1.0.0"),
        )
        .init()
        .unwrap();
    let log = logger::get_logger("payments");
    log.info("charging card", &[attr::string("order", "o-1")]);
    for _ in 0..50 {
        log.error(
            "charge failed",
            &[
                attr::error(&PaymentFailed(Declined)),
                attr::string("token", "tok_live_9"),
            ],
        );
    }
    // Counted on /metrics while running.
    let text = piko_obs::metrics::render().unwrap();
    assert!(text.contains("piko_obs_sentry_envelopes_total"), "{text}");
    assert!(
        text.contains("piko_obs_error_notifications_records_total 50"),
        "{text}"
    );
    // The window (10 s) is still open: the shutdown sends the pending group.
    let started = Instant::now();
    guard.shutdown().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));

    let got = events(&sentry.wait_for(50, Duration::from_secs(5)));
    assert_eq!(got.len(), 50, "every event was flushed by the shutdown");
    let e = &got[0];
    assert_eq!(e.environment.as_deref(), Some("test"));
    assert_eq!(e.release.as_deref(), Some("payments@1.0.0"));
    assert_eq!(e.exception.values.len(), 2);
    assert_eq!(e.exception.values[0].ty, "Declined");
    assert_eq!(e.exception.values[1].ty, "PaymentFailed");
    // init()'s start-up summary, then the application's line.
    let crumbs: Vec<Option<&str>> = e
        .breadcrumbs
        .values
        .iter()
        .map(|b| b.message.as_deref())
        .collect();
    assert_eq!(crumbs, [Some("piko-obs started"), Some("charging card")]);
    assert!(
        sentry
            .requests()
            .iter()
            .all(|r| !r.text().contains("tok_live_9")),
        "the token never reaches Sentry"
    );

    let alerts = hooks.wait_for(1, Duration::from_secs(5));
    assert_eq!(alerts.len(), 1, "fifty identical errors, one alert");
    let a = alerts[0].json();
    assert_eq!(a["title"], "ERROR: Application Error");
    assert_eq!(a["message"], "charge failed");
    assert_eq!(a["priority"], "critical");
    assert_eq!(a["fields"]["occurrences"], "50");
    assert_eq!(a["fields"]["logger"], "payments");
    assert!(!alerts[0].text().contains("tok_live_9"));
    // A second shutdown does nothing.
    guard.shutdown().unwrap();
}

#[test]
fn a_shutdown_facing_black_holes_ends_within_its_bound_with_every_line_written() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let collector = OtlpReceiver::start();
    collector.set_mode(Mode::Hang);
    let never = Reply::status(200).after(Duration::from_secs(600));
    let sentry = Sink::with_default(never.clone());
    let hooks = Sink::with_default(never);
    let bound = Duration::from_secs(4);
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_shutdown_timeout(bound)
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_notification_provider(
            "webhook",
            WebhookNotifier::new(&HttpClient::new().unwrap(), &hooks.url("/alerts")).unwrap(),
        )
        .with_error_notifications(ErrorForwarderConfig::new())
        .with_sentry(SentryConfig::new(format!("http://pk@{}/3", sentry.addr())))
        .with_otlp_endpoint(collector.http_endpoint())
        .init()
        .unwrap();
    let cap = Capture::new();
    logger::add_output(
        "capture",
        Level::INFO,
        JsonOutput::writer(cap.clone()).build().unwrap(),
    )
    .unwrap();
    let log = logger::get_logger("orders");
    for i in 0..200 {
        log.info("order placed", &[attr::int("n", i)]);
    }
    log.error("inventory unreachable", &[attr::int("n", 200)]);
    let started = Instant::now();
    let result = guard.shutdown();
    let took = started.elapsed();
    assert!(
        took < bound + Duration::from_millis(1500),
        "the shutdown took {took:?} for a bound of {bound:?}: {result:?}"
    );
    // Steps that could not finish are reported, not hidden.
    let err = result.expect_err("a webhook that never answers cannot be flushed");
    assert!(!err.failures.is_empty());
    // Every line of the service logged before the shutdown is written (piko-obs's own
    // reports about the peers that do not answer may come in between).
    let lines: Vec<String> = cap
        .lines()
        .into_iter()
        .filter(|l| l.contains("\"logger\":\"orders\""))
        .collect();
    assert_eq!(
        lines.len(),
        201,
        "every line logged before the shutdown is written"
    );
    for (i, l) in lines.iter().enumerate() {
        assert!(l.contains(&format!("\"n\":{i}")), "line {i} in order: {l}");
    }
    // The alert that could not be delivered is on disk, not lost.
    let dead = std::fs::read_to_string(dir.path().join("d.jsonl")).unwrap_or_default();
    assert!(
        dead.contains("inventory unreachable"),
        "the pending alert went to the dead-letter file: {dead:?}"
    );
}

#[test]
fn bad_sentry_and_alert_settings_fail_init_naming_the_setting() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let err = piko_obs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_sentry(SentryConfig::new("not a dsn"))
        .init()
        .unwrap_err();
    assert!(matches!(err, InitError::Sentry(_)), "{err:?}");
    assert!(err.to_string().contains("dsn"), "{err}");
    let err = piko_obs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_error_notifications(ErrorForwarderConfig::new().with_window(Duration::ZERO))
        .init()
        .unwrap_err();
    assert!(err.to_string().contains("window"), "{err}");
    let err = piko_obs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_notifications_enabled(false)
        .with_error_notifications(ErrorForwarderConfig::new())
        .init()
        .unwrap_err();
    assert!(matches!(
        err,
        InitError::ErrorNotificationsWithoutNotifications
    ));
}
