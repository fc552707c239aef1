//! The notification part of a process: [`Setup`] holds its settings, resolves them
//! against the environment and starts the service with its providers, its dispatcher
//! and its dead-letter store; [`global`] holds the process-wide service once the
//! composing program installs it.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use piko_obs_lifecycle::Unwind;
use piko_obs_notify::{
    DeadLetterStore, Delivery, Dispatcher, DispatcherConfig, NotificationService, Notifier,
    RegisterError, RetryPolicy, UnknownProvider, provider,
};

use crate::{
    DEFAULT_MEMORY_ENTRIES, EnvProviderError, FileDeadLetterStore, MemoryDeadLetterStore,
    Registration, StdoutFormat, StdoutNotifier, default_dead_letter_path, providers_from_env,
};

/// The dead-letter file's path, from the environment when [`Setup::with_dead_letter_path`]
/// did not set it.
pub const PIKO_NOTIFICATION_DEAD_LETTER_PATH: &str = "PIKO_NOTIFICATION_DEAD_LETTER_PATH";

/// The settings of a process's notifications, applied by [`Setup::start`]: the
/// providers given with [`with_provider`](Self::with_provider) (and, with
/// [`with_providers_from_env`](Self::with_providers_from_env), one for each variable of
/// [`ENV_PROVIDERS`](crate::ENV_PROVIDERS) that is set), stdout when there is none, and a
/// dispatcher whose dead letters go to a store ([`with_dead_letter_store`](Self::with_dead_letter_store)),
/// else a JSON-lines file, else memory and stderr.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use piko_obs_notify_providers::setup::Setup;
/// use piko_obs_notify_providers::{StdoutFormat, StdoutNotifier};
/// let dir = tempfile::tempdir().unwrap();
/// let started = Setup::default()
///     .with_provider("ops", StdoutNotifier::new(StdoutFormat::Json))
///     .with_dead_letter_path(dir.path().join("dead-letters.jsonl"))
///     .with_service("shop")
///     .start(&tokio::runtime::Handle::current())
///     .unwrap();
/// assert_eq!(started.service.providers(), ["ops"]);
/// # });
/// ```
pub struct Setup {
    enabled: bool,
    providers: Vec<Registration>,
    from_env: bool,
    default: Option<String>,
    dead_letter_path: Option<PathBuf>,
    dead_letter_max_bytes: Option<NonZeroU64>,
    dead_letter_store: Option<Arc<dyn DeadLetterStore>>,
    retry: Option<RetryPolicy>,
    dispatcher: DispatcherConfig,
    service: String,
    environment: Option<String>,
    stdout_format: StdoutFormat,
    trace_id_source: Option<fn() -> Option<String>>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            enabled: true,
            providers: Vec::new(),
            from_env: false,
            default: None,
            dead_letter_path: None,
            dead_letter_max_bytes: None,
            dead_letter_store: None,
            retry: None,
            dispatcher: DispatcherConfig::default(),
            service: String::new(),
            environment: None,
            stdout_format: StdoutFormat::Json,
            trace_id_source: None,
        }
    }
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("enabled", &self.enabled)
            .field("providers", &self.providers.len())
            .field("from_env", &self.from_env)
            .field("default", &self.default)
            .field("dead_letter_path", &self.dead_letter_path)
            .field("dead_letter_store", &self.dead_letter_store.is_some())
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Setup {
    /// Whether notifications are set up at all (default on).
    pub fn with_enabled(self, on: bool) -> Self {
        Self {
            enabled: on,
            ..self
        }
    }
    /// Whether notifications are set up.
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// Registers `provider` under `name` (a name used twice fails [`start`](Self::start)).
    /// The first registered is the default, unless
    /// [`with_default_provider`](Self::with_default_provider) names another.
    pub fn with_provider(mut self, name: impl Into<String>, provider: impl Notifier) -> Self {
        let name = name.into();
        self.providers
            .push(Box::new(move |s: &NotificationService| {
                s.register(name, provider)
            }));
        self
    }
    /// Also registers a provider for each variable of [`ENV_PROVIDERS`](crate::ENV_PROVIDERS)
    /// that is set; a bad value fails [`start`](Self::start) naming the variable.
    pub fn with_providers_from_env(self) -> Self {
        Self {
            from_env: true,
            ..self
        }
    }
    /// The default provider (it must be registered).
    pub fn with_default_provider(self, name: impl Into<String>) -> Self {
        Self {
            default: Some(name.into()),
            ..self
        }
    }
    /// The dead-letter file (default: [`PIKO_NOTIFICATION_DEAD_LETTER_PATH`], else
    /// [`default_dead_letter_path`]). It must be writable: [`start`](Self::start) opens it.
    pub fn with_dead_letter_path(self, path: impl Into<PathBuf>) -> Self {
        Self {
            dead_letter_path: Some(path.into()),
            ..self
        }
    }
    /// The most bytes the dead-letter file holds (default [`crate::DEFAULT_MAX_BYTES`]).
    pub fn with_dead_letter_max_bytes(self, max: NonZeroU64) -> Self {
        Self {
            dead_letter_max_bytes: Some(max),
            ..self
        }
    }
    /// A dead-letter store of one's own, in place of the file; it cannot be combined
    /// with a path or a size of the file.
    pub fn with_dead_letter_store(self, store: impl DeadLetterStore) -> Self {
        Self {
            dead_letter_store: Some(Arc::new(store)),
            ..self
        }
    }
    /// How notifications are retried (default [`RetryPolicy`]).
    pub fn with_retry_policy(self, policy: RetryPolicy) -> Self {
        Self {
            retry: Some(policy),
            ..self
        }
    }
    /// The dispatcher's queue and workers.
    pub fn with_dispatcher(self, config: DispatcherConfig) -> Self {
        Self {
            dispatcher: config,
            ..self
        }
    }
    /// The service name notifications carry as their source and service.
    pub fn with_service(self, name: impl Into<String>) -> Self {
        Self {
            service: name.into(),
            ..self
        }
    }
    /// The deployment environment notifications carry.
    pub fn with_environment(self, environment: Option<String>) -> Self {
        Self {
            environment,
            ..self
        }
    }
    /// The format of the stdout provider registered when no other is (default JSON).
    pub fn with_stdout_format(self, format: StdoutFormat) -> Self {
        Self {
            stdout_format: format,
            ..self
        }
    }
    /// Where the trace id of a notification without one comes from.
    pub fn with_trace_id_source(self, source: fn() -> Option<String>) -> Self {
        Self {
            trace_id_source: Some(source),
            ..self
        }
    }

    /// Builds the service, registers the providers, opens the dead-letter store and
    /// starts the dispatcher on `runtime`. Nothing is installed process-wide: see
    /// [`Started::install`].
    pub fn start(self, runtime: &tokio::runtime::Handle) -> Result<Started, SetupError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut builder = NotificationService::builder()
            .with_source(self.service.clone())
            .with_service(self.service)
            .with_runtime(runtime.clone());
        if let Some(source) = self.trace_id_source {
            builder = builder.with_trace_id_source(source);
        }
        if let Some(e) = self.environment {
            builder = builder.with_environment(e);
        }
        if let Some(policy) = self.retry {
            builder = builder.with_retry_policy(policy);
        }
        let service = builder.build();
        for register in self.providers {
            register(&service).map_err(SetupError::Provider)?;
        }
        if self.from_env {
            for register in providers_from_env(env)? {
                register(&service).map_err(SetupError::Provider)?;
            }
        }
        if service.providers().is_empty() {
            let stdout = StdoutNotifier::new(self.stdout_format);
            service
                .register(provider::STDOUT, stdout)
                .map_err(SetupError::Provider)?;
        }
        if let Some(name) = &self.default {
            service
                .set_default(name)
                .map_err(SetupError::DefaultProvider)?;
        }
        let (store, dead_letters, memory) = dead_letter_store(
            self.dead_letter_store,
            self.dead_letter_path,
            self.dead_letter_max_bytes,
        )?;
        let dispatcher = Dispatcher::start(runtime, &service, store, self.dispatcher)
            .map_err(SetupError::Runtime)?;
        let _ = service.attach_dispatcher(dispatcher.clone());
        Ok(Started {
            delivery: Delivery::new(&service, &dispatcher, runtime),
            service,
            dead_letters,
            memory,
        })
    }
}

impl Setup {
    /// [`start`](Self::start) as a part of a process: its delivery (the dispatcher and
    /// the sends under way) is pushed on `parts`, which shut it down or unwind it.
    pub fn start_part(
        self,
        runtime: &tokio::runtime::Handle,
        parts: &Unwind,
    ) -> Result<Started, SetupError> {
        let started = self.start(runtime)?;
        parts.push(started.delivery.clone());
        Ok(started)
    }
}

/// What [`Setup::start`] started.
#[derive(Debug)]
pub struct Started {
    /// The service, with its providers and dispatcher.
    pub service: NotificationService,
    /// Its delivery, the part to shut down (it implements `Lifecycle`).
    pub delivery: Delivery,
    /// Where dead letters go, for a start-up line.
    pub dead_letters: String,
    memory: Option<Arc<MemoryDeadLetterStore>>,
}

impl Started {
    /// Makes the service (and the in-memory dead-letter store, if it fell back to one)
    /// the process-wide ones of [`global`].
    pub fn install(&self) {
        global::install(self.service.clone(), self.memory.clone());
    }
}

/// Why [`Setup::start`] failed; each names the setting and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A provider could not be registered (a name used twice).
    #[error("notification provider: {0}")]
    Provider(RegisterError),
    /// A provider variable is set to something that cannot work.
    #[error(transparent)]
    Env(#[from] EnvProviderError),
    /// The default provider is not registered.
    #[error("default notification provider: {0}")]
    DefaultProvider(UnknownProvider),
    /// A store of one's own and settings of the file were both given.
    #[error(
        "a dead-letter store of one's own replaces the dead-letter file: drop the file's path and size, or the store"
    )]
    StoreAndFile,
    /// The dead-letter file chosen in code or by the variable cannot be opened (the
    /// default one falls back to memory and stderr instead).
    #[error("notification dead-letter file {}: {source}", .path.display())]
    DeadLetterFile {
        /// Whether the path was given in code (`false`: by
        /// [`PIKO_NOTIFICATION_DEAD_LETTER_PATH`]).
        in_code: bool,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The dispatcher could not start.
    #[error("cannot start the notification dispatcher: {0}")]
    Runtime(std::io::Error),
}

type Chosen = (
    Arc<dyn DeadLetterStore>,
    String,
    Option<Arc<MemoryDeadLetterStore>>,
);

/// The dead-letter store, where it is (for the start-up line) and the in-memory store
/// when it is one: the application's own, else the file set in code or by
/// `PIKO_NOTIFICATION_DEAD_LETTER_PATH` (which must be writable), else the default file,
/// else memory and stderr.
fn dead_letter_store(
    store: Option<Arc<dyn DeadLetterStore>>,
    path: Option<PathBuf>,
    max_bytes: Option<NonZeroU64>,
) -> Result<Chosen, SetupError> {
    match store {
        Some(_) if path.is_some() || max_bytes.is_some() => Err(SetupError::StoreAndFile),
        Some(store) => Ok((store, "a store of the application's own".into(), None)),
        None => dead_letter_file(path, max_bytes),
    }
}

/// A path the user set must be writable; the default may not be (a read-only root file
/// system or HOME), or there may be none (no absolute XDG_STATE_HOME or HOME; the
/// working directory is never used): then dead letters are kept in memory and printed
/// to stderr (`MemoryDeadLetterStore`).
fn dead_letter_file(
    path: Option<PathBuf>,
    max_bytes: Option<NonZeroU64>,
) -> Result<Chosen, SetupError> {
    let env = std::env::var(PIKO_NOTIFICATION_DEAD_LETTER_PATH)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let chosen = match (path, env) {
        (Some(p), _) => (p, Some(true)),
        (None, Some(p)) => (p.into(), Some(false)),
        (None, None) => match default_dead_letter_path() {
            Some(p) => (p, None),
            None => {
                let source = std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "neither XDG_STATE_HOME nor HOME is set to an absolute folder",
                );
                let memory = memory_dead_letters(Path::new("(no default path)"), &source);
                let shown = format!("memory and stderr (no default file: {source})");
                return Ok((memory.clone(), shown, Some(memory)));
            }
        },
    };
    match (FileDeadLetterStore::open(&chosen.0), chosen) {
        (Ok(mut store), (path, _)) => {
            if let Some(max) = max_bytes {
                store = store.with_max_bytes(max);
            }
            Ok((Arc::new(store), path.display().to_string(), None))
        }
        (Err(source), (path, Some(in_code))) => Err(SetupError::DeadLetterFile {
            in_code,
            path,
            source,
        }),
        (Err(source), (path, None)) => {
            let memory = memory_dead_letters(&path, &source);
            // The error names the file.
            let shown = format!("memory and stderr (default file not writable: {source})");
            Ok((memory.clone(), shown, Some(memory)))
        }
    }
}

/// The in-memory store used when the default dead-letter file cannot be opened: warns
/// once (naming the file, the reason and the fix); its size is visible on `/metrics`
/// (`piko_obs_notifications_dead_letter_in_memory`) once installed.
fn memory_dead_letters(default_path: &Path, why: &std::io::Error) -> Arc<MemoryDeadLetterStore> {
    use piko_obs_logger::attr;
    let store = Arc::new(MemoryDeadLetterStore::new(DEFAULT_MEMORY_ENTRIES));
    let path = default_path.display().to_string();
    let why = why.to_string();
    piko_obs_logger::global::get_logger("piko-obs/notification").warn(
        "dead letters kept in memory and printed to stderr: the default dead-letter file is not writable; set PIKO_NOTIFICATION_DEAD_LETTER_PATH to a writable volume to keep them across restarts",
        &[
            attr::string("path", &path),
            attr::string("error", &why),
            attr::uint("max_entries", DEFAULT_MEMORY_ENTRIES.get() as u64),
        ],
    );
    store
}

/// The process-wide notification service, once installed ([`Started::install`]).
pub mod global {
    use std::sync::{Arc, RwLock};

    use piko_obs_notify::{NotificationBuilder, NotificationService};

    use crate::MemoryDeadLetterStore;

    type Installed = (NotificationService, Option<Arc<MemoryDeadLetterStore>>);

    static INSTALLED: RwLock<Option<Installed>> = RwLock::new(None);

    pub(super) fn install(
        service: NotificationService,
        memory: Option<Arc<MemoryDeadLetterStore>>,
    ) {
        *INSTALLED.write().unwrap_or_else(|p| p.into_inner()) = Some((service, memory));
    }

    /// The installed notification service, if there is one.
    pub fn service() -> Option<NotificationService> {
        INSTALLED
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(s, _)| s.clone())
    }

    /// A notification builder on the installed service. Before one is installed it has
    /// no provider: sending fails with an error saying so, and `enqueue` with
    /// `NoDispatcher`.
    pub fn builder() -> NotificationBuilder {
        service().unwrap_or_default().notification()
    }

    /// Records the counters of the installed service, its dispatcher and providers, and
    /// of the in-memory dead-letter store it fell back to, as `metrics` series.
    pub fn record_metrics() {
        let installed = INSTALLED.read().unwrap_or_else(|p| p.into_inner());
        if let Some((service, memory)) = installed.as_ref() {
            piko_obs_notify::telemetry::record_metrics(service);
            if let Some(m) = memory {
                m.record_metrics();
            }
        }
    }
}
