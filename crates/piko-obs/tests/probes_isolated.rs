//! Probes that an overloaded application cannot slow: the application's own tokio
//! runtime is blocked (every worker thread stuck in a blocking call for 10 s) while
//! `/live` and `/ready` are asked, and they still answer at once, with the state their
//! probes report, because the probe server runs on a thread of its own.
//!
//! The 100 ms bound against a 10 s blockage is a functional check of that isolation
//! (a probe served by the blocked runtime would take the full 10 s), not a benchmark.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use piko_obs::health::{ProbeOptions, Status, probe_fn};

/// The application's worker threads.
const WORKERS: usize = 2;
/// How long each of them stays stuck.
const BLOCKED: Duration = Duration::from_secs(10);
/// The longest a probe may take while the application is blocked.
const BOUND: Duration = Duration::from_millis(100);
/// Requests per probe path while the application is blocked.
const REQUESTS: usize = 5;

/// `GET path` over a fresh connection, each step bounded; (status, body, time taken).
fn get(addr: SocketAddr, path: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(12))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let took = started.elapsed();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {text:?}"));
    (status, body.to_string(), took)
}

/// `GET path`: a 200 within [`BOUND`]; its JSON body, parsed and as text.
fn answer_in_time(addr: SocketAddr, path: &str) -> (serde_json::Value, String) {
    let (code, body, took) = get(addr, path);
    assert_eq!(code, 200, "{body}");
    assert!(
        took < BOUND,
        "{path} took {took:?} while the application was blocked"
    );
    (serde_json::from_str(body.trim()).unwrap(), body)
}

#[test]
fn probes_answer_at_once_while_every_application_worker_is_blocked() {
    // The application's runtime, as `#[tokio::main]` with two workers builds it; piko-obs
    // is set up from inside it, as a service's `main` does.
    let app = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .unwrap();
    let guard = app.block_on(async {
        piko_obs::builder()
            .with_console_output(false)
            .with_log_bridge(false)
            .with_service_name("orders")
            .with_health_probe_port(0)
            .with_shutdown_drain_delay(Duration::ZERO)
            .with_custom_health_probe(probe_fn("db", |_, _| async { Status::healthy("db") }))
            .with_custom_health_probe_options(
                probe_fn("cache", |_, _| async {
                    Status::degraded("cache", "cache warming up")
                }),
                ProbeOptions::default().non_critical(),
            )
            .init()
            .unwrap()
    });
    let addr = guard.health_addr().unwrap();

    // Every worker enters a blocking call; the barrier releases this thread only once all
    // of them are inside a task, so none is left to run anything else.
    let all_in = Arc::new(Barrier::new(WORKERS + 1));
    let mut stuck = Vec::new();
    for _ in 0..WORKERS {
        let all_in = Arc::clone(&all_in);
        stuck.push(app.spawn(async move {
            all_in.wait();
            std::thread::sleep(BLOCKED);
        }));
    }
    all_in.wait();
    let blocked_at = Instant::now();
    // A task of the application: it runs only when a worker is free again.
    let (ran, ran_at) = mpsc::channel();
    app.spawn(async move {
        let _ = ran.send(Instant::now());
    });

    for _ in 0..REQUESTS {
        let (v, body) = answer_in_time(addr, "/live");
        assert_eq!(v["name"], "orders", "{body}");
        assert!(
            matches!(v["state"].as_str(), Some("HEALTHY" | "DEGRADED")),
            "{body}"
        );

        let (v, body) = answer_in_time(addr, "/ready");
        assert_eq!(v["state"], "DEGRADED", "{body}");
        let deps = v["dependencies"].as_array().unwrap();
        let state_of = |name: &str| {
            deps.iter()
                .find(|d| d["name"] == name)
                .unwrap_or_else(|| panic!("no {name} in {body}"))["state"]
                .clone()
        };
        assert_eq!(state_of("db"), "HEALTHY", "{body}");
        assert_eq!(state_of("cache"), "DEGRADED", "{body}");
        assert_eq!(
            deps.iter().find(|d| d["name"] == "cache").unwrap()["message"],
            "cache warming up"
        );
    }
    let probed_for = blocked_at.elapsed();
    assert!(
        probed_for < BLOCKED,
        "the probes were asked within the blockage ({probed_for:?})"
    );

    // The application really was blocked all along: its task ran only after the workers
    // came back.
    let ran_at = ran_at
        .recv_timeout(BLOCKED + Duration::from_secs(10))
        .expect("the application's task ran once its workers were free");
    assert!(
        ran_at.duration_since(blocked_at) >= BLOCKED - Duration::from_millis(100),
        "the application's task ran {:?} into the blockage",
        ran_at.duration_since(blocked_at)
    );
    for task in stuck {
        app.block_on(task).unwrap();
    }
    guard.shutdown().unwrap();
}
