//! The probe server on a thread of its own (`ServerBuilder::start_on_own_thread`): it
//! needs no runtime to start, answers while the caller's runtime is blocked, reports the
//! scheduling the kernel gave its thread (`SCHED_DEADLINE` or a short time slice), and shuts down within its bounds from async
//! code and from any thread.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use piko_obs_health::{HealthService, Status, probe_fn};
use piko_obs_health_warp::{
    PROBE_THREAD_PERIOD, PROBE_THREAD_RUNTIME, PROBE_THREAD_SLICE, RunningServer, Scheduling,
    ServerBuilder, ServerError,
};
use piko_obs_lifecycle::Lifecycle;
use piko_obs_testkit::{http_get, sched_field, thread_files, thread_names};

fn service() -> HealthService {
    let h = HealthService::new("orders", Duration::from_secs(5)).unwrap();
    h.register(probe_fn("db", |_, _| async {
        // A probe that waits: it runs as a task of the server's own runtime.
        tokio::time::sleep(Duration::from_millis(5)).await;
        Status::healthy("db")
    }))
    .unwrap();
    h
}

/// The scheduling policy (`policy`) and the time slice (`se.slice`, Linux 6.12 and
/// later) of each of this process's `piko-obs-probes` threads.
fn probe_threads() -> Vec<(u64, Option<u64>)> {
    thread_files("self", "piko-obs-probes", "sched")
        .iter()
        .filter_map(|s| Some((sched_field(s, "policy")?, sched_field(s, "se.slice"))))
        .collect()
}

/// The probe server of [`service`] on a free port and its own thread.
fn start() -> RunningServer {
    ServerBuilder::new(service())
        .with_port(0)
        .start_on_own_thread()
        .unwrap()
}

fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

#[test]
fn starts_without_a_runtime_and_reports_its_time_slice() {
    let server = start();
    let addr = server.local_addr();
    let r = http_get(addr, "/ready").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["dependencies"][0]["name"], "db");
    assert_eq!(v["dependencies"][0]["state"], "HEALTHY");

    assert!(thread_names().iter().any(|n| n == "piko-obs-probes"));
    check_scheduling(server.scheduling());
    assert!(server.scheduling().to_string().starts_with("own thread, "));
}

/// What a server on its own thread reports matches what the kernel shows of its thread.
fn check_scheduling(scheduling: &Scheduling) {
    match scheduling {
        Scheduling::Deadline { runtime, period } => {
            assert_eq!(
                (*runtime, *period),
                (PROBE_THREAD_RUNTIME, PROBE_THREAD_PERIOD)
            );
            assert!(
                probe_threads().iter().any(|(policy, _)| *policy == 6),
                "a probe thread runs under SCHED_DEADLINE: {:?}",
                probe_threads()
            );
        }
        Scheduling::ShortSlice(slice) => {
            assert_eq!(*slice, PROBE_THREAD_SLICE);
            // Where the kernel shows the slice, every ordinary probe thread has the
            // short one (the other tests' servers may run under SCHED_DEADLINE).
            let nanos = u64::try_from(PROBE_THREAD_SLICE.as_nanos()).unwrap();
            for (_, shown) in probe_threads().iter().filter(|(policy, _)| *policy == 0) {
                assert_eq!(*shown, Some(nanos));
            }
        }
        Scheduling::DefaultSlice(why) => assert!(!why.is_empty()),
        other => panic!("a server on its own thread reports {other:?}"),
    }
    assert!(scheduling.to_string().starts_with("own thread, "));
}

#[test]
fn without_the_deadline_the_thread_asks_only_for_the_short_slice() {
    let server = ServerBuilder::new(service())
        .with_port(0)
        .with_deadline_scheduling(false)
        .start_on_own_thread()
        .unwrap();
    assert_eq!(http_get(server.local_addr(), "/live").unwrap().status, 200);
    assert!(
        !matches!(server.scheduling(), Scheduling::Deadline { .. }),
        "{:?}",
        server.scheduling()
    );
    check_scheduling(server.scheduling());
}

#[test]
fn shuts_down_from_a_thread_outside_any_runtime() {
    let server = start();
    let addr = server.local_addr();
    assert_eq!(http_get(addr, "/live").unwrap().status, 200);
    let took = std::time::Instant::now();
    server.shutdown_within(Duration::from_secs(1)).unwrap();
    assert!(
        took.elapsed() < Duration::from_secs(1),
        "{:?}",
        took.elapsed()
    );
    assert!(refused(addr), "the port is closed after the shutdown");
    // A second shutdown does nothing.
    server.shutdown_within(Duration::from_secs(1)).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn answers_while_the_callers_runtime_is_blocked() {
    let server = start();
    assert_ne!(server.scheduling(), &Scheduling::SharedRuntime);
    let addr = server.local_addr();
    // Blocking calls on the test's only runtime thread: a server on this runtime could
    // not answer them (`start` would hang here until the read timeout).
    for path in ["/live", "/ready", "/startup"] {
        let r = http_get(addr, path).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["name"], "orders");
    }
    // A client holding a connection open with half a request is closed by the shutdown.
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half, b"GET /ready HTTP/1.1\r\n")
        .await
        .unwrap();
    let counters = server.counters();
    let took = std::time::Instant::now();
    server.shutdown(Duration::from_secs(2)).await;
    assert!(
        took.elapsed() < Duration::from_secs(2),
        "{:?}",
        took.elapsed()
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read_to_end(&mut half, &mut rest),
    )
    .await;
    assert!(read.is_ok(), "the half-open connection was closed");
    assert_eq!(counters.snapshot().open, 0);
    assert!(refused(addr));
}

#[tokio::test(flavor = "current_thread")]
async fn a_port_in_use_is_an_error_inside_async_code_too() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    // The server's runtime, built before the bind fails, is dropped here in async code.
    let e = ServerBuilder::new(service())
        .with_port(port)
        .start_on_own_thread()
        .unwrap_err();
    assert!(matches!(e, ServerError::PortInUse { .. }), "{e}");
}
