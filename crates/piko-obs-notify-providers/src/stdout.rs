//! The stdout provider: Piko's human block, or one JSON line per notification.

use std::io::Write;
use std::sync::Mutex;

use piko_obs_notify::{Capabilities, Notification, Notifier, SendError};

/// How [`StdoutNotifier`] prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdoutFormat {
    /// Piko's block: `=== NOTIFICATION ===`, then one `Name: value` line each.
    #[default]
    Human,
    /// One JSON object per line: `{"notification": {...}}` (for JSON log streams).
    Json,
}

/// Prints notifications to stdout (or any writer). Never fails on content; a failed
/// write is an error.
pub struct StdoutNotifier {
    format: StdoutFormat,
    out: Mutex<Box<dyn Write + Send>>,
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
        StdoutNotifier::with_writer(format, std::io::stdout())
    }

    /// Prints to `out` in `format`.
    pub fn with_writer(format: StdoutFormat, out: impl Write + Send + 'static) -> StdoutNotifier {
        StdoutNotifier {
            format,
            out: Mutex::new(Box::new(out)),
        }
    }

    /// The text printed for `n`.
    pub fn render(&self, n: &Notification) -> String {
        match self.format {
            StdoutFormat::Json => {
                let mut line = serde_json::json!({ "notification": n }).to_string();
                line.push('\n');
                line
            }
            StdoutFormat::Human => {
                // One line per value: line breaks inside values are shown as spaces,
                // so a value cannot forge another line.
                let flat = |s: &str| s.replace(['\n', '\r'], " ");
                let c = &n.context;
                let mut s = String::from("=== NOTIFICATION ===\n");
                s += &format!("Priority: {}\n", c.priority);
                s += &format!("Source: {}\n", flat(&c.source));
                s += &format!("Environment: {}\n", flat(&c.environment));
                if !c.service.is_empty() {
                    s += &format!("Service: {}\n", flat(&c.service));
                }
                if !c.trace_id.is_empty() {
                    s += &format!("Trace: {}\n", flat(&c.trace_id));
                }
                s += &format!("Title: {}\n", flat(&n.content.title));
                s += &format!("Message: {}\n", flat(&n.content.message));
                if !n.content.fields.is_empty() {
                    s += "Fields:\n";
                    for (k, v) in n.content.fields.iter() {
                        s += &format!("  {}: {}\n", flat(k), flat(v));
                    }
                }
                s += "===================\n";
                s
            }
        }
    }
}

impl Notifier for StdoutNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let text = self.render(n);
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| SendError::Other(format!("stdout: {e}")))
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
