//! The facade's probe server: started by `init()`, errors at `init()`, and the guard's
//! shutdown order (readiness fails at once, the server keeps answering through the drain
//! delay, then stops).

use std::time::{Duration, Instant};

use piko_obs::health::{ProbeOptions, Status, probe_fn};
use piko_obs_testkit::{Response, http_get};

#[test]
fn init_starts_probes_and_shutdown_drains_then_stops_them() {
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_log_bridge(false)
        .with_service_name("checkout")
        .with_health_probe_port(0)
        .with_shutdown_drain_delay(Duration::from_millis(800))
        .with_health_check_timeout(Duration::from_millis(250))
        .with_custom_health_probe(probe_fn("db", |_, _| async { Status::healthy("db") }))
        .with_custom_health_probe_options(
            probe_fn("slow-cache", |_, _| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Status::healthy("slow-cache")
            }),
            ProbeOptions::default().non_critical(),
        )
        .init()
        .unwrap();
    let addr = guard.health_addr().unwrap();
    let Response {
        status: code, body, ..
    } = http_get(addr, "/ready").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(v["name"], "checkout");
    assert_eq!(v["state"], "DEGRADED");
    assert_eq!(
        v["dependencies"][1]["message"],
        "Health check timed out after 250ms"
    );

    let started = Instant::now();
    let shutting = std::thread::spawn(move || {
        guard.shutdown().unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    // During the drain delay: readiness fails, liveness still answers.
    let Response {
        status: code, body, ..
    } = http_get(addr, "/ready").unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("Application is shutting down"));
    assert_eq!(http_get(addr, "/live").unwrap().status, 200);
    shutting.join().unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        http_get(addr, "/live").is_err(),
        "the probe server is stopped"
    );
}

#[test]
fn a_port_in_use_is_an_init_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = piko_obs::builder()
        .with_console_output(false)
        .with_log_bridge(false)
        .with_health_probe_port(port)
        .init()
        .unwrap_err();
    assert!(err.to_string().contains("already in use"), "{err}");
    let err = piko_obs::builder()
        .with_console_output(false)
        .with_log_bridge(false)
        .with_health_bind_address("0.0.0.0.0")
        .init()
        .unwrap_err();
    assert!(err.to_string().contains("is not an IP address"), "{err}");
    let err = piko_obs::builder()
        .with_console_output(false)
        .with_log_bridge(false)
        .with_health_probe_port(0)
        .with_custom_health_probe(probe_fn("db", |_, _| async { Status::healthy("db") }))
        .with_custom_health_probe(probe_fn("db", |_, _| async { Status::healthy("db") }))
        .init()
        .unwrap_err();
    assert!(
        err.to_string().contains("\"db\" is already registered"),
        "{err}"
    );
    let err = piko_obs::builder()
        .with_console_output(false)
        .with_log_bridge(false)
        .with_health_probe_port(0)
        .with_health_max_connections(0)
        .init()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("max_connections: must be at least 1 (for example 256) (ServerBuilder::with_max_connections)"),
        "{err}"
    );
}

#[test]
fn a_probe_panic_is_served_as_a_fixed_text_and_its_message_logged() {
    use piko_obs::logger::{self, Level};
    use piko_obs_logger_drains::JsonOutput;
    let cap = piko_obs_testkit::Capture::new();
    let capture = logger::add_output(
        "panic-capture",
        Level::WARN,
        JsonOutput::writer(cap.clone()).build().unwrap(),
    )
    .unwrap();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_log_bridge(false)
        .with_health_probe_port(0)
        .with_health_response_cache(Duration::ZERO)
        .with_custom_health_probe(probe_fn("vault", |_, _| async {
            panic!("token hvs.s3cr3t expired")
        }))
        .init()
        .unwrap();
    let Response {
        status: code, body, ..
    } = http_get(guard.health_addr().unwrap(), "/ready").unwrap();
    assert_eq!(code, 503);
    assert!(
        body.contains("\"name\":\"vault\",\"state\":\"UNHEALTHY\",\"message\":\"probe panicked\""),
        "{body}"
    );
    assert!(!body.contains("s3cr3t"), "{body}");
    logger::hub().flush(Duration::from_secs(5)).unwrap();
    let logged: Vec<_> = cap
        .json_lines()
        .into_iter()
        .filter(|l| l["msg"] == "health probe panicked" && l["probe"] == "vault")
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["level"], "WARN");
    assert_eq!(logged[0]["kind"], "readiness");
    assert_eq!(logged[0]["panic"], "token hvs.s3cr3t expired");
    guard.shutdown().unwrap();
    logger::hub()
        .remove_output(capture, Duration::from_secs(5))
        .unwrap();
}
