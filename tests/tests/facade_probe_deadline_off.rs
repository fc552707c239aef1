//! `with_health_deadline_scheduling(false)`: the probe server's thread stays under the
//! ordinary policy, with the short time slice where the kernel takes it, even where the
//! process could have `SCHED_DEADLINE`.

use piko_obs::health::{PROBE_THREAD_SLICE, Status, probe_fn};
use piko_obs_testkit::http_get;

/// The `policy` and `se.slice` lines of this process's `piko-obs-probes` threads
/// (`/proc/self/task/TID/sched`).
fn probe_threads() -> Vec<(u64, Option<u64>)> {
    let field = |sched: &str, name: &str| -> Option<u64> {
        let line = sched.lines().find(|l| l.starts_with(name))?;
        line.rsplit(' ').next()?.trim().parse().ok()
    };
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.trim() == "piko-obs-probes")
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("sched")).ok())
        .filter_map(|sched| Some((field(&sched, "policy")?, field(&sched, "se.slice"))))
        .collect()
}

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
    let threads = probe_threads();
    assert_eq!(threads.len(), 1, "{threads:?}");
    let (policy, slice) = threads[0];
    assert_eq!(policy, 0, "SCHED_OTHER, not SCHED_DEADLINE");
    // Where the kernel shows a slice of its own for the thread, it is the short one.
    let short = u64::try_from(PROBE_THREAD_SLICE.as_nanos()).unwrap();
    assert!(slice.is_none_or(|ns| ns == short), "{slice:?}");
    guard.shutdown().unwrap();
}
