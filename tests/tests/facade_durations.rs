//! Every duration setting of the builder, given any value from zero to `Duration::MAX`:
//! `init()` either refuses it naming the setting, or starts, serves a probe, forwards an
//! ERROR and shuts down within its bound; no thread panics on an addition or a
//! multiplication of durations. The settings of the parts used without the facade (the
//! retry policy, the notification send timeout) are checked the same way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use piko_obs::logger;
use piko_obs::notification::{
    ErrorForwarderConfig, HttpClient, Notification, NotificationService, RetryPolicy,
    WebhookNotifier,
};
use piko_obs::sentry::SentryConfig;
use piko_obs_testkit::http_get;
use piko_obs_testkit::otlp::OtlpReceiver;
use piko_obs_testkit::sink::Sink;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Cases per property: each starts and stops the whole toolkit, so a few dozen keep the
/// test to seconds.
const CASES: u32 = 40;

/// Cases that `init()` started (the others were refused, naming a setting).
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Panics seen on any thread since the hook was installed.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
}

/// A duration from the whole range: zero (rarely: most settings refuse it, and a case
/// refused learns nothing of the others), short ones, huge ones, and the largest.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        4 => (1u64..300).prop_map(Duration::from_millis),
        4 => (1u64 << 32..u64::MAX).prop_map(Duration::from_secs),
        4 => Just(Duration::MAX),
    ]
}

/// A short duration (a drain delay or shutdown bound the case really waits for).
fn short() -> impl Strategy<Value = Duration> {
    (0u64..300).prop_map(Duration::from_millis)
}

#[derive(Debug, Clone)]
struct Settings {
    shutdown_timeout: Duration,
    drain_delay: Duration,
    health_check_timeout: Duration,
    health_response_cache: Duration,
    otlp_timeout: Duration,
    otlp_metric_interval: Duration,
    sentry_connect: Duration,
    sentry_request: Duration,
    sentry_shutdown: Duration,
    retry_initial: Duration,
    retry_max: Duration,
    error_window: Duration,
}

fn settings() -> impl Strategy<Value = Settings> {
    // The drain delay is a sleep the shutdown really takes (up to its bound): a long
    // one goes with a short bound, a long bound with a short delay.
    let shutdown = prop_oneof![(any_duration(), short()), (short(), any_duration())];
    (
        shutdown,
        any_duration(),
        any_duration(),
        any_duration(),
        any_duration(),
        (any_duration(), any_duration(), any_duration()),
        (any_duration(), any_duration()),
        any_duration(),
    )
        .prop_map(
            |(
                (shutdown_timeout, drain_delay),
                health_check_timeout,
                health_response_cache,
                otlp_timeout,
                otlp_metric_interval,
                (sentry_connect, sentry_request, sentry_shutdown),
                (retry_initial, retry_max),
                error_window,
            )| Settings {
                shutdown_timeout,
                drain_delay,
                health_check_timeout,
                health_response_cache,
                otlp_timeout,
                otlp_metric_interval,
                sentry_connect,
                sentry_request,
                sentry_shutdown,
                retry_initial,
                retry_max,
                error_window,
            },
        )
}

/// The names an `init()` error may give for a refused duration.
const SETTING_NAMES: [&str; 12] = [
    "shutdown_timeout",
    "drain_delay",
    "health_check_timeout",
    "health_response_cache",
    "otlp_timeout",
    "metric_interval",
    "connect_timeout",
    "request_timeout",
    "shutdown_timeout",
    "retry",
    "window",
    "timeout",
];

#[test]
fn no_duration_setting_panics_init_or_shutdown() {
    count_panics();
    let collector = OtlpReceiver::start();
    let sentry = Sink::start();
    let hooks = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::with_cases(CASES)
    });
    let started = Instant::now();
    let result = runner.run(&settings(), |s| {
        let before = PANICS.load(Ordering::SeqCst);
        let mut retry = RetryPolicy::default();
        retry.initial_delay = s.retry_initial;
        retry.max_delay = s.retry_max;
        let built = piko_obs::builder()
            .with_console_output(false)
            .with_health_probe_port(0)
            .with_health_bind_address("127.0.0.1")
            .with_shutdown_timeout(s.shutdown_timeout)
            .with_shutdown_drain_delay(s.drain_delay)
            .with_health_check_timeout(s.health_check_timeout)
            .with_health_response_cache(s.health_response_cache)
            .with_otlp_endpoint(collector.http_endpoint())
            .with_otlp_timeout(s.otlp_timeout)
            .with_otlp_metric_interval(s.otlp_metric_interval)
            .with_sentry(
                SentryConfig::new(format!("http://pk@{}/3", sentry.addr()))
                    .with_timeouts(s.sentry_connect, s.sentry_request)
                    .with_shutdown_timeout(s.sentry_shutdown),
            )
            .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
            .with_notification_provider(
                "webhook",
                WebhookNotifier::new(&HttpClient::new().unwrap(), &hooks.url("/alerts")).unwrap(),
            )
            .with_notification_retry_policy(retry)
            .with_error_notifications(ErrorForwarderConfig::new().with_window(s.error_window))
            .init();
        let guard = match built {
            Ok(g) => g,
            Err(e) => {
                let text = e.to_string();
                prop_assert!(
                    SETTING_NAMES.iter().any(|n| text.contains(n)),
                    "the refusal names no duration setting: {text}"
                );
                prop_assert_eq!(PANICS.load(Ordering::SeqCst), before, "a thread panicked");
                return Ok(());
            }
        };
        STARTED.fetch_add(1, Ordering::SeqCst);
        let addr = guard.health_addr().expect("the probe server runs");
        for path in ["/live", "/ready", "/ready"] {
            let answer = http_get(addr, path);
            prop_assert!(answer.is_ok(), "{path}: {answer:?}");
        }
        logger::get_logger("durations").error("payment failed", &[]);
        let bound = s.shutdown_timeout.min(Duration::from_secs(10)) + Duration::from_secs(3);
        let shutting = Instant::now();
        let _ = guard.shutdown();
        let took = shutting.elapsed();
        prop_assert!(took < bound, "shutdown took {took:?}");
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), before, "a thread panicked");
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let ran = STARTED.load(Ordering::SeqCst);
    eprintln!(
        "{CASES} cases in {:.1} s, {ran} started",
        started.elapsed().as_secs_f64()
    );
    assert!(
        ran > 0,
        "every case was refused: nothing ran with the durations"
    );
}

/// The retry policy's wait, for any attempt and any delays (set through the fields,
/// which `with_backoff` would check), never panics and never passes the longest wait or
/// the `Retry-After` asked for.
#[test]
fn the_retry_wait_never_panics() {
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::with_cases(512)
    });
    let strategy = (
        any_duration(),
        any_duration(),
        prop_oneof![Just(1.0), Just(2.0), Just(1e300), 1.0f64..10.0],
        any::<u32>(),
        proptest::option::of(any_duration()),
    );
    let result = runner.run(&strategy, |(initial, max, factor, attempt, retry_after)| {
        let mut p = RetryPolicy::default();
        p.initial_delay = initial;
        p.max_delay = max;
        p.factor = factor;
        let wait = p.delay(attempt, retry_after);
        prop_assert!(wait <= max.max(retry_after.unwrap_or(Duration::ZERO)));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A send timeout of any length, for a bulk send (whose bound is the timeout times the
/// notifications): the send returns, delivered.
#[test]
fn any_send_timeout_with_a_bulk_send_delivers() {
    let hooks = Sink::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for timeout in [
        Duration::from_secs(5),
        Duration::from_secs(u64::MAX / 2),
        Duration::MAX,
    ] {
        let service = NotificationService::builder()
            .with_send_timeout(timeout)
            .build();
        service
            .register(
                "webhook",
                WebhookNotifier::new(&HttpClient::new().unwrap(), &hooks.url("/alerts")).unwrap(),
            )
            .unwrap();
        let list = (0..3)
            .map(|i| Notification::new("disk full", format!("disk {i} is full")))
            .collect();
        let sent = runtime.block_on(service.send_bulk(None, list)).unwrap();
        assert_eq!(sent.len(), 3, "{timeout:?}");
        assert!(sent.iter().all(Result::is_ok), "{timeout:?}: {sent:?}");
    }
}
