//! A notification provider of your own: the `piko_obs::notification::Notifier` port
//! implemented by a provider that appends each notification to a JSON-lines file.
//!
//! The provider is registered as `file` (the only provider, so the default one), and
//! ERROR log lines are forwarded to it as grouped alerts (`with_error_notifications`,
//! grouped over 500 ms). The example then:
//! 1. sends one notification with the builder, `Deploy finished`, and waits for the
//!    provider's answer (`send().await`, with retries on a retryable failure);
//! 2. logs one ERROR, `Payment gateway unreachable`, which the error forwarder turns
//!    into one alert titled `ERROR: Application Error` (field `occurrences` `1`) when
//!    its 500 ms window ends;
//! 3. waits one second, shuts the guard down (pending alerts are queued, queued
//!    notifications delivered) and exits.
//!
//! The file then holds two lines, each
//! `{"title":..,"message":..,"fields":{..},"context":{"timestamp":..,"source":..,"priority":..,..}}`:
//! the builder's notification, then the grouped alert.
//!
//! It prints pretty log lines on stdout (stack traces turned off), and the path of the
//! file in `Alerts written`. Run it:
//!
//! ```sh
//! cargo run -p piko-obs --example custom_provider && cat alerts.jsonl
//! ```
//!
//! Environment: `ALERTS_FILE` (default `./alerts.jsonl`; appended to),
//! `PIKO_NOTIFICATION_DEAD_LETTER_PATH` (where undeliverable notifications are kept;
//! default a file in a temporary directory removed at exit). The probe server runs on a
//! free loopback port.
//!
//! Exit: it ends by itself within about two seconds: 0 when the notification was
//! delivered and the shutdown went well, 1 otherwise, 2 when the file cannot be opened or
//! piko-obs cannot start.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use piko_obs::logger::{self, attr};
use piko_obs::notification::{
    self, Capabilities, ErrorForwarderConfig, Notification, Notifier, Priority, SendError,
};

/// A provider that appends each notification as one JSON line to a file.
#[derive(Debug)]
struct FileNotifier {
    /// The file's path, for error messages.
    path: PathBuf,
    /// The file, opened for appending; the lock keeps concurrent lines whole.
    file: Mutex<File>,
}

impl FileNotifier {
    /// Opens (or creates) `path` for appending.
    fn open(path: &Path) -> std::io::Result<FileNotifier> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(FileNotifier {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }
}

impl Notifier for FileNotifier {
    /// One JSON line per notification, written with a single `write_all` under the lock.
    /// The write is a short blocking call on the caller's task, which is acceptable for a
    /// local file; a slow sink would use `tokio::task::spawn_blocking` or async I/O.
    /// A failed write is `SendError::Other`, which the service retries.
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let mut line = serde_json::json!({
            "title": n.content.title,
            "message": n.content.message,
            "fields": n.content.fields,
            "context": n.context,
        })
        .to_string();
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .map_err(|_| SendError::Other("the alerts file's lock is poisoned".into()))?;
        file.write_all(line.as_bytes())
            .map_err(|e| SendError::Other(format!("cannot append to {}: {e}", self.path.display())))
    }

    /// Plain text; messages longer than 64 KiB are cut (by the service, with a marker)
    /// so that a line stays readable.
    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(64 * 1024)
    }

    /// Called once at shutdown: pushes the lines to the disk.
    async fn close(&self) {
        if let Ok(file) = self.file.lock() {
            let _ = file.sync_all();
        }
    }
}

fn main() -> ExitCode {
    let path =
        PathBuf::from(std::env::var_os("ALERTS_FILE").unwrap_or_else(|| "./alerts.jsonl".into()));
    let provider = match FileNotifier::open(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "custom_provider: cannot open {} (ALERTS_FILE): {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    let mut builder = piko_obs::builder()
        .with_service_name("custom_provider")
        .with_health_probe_port(0)
        .with_shutdown_drain_delay(Duration::ZERO)
        .with_error_backtraces(false) // a short ERROR line, without its stack trace
        .with_notification_provider("file", provider)
        .with_error_notifications(
            ErrorForwarderConfig::new().with_window(Duration::from_millis(500)),
        );
    // Kept until the end of main, so the directory outlives the guard.
    let mut _dead_letter_dir = None;
    if std::env::var_os(notification::PIKO_NOTIFICATION_DEAD_LETTER_PATH).is_none() {
        match tempfile::tempdir() {
            Ok(dir) => {
                builder = builder.with_notification_dead_letter_path(dir.path().join("dead.jsonl"));
                _dead_letter_dir = Some(dir);
            }
            Err(e) => {
                eprintln!("custom_provider: cannot make a temporary directory: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let guard = match builder.init() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("custom_provider: {e}");
            return ExitCode::from(2);
        }
    };
    let log = logger::get_logger("custom_provider");
    let mut ok = true;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let sent = runtime.block_on(async {
        let service = notification::service().expect("init() set the notification service up");
        service
            .notification()
            .title("Deploy finished")
            .message("custom_provider 1.0.0 is live")
            .field("version", "1.0.0")
            .priority(Priority::Low)
            .send_with_retries()
            .await
    });
    match sent {
        Ok(()) => log.info("Notification sent", &[attr::string("provider", "file")]),
        Err(e) => {
            ok = false;
            log.warn("Notification not sent", &[attr::display("error", &e)]);
        }
    }

    // Becomes one grouped alert when the forwarder's 500 ms window ends.
    log.error(
        "Payment gateway unreachable",
        &[attr::string("gateway", "127.0.0.1:9")],
    );
    std::thread::sleep(Duration::from_secs(1));
    log.info("Alerts written", &[attr::display("file", &path.display())]);
    if let Err(e) = guard.shutdown() {
        eprintln!("custom_provider: {e}");
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
