//! A disabled level costs a level check: no formatting, no allocation, no output call.
//! Allocations are counted by `allocation-counter`, which installs a counting global
//! allocator in this test binary.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use piko_obs_logger::{FlushError, Hub, Level, Output, Record, attr};

#[derive(Default)]
struct Calls(AtomicUsize);
impl Output for Calls {
    fn write(&self, _: &Record<'_>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn flush(&self, _: Duration) -> Result<(), FlushError> {
        Ok(())
    }
}

#[test]
fn disabled_levels_do_not_allocate_format_or_reach_outputs() {
    let hub = Hub::default();
    let calls = Arc::new(Calls::default());
    hub.add_output("calls", Level::INFO, calls.clone()).unwrap();
    let log = hub.get_logger("quiet").with(&[attr::string("bound", "x")]);
    // Warm the threshold cache.
    assert!(!log.enabled(Level::DEBUG));
    let info = allocation_counter::measure(|| {
        for i in 0..1000 {
            log.debug(
                "not shown",
                &[
                    attr::string("path", "/api"),
                    attr::int("i", i),
                    attr::duration("d", Duration::from_millis(1)),
                ],
            );
            piko_obs_logger::trace!(log, "not shown either", attr::int("i", i));
        }
    });
    assert_eq!(info.count_total, 0, "disabled calls allocated: {info:?}");
    // The counter is live: a `with` (which copies its fields) is seen.
    let live = allocation_counter::measure(|| {
        std::hint::black_box(log.with(&[attr::int("n", 1)]));
    });
    assert!(live.count_total > 0);
    assert_eq!(calls.0.load(Ordering::Relaxed), 0);
    log.info("shown", &[]);
    assert_eq!(calls.0.load(Ordering::Relaxed), 1);
}
