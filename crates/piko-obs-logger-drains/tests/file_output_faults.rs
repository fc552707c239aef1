//! The rotating log file under real faults while a rotation renames the file and creates
//! a new one: the process out of file descriptors, and the folder unwritable (checked as
//! `nobody`, since root writes anyway). The lines of the failed writes are lost (and the
//! writer counts them); once the fault clears, the later lines arrive.

use std::io::Write;
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{User, setgid, setuid};
use piko_obs_logger_drains::{RotatingFile, RotationOptions, backups};

/// Set in the child process that runs the test's own part.
const CHILD: &str = "PIKO_TEST_FILE_OUTPUT_FAULTS_CHILD";

/// Small files, kept uncompressed: every few lines rotate.
const OPTIONS: RotationOptions = RotationOptions {
    max_size_bytes: 64,
    max_backups: 0,
    max_age: None,
    compress: false,
};

/// Writes six numbered lines `after the fault`, then checks that each is in the live
/// file or a backup.
fn later_lines_arrive(mut file: RotatingFile, path: &std::path::Path) {
    for i in 0..6 {
        file.write_all(format!("after the fault: line {i}\n").as_bytes())
            .unwrap_or_else(|e| panic!("line {i} after the fault: {e}"));
    }
    file.flush().unwrap();
    drop(file);
    let mut text = String::new();
    for p in backups(path).iter().rev().chain([&path.to_path_buf()]) {
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

/// Opens a rotating file in `dir` and writes two lines.
fn two_lines_in(dir: &std::path::Path) -> (RotatingFile, std::path::PathBuf) {
    let path = dir.join("app.log");
    let mut file = RotatingFile::open(&path, OPTIONS).unwrap();
    file.write_all(b"before the fault: line 1\n").unwrap();
    file.write_all(b"before the fault: line 2\n").unwrap();
    (file, path)
}

/// Writes four lines during a fault; some must fail, since a rotation is due.
fn during_the_fault(file: &mut RotatingFile) -> Vec<bool> {
    (0..4)
        .map(|i| {
            file.write_all(format!("during the fault: line {i}\n").as_bytes())
                .is_ok()
        })
        .collect()
}

#[test]
fn a_failed_reopen_during_rotation_recovers_once_the_fault_clears() {
    if std::env::var_os(CHILD).is_some() {
        reopen_fails_then_recovers();
        return;
    }
    // The file limit is the process's: lower it in a child process of its own.
    piko_obs_testkit::rerun_in_child_expecting(
        "a_failed_reopen_during_rotation_recovers_once_the_fault_clears",
        CHILD,
        "later lines arrived",
        Duration::from_secs(60),
    );
}

fn reopen_fails_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut file, path) = two_lines_in(dir.path());
    // No file descriptor left, not even the one the rotation closes.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 0, hard).unwrap();
    assert!(
        std::fs::File::open("/dev/null").is_err(),
        "the fault is real"
    );
    let during = during_the_fault(&mut file);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert!(
        during.contains(&false),
        "the rotation needed a new file: {during:?}"
    );
    later_lines_arrive(file, &path);
}

#[test]
fn an_unwritable_folder_during_rotation_recovers_once_writable() {
    if std::env::var_os(CHILD).is_some() {
        folder_unwritable_then_writable();
        return;
    }
    // Root writes into any folder: the child drops to `nobody` first.
    piko_obs_testkit::rerun_in_child_expecting(
        "an_unwritable_folder_during_rotation_recovers_once_writable",
        CHILD,
        "later lines arrived",
        Duration::from_secs(60),
    );
}

fn folder_unwritable_then_writable() {
    use std::os::unix::fs::PermissionsExt as _;
    let nobody = User::from_name("nobody").unwrap().expect("user nobody");
    setgid(nobody.gid).unwrap();
    setuid(nobody.uid).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut file, path) = two_lines_in(dir.path());
    let mode = |m| std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(m));
    mode(0o500).unwrap();
    assert!(
        std::fs::File::create(dir.path().join("probe")).is_err(),
        "the fault is real"
    );
    let during = during_the_fault(&mut file);
    mode(0o700).unwrap();
    assert!(
        during.contains(&false),
        "the rotation needed the folder: {during:?}"
    );
    later_lines_arrive(file, &path);
}
