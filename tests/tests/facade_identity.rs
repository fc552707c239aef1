//! One environment and one release for every signal: `with_environment` and
//! `with_release` reach Sentry's events, the OTLP resource and the alerts, against a
//! Sentry endpoint, the OTLP receiver and a webhook sink on loopback.

use std::time::Duration;

use opentelemetry::trace::Tracer as _;
use piko_obs::logger::{self, attr};
use piko_obs::notification::{ErrorForwarderConfig, HttpClient, WebhookNotifier, provider};
use piko_obs::sentry::SentryConfig;
use piko_obs_testkit::otlp::OtlpReceiver;
use piko_obs_testkit::sentry::events;
use piko_obs_testkit::sink::Sink;

#[test]
fn one_environment_and_release_reach_sentry_otlp_and_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (sentry, hooks, receiver) = (Sink::start(), Sink::start(), OtlpReceiver::start());
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_service_name("shop")
        .with_environment("staging")
        .with_release("shop@1.2.3")
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_notification_provider(
            provider::WEBHOOK,
            WebhookNotifier::new(&HttpClient::new().unwrap(), &hooks.url("/alerts")).unwrap(),
        )
        .with_error_notifications(ErrorForwarderConfig::new())
        .with_sentry(SentryConfig::new(format!("http://pk@{}/3", sentry.addr())))
        .with_otlp_endpoint(receiver.http_endpoint())
        .init()
        .unwrap();
    opentelemetry::global::tracer("identity").in_span("work", |_| {});
    logger::get_logger("shop").error(
        "payment failed",
        &[attr::error(&std::io::Error::other("declined"))],
    );
    guard.shutdown().unwrap();

    let event = events(&sentry.wait_for(1, Duration::from_secs(10)))
        .into_iter()
        .next()
        .expect("a Sentry event");
    assert_eq!(event.environment.as_deref(), Some("staging"));
    assert_eq!(event.release.as_deref(), Some("shop@1.2.3"));

    let alert = hooks.wait_for(1, Duration::from_secs(10));
    assert_eq!(
        alert[0].json()["environment"],
        "staging",
        "{}",
        alert[0].text()
    );

    let got = receiver.wait_until(Duration::from_secs(10), |r| !r.traces.is_empty());
    let resource = got.traces[0].request.resource_spans[0]
        .resource
        .clone()
        .unwrap();
    let value = |key: &str| {
        resource
            .attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| format!("{:?}", a.value))
    };
    assert!(
        value("deployment.environment.name")
            .unwrap()
            .contains("\"staging\"")
    );
    assert!(value("service.version").unwrap().contains("\"shop@1.2.3\""));
}
