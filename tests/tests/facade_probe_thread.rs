//! `init()` starts the probe server on a thread of its own and says once, at DEBUG, what
//! the kernel made of the scheduling that thread asked for (`SCHED_DEADLINE` where the
//! process may have it, else a short time slice); alone, it starts no piko-obs runtime.

use std::time::Duration;

use piko_obs::health::{
    PROBE_THREAD_PERIOD, PROBE_THREAD_RUNTIME, PROBE_THREAD_SLICE, Scheduling, Status, probe_fn,
};
use piko_obs::logger::{self, Level};
use piko_obs_logger_drains::JsonOutput;
use piko_obs_testkit::http_get;

#[test]
fn the_probe_threads_time_slice_is_logged_once_at_debug() {
    let cap = piko_obs_testkit::Capture::new();
    let capture = logger::add_output(
        "scheduling-capture",
        Level::DEBUG,
        JsonOutput::writer(cap.clone()).build().unwrap(),
    )
    .unwrap();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_log_bridge(false)
        .with_log_level("debug")
        .with_health_probe_port(0)
        // Nothing else that runs on piko-obs's runtime: the probe server needs none.
        .with_notifications_enabled(false)
        .with_custom_health_probe(probe_fn("db", |_, _| async { Status::healthy("db") }))
        .init()
        .unwrap();
    assert_eq!(
        http_get(guard.health_addr().unwrap(), "/ready")
            .unwrap()
            .status,
        200
    );
    assert!(
        piko_obs_testkit::thread_names()
            .iter()
            .any(|n| n == "piko-obs-probes")
    );
    assert!(
        !piko_obs_testkit::thread_names()
            .iter()
            .any(|n| n == "piko-obs-runtime"),
        "no runtime started for the probe server alone"
    );
    logger::hub().flush(Duration::from_secs(5)).unwrap();
    let logged: Vec<_> = cap
        .json_lines()
        .into_iter()
        .filter(|l| l["msg"] == "probe server started")
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["level"], "DEBUG");
    assert_eq!(logged[0]["logger"], "piko-obs/health");
    let scheduling = logged[0]["scheduling"].as_str().unwrap();
    let short = format!(
        "own thread, {} ms time slice",
        PROBE_THREAD_SLICE.as_secs_f64() * 1e3
    );
    let deadline = Scheduling::Deadline {
        runtime: PROBE_THREAD_RUNTIME,
        period: PROBE_THREAD_PERIOD,
    }
    .to_string();
    assert!(
        scheduling == deadline
            || scheduling == short
            || scheduling.starts_with("own thread, default time slice ("),
        "{scheduling}"
    );
    guard.shutdown().unwrap();
    logger::hub()
        .remove_output(capture, Duration::from_secs(5))
        .unwrap();
}
