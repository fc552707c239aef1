//! `setup::enable`, Sentry on its own: an ERROR line of the process-wide log hub reaches
//! a real endpoint on loopback, with the trace ids of the given source; dropping the
//! guard flushes, stops the client and its runtime, and takes the output off the hub.
//! (A binary of its own: it installs the process-wide client and output.)

use std::time::Duration;

use piko_obs_logger::global as logs;
use piko_obs_sentry::{SentryConfig, setup};
use piko_obs_testkit::sentry::events;
use piko_obs_testkit::sink::Sink;
use piko_obs_testkit::thread_names;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[test]
fn enable_sends_error_lines_and_its_guard_stops_everything() {
    let sink = Sink::start();
    let config = SentryConfig::new(format!("http://publickey@{}/42", sink.addr()));
    let guard = setup::enable(&config, || {
        Some((TRACE.to_string(), "00f067aa0ba902b7".to_string()))
    })
    .expect("a valid DSN");
    assert!(setup::global::installed().is_some());
    logs::get_logger("shop").error("checkout failed", &[]);
    drop(guard);
    let requests = sink.wait_for(1, Duration::from_secs(5));
    let sent = events(&requests);
    assert_eq!(sent.len(), 1, "one ERROR line, one event");
    assert_eq!(sent[0].message.as_deref(), Some("checkout failed"));
    let trace = sent[0].contexts.get("trace").map(|c| format!("{c:?}"));
    assert!(
        trace.is_some_and(|t| t.contains(TRACE)),
        "{:?}",
        sent[0].contexts
    );
    // The output is off the hub: a later line sends nothing.
    logs::get_logger("shop").error("after the guard", &[]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(events(&sink.requests()).len(), 1);
    let names = thread_names();
    assert!(
        !names.iter().any(|n| n == "piko-obs-sentry"),
        "the runtime stopped: {names:?}"
    );
}
