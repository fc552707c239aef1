//! The notification service and dispatcher against webhook sinks on loopback: retries,
//! Retry-After, classification, timeouts, panics, the circuit breaker, the dead-letter
//! file, shutdown, replay, and the accounting of 1,000 notifications.

mod support;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use piko_obs_notify::{
    BreakerPolicy, Capabilities, DeadLetterStore as _, DeliveryError, Dispatcher, DispatcherConfig,
    Enqueued, Notification, NotificationService, Notifier, RegisterError, RetryPolicy, SendError,
};
use piko_obs_notify_providers::{FileDeadLetterStore, HttpClient, WebhookNotifier};
use piko_obs_testkit::sink::{Reply, Sink};

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_retries(max_retries)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(100), 2.0)
        .unwrap()
}

fn service_with(sink: &Sink, retry: RetryPolicy, http: &HttpClient) -> NotificationService {
    let s = NotificationService::builder()
        .with_retry_policy(retry)
        .build();
    s.register(
        "webhook",
        WebhookNotifier::new(http, &sink.url("/hook")).unwrap(),
    )
    .unwrap();
    s
}

/// A dispatcher for `s` with a dead-letter file in `dir`, attached to `s`.
fn dispatch(
    s: &NotificationService,
    dir: &tempfile::TempDir,
    config: DispatcherConfig,
) -> (Dispatcher, Arc<FileDeadLetterStore>) {
    support::attach_file_dispatcher(s, &dir.path().join("dlq.jsonl"), config)
}

/// A service sending to `sink` with no retries, and its dispatcher (attached) with one
/// worker, a queue of `queue` and a dead-letter writer queue of `writer_queue`.
fn one_worker(
    sink: &Sink,
    store: Arc<dyn piko_obs_notify::DeadLetterStore>,
    queue: usize,
    writer_queue: usize,
) -> (NotificationService, Dispatcher) {
    let s = service_with(sink, fast_retries(0), &HttpClient::new().unwrap());
    let config = DispatcherConfig::default()
        .with_queue_capacity(queue)
        .with_workers(1)
        .with_dead_letter_queue(writer_queue);
    let d = Dispatcher::start(&tokio::runtime::Handle::current(), &s, store, config).unwrap();
    s.attach_dispatcher(d.clone()).unwrap();
    (s, d)
}

/// `n` dead letters titled `{prefix}0`, `{prefix}1`, ..., left by a webhook that
/// answered 503 three times.
fn failed_earlier(prefix: &str, n: usize) -> Vec<piko_obs_notify::DeadLetter> {
    (0..n)
        .map(|i| {
            piko_obs_notify::DeadLetter::new(
                Notification::new(format!("{prefix}{i}"), "m"),
                vec!["webhook".into()],
                3,
                std::time::SystemTime::now(),
                "webhook returned status 503".into(),
            )
        })
        .collect()
}

fn titles(entries: &[piko_obs_notify::DeadLetter]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.notification.content.title.clone())
        .collect()
}

#[tokio::test]
async fn a_500_then_200_is_delivered_on_retry() {
    let sink = Sink::start();
    sink.script([Reply::status(500)]);
    let s = service_with(&sink, fast_retries(3), &HttpClient::new().unwrap());
    s.notification()
        .title("t")
        .message("m")
        .send_with_retries()
        .await
        .unwrap();
    let got = sink.requests();
    assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 200]);
    let stats = s.provider_stats();
    assert_eq!((stats[0].delivered, stats[0].failed_attempts), (1, 1));
}

#[tokio::test]
async fn a_429_with_retry_after_waits_at_least_that_long() {
    let sink = Sink::start();
    sink.script([Reply::status(429).header("Retry-After", "2")]);
    let s = service_with(&sink, fast_retries(3), &HttpClient::new().unwrap());
    s.notification()
        .title("t")
        .send_with_retries()
        .await
        .unwrap();
    let got = sink.requests();
    assert_eq!(got.len(), 2);
    let waited = got[1].at - got[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(4), "retried after {waited:?}");
}

#[tokio::test]
async fn a_400_is_not_retried_and_goes_to_the_dead_letter_file_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::with_default(Reply::status(400));
    let s = service_with(&sink, fast_retries(5), &HttpClient::new().unwrap());
    let (d, store) = dispatch(&s, &dir, DispatcherConfig::default());
    assert_eq!(
        s.notification().title("bad request").enqueue(),
        Ok(Enqueued::Queued)
    );
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.within_bound);
    assert_eq!(sink.requests().len(), 1, "a 400 is not retried");
    assert_eq!(report.stats.dead_lettered, 1);
    let batch = store.read_all().unwrap();
    let e = &batch.entries[0];
    assert_eq!(e.providers, ["webhook"]);
    assert_eq!(e.attempts, 1);
    assert!(
        e.last_error.contains("webhook returned status 400"),
        "{}",
        e.last_error
    );
    assert!(
        !e.last_error.contains("/hook"),
        "no URL in errors: {}",
        e.last_error
    );
    // The same through `send`: the error says which provider, how often, and why.
    let e = s
        .notification()
        .title("again")
        .send_with_retries()
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("webhook after 1 attempt(s): webhook returned status 400"),
        "{e}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_is_retried() {
    let sink = Sink::start();
    sink.script([Reply::status(200).after(Duration::from_secs(30))]);
    let http =
        HttpClient::with_timeouts(Duration::from_secs(1), Duration::from_millis(300)).unwrap();
    let s = service_with(&sink, fast_retries(2), &http);
    let started = Instant::now();
    s.notification()
        .title("t")
        .send_with_retries()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(sink.requests().len(), 2);
    assert_eq!(s.provider_stats()[0].failed_attempts, 1);
}

struct Panics;
impl Notifier for Panics {
    async fn send(&self, _: &Notification) -> Result<(), SendError> {
        panic!("provider bug")
    }
}

#[tokio::test]
async fn a_panicking_provider_is_an_error_and_the_others_still_deliver() {
    let sink = Sink::start();
    let s = service_with(&sink, fast_retries(2), &HttpClient::new().unwrap());
    s.register("buggy", Panics).unwrap();
    let e = s
        .notification()
        .title("t")
        .to_providers(["webhook", "buggy"])
        .send_with_retries()
        .await
        .unwrap_err();
    let DeliveryError::Failed {
        failures,
        delivered,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!(delivered, &["webhook"]);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].provider, "buggy");
    assert_eq!(failures[0].attempts, 1, "a panic is not retried");
    assert!(
        e.to_string().contains("provider panicked: provider bug"),
        "{e}"
    );
    // The service carries on.
    s.notification()
        .title("after")
        .send_with_retries()
        .await
        .unwrap();
    assert_eq!(sink.requests().len(), 2);
}

/// A service sending to `sink` with no retries and a breaker that opens after 3
/// failures.
fn breaker_of_three(sink: &Sink) -> NotificationService {
    let s = NotificationService::builder()
        .with_retry_policy(fast_retries(0))
        .with_circuit_breaker(BreakerPolicy::new(3, Duration::from_secs(30)))
        .build();
    s.register(
        "webhook",
        WebhookNotifier::new(&HttpClient::new().unwrap(), &sink.url("/h")).unwrap(),
    )
    .unwrap();
    s
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_spares_the_platform() {
    let sink = Sink::with_default(Reply::status(500));
    let s = breaker_of_three(&sink);
    for _ in 0..3 {
        assert!(
            s.notification()
                .title("t")
                .send_with_retries()
                .await
                .is_err()
        );
    }
    let e = s
        .notification()
        .title("t")
        .send_with_retries()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("circuit breaker open"), "{e}");
    assert_eq!(sink.requests().len(), 3, "an open circuit sends nothing");
}

#[tokio::test]
async fn refused_notifications_do_not_open_the_circuit() {
    // Three malformed alerts refused with a 400, then a good one: the platform is up,
    // and the good one goes through.
    let sink = Sink::start();
    sink.script([Reply::status(400), Reply::status(400), Reply::status(400)]);
    let s = breaker_of_three(&sink);
    for _ in 0..3 {
        let e = s
            .notification()
            .title("bad")
            .send_with_retries()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("400"), "{e}");
    }
    s.notification()
        .title("good")
        .send_with_retries()
        .await
        .unwrap();
    assert_eq!(sink.requests().len(), 4);
}

#[tokio::test]
async fn registry_rules_and_bad_notifications() {
    let s = NotificationService::default();
    assert!(matches!(
        s.register("", piko_obs_notify::NoopNotifier),
        Err(RegisterError::EmptyName)
    ));
    s.register("b", piko_obs_notify::NoopNotifier).unwrap();
    s.register("a", piko_obs_notify::NoopNotifier).unwrap();
    assert_eq!(
        s.register("a", piko_obs_notify::NoopNotifier),
        Err(RegisterError::Duplicate("a".into()))
    );
    assert_eq!(
        s.default_provider().as_deref(),
        Some("b"),
        "the first registered"
    );
    assert_eq!(s.providers(), ["a", "b"]);
    assert!(s.set_default("zzz").is_err());
    s.set_default("a").unwrap();
    assert!(matches!(
        s.notification().send_with_retries().await,
        Err(DeliveryError::Empty)
    ));
    let e = s
        .notification()
        .title("t")
        .provider("nope")
        .send_with_retries()
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no notification provider named \"nope\" is registered"
    );
    assert_eq!(
        s.notification().title("t").enqueue(),
        Err(piko_obs_notify::EnqueueError::NoDispatcher)
    );
}

#[tokio::test]
async fn the_context_is_filled_in_from_the_service() {
    let sink = Sink::start();
    let s = NotificationService::builder()
        .with_source("billing")
        .with_environment("staging")
        .with_service("orders")
        .with_trace_id_source(|| Some("0af7651916cd43dd8448eb211c80319c".into()))
        .build();
    s.register(
        "webhook",
        WebhookNotifier::new(&HttpClient::new().unwrap(), &sink.url("/h")).unwrap(),
    )
    .unwrap();
    s.notification()
        .title("t")
        .source("own-source")
        .send_with_retries()
        .await
        .unwrap();
    let b = sink.requests()[0].json();
    assert_eq!(b["source"], "own-source");
    assert_eq!(b["environment"], "staging");
    assert_eq!(b["service"], "orders");
    assert_eq!(b["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(b["priority"], "normal");
    assert!(b["timestamp"].as_str().unwrap().starts_with("20"));
}

#[tokio::test]
async fn shutdown_dead_letters_what_waits_for_a_retry_and_replay_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::with_default(Reply::status(503));
    let retry = RetryPolicy::default()
        .with_backoff(Duration::from_secs(60), Duration::from_secs(60), 2.0)
        .unwrap();
    let s = service_with(&sink, retry, &HttpClient::new().unwrap());
    let (d, store) = dispatch(&s, &dir, DispatcherConfig::default());
    for i in 0..5 {
        s.notification().title(format!("n{i}")).enqueue().unwrap();
    }
    sink.wait_for(5, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.stats().waiting_retry < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let report = d.shutdown(Duration::from_secs(3)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(report.within_bound);
    assert_eq!(report.stats.dead_lettered, 5);
    assert_eq!(report.stats.retried, 5);
    let batch = store.read_all().unwrap();
    let mut got = titles(&batch.entries);
    got.sort();
    assert_eq!(got, ["n0", "n1", "n2", "n3", "n4"]);
    assert!(
        batch.entries[0].last_error.contains("503"),
        "{}",
        batch.entries[0].last_error
    );
    assert!(
        batch.entries[0]
            .last_error
            .contains("shut down before its next retry")
    );
    // After shutdown, enqueue still loses nothing and still returns at once: it hands
    // the notification to the dead-letter writer, which writes it to the file.
    let started = Instant::now();
    assert_eq!(
        s.notification().title("late").enqueue(),
        Ok(Enqueued::DeadLettered)
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(d.flush_dead_letters(Duration::from_secs(5)).await);
    assert_eq!(d.stats().dead_letter_pending, 0);

    // Replay into a new dispatcher once the platform is back.
    let ok = Sink::start();
    let s2 = service_with(&ok, fast_retries(1), &HttpClient::new().unwrap());
    let d2 = Dispatcher::start(
        &tokio::runtime::Handle::current(),
        &s2,
        store.clone(),
        DispatcherConfig::default(),
    )
    .unwrap();
    // The five, and the late one, written to the file directly after shutdown.
    let on_disk = store.read_all().unwrap().entries.len();
    assert_eq!(on_disk, 6);
    let (queued, skipped) = d2.replay().unwrap();
    assert_eq!((queued, skipped), (on_disk, 0));
    let report = d2.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.stats.delivered as usize, on_disk);
    assert_eq!(ok.requests().len(), on_disk);
    assert!(store.read_all().unwrap().entries.is_empty());
    // Every replayed entry was delivered: the set-aside copy is gone.
    assert!(store.replaying_files().unwrap().is_empty());
}

#[tokio::test]
async fn a_full_queue_sends_to_the_dead_letter_file_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::with_default(Reply::status(200).after(Duration::from_millis(500)));
    let s = service_with(&sink, fast_retries(0), &HttpClient::new().unwrap());
    let config = DispatcherConfig::default()
        .with_queue_capacity(2)
        .with_workers(1);
    let (d, store) = dispatch(&s, &dir, config);
    let started = Instant::now();
    let outcomes: Vec<Enqueued> = (0..20)
        .map(|i| s.notification().title(format!("n{i}")).enqueue().unwrap())
        .collect();
    // One send takes 500 ms: twenty enqueues that waited for a send would take longer.
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "enqueue never waits"
    );
    let queued = outcomes.iter().filter(|o| **o == Enqueued::Queued).count();
    let overflowed = outcomes
        .iter()
        .filter(|o| **o == Enqueued::DeadLettered)
        .count();
    assert!(
        queued >= 2 && overflowed >= 15,
        "{queued} queued, {overflowed} overflowed"
    );
    let report = d.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        report.stats.delivered as usize + report.stats.dead_lettered as usize,
        20
    );
    assert_eq!(report.stats.dropped, 0);
    assert_eq!(
        store.read_all().unwrap().entries.len(),
        report.stats.dead_lettered as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_notifications_against_a_flaky_sink_are_all_delivered_or_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    sink.fail_at_random(0.4);
    // Random failures would trip the circuit breaker; this test is about retries.
    let s = NotificationService::builder()
        .with_retry_policy(fast_retries(2))
        .with_circuit_breaker(BreakerPolicy::new(0, Duration::from_secs(1)))
        .build();
    s.register(
        "webhook",
        WebhookNotifier::new(&HttpClient::new().unwrap(), &sink.url("/hook")).unwrap(),
    )
    .unwrap();
    let (d, store) = dispatch(
        &s,
        &dir,
        DispatcherConfig::default().with_queue_capacity(2000),
    );
    let enqueued = Arc::new(AtomicUsize::new(0));
    for i in 0..1000 {
        if s.notification().title(format!("n{i}")).enqueue() == Ok(Enqueued::Queued) {
            enqueued.fetch_add(1, Ordering::Relaxed);
        }
    }
    assert_eq!(enqueued.load(Ordering::Relaxed), 1000);
    // Let the retries run their course (bounded), then shut down.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = d.stats();
        if st.delivered + st.dead_lettered >= 1000 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = d.shutdown(Duration::from_secs(60)).await;
    assert!(report.within_bound);
    let stats = report.stats;
    assert_eq!(stats.delivered + stats.dead_lettered, 1000, "{stats:?}");
    assert_eq!(stats.dropped + stats.dead_letter_errors, 0);
    assert!(
        stats.dead_lettered > 0 && stats.delivered > 800,
        "{stats:?}"
    );
    assert!(stats.retried > 300, "{stats:?}");
    // What the sink accepted and what is on disk cover every notification, once each.
    let accepted: HashSet<String> = sink
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["title"].as_str().unwrap().to_string())
        .collect();
    let dead: HashSet<String> = titles(&store.read_all().unwrap().entries)
        .into_iter()
        .collect();
    assert_eq!(accepted.len() as u64, stats.delivered);
    assert_eq!(dead.len() as u64, stats.dead_lettered);
    assert!(accepted.is_disjoint(&dead));
    assert_eq!(accepted.union(&dead).count(), 1000);
}

// `Sink::wait_for` blocks its thread: the workers need another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_with_retry_after_waits_at_least_that_long_in_the_dispatcher() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    sink.script([Reply::status(503).header("Retry-After", "2")]);
    // Backoff alone would retry after 20 ms.
    let s = service_with(&sink, fast_retries(3), &HttpClient::new().unwrap());
    let (d, _store) = dispatch(&s, &dir, DispatcherConfig::default());
    assert_eq!(s.notification().title("t").enqueue(), Ok(Enqueued::Queued));
    let got = sink.wait_for(2, Duration::from_secs(10));
    assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), [503, 200]);
    let waited = got[1].at - got[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(4), "retried after {waited:?}");
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.stats.delivered, report.stats.retried), (1, 1));
}

#[tokio::test]
async fn a_408_is_a_4xx_and_not_retried() {
    let sink = Sink::with_default(Reply::status(408));
    let s = service_with(&sink, fast_retries(3), &HttpClient::new().unwrap());
    let e = s
        .notification()
        .title("t")
        .send_with_retries()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("after 1 attempt(s)"), "{e}");
    assert_eq!(sink.requests().len(), 1);
}

#[tokio::test]
async fn a_cancelled_trial_send_does_not_keep_the_circuit_shut() {
    // The first request fails (the circuit opens), the second never gets an answer.
    let sink = Sink::start();
    sink.script([
        Reply::status(500),
        Reply::status(200).after(Duration::from_secs(30)),
    ]);
    let s = NotificationService::builder()
        .with_retry_policy(fast_retries(0))
        .with_circuit_breaker(BreakerPolicy::new(1, Duration::from_millis(300)))
        .build();
    s.register(
        "webhook",
        WebhookNotifier::new(&HttpClient::new().unwrap(), &sink.url("/h")).unwrap(),
    )
    .unwrap();
    assert!(
        s.notification()
            .title("opens")
            .send_with_retries()
            .await
            .is_err()
    );
    let e = s
        .notification()
        .title("refused")
        .send_with_retries()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("circuit breaker open"), "{e}");
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The half-open trial: the caller gives up on it after 200 ms.
    let trial = tokio::time::timeout(
        Duration::from_millis(200),
        s.notification().title("trial").send_with_retries(),
    )
    .await;
    assert!(trial.is_err(), "the trial was cancelled");
    assert_eq!(sink.wait_for(2, Duration::from_secs(5)).len(), 2);
    // The cancelled trial counts as a failure: open again for 300 ms, not for good.
    let e = s
        .notification()
        .title("refused")
        .send_with_retries()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("circuit breaker open"), "{e}");
    tokio::time::sleep(Duration::from_millis(350)).await;
    s.notification()
        .title("tried again")
        .send_with_retries()
        .await
        .expect("a new trial goes through once the open period has passed");
    let got = sink.requests();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].json()["title"], "tried again");
    // Closed again.
    s.notification()
        .title("closed")
        .send_with_retries()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_aborted_at_the_bound_still_dead_letters_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::with_default(Reply::status(200).after(Duration::from_secs(30)));
    let s = service_with(&sink, fast_retries(0), &HttpClient::new().unwrap());
    let config = DispatcherConfig::default().with_workers(2);
    let (d, store) = dispatch(&s, &dir, config);
    for i in 0..5 {
        s.notification().title(format!("n{i}")).enqueue().unwrap();
    }
    // Two in flight (one per worker, never answered), three queued.
    sink.wait_for(2, Duration::from_secs(5));
    let bound = Duration::from_millis(800);
    let started = Instant::now();
    let report = d.shutdown(bound).await;
    let took = started.elapsed();
    assert!(took < bound + Duration::from_millis(200), "took {took:?}");
    assert!(!report.within_bound, "the workers were cut off");
    let st = report.stats;
    assert_eq!(
        (st.delivered, st.dead_lettered, st.dropped),
        (0, 5, 0),
        "{st:?}"
    );
    assert_eq!((st.in_flight, st.dead_letter_pending), (0, 0), "{st:?}");
    let batch = store.read_all().unwrap();
    let mut got = titles(&batch.entries);
    got.sort();
    assert_eq!(got, ["n0", "n1", "n2", "n3", "n4"]);
    assert!(
        batch
            .entries
            .iter()
            .all(|e| e.last_error.contains("shutdown bound reached")),
        "{:?}",
        batch.entries
    );
}

/// The promise at shutdown, under load: 1,000 notifications against a sink that fails
/// at random, with the default circuit breaker, and shutdown called while most are
/// still queued, in flight or waiting for a retry. Every notification is delivered or
/// in the dead-letter file. At least once: an attempt cut off at the bound may have
/// reached the sink and is also in the file, so the two sets may overlap; distinct
/// notifications are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_in_the_middle_of_a_thousand_with_the_breaker_on_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::with_default(Reply::status(200).after(Duration::from_millis(10)));
    sink.fail_at_random(0.25);
    let retry = RetryPolicy::default()
        .with_max_retries(5)
        .with_backoff(Duration::from_millis(100), Duration::from_millis(800), 2.0)
        .unwrap();
    let s = service_with(&sink, retry, &HttpClient::new().unwrap());
    let (d, store) = dispatch(&s, &dir, DispatcherConfig::default());
    for i in 0..1000 {
        assert_eq!(
            s.notification().title(format!("n{i}")).enqueue(),
            Ok(Enqueued::Queued)
        );
    }
    // Shut down once retries are under way, while many are still unsettled.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.stats().retried < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = d.stats();
    let unsettled = before.queued + before.in_flight + before.waiting_retry;
    assert!(unsettled >= 300, "not in the middle: {before:?}");
    assert!(before.waiting_retry > 0, "{before:?}");
    let bound = Duration::from_millis(1500);
    let started = Instant::now();
    let report = d.shutdown(bound).await;
    let took = started.elapsed();
    assert!(took < bound + Duration::from_millis(300), "took {took:?}");
    let st = report.stats;
    assert_eq!(st.delivered + st.dead_lettered, 1000, "{st:?}");
    assert_eq!(
        (st.dropped, st.dead_letter_errors, st.dead_letter_pending),
        (0, 0, 0),
        "{st:?}"
    );
    assert_eq!(
        (st.queued, st.in_flight, st.waiting_retry),
        (0, 0, 0),
        "{st:?}"
    );
    // Distinct notifications: accepted by the sink, or in the file (once each).
    let accepted: HashSet<String> = sink
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["title"].as_str().unwrap().to_string())
        .collect();
    let entries = store.read_all().unwrap().entries;
    let dead: HashSet<String> = titles(&entries).into_iter().collect();
    assert_eq!(dead.len(), entries.len(), "no notification written twice");
    assert_eq!(dead.len() as u64, st.dead_lettered);
    assert!(accepted.len() as u64 >= st.delivered);
    let all: HashSet<String> = accepted.union(&dead).cloned().collect();
    assert_eq!(all.len(), 1000);
    // The overlap is what the at-least-once note is about: cut off at the bound.
    let twice = accepted.intersection(&dead).count();
    assert!(twice <= 4, "only in-flight attempts can overlap: {twice}");
}

/// A replay interrupted (its process dies while re-delivering) leaves the entries on
/// disk; the next replay delivers them, each once.
#[test]
fn an_interrupted_replay_loses_nothing() {
    const CHILD: &str = "PIKO_OBS_TEST_REPLAY_DIES_IN";
    // The child's part: replay against a platform that never answers, then die mid-way
    // (no destructor, no shutdown: the process is gone with the deliveries under way).
    if let Ok(path) = std::env::var(CHILD) {
        let store = Arc::new(FileDeadLetterStore::open(std::path::Path::new(&path)).unwrap());
        let hang = Sink::with_default(Reply::status(200).after(Duration::from_secs(30)));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _in = rt.enter();
        let s = service_with(&hang, fast_retries(1), &HttpClient::new().unwrap());
        let d =
            Dispatcher::start(rt.handle(), &s, store.clone(), DispatcherConfig::default()).unwrap();
        assert_eq!(d.replay().unwrap(), (20, 0));
        hang.wait_for(4, Duration::from_secs(5));
        println!("replay under way");
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dlq.jsonl");
    let store = Arc::new(FileDeadLetterStore::open(&path).unwrap());
    store.append_all(&failed_earlier("n", 20)).unwrap();

    // First process: dies mid-replay.
    let run = piko_obs_testkit::rerun_in_child_with(
        "an_interrupted_replay_loses_nothing",
        &[(CHILD, path.to_str().unwrap())],
        false,
        Duration::from_secs(60),
    );
    assert!(
        run.stdout.contains("replay under way") && !run.status.success(),
        "the child did not die mid-replay: {}\n{}\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    assert_eq!(store.replaying_files().unwrap().len(), 1, "still on disk");
    assert!(store.read_all().unwrap().entries.is_empty());

    // Next process: the platform is back; the replay picks the set-aside file up.
    let ok = Sink::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Arc::new(FileDeadLetterStore::open(&path).unwrap());
        let s = service_with(&ok, fast_retries(1), &HttpClient::new().unwrap());
        let d = Dispatcher::start(
            &tokio::runtime::Handle::current(),
            &s,
            store.clone(),
            DispatcherConfig::default(),
        )
        .unwrap();
        assert_eq!(d.replay().unwrap(), (20, 0));
        let report = d.shutdown(Duration::from_secs(10)).await;
        assert!(report.within_bound);
        assert_eq!(report.stats.delivered, 20);
        assert!(store.replaying_files().unwrap().is_empty());
        assert!(store.read_all().unwrap().entries.is_empty());
        let (batch, token) = store.begin_replay().unwrap();
        assert!(batch.entries.is_empty(), "nothing left to replay");
        store.end_replay(token, true).unwrap();
    });
    let got: Vec<String> = ok
        .requests()
        .iter()
        .map(|r| r.json()["title"].as_str().unwrap().to_string())
        .collect();
    let distinct: HashSet<&String> = got.iter().collect();
    assert_eq!((got.len(), distinct.len()), (20, 20), "each once: {got:?}");
}

/// Panics in `capabilities`, which the service calls before any future exists.
struct PanicsInCapabilities;
impl Notifier for PanicsInCapabilities {
    async fn send(&self, _: &Notification) -> Result<(), SendError> {
        Ok(())
    }
    fn capabilities(&self) -> Capabilities {
        panic!("capabilities bug")
    }
}

/// A hand-written `send` that panics while making its future, before any poll.
struct PanicsBeforeItsFuture;
impl Notifier for PanicsBeforeItsFuture {
    fn send(&self, n: &Notification) -> impl Future<Output = Result<(), SendError>> + Send {
        if !n.content.title.is_empty() {
            panic!("send bug");
        }
        async { Ok(()) }
    }
}

/// Waits (bounded) until `d` has delivered `n` notifications.
async fn wait_delivered(d: &Dispatcher, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.stats().delivered < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_panicking_outside_its_future_is_an_error_and_the_dispatcher_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let s = service_with(&sink, fast_retries(2), &HttpClient::new().unwrap());
    s.register("caps", PanicsInCapabilities).unwrap();
    s.register("eager", PanicsBeforeItsFuture).unwrap();
    // Through `send`: an error naming the panic, not a crash, and not retried.
    for p in ["caps", "eager"] {
        let e = s
            .notification()
            .title("t")
            .provider(p)
            .send_with_retries()
            .await;
        let Err(DeliveryError::Failed { failures, .. }) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(failures[0].attempts, 1, "{p}");
        assert!(
            failures[0].error.to_string().contains("provider panicked"),
            "{p}: {}",
            failures[0].error
        );
    }
    // Through the dispatcher, with one worker: had a panic killed it, nothing after
    // would be delivered.
    let (d, store) = dispatch(&s, &dir, DispatcherConfig::default().with_workers(1));
    for (title, provider) in [("p-caps", "caps"), ("p-eager", "eager")] {
        assert_eq!(
            s.notification().title(title).provider(provider).enqueue(),
            Ok(Enqueued::Queued)
        );
    }
    for i in 0..3 {
        assert_eq!(
            s.notification().title(format!("ok{i}")).enqueue(),
            Ok(Enqueued::Queued)
        );
    }
    wait_delivered(&d, 3).await;
    assert_eq!(
        d.stats().delivered,
        3,
        "the worker carried on: {:?}",
        d.stats()
    );
    assert_eq!(d.stats().in_flight, 0);
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.within_bound);
    let st = report.stats;
    assert_eq!(
        (st.delivered, st.dead_lettered, st.dropped, st.in_flight),
        (3, 2, 0, 0),
        "{st:?}"
    );
    let entries = store.read_all().unwrap().entries;
    let mut got = titles(&entries);
    got.sort();
    assert_eq!(got, ["p-caps", "p-eager"]);
    assert!(
        entries
            .iter()
            .all(|e| e.last_error.contains("provider panicked")),
        "{entries:?}"
    );
    let webhook: Vec<String> = sink
        .requests()
        .iter()
        .map(|r| r.json()["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(webhook, ["ok0", "ok1", "ok2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_cancelled_mid_way_is_finished_by_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::with_default(Reply::status(200).after(Duration::from_secs(30)));
    let s = service_with(&sink, fast_retries(0), &HttpClient::new().unwrap());
    let (d, store) = dispatch(&s, &dir, DispatcherConfig::default().with_workers(2));
    for i in 0..5 {
        s.notification().title(format!("n{i}")).enqueue().unwrap();
    }
    // Two in flight (never answered), three queued.
    sink.wait_for(2, Duration::from_secs(5));
    // The caller gives up on a shutdown with a long bound while it waits for the
    // workers: its future is dropped.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        d.shutdown(Duration::from_secs(60)),
    )
    .await;
    assert!(cancelled.is_err(), "cancelled mid-way");
    assert_eq!(
        s.notification().title("late").enqueue(),
        Ok(Enqueued::DeadLettered),
        "shut down for new notifications"
    );
    // The next call finishes its work: every job ends on disk.
    let bound = Duration::from_millis(800);
    let started = Instant::now();
    let report = d.shutdown(bound).await;
    assert!(started.elapsed() < bound + Duration::from_millis(200));
    assert!(!report.within_bound, "the workers were cut off");
    let st = report.stats;
    assert_eq!(
        (
            st.delivered,
            st.dead_lettered,
            st.dropped,
            st.dead_letter_errors
        ),
        (0, 6, 0, 0),
        "{st:?}"
    );
    assert_eq!(
        (
            st.queued,
            st.in_flight,
            st.waiting_retry,
            st.dead_letter_pending
        ),
        (0, 0, 0, 0),
        "{st:?}"
    );
    let mut got = titles(&store.read_all().unwrap().entries);
    got.sort();
    assert_eq!(got, ["late", "n0", "n1", "n2", "n3", "n4"]);
    // Nothing left for a third call, which returns at once.
    let started = Instant::now();
    let again = d.shutdown(Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(again.within_bound);
    assert_eq!(again.stats.dead_lettered, 6);
    assert_eq!(store.read_all().unwrap().entries.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_larger_than_the_writer_queue_drops_nothing_and_leaves_it_free() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileDeadLetterStore::open(dir.path().join("dlq.jsonl")).unwrap());
    store.append_all(&failed_earlier("old", 300)).unwrap();
    // The platform is down: it never answers. 300 entries for a queue of 4 and a
    // dead-letter writer queue of 8.
    let sink = Sink::with_default(Reply::status(200).after(Duration::from_secs(30)));
    let (s, d) = one_worker(&sink, store.clone(), 4, 8);
    let (queued, skipped) = d.replay().unwrap();
    assert_eq!(skipped, 0);
    assert!((4..=5).contains(&queued), "{queued}");
    // What did not fit was written by the replay itself, not queued for the writer.
    assert_eq!(store.read_all().unwrap().entries.len(), 300 - queued);
    let st = d.stats();
    assert_eq!((st.dead_letter_pending, st.dropped), (0, 0), "{st:?}");
    assert_eq!(st.dead_lettered as usize, 300 - queued);
    // New notifications while the replayed ones are still being attempted: the queue
    // is full (or nearly), the writer's queue is free: none is dropped.
    for i in 0..5 {
        let r = s.notification().title(format!("new{i}")).enqueue();
        assert!(r.is_ok(), "new{i}: {r:?}");
    }
    let report = d.shutdown(Duration::from_secs(1)).await;
    let st = report.stats;
    assert_eq!(
        (st.dropped, st.dead_letter_errors, st.dead_letter_pending),
        (0, 0, 0),
        "{st:?}"
    );
    assert_eq!((st.delivered, st.dead_lettered), (0, 305), "{st:?}");
    let got: HashSet<String> = titles(&store.read_all().unwrap().entries)
        .into_iter()
        .collect();
    assert_eq!(got.len(), 305, "each once");
    assert!((0..300).all(|i| got.contains(&format!("old{i}"))));
    assert!((0..5).all(|i| got.contains(&format!("new{i}"))));
    // Every replayed entry was written again or dead-lettered: the set-aside copy is
    // gone once the writer has ended the replay.
    assert!(d.flush_dead_letters(Duration::from_secs(5)).await);
    assert!(store.replaying_files().unwrap().is_empty());
}

/// A real dead-letter file whose writes wait at a gate until the test opens it: holds
/// the writer thread in the middle of a group.
struct GatedStore {
    file: FileDeadLetterStore,
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    writes_begun: AtomicUsize,
}

impl GatedStore {
    /// A store writing to `dlq.jsonl` in `dir` once its gate is opened.
    fn closed(dir: &tempfile::TempDir) -> GatedStore {
        GatedStore {
            file: FileDeadLetterStore::open(dir.path().join("dlq.jsonl")).unwrap(),
            open: std::sync::Mutex::new(false),
            opened: std::sync::Condvar::new(),
            writes_begun: AtomicUsize::new(0),
        }
    }

    fn open_gate(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl piko_obs_notify::DeadLetterStore for GatedStore {
    fn append(&self, entry: &piko_obs_notify::DeadLetter) -> std::io::Result<()> {
        self.append_all(std::slice::from_ref(entry))
    }
    fn append_all(&self, entries: &[piko_obs_notify::DeadLetter]) -> std::io::Result<()> {
        self.writes_begun.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        drop(open);
        self.file.append_all(entries)
    }
    fn take_all(&self) -> std::io::Result<piko_obs_notify::DeadLetterBatch> {
        self.file.take_all()
    }
}

/// Polls `done` every 10 ms for at most 5 s.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_queue_bound_counts_what_the_writer_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(GatedStore::closed(&dir));
    // The platform never answers: the one worker holds "a", the queue holds "b".
    let sink = Sink::with_default(Reply::status(200).after(Duration::from_secs(30)));
    let (s, d) = one_worker(&sink, store.clone(), 1, 4);
    let enqueue = |t: &str| s.notification().title(t).enqueue();
    assert_eq!(enqueue("a").unwrap(), Enqueued::Queued);
    assert!(
        eventually(|| d.stats().in_flight == 1).await,
        "{:?}",
        d.stats()
    );
    assert_eq!(enqueue("b").unwrap(), Enqueued::Queued);
    // The queue is full: "c" goes to the idle writer, which wakes and takes it, and
    // waits at the gate.
    assert_eq!(enqueue("c").unwrap(), Enqueued::DeadLettered);
    assert!(eventually(|| store.writes_begun.load(Ordering::SeqCst) == 1).await);
    // Room for 4 entries in all, one of them held by the writer: 3 more, then drops.
    let outcomes: Vec<bool> = (0..10).map(|i| enqueue(&format!("d{i}")).is_ok()).collect();
    assert_eq!(
        outcomes,
        [true, true, true]
            .into_iter()
            .chain([false; 7])
            .collect::<Vec<_>>()
    );
    let st = d.stats();
    assert_eq!((st.dropped, st.dead_letter_pending), (7, 4), "{st:?}");
    // The writer, busy at the gate, was not woken for those three: it finds them when
    // it is done with "c".
    store.open_gate();
    let report = d.shutdown(Duration::from_secs(2)).await;
    let st = report.stats;
    assert_eq!(
        (st.dropped, st.dead_lettered, st.dead_letter_pending),
        (7, 6, 0),
        "{st:?}"
    );
    let mut got = titles(&store.file.take_all().unwrap().entries);
    got.sort();
    assert_eq!(got, ["a", "b", "c", "d0", "d1", "d2"]);
}

#[tokio::test]
async fn an_empty_notification_is_refused_by_enqueue_and_send() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let s = service_with(&sink, fast_retries(0), &HttpClient::new().unwrap());
    let (d, store) = dispatch(&s, &dir, DispatcherConfig::default());
    assert_eq!(
        s.notification().field("k", "v").enqueue(),
        Err(piko_obs_notify::EnqueueError::Empty)
    );
    assert!(matches!(
        s.notification().send_with_retries().await,
        Err(DeliveryError::Empty)
    ));
    // Whitespace is no text: the platforms trim it away.
    assert_eq!(
        s.notification().title(" \t").message("\n ").enqueue(),
        Err(piko_obs_notify::EnqueueError::Empty)
    );
    assert!(matches!(
        s.notification().title("  ").send_with_retries().await,
        Err(DeliveryError::Empty)
    ));
    let report = d.shutdown(Duration::from_secs(2)).await;
    assert_eq!(report.stats.enqueued, 0, "{:?}", report.stats);
    assert!(store.read_all().unwrap().entries.is_empty());
    assert!(sink.requests().is_empty());
}

/// A dispatcher never shut down: its runtime stops (the workers and the retry tasks
/// with it), then every handle goes. What it still held, in flight, queued, waiting
/// for a retry, is on disk when the last handle has been dropped.
#[test]
fn a_dispatcher_dropped_without_a_shutdown_leaves_what_it_held_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // "slow" never answers in time; "flaky" answers 503, retried in a minute.
    let slow = Sink::with_default(Reply::status(200).after(Duration::from_secs(30)));
    let flaky = Sink::with_default(Reply::status(503));
    let http = HttpClient::new().unwrap();
    let s = NotificationService::builder()
        .with_retry_policy(
            RetryPolicy::default()
                .with_backoff(Duration::from_secs(60), Duration::from_secs(60), 2.0)
                .unwrap(),
        )
        .build();
    s.register(
        "slow",
        WebhookNotifier::new(&http, &slow.url("/slow")).unwrap(),
    )
    .unwrap();
    s.register(
        "flaky",
        WebhookNotifier::new(&http, &flaky.url("/flaky")).unwrap(),
    )
    .unwrap();
    let store = Arc::new(FileDeadLetterStore::open(dir.path().join("dlq.jsonl")).unwrap());
    let config = DispatcherConfig::default()
        .with_queue_capacity(8)
        .with_workers(1);
    let d = Dispatcher::start(runtime.handle(), &s, store.clone(), config).unwrap();
    s.attach_dispatcher(d.clone()).unwrap();
    let _enter = runtime.enter();
    let enqueue = |t: &str, p: &str| s.notification().title(t).provider(p).enqueue().unwrap();
    assert_eq!(enqueue("retrying", "flaky"), Enqueued::Queued);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.stats().waiting_retry < 1 {
        assert!(Instant::now() < deadline, "{:?}", d.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(enqueue("in flight", "slow"), Enqueued::Queued);
    while d.stats().in_flight < 1 {
        assert!(Instant::now() < deadline, "{:?}", d.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..3 {
        assert_eq!(enqueue(&format!("queued {i}"), "slow"), Enqueued::Queued);
    }
    drop(_enter);
    drop(runtime);
    drop(d);
    drop(s);
    let entries = store.read_all().unwrap().entries;
    let mut got = titles(&entries);
    got.sort();
    assert_eq!(
        got,
        ["in flight", "queued 0", "queued 1", "queued 2", "retrying"]
    );
    for e in &entries {
        assert!(
            e.last_error.contains("dropped without a shutdown") || e.last_error.contains("503"),
            "{}",
            e.last_error
        );
    }
}

/// The disk stalls while the platform refuses everything (400: dead-lettered at once,
/// by the worker, forced into the writer's queue). Once the writer has its whole queue
/// waiting, new notifications are refused and counted as dropped: what is forced in
/// stays bounded by what the dispatcher held, however many are enqueued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_disk_keeps_the_writers_backlog_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(GatedStore::closed(&dir));
    let sink = Sink::with_default(Reply::status(400));
    let (queue, writer) = (4, 4);
    let (s, d) = one_worker(&sink, store.clone(), queue, writer);
    let (mut accepted, mut dropped, mut most_pending) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    // Bounded in count and in time; the worker gets time to fail jobs in between.
    for i in 0..3000 {
        if started.elapsed() > Duration::from_secs(20) || dropped >= 200 {
            break;
        }
        match s.notification().title(format!("n{i}")).enqueue() {
            Ok(_) => accepted += 1,
            Err(piko_obs_notify::EnqueueError::Dropped) => dropped += 1,
            Err(e) => panic!("{e}"),
        }
        most_pending = most_pending.max(d.stats().dead_letter_pending);
        if i % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Each job the dispatcher holds (queue + worker) leaves one entry here.
    let bound = (writer + 2 * (queue + 1)) as u64;
    assert!(
        most_pending <= bound,
        "{most_pending} entries waited for the writer (bound {bound})"
    );
    assert!(dropped > 0, "{accepted} accepted, none refused");
    assert!(
        sink.requests().len() > 1,
        "the worker failed jobs meanwhile"
    );
    store.open_gate();
    let report = d.shutdown(Duration::from_secs(10)).await;
    let st = report.stats;
    assert!(report.within_bound, "{report:?}");
    assert_eq!(st.dropped, dropped, "{st:?}");
    assert_eq!(st.dead_lettered, accepted, "{st:?}");
    assert_eq!(
        store.file.take_all().unwrap().entries.len() as u64,
        accepted
    );
}

/// Fails its first write, then keeps what it is given.
#[derive(Default)]
struct FailsFirst {
    calls: AtomicUsize,
    kept: std::sync::Mutex<Vec<String>>,
}

impl piko_obs_notify::DeadLetterStore for FailsFirst {
    fn append(&self, entry: &piko_obs_notify::DeadLetter) -> std::io::Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(std::io::Error::other("the disk went away"));
        }
        self.kept
            .lock()
            .unwrap()
            .push(entry.notification.content.title.clone());
        Ok(())
    }
    fn take_all(&self) -> std::io::Result<piko_obs_notify::DeadLetterBatch> {
        Ok(piko_obs_notify::DeadLetterBatch::default())
    }
}

const STDERR_CLOSED: &str = "PIKO_TEST_STDERR_CLOSED";

/// The dead-letter writer reports a failed write on stderr, then goes on: the next
/// entry is written. Run here, and again in a child process whose stderr is closed (a
/// log collector gone), where the report fails and must not stop the writer thread.
#[test]
fn the_dead_letter_writer_goes_on_when_stderr_is_closed() {
    if std::env::var_os(STDERR_CLOSED).is_none() {
        // Not captured: the reports must reach the closed stderr.
        let run = piko_obs_testkit::rerun_in_child(
            "the_dead_letter_writer_goes_on_when_stderr_is_closed",
            STDERR_CLOSED,
            true,
            Duration::from_secs(30),
        );
        let out = run.stdout;
        assert!(run.status.success(), "{}: {out}", run.status);
        assert!(out.contains("1 passed"), "{out}");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // No provider: each notification is dead-lettered at once.
    let s = NotificationService::default();
    let store = Arc::new(FailsFirst::default());
    let d = Dispatcher::start(
        runtime.handle(),
        &s,
        store.clone(),
        DispatcherConfig::default(),
    )
    .unwrap();
    s.attach_dispatcher(d.clone()).unwrap();
    let wait = |done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{:?}", d.stats());
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    assert_eq!(
        s.notification().title("lost").enqueue(),
        Ok(Enqueued::DeadLettered)
    );
    wait(&|| d.stats().dead_letter_errors == 1);
    assert_eq!(
        s.notification().title("kept").enqueue(),
        Ok(Enqueued::DeadLettered)
    );
    wait(&|| d.stats().dead_lettered == 1);
    assert_eq!(*store.kept.lock().unwrap(), ["kept"]);
}
