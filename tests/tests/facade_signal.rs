//! `piko_obs::signal`: once registered, SIGTERM and SIGINT wake the waiter instead of
//! ending the process, and say which signal came.

use std::time::Duration;

use piko_obs::signal::{ShutdownSignal, ShutdownSignals};

fn send(signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), std::process::id().to_string()])
        .status()
        .expect("kill(1)");
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_and_sigint_wake_the_waiter_and_do_not_end_the_process() {
    let mut signals = ShutdownSignals::register().unwrap();
    send("TERM");
    let got = tokio::time::timeout(Duration::from_secs(10), signals.recv())
        .await
        .expect("SIGTERM arrives");
    assert_eq!(got, ShutdownSignal::Terminate);
    assert_eq!(got.to_string(), "SIGTERM");
    send("INT");
    let got = tokio::time::timeout(Duration::from_secs(10), signals.recv())
        .await
        .expect("SIGINT arrives");
    assert_eq!(got, ShutdownSignal::Interrupt);
}
