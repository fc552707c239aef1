//! The notification service with providers written against its port: a multicast
//! reaches its providers concurrently; a bulk send through the port's default
//! `send_bulk` goes one by one, in order, reports each failure, and gets what a single
//! send gets (text cut to the provider's limit, the counters, the circuit breaker);
//! a provider that returns the wrong number of results cannot pass a failure off as a
//! success.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use piko_obs_notify::{
    BreakerPolicy, Capabilities, Notification, NotificationService, Notifier, SendError,
};
use tokio::sync::Barrier;

/// Records what it is sent; refuses titles starting with "bad". Uses the port's
/// default `send_bulk`.
#[derive(Clone, Default)]
struct Recorder {
    got: Arc<Mutex<Vec<Notification>>>,
    max_message_length: usize,
}

impl Notifier for Recorder {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        self.got.lock().unwrap().push(n.clone());
        if n.content.title.starts_with("bad") {
            return Err(SendError::Rejected("refused by the test".into()));
        }
        Ok(())
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(self.max_message_length)
    }
}

impl Recorder {
    fn titles(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|n| n.content.title.clone())
            .collect()
    }
}

/// Waits at a barrier shared with another provider: a multicast that sent to one
/// provider after the other would leave the first waiting for the second, which has
/// not started.
struct Meets(Arc<Barrier>);

impl Notifier for Meets {
    async fn send(&self, _: &Notification) -> Result<(), SendError> {
        match tokio::time::timeout(Duration::from_secs(5), self.0.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(SendError::Other(
                "the other provider was not being sent to at the same time".into(),
            )),
        }
    }
}

#[tokio::test]
async fn a_multicast_sends_to_its_providers_concurrently() {
    let service = NotificationService::default();
    let barrier = Arc::new(Barrier::new(3));
    for name in ["a", "b", "c"] {
        service.register(name, Meets(barrier.clone())).unwrap();
    }
    service
        .multicast(Notification::new("deploy", "v2"), &["a", "b", "c"])
        .await
        .unwrap();
}

#[tokio::test]
async fn the_default_bulk_send_goes_one_by_one_in_order_and_reports_each_failure() {
    let service = NotificationService::default();
    let rec = Recorder::default();
    service.register("rec", rec.clone()).unwrap();
    let list = ["ok 1", "bad 2", "ok 3", "bad 4"]
        .map(|t| Notification::new(t, "m"))
        .to_vec();
    let results = service.send_bulk(None, list).await.unwrap();
    assert_eq!(rec.titles(), ["ok 1", "bad 2", "ok 3", "bad 4"]);
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    for r in [&results[1], &results[3]] {
        assert!(
            matches!(r, Err(SendError::Rejected(m)) if m == "refused by the test"),
            "{r:?}"
        );
    }
    let stats = service.provider_stats();
    assert_eq!(
        (stats[0].delivered, stats[0].failed_attempts),
        (2, 2),
        "{stats:?}"
    );
    // The service's context is filled in, as for a single send.
    assert!(rec.got.lock().unwrap()[0].context.timestamp > std::time::SystemTime::UNIX_EPOCH);
}

#[tokio::test]
async fn a_bulk_send_cuts_text_to_the_providers_limit() {
    let service = NotificationService::default();
    let rec = Recorder {
        max_message_length: 40,
        ..Recorder::default()
    };
    service.register("short", rec.clone()).unwrap();
    let long = "x".repeat(500);
    let list = vec![
        Notification::new("a", long.as_str()),
        Notification::new("b", "fits"),
    ];
    let results = service.send_bulk(Some("short"), list).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let got = rec.got.lock().unwrap().clone();
    assert_eq!(got[0].content.message.chars().count(), 40);
    assert!(
        got[0].content.message.ends_with("[truncated]"),
        "{}",
        got[0].content.message
    );
    assert_eq!(got[1].content.message, "fits");
}

#[tokio::test]
async fn a_bulk_send_to_an_unknown_provider_is_an_error_naming_it() {
    let service = NotificationService::default();
    service.register("rec", Recorder::default()).unwrap();
    let e = service
        .send_bulk(Some("pager"), vec![Notification::new("t", "m")])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pager"), "{e}");
}

/// Claims success for every notification but one: one result short.
struct ShortCounted;

impl Notifier for ShortCounted {
    async fn send(&self, _: &Notification) -> Result<(), SendError> {
        Ok(())
    }
    async fn send_bulk(&self, list: &[Notification]) -> Vec<Result<(), SendError>> {
        list.iter().skip(1).map(|_| Ok(())).collect()
    }
}

#[tokio::test]
async fn a_provider_returning_the_wrong_number_of_results_gets_every_one_failed() {
    let service = NotificationService::default();
    service.register("short", ShortCounted).unwrap();
    let list = (0..3)
        .map(|i| Notification::new(format!("n{i}"), "m"))
        .collect();
    let results = service.send_bulk(None, list).await.unwrap();
    assert_eq!(results.len(), 3);
    for r in &results {
        let Err(e) = r else { panic!("{results:?}") };
        assert!(
            e.to_string()
                .contains("returned 2 results for 3 notifications"),
            "{e}"
        );
    }
}

/// Always fails with a retryable error.
struct Down;

impl Notifier for Down {
    async fn send(&self, _: &Notification) -> Result<(), SendError> {
        Err(SendError::Timeout {
            provider: "down",
            after: Duration::from_millis(1),
        })
    }
}

#[tokio::test]
async fn a_bulk_send_is_held_by_an_open_circuit() {
    let service = NotificationService::builder()
        .with_circuit_breaker(BreakerPolicy::new(2, Duration::from_secs(60)))
        .build();
    service.register("down", Down).unwrap();
    for _ in 0..2 {
        let results = service
            .send_bulk(None, vec![Notification::new("t", "m")])
            .await
            .unwrap();
        assert!(
            matches!(results[0], Err(SendError::Timeout { .. })),
            "{results:?}"
        );
    }
    let results = service
        .send_bulk(
            None,
            vec![Notification::new("t", "m"), Notification::new("u", "m")],
        )
        .await
        .unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(SendError::CircuitOpen(_)))),
        "{results:?}"
    );
}

/// Counts its calls; always fails with a retryable error.
#[derive(Clone, Default)]
struct CountsDown(Arc<std::sync::atomic::AtomicUsize>);

impl Notifier for CountsDown {
    async fn send(&self, _: &Notification) -> Result<(), SendError> {
        Err(SendError::Other("never sent".into()))
    }
    async fn send_bulk(&self, list: &[Notification]) -> Vec<Result<(), SendError>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        list.iter()
            .map(|_| {
                Err(SendError::Timeout {
                    provider: "down",
                    after: Duration::from_millis(1),
                })
            })
            .collect()
    }
}

#[tokio::test]
async fn an_empty_bulk_send_calls_no_provider_and_leaves_the_circuit_as_it_was() {
    let service = NotificationService::builder()
        .with_circuit_breaker(BreakerPolicy::new(1, Duration::from_millis(50)))
        .build();
    let calls = CountsDown::default();
    service.register("down", calls.clone()).unwrap();
    let one = || vec![Notification::new("t", "m")];
    // One failure opens the circuit; once its time is out, the next call is the trial.
    let r = service.send_bulk(None, one()).await.unwrap();
    assert!(matches!(r[0], Err(SendError::Timeout { .. })), "{r:?}");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(
        service
            .send_bulk(None, Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(calls.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The empty call took no trial and reported no success: the next real call is the
    // trial, which fails and opens the circuit again.
    let r = service.send_bulk(None, one()).await.unwrap();
    assert!(matches!(r[0], Err(SendError::Timeout { .. })), "{r:?}");
    let r = service.send_bulk(None, one()).await.unwrap();
    assert!(matches!(r[0], Err(SendError::CircuitOpen(_))), "{r:?}");
    assert_eq!(calls.0.load(std::sync::atomic::Ordering::SeqCst), 2);
}
