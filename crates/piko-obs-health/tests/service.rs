//! The aggregating service against Piko's checklist (H5-H14, H18, H23, H24) and the
//! improvements the health issue asks for. Every timing bound is generous: these tests
//! check "does not wait for the slow probe", not speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use piko_obs_health::{
    CheckKind, HealthService, ProbeKinds, ProbeOptions, State, Status, ZeroTimeout, probe_fn,
};

fn service(timeout: Duration) -> HealthService {
    HealthService::new("orders", timeout).unwrap()
}

fn fixed(name: &'static str, state: State) -> impl piko_obs_health::Probe {
    probe_fn(name, move |_, _| async move {
        Status::new(name, state).with_message(if state == State::Healthy {
            ""
        } else {
            "problem"
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_registry_is_healthy_without_dependencies() {
    let s = service(Duration::from_secs(5))
        .check(CheckKind::Liveness)
        .await;
    assert_eq!(s.state, State::Healthy);
    assert_eq!(s.name, "orders");
    assert_eq!(s.message, "Liveness check completed");
    assert!(s.dependencies.is_empty());
    let json = serde_json::to_value(&s).unwrap();
    assert!(json.get("dependencies").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worst_of_sorted_children_and_messages() {
    let h = service(Duration::from_secs(5));
    h.register(fixed("zeta", State::Healthy)).unwrap();
    h.register(fixed("alpha", State::Degraded)).unwrap();
    let s = h.check(CheckKind::Readiness).await;
    assert_eq!(s.state, State::Degraded);
    assert_eq!(s.message, "Readiness check found issues");
    let names: Vec<&str> = s.dependencies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    h.register(fixed("middle", State::Unhealthy)).unwrap();
    let s = h.check(CheckKind::Startup).await;
    assert_eq!(s.state, State::Unhealthy);
    assert_eq!(s.message, "Startup check found issues");
    assert_eq!(s.dependencies.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_critical_unhealthy_probe_only_degrades() {
    let h = service(Duration::from_secs(5));
    h.register(fixed("db", State::Healthy)).unwrap();
    h.register_with(
        fixed("recommendations", State::Unhealthy),
        ProbeOptions::default().non_critical(),
    )
    .unwrap();
    let s = h.check(CheckKind::Readiness).await;
    assert_eq!(s.state, State::Degraded);
    // The child itself still says what it is.
    assert_eq!(s.dependencies[1].state, State::Unhealthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_dependencies_pass_through_without_changing_the_aggregate() {
    let h = service(Duration::from_secs(5));
    h.register(probe_fn("crypto", |_, _| async {
        Status::healthy("crypto").with_dependency(Status::unhealthy("hsm-2", "offline"))
    }))
    .unwrap();
    let s = h.check(CheckKind::Readiness).await;
    assert_eq!(s.state, State::Healthy);
    assert_eq!(s.dependencies[0].dependencies[0].name, "hsm-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_run_concurrently() {
    let h = service(Duration::from_secs(5));
    for name in ["a", "b", "c", "d", "e"] {
        h.register(probe_fn(name, move |_, _| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Status::healthy(name)
        }))
        .unwrap();
    }
    let start = Instant::now();
    let s = h.check(CheckKind::Readiness).await;
    let took = start.elapsed();
    assert_eq!(s.state, State::Healthy);
    assert_eq!(s.dependencies.len(), 5);
    assert!(
        took < Duration::from_millis(900),
        "5 x 200 ms probes took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_past_its_sub_second_deadline_is_abandoned() {
    let h = service(Duration::from_millis(300));
    h.register(probe_fn("stuck", |_, _| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Status::healthy("stuck")
    }))
    .unwrap();
    h.register(fixed("fine", State::Healthy)).unwrap();
    let start = Instant::now();
    let s = h.check(CheckKind::Readiness).await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(took >= Duration::from_millis(300), "took {took:?}");
    assert_eq!(s.state, State::Unhealthy);
    let stuck = &s.dependencies[1];
    assert_eq!(stuck.name, "stuck");
    assert_eq!(stuck.state, State::Unhealthy);
    assert_eq!(stuck.message, "Health check timed out after 300ms");
    assert_eq!(s.dependencies[0].state, State::Healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_blocks_after_an_await_is_abandoned_too() {
    let h = service(Duration::from_millis(200));
    h.register(probe_fn("blocks", |_, _| async {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1500));
        Status::healthy("blocks")
    }))
    .unwrap();
    let start = Instant::now();
    let s = h.check(CheckKind::Readiness).await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(s.state, State::Unhealthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_probe_is_unhealthy_and_the_service_carries_on() {
    let h = service(Duration::from_secs(5));
    let panics = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = panics.clone();
    h.on_probe_panic(move |p| {
        seen.lock()
            .unwrap()
            .push((p.probe.to_string(), p.kind, p.message.to_string()))
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    h.register(probe_fn("flaky", move |_, _| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                panic!("connection pool poisoned");
            }
            Status::healthy("flaky")
        }
    }))
    .unwrap();
    h.register(fixed("other", State::Healthy)).unwrap();
    let s = h.check(CheckKind::Readiness).await;
    assert_eq!(s.state, State::Unhealthy);
    // The status is served without authentication: a fixed text; the panic's message
    // goes to the observers (the facade logs it).
    assert_eq!(s.dependencies[0].message, "probe panicked");
    assert_eq!(
        *panics.lock().unwrap(),
        [(
            "flaky".to_string(),
            CheckKind::Readiness,
            "connection pool poisoned".to_string()
        )]
    );
    assert_eq!(s.dependencies[1].state, State::Healthy);
    let again = h.check(CheckKind::Readiness).await;
    assert_eq!(again.state, State::Healthy);
    assert_eq!(panics.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_panicking_after_an_await_is_reported_the_same_way() {
    let h = service(Duration::from_secs(5));
    let panics = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = panics.clone();
    h.on_probe_panic(move |p| seen.lock().unwrap().push(p.message.to_string()));
    h.register(probe_fn("later", |_, _| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        panic!("token abc123 rejected");
    }))
    .unwrap();
    let s = h.check(CheckKind::Readiness).await;
    assert_eq!(s.state, State::Unhealthy);
    assert_eq!(s.dependencies[0].message, "probe panicked");
    assert_eq!(*panics.lock().unwrap(), ["token abc123 rejected"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cache_every_request_runs_the_probe() {
    let h = service(Duration::from_secs(5));
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    h.register(probe_fn("counted", move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
        async { Status::healthy("counted") }
    }))
    .unwrap();
    for _ in 0..3 {
        h.check(CheckKind::Readiness).await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_checks_runs_a_cached_probe_once_per_ttl() {
    let h = service(Duration::from_secs(5));
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    h.register_with(
        probe_fn("db", move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Status::healthy("db")
            }
        }),
        ProbeOptions::default().with_cache_ttl(Duration::from_secs(30)),
    )
    .unwrap();
    let checks: Vec<_> = (0..1000)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.check(CheckKind::Readiness).await })
        })
        .collect();
    for c in checks {
        assert_eq!(c.await.unwrap().state, State::Healthy);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Each kind has its own cache.
    h.check(CheckKind::Startup).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_share_one_run_without_a_cache() {
    let h = service(Duration::from_secs(5));
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    h.register(probe_fn("slow", move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Status::healthy("slow")
        }
    }))
    .unwrap();
    let checks: Vec<_> = (0..50)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.check(CheckKind::Readiness).await })
        })
        .collect();
    for c in checks {
        c.await.unwrap();
    }
    let n = runs.load(Ordering::SeqCst);
    assert!(n <= 2, "50 concurrent checks ran the probe {n} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_fails_readiness_at_once_without_running_probes() {
    let h = service(Duration::from_secs(5));
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    h.register_with(
        probe_fn("db", move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Status::healthy("db") }
        }),
        ProbeOptions::default().with_liveness(),
    )
    .unwrap();
    h.signal_drain();
    assert!(h.is_draining());
    let s = h.check(CheckKind::Readiness).await;
    assert_eq!(s.state, State::Unhealthy);
    assert_eq!(s.message, "Application is shutting down");
    assert!(s.dependencies.is_empty());
    assert_eq!(serde_json::to_value(&s).unwrap()["duration"], "0s");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let live = h.check(CheckKind::Liveness).await;
    assert_eq!(live.state, State::Healthy);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_can_answer_some_kinds_only() {
    let h = service(Duration::from_secs(5));
    h.register_with(
        fixed("migrations", State::Unhealthy),
        ProbeOptions::default().only(&[CheckKind::Startup]),
    )
    .unwrap();
    assert_eq!(h.check(CheckKind::Liveness).await.state, State::Healthy);
    assert_eq!(h.check(CheckKind::Startup).await.state, State::Unhealthy);
}

/// A dependency's outage must not fail liveness (the kubelet would restart every pod):
/// a probe answers readiness and startup unless liveness is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_readiness_and_startup_by_default_and_liveness_on_request() {
    let h = service(Duration::from_secs(5));
    h.register(fixed("postgres", State::Unhealthy)).unwrap();
    let live = h.check(CheckKind::Liveness).await;
    assert_eq!(live.state, State::Healthy);
    assert!(live.dependencies.is_empty(), "{live:?}");
    assert_eq!(h.check(CheckKind::Readiness).await.state, State::Unhealthy);
    assert_eq!(h.check(CheckKind::Startup).await.state, State::Unhealthy);
    h.register_with(
        fixed("worker", State::Unhealthy),
        ProbeOptions::default().with_liveness(),
    )
    .unwrap();
    let live = h.check(CheckKind::Liveness).await;
    assert_eq!(live.state, State::Unhealthy);
    let names: Vec<&str> = live.dependencies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["worker"]);
}

#[test]
fn probe_kinds_read_as_a_set() {
    assert_eq!(ProbeOptions::default().kinds, ProbeKinds::DEFAULT);
    assert_eq!(
        ProbeKinds::DEFAULT,
        ProbeKinds::of(&[CheckKind::Startup, CheckKind::Readiness])
    );
    assert!(!ProbeKinds::DEFAULT.contains(CheckKind::Liveness));
    assert_eq!(
        ProbeKinds::DEFAULT.with(CheckKind::Liveness),
        ProbeKinds::ALL
    );
    assert_eq!(
        ProbeKinds::ALL.without(CheckKind::Startup),
        ProbeKinds::LIVENESS | ProbeKinds::READINESS
    );
    assert_eq!(
        ProbeKinds::ALL.iter().collect::<Vec<_>>(),
        [
            CheckKind::Liveness,
            CheckKind::Readiness,
            CheckKind::Startup
        ]
    );
    assert_eq!(
        format!("{:?}", ProbeKinds::DEFAULT),
        r#"{"readiness", "startup"}"#
    );
    assert_eq!(format!("{:?}", ProbeKinds::NONE), "{}");
    assert_eq!(
        ProbeOptions::default().only(&[CheckKind::Liveness]).kinds,
        ProbeKinds::LIVENESS
    );
}

#[test]
fn bad_configuration_is_rejected() {
    assert_eq!(
        HealthService::new("x", Duration::ZERO).unwrap_err(),
        ZeroTimeout
    );
    let h = service(Duration::from_secs(1));
    h.register(fixed("db", State::Healthy)).unwrap();
    let e = h.register(fixed("db", State::Healthy)).unwrap_err();
    assert!(e.to_string().contains("\"db\" is already registered"));
    let e = h
        .register_with(
            fixed("cache", State::Healthy),
            ProbeOptions::default().with_timeout(Duration::ZERO),
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("\"cache\": its timeout must be greater than zero"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_see_every_aggregated_status() {
    let h = service(Duration::from_secs(5));
    h.register_with(
        fixed("db", State::Degraded),
        ProbeOptions::default().with_liveness(),
    )
    .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    h.observe(move |kind, status| {
        s.lock()
            .unwrap()
            .push((kind, status.state, status.dependencies.len()));
    });
    h.check(CheckKind::Liveness).await;
    h.check(CheckKind::Readiness).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (CheckKind::Liveness, State::Degraded, 1),
            (CheckKind::Readiness, State::Degraded, 1)
        ]
    );
}
