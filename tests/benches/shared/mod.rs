//! The 5-field line every logger benchmark writes, in each implementation's form: the
//! message `request handled` plus `path` (text), `status` (int), `latency_ms` (float),
//! `cached` (bool) and `elapsed` (duration). Every value goes through `black_box`, so no
//! implementation formats a constant at compile time.

use std::hint::black_box;
use std::time::Duration;

use piko_obs_logger::attr;

/// The message.
pub const MSG: &str = "request handled";
/// The `elapsed` field's value.
pub const ELAPSED: Duration = Duration::from_micros(1234);

/// The five fields as piko-obs attributes.
#[inline(always)]
pub fn fields5() -> [piko_obs_logger::Attr<'static>; 5] {
    [
        attr::string("path", black_box("/api/v1/users")),
        attr::int("status", black_box(200)),
        attr::float("latency_ms", black_box(12.5)),
        attr::bool("cached", black_box(true)),
        attr::duration("elapsed", black_box(ELAPSED)),
    ]
}

/// The line through a piko-obs logger, at INFO.
#[inline(always)]
pub fn piko_line5(log: &piko_obs_logger::Logger) {
    log.info(black_box(MSG), &fields5())
}

/// The line as a `tracing` event, to the current dispatcher.
#[inline(always)]
pub fn tracing_line5() {
    tracing::info!(
        path = black_box("/api/v1/users"),
        status = black_box(200),
        latency_ms = black_box(12.5),
        cached = black_box(true),
        elapsed = ?black_box(ELAPSED),
        "{}",
        black_box(MSG)
    )
}

/// The line through a slog logger, at INFO.
#[inline(always)]
pub fn slog_line5(log: &slog::Logger) {
    slog::info!(log, "{}", black_box(MSG);
        "path" => black_box("/api/v1/users"), "status" => black_box(200),
        "latency_ms" => black_box(12.5), "cached" => black_box(true),
        "elapsed" => ?black_box(ELAPSED))
}
