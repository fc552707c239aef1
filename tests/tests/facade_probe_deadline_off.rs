//! `with_health_deadline_scheduling(false)`: the probe server's thread stays under the
//! ordinary policy, with the short time slice where the kernel takes it, even where the
//! process could have `SCHED_DEADLINE`.

use piko_obs::health::{PROBE_THREAD_SLICE, Status, probe_fn};
use piko_obs_testkit::{http_get, sched_field, thread_files};

#[test]
fn the_probe_thread_keeps_the_ordinary_policy() {
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_log_bridge(false)
        .with_health_probe_port(0)
        .with_notifications_enabled(false)
        .with_health_deadline_scheduling(false)
        .with_custom_health_probe(probe_fn("db", |_, _| async { Status::healthy("db") }))
        .init()
        .unwrap();
    let ready = http_get(guard.health_addr().unwrap(), "/ready").unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);
    let threads = thread_files("self", "piko-obs-probes", "sched");
    assert_eq!(threads.len(), 1, "{threads:?}");
    let (policy, slice) = (
        sched_field(&threads[0], "policy"),
        sched_field(&threads[0], "se.slice"),
    );
    assert_eq!(policy, Some(0), "SCHED_OTHER, not SCHED_DEADLINE");
    // Where the kernel shows a slice of its own for the thread, it is the short one.
    let short = u64::try_from(PROBE_THREAD_SLICE.as_nanos()).unwrap();
    assert!(slice.is_none_or(|ns| ns == short), "{slice:?}");
    guard.shutdown().unwrap();
}
