//! A test run again in a child process, alone and without output capture, for tests
//! whose subject is the process's own stdout or stderr (or a process-wide setting a
//! test must not leave behind). Bounded in time: a child past its limit is killed.

use std::io::Read;
use std::time::{Duration, Instant};

/// What a test run again in a child process printed, and how it ended.
#[derive(Debug)]
pub struct ChildRun {
    /// How it ended.
    pub status: std::process::ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr (empty when it was closed).
    pub stderr: String,
}

/// Runs the test `name` of this test binary again, alone and without output capture,
/// in a child process with the variable `env` set (the test sees it and does its
/// child's part), for tests whose subject is the process's own stdout or stderr. With
/// `close_stderr`, the child's stderr is a pipe closed at once (writes to it fail).
/// Both outputs are read while it runs; it is killed past `limit` (which panics).
pub fn rerun_in_child(name: &str, env: &str, close_stderr: bool, limit: Duration) -> ChildRun {
    rerun_in_child_with(name, &[(env, "1")], close_stderr, limit)
}

/// [`rerun_in_child`] with the variables `vars` set in the child (its part is told by
/// one of them, and given what it needs, such as an address, by the others).
pub fn rerun_in_child_with(
    name: &str,
    vars: &[(&str, &str)],
    close_stderr: bool,
    limit: Duration,
) -> ChildRun {
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("child test process");
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = child.stderr.take();
    let stderr = read(if close_stderr {
        drop(stderr);
        None
    } else {
        stderr.map(|p| Box::new(p) as _)
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("child status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish in its child process within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ChildRun {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// [`rerun_in_child`] (stderr kept), then checks that the child passed and printed
/// `marker` (the line a child's part prints once its checks are done); returns its run.
pub fn rerun_in_child_expecting(name: &str, env: &str, marker: &str, limit: Duration) -> ChildRun {
    let run = rerun_in_child(name, env, false, limit);
    assert!(
        run.status.success() && run.stdout.contains(marker),
        "{name} in its child process: {}, no {marker:?} in\n{}\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    run
}
