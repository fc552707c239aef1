//! A failing `init()` leaves no log output of its own behind (its own process, as the
//! log hub is process-wide).

use piko_obs::logger;

#[test]
fn a_failed_init_removes_the_outputs_it_added() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let receiver = piko_obs_testkit::otlp::OtlpReceiver::start();
    let e = piko_obs::builder()
        .with_console_output(true)
        .with_health_probe_port(port)
        .with_otlp_endpoint(receiver.http_endpoint())
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .init()
        .unwrap_err();
    assert!(e.to_string().contains(&port.to_string()), "{e}");
    let names: Vec<String> = logger::hub()
        .outputs()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
    // A later init() with a free port works.
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .init()
        .unwrap();
    guard.shutdown().unwrap();
}
