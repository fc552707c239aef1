//! The rotating log file under a real fault: the process out of file descriptors while
//! a rotation creates the new file. The lines of the failed writes are lost (and the
//! writer counts them); once the fault clears, the later lines arrive.

use std::io::Write;
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use piko_obs_logger_drains::{RotatingFile, RotationOptions, backups};

/// Set in the child process that runs the test's own part.
const CHILD: &str = "PIKO_TEST_FILE_OUTPUT_FAULTS_CHILD";

#[test]
fn a_failed_reopen_during_rotation_recovers_once_the_fault_clears() {
    if std::env::var_os(CHILD).is_some() {
        reopen_fails_then_recovers();
        return;
    }
    // The file limit is the process's: lower it in a child process of its own.
    piko_obs_tests::rerun_in_child_expecting(
        "a_failed_reopen_during_rotation_recovers_once_the_fault_clears",
        CHILD,
        "later lines arrived",
        Duration::from_secs(60),
    );
}

fn reopen_fails_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let options = RotationOptions {
        max_size_bytes: 64,
        max_backups: 0,
        max_age: None,
        compress: false,
    };
    let mut file = RotatingFile::open(&path, options).unwrap();
    file.write_all(b"before the fault: line 1\n").unwrap();
    file.write_all(b"before the fault: line 2\n").unwrap();

    // No file descriptor left, not even the one the rotation closes.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 0, hard).unwrap();
    assert!(
        std::fs::File::open("/dev/null").is_err(),
        "the fault is real"
    );
    let during: Vec<bool> = (0..4)
        .map(|i| {
            file.write_all(format!("during the fault: line {i}\n").as_bytes())
                .is_ok()
        })
        .collect();
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert!(
        during.contains(&false),
        "the rotation needed a new file: {during:?}"
    );

    for i in 0..6 {
        file.write_all(format!("after the fault: line {i}\n").as_bytes())
            .unwrap_or_else(|e| panic!("line {i} after the fault: {e}"));
    }
    file.flush().unwrap();
    drop(file);
    let mut text = String::new();
    for p in backups(&path).iter().rev().chain([&path]) {
        text += &std::fs::read_to_string(p).unwrap();
    }
    for i in 0..6 {
        assert!(
            text.contains(&format!("after the fault: line {i}\n")),
            "line {i} missing from:\n{text}"
        );
    }
    assert!(text.contains("before the fault: line 2\n"), "{text}");
    println!("later lines arrived");
}
