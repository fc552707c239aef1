//! The stdout provider: Piko's human block, or one JSON line per notification.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use piko_obs_notify::{Capabilities, Notification, Notifier, SendError};
use tokio::sync::oneshot;

/// How [`StdoutNotifier`] prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdoutFormat {
    /// Piko's block: `=== NOTIFICATION ===`, then one `Name: value` line each.
    #[default]
    Human,
    /// One JSON object per line: `{"notification": {...}}` (for JSON log streams).
    Json,
}

/// Notifications waiting for the writer thread at most; past this, `send` fails at once.
const QUEUE: usize = 256;

/// One notification's text, and where its outcome goes.
struct Job {
    text: String,
    done: oneshot::Sender<io::Result<()>>,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

/// Prints notifications to stdout (or any writer). Never fails on content.
///
/// The text is written by a thread of its own, through a queue of 256 notifications, so
/// a destination that blocks (stdout a pipe nobody reads) never blocks the runtime that
/// sends: `send` waits for its write without holding a thread, and fails at once when
/// the queue is full. A failed or refused write is an error of `send` (the service
/// counts it, retries it, and dead-letters it in the end), and is counted in
/// [`dropped`](Self::dropped) or [`failed`](Self::failed). A notification whose `send`
/// gave up (the service's send timeout) before its turn came is not printed late.
pub struct StdoutNotifier {
    format: StdoutFormat,
    queue: SyncSender<Job>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for StdoutNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutNotifier")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl StdoutNotifier {
    /// Prints to stdout in `format`.
    pub fn new(format: StdoutFormat) -> StdoutNotifier {
        StdoutNotifier::with_writer(format, io::stdout())
    }

    /// Prints to `out` in `format`, from a thread of its own. Should the thread not
    /// start, every `send` fails with an error saying so.
    pub fn with_writer(format: StdoutFormat, out: impl Write + Send + 'static) -> StdoutNotifier {
        let (queue, jobs) = std::sync::mpsc::sync_channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        // On failure the receiver is dropped with the closure: sends see it.
        let _ = std::thread::Builder::new()
            .name("piko-notify-stdout".into())
            .spawn(move || write_jobs(&jobs, out, &shared));
        StdoutNotifier {
            format,
            queue,
            counters,
        }
    }

    /// Notifications not printed because the queue was full or their `send` had given
    /// up waiting.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Notifications whose write failed (or whose writer panicked).
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Notifications printed.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// The text printed for `n`. In the human format every value stays on its line
    /// and control characters (ESC, C1 controls, line breaks) are shown escaped, as the
    /// log outputs show them (`\x1b`, `\u{9b}`, `\n`).
    pub fn render(&self, n: &Notification) -> String {
        match self.format {
            StdoutFormat::Json => {
                let mut line = serde_json::json!({ "notification": n }).to_string();
                line.push('\n');
                line
            }
            StdoutFormat::Human => {
                let mut s = Vec::with_capacity(256);
                let mut line = |name: &str, value: &str| {
                    s.extend_from_slice(name.as_bytes());
                    piko_obs_logger::write_neutralised(&mut s, value);
                    s.push(b'\n');
                };
                let c = &n.context;
                line("=== NOTIFICATION ===", "");
                line("Priority: ", &c.priority.to_string());
                line("Source: ", &c.source);
                line("Environment: ", &c.environment);
                if !c.service.is_empty() {
                    line("Service: ", &c.service);
                }
                if !c.trace_id.is_empty() {
                    line("Trace: ", &c.trace_id);
                }
                line("Title: ", &n.content.title);
                line("Message: ", &n.content.message);
                if !n.content.fields.is_empty() {
                    line("Fields:", "");
                    for (k, v) in n.content.fields.iter() {
                        let mut key = Vec::new();
                        piko_obs_logger::write_neutralised(&mut key, k);
                        line(&format!("  {}: ", String::from_utf8_lossy(&key)), v);
                    }
                }
                line("===================", "");
                // Escaping keeps valid UTF-8 valid.
                String::from_utf8(s)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
            }
        }
    }
}

/// The writer thread: prints each job whose sender still waits, until the notifier is
/// dropped and the queue is empty.
fn write_jobs(jobs: &Receiver<Job>, mut out: impl Write, counters: &Counters) {
    for job in jobs.iter() {
        if job.done.is_closed() {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            out.write_all(job.text.as_bytes())
                .and_then(|()| out.flush())
        }))
        .unwrap_or_else(|_| Err(io::Error::other("the writer panicked")));
        let counter = if result.is_ok() {
            &counters.written
        } else {
            &counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = job.done.send(result);
    }
}

impl Notifier for StdoutNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let (done, outcome) = oneshot::channel();
        let job = Job {
            text: self.render(n),
            done,
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(SendError::Other(format!(
                    "stdout: {QUEUE} notifications are already waiting for the output, which \
                     is not taking them (a full pipe?); not printed"
                )));
            }
            Err(TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendError::Other(format!("stdout: {e}"))),
            Err(_) => Err(stopped()),
        }
    }

    async fn send_bulk(&self, list: &[Notification]) -> Vec<Result<(), SendError>> {
        let mut results = Vec::with_capacity(list.len());
        for n in list {
            results.push(self.send(n).await);
        }
        results
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(0).bulk(true)
    }
}

fn stopped() -> SendError {
    SendError::Other("stdout: its writer thread is not running".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_human_block_shows_control_characters_escaped() {
        let mut n = Notification::new("disk \x1b[2J full", "used \u{9b}31m 95%\r\nForged: yes");
        n.content.fields.insert("host\x1b]0;x\x07", "db\u{85}1");
        let text = StdoutNotifier::with_writer(StdoutFormat::Human, io::sink()).render(&n);
        assert!(
            !text.contains(['\x1b', '\u{9b}', '\u{85}', '\x07', '\r']),
            "{text:?}"
        );
        assert!(text.contains("Title: disk \\x1b[2J full\n"), "{text}");
        assert!(
            text.contains("Message: used \\u{9b}31m 95%\\r\\nForged: yes\n"),
            "{text}"
        );
        assert!(
            text.contains("  host\\x1b]0;x\\x07: db\\u{85}1\n"),
            "{text}"
        );
        assert!(!text.contains("\nForged"), "no forged line: {text}");
    }
}
