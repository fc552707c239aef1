//! Outputs for `piko-obs-logger`: JSON lines, Piko's pretty console, and rotating files.
//!
//! Every output formats on the caller's thread into an [`AsyncWriter`]: a bounded queue
//! drained by one writer thread, which writes all that is queued in one system call. A
//! line whose values are plain data is formatted straight into the queue when no other
//! caller holds its lock ([`Format::is_self_contained`]); any other is formatted into a
//! reused per-thread buffer and copied in. By default a caller waits (at most 1 s) when the
//! queue is full, so no line is lost unless the destination stalls; [`Overflow::Drop`]
//! is the lossy mode. Every accepted, written and dropped line is counted
//! ([`piko_obs_logger::OutputStats`]).
//!
//! - [`JsonOutput`]: one JSON object per line (production);
//! - [`PrettyOutput`]: Piko's column layout, with colours decided per output
//!   ([`ColorChoice`]);
//! - [`FileOutput`]: either format into a [`RotatingFile`];
//! - [`WriterOutput`]: any [`Format`] into any `io::Write`.
//!
//! ```
//! use std::time::Duration;
//! use piko_obs_logger::{Hub, Level, Output, attr};
//! use piko_obs_logger_drains::JsonOutput;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("app.json");
//! let out = JsonOutput::writer(std::fs::File::create(&path).unwrap()).build().unwrap();
//! let hub = Hub::default();
//! hub.add_output("json", Level::INFO, out).unwrap();
//! hub.get_logger("api").info("Server started", &[attr::string("mode", "prod")]);
//! hub.shutdown(Duration::from_secs(5)).unwrap();
//!
//! let line: serde_json::Value =
//!     serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
//! assert_eq!(line["msg"], "Server started");
//! assert_eq!(line["level"], "INFO");
//! assert_eq!(line["logger"], "api");
//! assert_eq!(line["mode"], "prod");
//! ```
//!
//! No feature flags.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use piko_obs_logger::{FlushError, Output, OutputStats, Record, Value};

mod file;
mod format;
mod global;
mod writer;
pub use global::{
    ConsoleError, ConsoleFormat, OutputError, OutputOptions, add_console, add_file_output,
    add_file_output_with, add_json_output, add_json_output_with, add_pretty_output,
    add_pretty_output_with, start_console,
};

pub use file::{OpenFileError, RotatingFile, RotationOptions, backups};
pub use format::{Format, JsonFormat, PrettyFormat, TimeZone, level_color, write_neutralised};
pub use writer::{AsyncWriter, DirectWriter, Overflow, QueueOptions};

/// Whether an output writes ANSI colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// Decide from the environment and the stream: `NO_COLOR` (or `NO_COLOUR`) set and
    /// non-empty turns colour off; otherwise `FORCE_COLOR` (or `FORCE_COLOUR`) set and
    /// not `0` turns it on; otherwise `TERM=dumb` turns it off; otherwise colour is on
    /// only when the stream is a terminal.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// The decision for a stream, reading the environment through `env`.
    pub fn resolve(self, is_terminal: bool, env: impl Fn(&str) -> Option<String>) -> bool {
        let set = |k: &str| env(k).filter(|v| !v.is_empty());
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                if set("NO_COLOR").is_some() || set("NO_COLOUR").is_some() {
                    false
                } else if let Some(v) = set("FORCE_COLOR").or_else(|| set("FORCE_COLOUR")) {
                    v != "0"
                } else if env("TERM").as_deref() == Some("dumb") {
                    false
                } else {
                    is_terminal
                }
            }
        }
    }
}

/// Where an output writes.
pub enum Destination {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Any writer (a file, a socket, a test buffer).
    Writer(Box<dyn Write + Send>),
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Destination::Stdout => "Stdout",
            Destination::Stderr => "Stderr",
            Destination::Writer(_) => "Writer(..)",
        })
    }
}

impl Destination {
    fn is_terminal(&self) -> bool {
        match self {
            Destination::Stdout => std::io::stdout().is_terminal(),
            Destination::Stderr => std::io::stderr().is_terminal(),
            Destination::Writer(_) => false,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Destination::Stdout => "stdout",
            Destination::Stderr => "stderr",
            Destination::Writer(_) => "writer",
        }
    }

    fn into_writer(self) -> Box<dyn Write + Send> {
        match self {
            Destination::Stdout => Box::new(std::io::stdout()),
            Destination::Stderr => Box::new(std::io::stderr()),
            Destination::Writer(w) => w,
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// How an output's lines reach its destination.
#[derive(Debug)]
enum Delivery {
    Queued(AsyncWriter),
    Direct(DirectWriter),
}

/// A [`Format`] writing through an [`AsyncWriter`] (the default) or a [`DirectWriter`]:
/// the type every built-in output is.
#[derive(Debug)]
pub struct WriterOutput<F> {
    format: F,
    delivery: Delivery,
}

impl<F: Format> WriterOutput<F> {
    /// An output formatting with `format` into `dest` through a bounded queue and a
    /// writer thread.
    pub fn new(
        name: impl Into<String>,
        format: F,
        dest: Box<dyn Write + Send>,
        queue: QueueOptions,
    ) -> std::io::Result<Self> {
        Ok(WriterOutput {
            format,
            delivery: Delivery::Queued(AsyncWriter::spawn(name, dest, queue)?),
        })
    }

    /// An output formatting with `format` and writing on the caller's thread.
    pub fn direct(name: impl Into<String>, format: F, dest: Box<dyn Write + Send>) -> Self {
        WriterOutput {
            format,
            delivery: Delivery::Direct(DirectWriter::new(name, dest)),
        }
    }

    /// The format.
    pub fn format(&self) -> &F {
        &self.format
    }

    /// Writes what is queued and stops the writer thread (also done on drop).
    pub fn close(&self, timeout: Duration) -> Result<(), FlushError> {
        match &self.delivery {
            Delivery::Queued(w) => w.close(timeout),
            Delivery::Direct(w) => w.flush(),
        }
    }

    fn deliver(&self, line: &[u8]) {
        match &self.delivery {
            Delivery::Queued(w) => w.push(line),
            Delivery::Direct(w) => w.push(line),
        }
    }
}

/// Whether formatting `record` runs none of the caller's code: its own values are plain
/// data (the bound ones are owned copies, always plain).
fn plain_values(record: &Record<'_>) -> bool {
    record.attrs().iter().all(|a| {
        !matches!(
            a.value(),
            Value::Error(_) | Value::Display(_) | Value::Any(_)
        )
    })
}

impl<F: Format> Output for WriterOutput<F> {
    fn write(&self, record: &Record<'_>) {
        // Straight into the queue when nothing the formatting runs can log (which would
        // wait for the lock this thread holds) and no other caller holds the lock (so
        // callers never format one after another): one copy of the line fewer.
        if let Delivery::Queued(w) = &self.delivery
            && self.format.is_self_contained()
            && plain_values(record)
            && w.try_push_with(|buf| self.format.format(record, buf))
        {
            return;
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                self.format.format(record, &mut buf);
                self.deliver(&buf);
                if buf.capacity() > 1 << 16 {
                    *buf = Vec::with_capacity(512);
                }
            }
            // A value's Display that itself logs: use a fresh buffer.
            Err(_) => {
                let mut buf = Vec::with_capacity(512);
                self.format.format(record, &mut buf);
                self.deliver(&buf);
            }
        })
    }

    fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        match &self.delivery {
            Delivery::Queued(w) => w.flush(timeout),
            Delivery::Direct(w) => w.flush(),
        }
    }

    fn close(&self, timeout: Duration) -> Result<(), FlushError> {
        WriterOutput::close(self, timeout)
    }

    fn stats(&self) -> OutputStats {
        match &self.delivery {
            Delivery::Queued(w) => w.stats(),
            Delivery::Direct(w) => w.stats(),
        }
    }
}

/// Builds a JSON-lines output.
#[derive(Debug)]
#[must_use]
pub struct JsonOutput {
    dest: Destination,
    zone: TimeZone,
    queue: QueueOptions,
    direct: bool,
}

impl JsonOutput {
    /// JSON lines to standard output.
    pub fn stdout() -> JsonOutput {
        JsonOutput::to(Destination::Stdout)
    }
    /// JSON lines to standard error.
    pub fn stderr() -> JsonOutput {
        JsonOutput::to(Destination::Stderr)
    }
    /// JSON lines to any writer.
    pub fn writer(w: impl Write + Send + 'static) -> JsonOutput {
        JsonOutput::to(Destination::Writer(Box::new(w)))
    }
    /// JSON lines to `dest`.
    pub fn to(dest: Destination) -> JsonOutput {
        JsonOutput {
            dest,
            zone: TimeZone::Local,
            queue: QueueOptions::default(),
            direct: false,
        }
    }
    /// The clock offset of `time` (default: local, as Piko).
    pub fn with_time_zone(mut self, zone: TimeZone) -> Self {
        self.zone = zone;
        self
    }
    /// Queue size and overflow policy.
    pub fn with_queue(mut self, queue: QueueOptions) -> Self {
        self.queue = queue;
        self
    }
    /// Write on the caller's thread instead of through the queue (see [`DirectWriter`]).
    pub fn direct(mut self) -> Self {
        self.direct = true;
        self
    }
    /// Starts the output's writer thread (none in direct mode).
    pub fn build(self) -> std::io::Result<WriterOutput<JsonFormat>> {
        let name = format!("json-{}", self.dest.label());
        if self.direct {
            return Ok(WriterOutput::direct(
                name,
                JsonFormat::new(self.zone),
                self.dest.into_writer(),
            ));
        }
        WriterOutput::new(
            name,
            JsonFormat::new(self.zone),
            self.dest.into_writer(),
            self.queue,
        )
    }
}

/// Builds a pretty console output.
#[derive(Debug)]
#[must_use]
pub struct PrettyOutput {
    dest: Destination,
    color: ColorChoice,
    queue: QueueOptions,
}

impl PrettyOutput {
    /// Pretty lines to standard output.
    pub fn stdout() -> PrettyOutput {
        PrettyOutput::to(Destination::Stdout)
    }
    /// Pretty lines to standard error.
    pub fn stderr() -> PrettyOutput {
        PrettyOutput::to(Destination::Stderr)
    }
    /// Pretty lines to any writer (no colour under [`ColorChoice::Auto`]).
    pub fn writer(w: impl Write + Send + 'static) -> PrettyOutput {
        PrettyOutput::to(Destination::Writer(Box::new(w)))
    }
    /// Pretty lines to `dest`.
    pub fn to(dest: Destination) -> PrettyOutput {
        PrettyOutput {
            dest,
            color: ColorChoice::Auto,
            queue: QueueOptions::default(),
        }
    }
    /// Colour policy (default: [`ColorChoice::Auto`]).
    pub fn with_color(mut self, color: ColorChoice) -> Self {
        self.color = color;
        self
    }
    /// Queue size and overflow policy.
    pub fn with_queue(mut self, queue: QueueOptions) -> Self {
        self.queue = queue;
        self
    }
    /// Decides colour (reading the process environment) and starts the writer thread.
    pub fn build(self) -> std::io::Result<WriterOutput<PrettyFormat>> {
        let color = self
            .color
            .resolve(self.dest.is_terminal(), |k| std::env::var(k).ok());
        let name = format!("pretty-{}", self.dest.label());
        WriterOutput::new(
            name,
            PrettyFormat::new(color),
            self.dest.into_writer(),
            self.queue,
        )
    }
}

/// The line format of a file output.
#[derive(Debug)]
pub enum FileFormat {
    /// Pretty lines without colour (Piko's default for files).
    Pretty(PrettyFormat),
    /// JSON lines.
    Json(JsonFormat),
}

impl Format for FileFormat {
    fn is_self_contained(&self) -> bool {
        match self {
            FileFormat::Pretty(f) => f.is_self_contained(),
            FileFormat::Json(f) => f.is_self_contained(),
        }
    }

    fn format(&self, record: &Record<'_>, buf: &mut Vec<u8>) {
        match self {
            FileFormat::Pretty(f) => f.format(record, buf),
            FileFormat::Json(f) => f.format(record, buf),
        }
    }
}

/// Builds a rotating file output.
#[derive(Debug)]
#[must_use]
pub struct FileOutput {
    path: PathBuf,
    json: bool,
    rotation: RotationOptions,
    queue: QueueOptions,
}

impl FileOutput {
    /// A file output at `path`: pretty lines without colour, rotated with
    /// [`RotationOptions::default`].
    pub fn new(path: impl Into<PathBuf>) -> FileOutput {
        FileOutput {
            path: path.into(),
            json: false,
            rotation: RotationOptions::default(),
            queue: QueueOptions::default(),
        }
    }
    /// JSON lines instead of pretty ones.
    pub fn json(mut self) -> Self {
        self.json = true;
        self
    }
    /// Rotation and retention.
    pub fn with_rotation(mut self, rotation: RotationOptions) -> Self {
        self.rotation = rotation;
        self
    }
    /// Queue size and overflow policy.
    pub fn with_queue(mut self, queue: QueueOptions) -> Self {
        self.queue = queue;
        self
    }
    /// The path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
    /// Opens the file (an unwritable path fails here) and starts the writer thread.
    pub fn build(self) -> Result<WriterOutput<FileFormat>, OpenFileError> {
        let file = RotatingFile::open(&self.path, self.rotation)?;
        let format = if self.json {
            FileFormat::Json(JsonFormat::default())
        } else {
            FileFormat::Pretty(PrettyFormat::new(false))
        };
        let name = format!("file-{}", self.path.display());
        WriterOutput::new(name, format, Box::new(file), self.queue).map_err(|source| {
            OpenFileError {
                path: self.path.clone(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_is_decided_per_stream_and_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(ColorChoice::Auto.resolve(true, env(&[])));
        assert!(!ColorChoice::Auto.resolve(false, env(&[])));
        assert!(!ColorChoice::Auto.resolve(true, env(&[("NO_COLOR", "1")])));
        assert!(ColorChoice::Auto.resolve(true, env(&[("NO_COLOR", "")])));
        assert!(ColorChoice::Auto.resolve(false, env(&[("FORCE_COLOR", "1")])));
        assert!(!ColorChoice::Auto.resolve(true, env(&[("FORCE_COLOR", "0")])));
        assert!(!ColorChoice::Auto.resolve(true, env(&[("TERM", "dumb")])));
        assert!(!ColorChoice::Auto.resolve(true, env(&[("NO_COLOR", "1"), ("FORCE_COLOR", "1")])));
        assert!(ColorChoice::Always.resolve(false, env(&[("NO_COLOR", "1")])));
        assert!(!ColorChoice::Never.resolve(true, env(&[("FORCE_COLOR", "1")])));
    }
}
