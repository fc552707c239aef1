//! Outputs added to the process-wide hub ([`piko_obs_logger::global`]): the console, JSON
//! or pretty lines on stdout, and rotating files, with one output at a time on stdout so
//! no line is printed twice.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use piko_obs_logger::global::{add_output, get_logger, hub, levels_changed, output_level};
use piko_obs_logger::{
    AddOutputError, AddedOutput, Directives, LevelSettingError, Output, OutputId, attr,
};

use crate::RotationOptions;
use crate::{ColorChoice, FileOutput, JsonOutput, OpenFileError, PrettyOutput, QueueOptions};

/// Settings of an output added through this module.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct OutputOptions {
    level: Option<String>,
    color: ColorChoice,
    queue: QueueOptions,
    json: bool,
    rotation: RotationOptions,
}

impl OutputOptions {
    /// The output's level or directives, winning over `LOG_LEVEL`.
    pub fn with_level(mut self, level: impl Into<String>) -> Self {
        self.level = Some(level.into());
        self
    }
    /// Colour policy of a pretty output.
    pub fn with_color(mut self, color: ColorChoice) -> Self {
        self.color = color;
        self
    }
    /// Queue size and overflow policy.
    pub fn with_queue(mut self, queue: QueueOptions) -> Self {
        self.queue = queue;
        self
    }
    /// JSON lines in a file output (Piko's `WithJSON`).
    pub fn with_json(mut self) -> Self {
        self.json = true;
        self
    }
    /// Rotation of a file output.
    pub fn with_rotation(mut self, rotation: RotationOptions) -> Self {
        self.rotation = rotation;
        self
    }
}

/// An output could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// Its level setting is not valid.
    #[error(transparent)]
    Level(#[from] LevelSettingError),
    /// Its file could not be opened.
    #[error(transparent)]
    File(#[from] OpenFileError),
    /// Its writer thread could not start.
    #[error("cannot start a log writer thread: {0}")]
    Io(#[from] std::io::Error),
    /// Its name is taken.
    #[error(transparent)]
    Add(#[from] AddOutputError),
    /// Standard output already has an output the program added.
    #[error(
        "standard output already has the output {existing:?}: one stdout output at a time, so no line is printed twice; remove it first (logger::hub().remove_output) or write this one to a file"
    )]
    StdoutTaken {
        /// The name of the output that has it.
        existing: String,
    },
}

/// Who writes to standard output: nobody, the console output `init()` added, or an
/// output of the program's. An entry whose output was removed since (a shutdown) counts
/// as nobody.
enum Stdout {
    Free,
    Console(OutputId),
    Program(OutputId),
}

static STDOUT: Mutex<Stdout> = Mutex::new(Stdout::Free);

fn stdout_owner() -> std::sync::MutexGuard<'static, Stdout> {
    let mut owner = STDOUT.lock().unwrap_or_else(|p| p.into_inner());
    if let Stdout::Console(id) | Stdout::Program(id) = *owner
        && !hub().outputs().iter().any(|o| o.id == id)
    {
        *owner = Stdout::Free;
    }
    owner
}

/// Adds the console output of the start-up (`init()`), unless the program already added
/// a stdout output (then `None`).
pub fn add_console(
    filter: Directives,
    output: impl Output,
) -> Result<Option<OutputId>, AddOutputError> {
    let mut owner = stdout_owner();
    if let Stdout::Program(_) = *owner {
        return Ok(None);
    }
    let id = hub().add_output("console", filter, output)?;
    levels_changed();
    *owner = Stdout::Console(id);
    Ok(Some(id))
}

/// The console's format: what the run mode chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleFormat {
    /// JSON lines (production).
    Json,
    /// Pretty, coloured lines (development).
    Pretty,
}

/// Why [`start_console`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The console's writer thread could not start.
    #[error("cannot start the console log output: {0}")]
    Writer(std::io::Error),
    /// The hub refused the output.
    #[error(transparent)]
    Output(#[from] AddOutputError),
}

/// Starts the console output of the start-up on stdout, in `format` at `filter` (see
/// [`add_console`]): the part to put on the program's stack, or `None` when the program
/// added a stdout output of its own first.
pub fn start_console(
    format: ConsoleFormat,
    filter: Directives,
) -> Result<Option<AddedOutput>, ConsoleError> {
    let id = match format {
        ConsoleFormat::Json => add_console(
            filter,
            JsonOutput::stdout().build().map_err(ConsoleError::Writer)?,
        ),
        ConsoleFormat::Pretty => add_console(
            filter,
            PrettyOutput::stdout()
                .build()
                .map_err(ConsoleError::Writer)?,
        ),
    }?;
    Ok(id.map(|id| AddedOutput::new(hub(), id, "console output")))
}

/// Adds a stdout output of the program's, in place of the console output, and says so
/// (as Piko does) on the framework's logger, with the output's level.
fn add_stdout(
    name: &str,
    said: &str,
    filter: Directives,
    output: impl Output,
) -> Result<OutputId, OutputError> {
    let level = filter.to_string();
    let mut owner = stdout_owner();
    let console = match *owner {
        Stdout::Program(id) => {
            let existing = hub()
                .outputs()
                .into_iter()
                .find(|o| o.id == id)
                .map_or_else(String::new, |o| o.name);
            return Err(OutputError::StdoutTaken { existing });
        }
        Stdout::Console(id) => Some(id),
        Stdout::Free => None,
    };
    let id = add_output(name, filter, output)?;
    *owner = Stdout::Program(id);
    drop(owner);
    // Added first, removed second: a line logged meanwhile goes to one of the two.
    if let Some(console) = console {
        let _ = hub().remove_output(console, Duration::from_secs(1));
    }
    get_logger(OWN_LOGGER).info(said, &[attr::string("filter", &level)]);
    Ok(id)
}

/// The logger this module's own lines go to.
const OWN_LOGGER: &str = "piko-obs/logger";

fn level_of(options: &OutputOptions) -> Result<Directives, LevelSettingError> {
    output_level(options.level.as_deref())
}

/// JSON lines on stdout, at `LOG_LEVEL` (default INFO), in place of the console output
/// of `init()`.
pub fn add_json_output() -> Result<OutputId, OutputError> {
    add_json_output_with(OutputOptions::default())
}

/// JSON lines on stdout, with options.
pub fn add_json_output_with(options: OutputOptions) -> Result<OutputId, OutputError> {
    let level = level_of(&options)?;
    let out = JsonOutput::stdout().with_queue(options.queue).build()?;
    add_stdout("json-stdout", "Added JSON console output", level, out)
}

/// Pretty lines on stdout, at `LOG_LEVEL` (default INFO), coloured when stdout is a
/// terminal and `NO_COLOR` is not set, in place of the console output of `init()`.
pub fn add_pretty_output() -> Result<OutputId, OutputError> {
    add_pretty_output_with(OutputOptions::default())
}

/// Pretty lines on stdout, with options.
pub fn add_pretty_output_with(options: OutputOptions) -> Result<OutputId, OutputError> {
    let level = level_of(&options)?;
    let out = PrettyOutput::stdout()
        .with_color(options.color)
        .with_queue(options.queue)
        .build()?;
    add_stdout("pretty-stdout", "Added pretty console output", level, out)
}

/// A rotating file at `path` (pretty lines without colour; 10 MiB, 3 backups, 7 days,
/// gzip), at `LOG_LEVEL` (default INFO). An unwritable path fails here.
pub fn add_file_output(path: impl Into<PathBuf>) -> Result<OutputId, OutputError> {
    add_file_output_with(path, OutputOptions::default())
}

/// A rotating file, with options.
pub fn add_file_output_with(
    path: impl Into<PathBuf>,
    options: OutputOptions,
) -> Result<OutputId, OutputError> {
    let level = level_of(&options)?;
    let path = path.into();
    let mut file = FileOutput::new(&path)
        .with_rotation(options.rotation)
        .with_queue(options.queue);
    if options.json {
        file = file.json();
    }
    let shown = level.to_string();
    let id = add_output(&format!("file:{}", path.display()), level, file.build()?)?;
    get_logger(OWN_LOGGER).info(
        "Added file output",
        &[
            attr::display("path", &path.display()),
            attr::string("filter", &shown),
        ],
    );
    Ok(id)
}
