//! The record handed to outputs, and the `Output` port that the built-in outputs implement.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::attr::{Attr, OwnedAttr, SecretKeys};
use crate::level::Level;

/// Where a record was logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// Source file, as the compiler names it.
    pub file: &'static str,
    /// Line in `file`.
    pub line: u32,
    /// Module path, when the call site is a macro that knows it.
    pub module: Option<&'static str>,
}

impl Source {
    /// The source of the caller of a `#[track_caller]` function.
    #[track_caller]
    pub fn caller() -> Source {
        let l = std::panic::Location::caller();
        Source {
            file: l.file(),
            line: l.line(),
            module: None,
        }
    }
}

/// Stack frames captured for an ERROR record, outermost (the log call) first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackTrace {
    frames: Vec<String>,
}

impl StackTrace {
    /// At most this many frames are kept.
    pub const MAX_FRAMES: usize = 32;
    /// A frame's text is cut to this many bytes (async code has function names of
    /// kilobytes), ending with `…`.
    pub const MAX_FRAME_LEN: usize = 256;

    /// Captures the current stack, leaving out the frames of the logger itself and of the
    /// capture machinery. Each frame reads `function at file:line` when symbols allow.
    pub fn capture() -> StackTrace {
        let text = std::backtrace::Backtrace::force_capture().to_string();
        StackTrace::from_backtrace_text(&text)
    }

    /// Parses the text form of `std::backtrace::Backtrace`. A trace none of whose frames
    /// has a symbol (each `<unknown>`, as in a release build without debug information)
    /// says nothing: it comes back empty.
    pub fn from_backtrace_text(text: &str) -> StackTrace {
        let mut frames: Vec<String> = Vec::new();
        for line in text.lines() {
            let t = line.trim();
            if let Some(loc) = t.strip_prefix("at ") {
                if let Some(last) = frames.last_mut() {
                    last.push_str(" at ");
                    last.push_str(loc);
                }
            } else if let Some((idx, func)) = t.split_once(": ")
                && idx.chars().all(|c| c.is_ascii_digit())
            {
                frames.push(func.to_string());
            }
        }
        // Drop the capture frames and the logger's own frames before the caller.
        let skip = frames
            .iter()
            .rposition(|f| {
                f.starts_with("std::backtrace")
                    || f.starts_with("piko_obs_logger::")
                    || f.starts_with("<piko_obs_logger::")
            })
            .map_or(0, |i| i + 1);
        let frames = frames
            .into_iter()
            .skip(skip)
            .take(Self::MAX_FRAMES)
            .map(|mut f| {
                if f.len() > Self::MAX_FRAME_LEN {
                    let mut cut = Self::MAX_FRAME_LEN - '…'.len_utf8();
                    while !f.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    f.truncate(cut);
                    f.push('…');
                }
                f
            })
            .collect::<Vec<String>>();
        if frames.iter().all(|f| f.starts_with("<unknown>")) {
            return StackTrace::default();
        }
        StackTrace { frames }
    }

    /// The frames.
    pub fn frames(&self) -> &[String] {
        &self.frames
    }
}

/// Fields bound to a logger by `with`, shared by all its clones.
pub(crate) struct Bound {
    /// Shared with the slog view of the same fields.
    pub(crate) attrs: Arc<[OwnedAttr]>,
    /// The bound fields encoded once as JSON members, each led by a comma.
    pub(crate) json: Vec<u8>,
    pub(crate) slog_values: slog::OwnedKVList,
}

/// One log record, as every output sees it. Borrowed: outputs that keep data copy it.
pub struct Record<'a> {
    pub(crate) level: Level,
    pub(crate) time: SystemTime,
    pub(crate) msg: &'a str,
    pub(crate) logger: &'a str,
    pub(crate) logger_json: &'a [u8],
    pub(crate) source: &'a Source,
    pub(crate) bound: &'a [OwnedAttr],
    pub(crate) bound_json: &'a [u8],
    pub(crate) attrs: &'a [Attr<'a>],
    pub(crate) stack: Option<&'a StackTrace>,
    pub(crate) secrets: &'a SecretKeys,
}

impl<'a> Record<'a> {
    /// The level.
    pub fn level(&self) -> Level {
        self.level
    }
    /// When it was logged.
    pub fn time(&self) -> SystemTime {
        self.time
    }
    /// The message.
    pub fn msg(&self) -> &'a str {
        self.msg
    }
    /// The name of the logger (`get_logger(name)`).
    pub fn logger(&self) -> &'a str {
        self.logger
    }
    /// The logger name as a JSON string literal (with quotes), encoded once per logger;
    /// empty for records built with [`Record::new`].
    pub fn logger_json(&self) -> &'a [u8] {
        self.logger_json
    }
    /// Where it was logged.
    pub fn source(&self) -> &'a Source {
        self.source
    }
    /// Fields bound with `with`, oldest first.
    pub fn bound(&self) -> impl Iterator<Item = Attr<'a>> + 'a {
        self.bound.iter().map(OwnedAttr::as_attr)
    }
    /// The bound fields already encoded as JSON object members (`,"k":v` for each, secret
    /// values masked), so JSON outputs copy them instead of encoding them on every line.
    pub fn bound_json(&self) -> &'a [u8] {
        self.bound_json
    }
    /// The record's own fields, in the order given.
    pub fn attrs(&self) -> &'a [Attr<'a>] {
        self.attrs
    }
    /// The stack of an ERROR record, when capture is on.
    pub fn stack(&self) -> Option<&'a StackTrace> {
        self.stack
    }
    /// Whether the value under `key` must be masked (attribute keys are static).
    #[inline]
    pub fn is_secret(&self, key: &'static str) -> bool {
        self.secrets.is_secret_static(key)
    }
    /// Appends the JSON member prefix `,"key":` for one of the record's (static) keys and
    /// returns whether its value must be masked: one cached lookup for both (see
    /// [`json::write_member_key`](crate::json::write_member_key)).
    #[inline]
    pub fn write_json_key(&self, buf: &mut Vec<u8>, key: &'static str) -> bool {
        crate::json::write_member_key(buf, key, self.secrets)
    }
    /// A record built outside a logger, for outputs' own tests and adapters.
    pub fn new(
        level: Level,
        msg: &'a str,
        logger: &'a str,
        source: &'a Source,
        attrs: &'a [Attr<'a>],
        secrets: &'a SecretKeys,
    ) -> Record<'a> {
        Record {
            level,
            time: crate::clock::now(),
            msg,
            logger,
            logger_json: &[],
            source,
            bound: &[],
            bound_json: &[],
            attrs,
            stack: None,
            secrets,
        }
    }
    /// The same record with another time.
    pub fn with_time(mut self, time: SystemTime) -> Record<'a> {
        self.time = time;
        self
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("level", &self.level)
            .field("msg", &self.msg)
            .field("logger", &self.logger)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Counters of one output, for `/metrics` and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputStats {
    /// Lines handed to the output.
    pub accepted: u64,
    /// Lines written to the destination.
    pub written: u64,
    /// Lines dropped (queue full in lossy mode, wait bound exceeded, or after close).
    pub dropped: u64,
    /// Failed writes to the destination.
    pub write_errors: u64,
}

/// A flush that did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    /// Lines were still queued when the time ran out.
    #[error("log output {output:?} still had {pending} queued lines after {waited:?}")]
    Timeout {
        /// The output's name.
        output: String,
        /// Lines not yet written.
        pending: u64,
        /// How long the flush waited.
        waited: Duration,
    },
    /// The destination failed.
    #[error("log output {output:?} failed to flush: {reason}")]
    Failed {
        /// The output's name.
        output: String,
        /// What failed.
        reason: String,
    },
}

/// Where formatted records go: the port the built-in outputs (JSON, pretty, file)
/// implement. Any `slog::Drain` can be added as an output too (see `Hub::add_drain`);
/// this port exists for outputs that want the exact level and typed values.
///
/// Contract: `write` is called from any thread, concurrently; it must not panic and must
/// not block without a bound. `flush` returns once every accepted line is written, or
/// with an error at `timeout`.
pub trait Output: Send + Sync + 'static {
    /// Takes one record.
    fn write(&self, record: &Record<'_>);
    /// Writes everything accepted so far, within `timeout`.
    fn flush(&self, timeout: Duration) -> Result<(), FlushError>;
    /// Writes everything accepted and releases the destination (threads, files), within
    /// `timeout`; later records are dropped and counted. The hub calls it when the output
    /// is removed. The default flushes.
    fn close(&self, timeout: Duration) -> Result<(), FlushError> {
        self.flush(timeout)
    }
    /// The output's counters.
    fn stats(&self) -> OutputStats {
        OutputStats::default()
    }
}

impl<T: Output + ?Sized> Output for Arc<T> {
    fn write(&self, record: &Record<'_>) {
        (**self).write(record)
    }
    fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        (**self).flush(timeout)
    }
    fn close(&self, timeout: Duration) -> Result<(), FlushError> {
        (**self).close(timeout)
    }
    fn stats(&self) -> OutputStats {
        (**self).stats()
    }
}

impl<T: Output + ?Sized> Output for Box<T> {
    fn write(&self, record: &Record<'_>) {
        (**self).write(record)
    }
    fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        (**self).flush(timeout)
    }
    fn close(&self, timeout: Duration) -> Result<(), FlushError> {
        (**self).close(timeout)
    }
    fn stats(&self) -> OutputStats {
        (**self).stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtrace_text_is_parsed_and_logger_frames_skipped() {
        let text = "   0: std::backtrace::Backtrace::force_capture\n             at /rustc/x/library/std/src/backtrace.rs:312:9\n   1: piko_obs_logger::logger::Logger::log_at\n             at ./src/logger.rs:10:5\n   2: myapp::handler\n             at ./src/main.rs:42:9\n   3: main\n";
        let st = StackTrace::from_backtrace_text(text);
        assert_eq!(
            st.frames(),
            ["myapp::handler at ./src/main.rs:42:9", "main"]
        );
    }

    #[test]
    fn a_trace_of_only_unknown_frames_is_empty() {
        let text = "   0: <unknown>\n   1: <unknown>\n   2: <unknown>\n";
        assert!(StackTrace::from_backtrace_text(text).frames().is_empty());
        // One frame with a symbol keeps the trace, unknown frames and all.
        let text = "   0: <unknown>\n   1: myapp::handler\n             at ./src/main.rs:42:9\n";
        assert_eq!(
            StackTrace::from_backtrace_text(text).frames(),
            ["<unknown>", "myapp::handler at ./src/main.rs:42:9"]
        );
    }

    #[test]
    fn captured_stack_starts_at_the_caller() {
        let st = StackTrace::capture();
        assert!(!st.frames().is_empty());
        assert!(st.frames().len() <= StackTrace::MAX_FRAMES);
        assert!(
            st.frames()
                .iter()
                .all(|f| f.len() <= StackTrace::MAX_FRAME_LEN)
        );
        assert!(!st.frames()[0].starts_with("std::backtrace"));
    }
}
