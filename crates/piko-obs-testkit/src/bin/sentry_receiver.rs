//! A Sentry endpoint (the testkit's sink) as a program, for `cargo xtask integration` and
//! `soak`: prints `addr=ADDR`, receives envelopes until stdin closes, then prints the
//! events that arrived, parsed with Sentry's own envelope types, as one JSON array
//! (Sentry's event JSON).
//! `BIND_ADDR` (optional) fixes its address; by default it takes a free loopback port.

use std::io::Read;

use piko_obs_testkit::sentry::events;
use piko_obs_testkit::sink::Sink;

fn main() {
    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let sink = Sink::with_default_on(&addr, piko_obs_testkit::sink::Reply::status(200));
    println!("addr={}", sink.addr());
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    let events = events(&sink.requests());
    println!(
        "{}",
        serde_json::to_string(&events).unwrap_or_else(|e| format!("\"{e}\""))
    );
}
