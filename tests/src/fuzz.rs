//! The harness of the `fuzz_*` property tests: each property runs `PIKO_FUZZ_CASES`
//! cases (default 256, so that `cargo test` stays fast; the long runs recorded in
//! `docs/reliability.md` use hundreds of thousands), with no failure-persistence file:
//! a failing case found once becomes an explicit regression test.

use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The number of cases each property runs (`PIKO_FUZZ_CASES`, default 256).
pub fn cases() -> u32 {
    std::env::var("PIKO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(256)
}

/// Runs `test` on `cases()` values of `strategy`; panics with the shrunk failing case.
pub fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = cases();
    let config = Config {
        failure_persistence: None,
        ..Config::with_cases(cases)
    };
    let start = Instant::now();
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {:.2} s",
        start.elapsed().as_secs_f64()
    );
}
