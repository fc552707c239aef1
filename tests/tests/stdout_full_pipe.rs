//! The stdout notifier with stdout a full pipe that nobody reads: the notifier's writes
//! block, but on a thread of its own, so the toolkit's runtime goes on serving `/ready`
//! and delivering to the other providers.

use std::io::Read;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, fcntl};
use piko_obs::notification::{self, HttpClient, StdoutFormat, StdoutNotifier, WebhookNotifier};
use piko_obs_testkit::sink::Sink;

/// Set in the child process that runs the test's own part.
const CHILD: &str = "PIKO_TEST_STDOUT_FULL_PIPE_CHILD";

#[test]
fn a_stdout_nobody_reads_stalls_neither_the_probes_nor_other_providers() {
    if std::env::var_os(CHILD).is_some() {
        stdout_never_read();
        return;
    }
    // The subject is the process's own stdout: run again in a child process.
    piko_obs_testkit::rerun_in_child_expecting(
        "a_stdout_nobody_reads_stalls_neither_the_probes_nor_other_providers",
        CHILD,
        "runtime not stalled",
        Duration::from_secs(90),
    );
}

fn stdout_never_read() {
    // stdout becomes a pipe of one page that nobody reads.
    let (reader, writer) = std::io::pipe().unwrap();
    fcntl(&writer, FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    let saved = nix::unistd::dup(std::io::stdout()).unwrap();
    nix::unistd::dup2_stdout(&writer).unwrap();
    drop(writer);

    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let http = HttpClient::new().unwrap();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .with_notification_provider("stdout", StdoutNotifier::new(StdoutFormat::Human))
        .with_notification_provider(
            "hook",
            WebhookNotifier::new(&http, &sink.url("/hook")).unwrap(),
        )
        .with_notification_dead_letter_path(dir.path().join("dead.jsonl"))
        .init()
        .unwrap();
    let addr = guard.health_addr().unwrap();
    // Each block is far larger than the pipe: the first write never completes.
    for i in 0..3 {
        notification::builder()
            .title(format!("big {i}"))
            .message("x".repeat(64 * 1024))
            .to_providers(["stdout"])
            .enqueue()
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        notification::builder()
            .title(format!("to the hook {i}"))
            .to_providers(["hook"])
            .enqueue()
            .unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let status = piko_obs_testkit::http_get(addr, "/ready").map(|r| r.status);
        answers.push((status.ok(), start.elapsed()));
        std::thread::sleep(Duration::from_millis(200));
    }
    let delivered = sink.wait_for(5, Duration::from_secs(5)).len();

    // Give stdout back, and drain the pipe so the blocked write ends.
    nix::unistd::dup2_stdout(&saved).unwrap();
    std::thread::spawn(move || {
        let mut reader = reader;
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        let _ = reader.read(&mut [0u8; 1]);
    });
    guard.shutdown().unwrap();

    for (status, took) in &answers {
        assert_eq!(*status, Some(200), "{answers:?}");
        assert!(*took < Duration::from_secs(1), "{answers:?}");
    }
    assert_eq!(delivered, 5, "the webhook's notifications");
    println!("runtime not stalled: {answers:?}");
}
