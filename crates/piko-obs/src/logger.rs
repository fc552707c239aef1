//! Piko's structured logger: the process-wide hub and the functions that add outputs to it.
//!
//! Everything of `piko-obs-logger` and `piko-obs-logger-drains` is re-exported here.
//! `init()` also routes the `log` crate's records and `tracing` events into the hub
//! (`with_log_bridge(false)` and `with_tracing_bridge(false)` turn that off).
//! Outputs added with these functions take their level from `LOG_LEVEL` unless
//! [`OutputOptions::with_level`] sets one in code (code wins, then the environment, then
//! INFO), except for piko-obs's own loggers (`piko-obs/...`), which keep the framework
//! level (`with_log_level`, then `PIKO_LOG_LEVEL`, then INFO) unless the output's
//! directives name them. The console output that `init()` adds uses the framework
//! level for every logger.
//!
//! Standard output has one output at a time, so no line is printed twice: as in Piko,
//! the first [`add_json_output`] or [`add_pretty_output`] replaces the console output
//! that `init()` added (what it queued is written first), and an `init()` that comes
//! after one adds no console output; a second stdout output is refused
//! ([`OutputError::StdoutTaken`]). Outputs to other places (a file, a drain, your own)
//! are added beside it.
//!
//! ```
//! use piko_obs::logger::{self, attr, OutputOptions};
//! let dir = tempfile::tempdir().unwrap();
//! logger::add_file_output_with(
//!     dir.path().join("app.log"),
//!     OutputOptions::default().with_level("debug"),
//! ).unwrap();
//! let log = logger::get_logger("billing").with(&[attr::string("tenant", "acme")]);
//! log.debug("invoice built", &[attr::int("lines", 12)]);
//! logger::hub().flush(std::time::Duration::from_secs(5)).unwrap();
//! let text = std::fs::read_to_string(dir.path().join("app.log")).unwrap();
//! assert!(text.contains("invoice built | lines=12 tenant=acme"));
//! # logger::hub().shutdown(std::time::Duration::from_secs(1)).unwrap();
//! ```

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub use piko_obs_logger::*;
pub use piko_obs_logger_drains::*;

static HUB: OnceLock<Hub> = OnceLock::new();

/// The process-wide hub that `get_logger` and the `add_*_output` functions use.
pub fn hub() -> &'static Hub {
    HUB.get_or_init(Hub::default)
}

/// A logger named `name` from the process-wide hub. Cheap; a logger obtained before
/// outputs are added writes to them once they are.
pub fn get_logger(name: &str) -> Logger {
    hub().get_logger(name)
}

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

/// Adds the console output `init()` adds, unless the program already added a stdout
/// output (then `None`).
pub(crate) fn add_console(
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

/// The framework level `init()` resolved (`with_log_level`, then `PIKO_LOG_LEVEL`);
/// before `init()`, `PIKO_LOG_LEVEL` is read.
static FRAMEWORK_LEVEL: Mutex<Option<Directives>> = Mutex::new(None);

pub(crate) fn set_framework_level(level: Directives) {
    *FRAMEWORK_LEVEL.lock().unwrap_or_else(|p| p.into_inner()) = Some(level);
}

fn level_of(options: &OutputOptions) -> Result<Directives, LevelSettingError> {
    let env = |k: &str| std::env::var(k).ok();
    let own = resolve_directives(
        options.level.as_deref().map(|l| ("with_level", l)),
        LOG_LEVEL,
        env,
    )?;
    let set = FRAMEWORK_LEVEL
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let framework = match set {
        Some(level) => level,
        None => resolve_directives(None, PIKO_LOG_LEVEL, env)?,
    };
    Ok(own.with_scope_from(FRAMEWORK_LOGGERS, &framework))
}

/// The name piko-obs's own loggers start with (`piko-obs/otlp`, ...).
pub const FRAMEWORK_LOGGERS: &str = "piko-obs";

/// Adds any output to the process-wide hub, and lets `log` records through down to its
/// level.
pub fn add_output(
    name: &str,
    filter: impl Into<Directives>,
    output: impl Output,
) -> Result<OutputId, AddOutputError> {
    let id = hub().add_output(name, filter, output)?;
    levels_changed();
    Ok(id)
}

/// Adds any slog drain as an output of the process-wide hub.
pub fn add_drain<D>(
    name: &str,
    filter: impl Into<Directives>,
    drain: D,
) -> Result<OutputId, AddOutputError>
where
    D: slog::Drain<Err = slog::Never> + Send + Sync + 'static,
{
    let id = hub().add_drain(name, filter, drain)?;
    levels_changed();
    Ok(id)
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

/// Lets the `log` and `tracing` fast paths through down to the outputs' most verbose
/// level again.
fn levels_changed() {
    log::set_max_level(hub().min_level().to_log_filter());
    tracing_core::callsite::rebuild_interest_cache();
}

/// The layer that brings `tracing` events and spans into the process-wide hub (and, with
/// OTLP on, spans into OpenTelemetry), for an application that installs its own
/// `tracing` subscriber: add it to the registry beside `fmt`, `EnvFilter` and the rest.
/// `init()` sees the application's subscriber and leaves it in place.
///
/// The OpenTelemetry SDK reports its own failures (a collector that refuses exports,
/// say) through `tracing`: the layer keeps their WARN and ERROR events only, written as
/// WARN (not application errors for Sentry and alerts), at most one line a call site
/// every 30 s.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt as _;
/// let subscriber = tracing_subscriber::registry().with(piko_obs::logger::tracing_layer());
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(order_id = 7, "order placed");
/// });
/// ```
pub fn tracing_layer() -> crate::otlp::TracingLayer {
    LAYER_GIVEN.store(true, std::sync::atomic::Ordering::Relaxed);
    layer()
}

/// The layer of [`tracing_layer`], without noting that the application took it.
fn layer() -> crate::otlp::TracingLayer {
    crate::otlp::TracingLayer::with_bridge(
        TracingBridge::new(hub().clone())
            .with_rate_limit("opentelemetry", Duration::from_secs(30))
            .with_target_floor("opentelemetry", Level::WARN)
            .with_target_ceiling("opentelemetry", Level::WARN),
    )
}

/// Whether [`tracing_layer`] was called: the application's subscriber then has it.
static LAYER_GIVEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where `tracing` events and spans go, as [`install_tracing_bridge`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TracingRoute {
    /// A registry with [`tracing_layer`] is now the global subscriber.
    Installed,
    /// The application's own subscriber was there first; it has [`tracing_layer`].
    ApplicationLayer,
    /// The application's own subscriber was there first, without [`tracing_layer`]:
    /// `tracing` events and spans do not reach piko-obs.
    ApplicationSubscriber,
}

impl TracingRoute {
    /// What it means, in words, for `init()`'s own line.
    pub fn describe(self) -> &'static str {
        match self {
            TracingRoute::Installed => "piko-obs installed the global tracing subscriber",
            TracingRoute::ApplicationLayer => {
                "the application's tracing subscriber has piko-obs's layer"
            }
            TracingRoute::ApplicationSubscriber => {
                "the application's tracing subscriber was installed first and has no piko-obs layer: add piko_obs::logger::tracing_layer() to it to bring tracing events and spans into piko-obs"
            }
        }
    }
}

static TRACING_BRIDGE: OnceLock<()> = OnceLock::new();

/// Serialises the bridges' installation, so concurrent `init()` calls install each once.
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Makes a registry with [`tracing_layer`] the global `tracing` subscriber, unless the
/// application installed one first; never fails. Idempotent.
pub fn install_tracing_bridge() -> TracingRoute {
    use tracing_subscriber::layer::SubscriberExt as _;
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if TRACING_BRIDGE.get().is_some() {
        return TracingRoute::Installed;
    }
    let dispatch = tracing_core::Dispatch::new(tracing_subscriber::registry().with(layer()));
    if tracing_core::dispatcher::set_global_default(dispatch).is_err() {
        return if LAYER_GIVEN.load(std::sync::atomic::Ordering::Relaxed) {
            TracingRoute::ApplicationLayer
        } else {
            TracingRoute::ApplicationSubscriber
        };
    }
    let _ = TRACING_BRIDGE.set(());
    TracingRoute::Installed
}

/// Another `log` logger was installed first.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "another logger of the `log` crate is already installed; remove it, or turn the bridge off with with_log_bridge(false)"
)]
pub struct LogBridgeError;

static BRIDGE: OnceLock<()> = OnceLock::new();

/// Routes the `log` crate's records into the process-wide hub. Idempotent.
pub fn install_log_bridge() -> Result<(), LogBridgeError> {
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if BRIDGE.get().is_some() {
        return Ok(());
    }
    log::set_boxed_logger(Box::new(LogBridge::new(hub().clone()))).map_err(|_| LogBridgeError)?;
    let _ = BRIDGE.set(());
    log::set_max_level(hub().min_level().to_log_filter());
    Ok(())
}
