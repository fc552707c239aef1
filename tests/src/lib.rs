//! Support for the workspace tests: real writers that record what arrives, and helpers
//! to read JSON lines back. Nothing here stands in for a part of piko-obs.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// A writer that keeps every byte written to it, shareable between the output under
/// test and the test.
#[derive(Clone, Default, Debug)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// A new, empty capture.
    pub fn new() -> Capture {
        Capture::default()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("capture lock").clone()).expect("UTF-8 output")
    }

    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_string).collect()
    }

    /// Each line parsed as JSON; panics on a line that does not parse.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        parse_json_lines(&self.text())
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Parses every line of `text` as one JSON object; panics naming the first bad line.
pub fn parse_json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("line {i} is not JSON ({e}): {l:?}"))
        })
        .collect()
}

/// Names of this process's threads (from `/proc/self/task`).
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}
