//! A Sentry endpoint as a program, for `cargo xtask integration`: prints `addr=ADDR`,
//! receives envelopes until stdin closes, then prints the events that arrived, parsed
//! with Sentry's own envelope types, as one JSON array (Sentry's event JSON).

use std::io::Read;

use piko_obs_tests::sentry::events;
use piko_obs_tests::sink::Sink;

fn main() {
    let sink = Sink::start();
    println!("addr={}", sink.addr());
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    let events = events(&sink.requests());
    println!(
        "{}",
        serde_json::to_string(&events).unwrap_or_else(|e| format!("\"{e}\""))
    );
}
