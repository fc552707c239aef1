//! The hub (outputs and their filters) and the `Logger` handles it gives out.

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::attr::{Attr, OwnedAttr, SecretKeys};
use crate::filter::Directives;
use crate::level::Level;
use crate::record::{Bound, FlushError, Output, OutputStats, Record, Source, StackTrace};
use crate::slog_kv::{BoundKv, RecordKv, location};

/// The longest wait taken as given: a longer one (up to `Duration::MAX`) is a century,
/// as `Instant` cannot add more.
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

type SlogDrain = dyn slog::Drain<Ok = (), Err = slog::Never> + Send + Sync;

enum Sink {
    Native(Arc<dyn Output>),
    Slog(Box<SlogDrain>),
}

struct OutputEntry {
    id: OutputId,
    name: String,
    filter: Directives,
    sink: Sink,
    /// Panics caught from this output.
    panics: AtomicU64,
}

/// Identifies an output added to a hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutputId(u64);

/// What a hub knows about one of its outputs.
#[derive(Clone, Debug)]
pub struct OutputInfo {
    /// The id `add_output` returned.
    pub id: OutputId,
    /// The name it was added under.
    pub name: String,
    /// Its level filter.
    pub filter: Directives,
    /// Its counters (zero for plain slog drains, except `write_errors`, which counts
    /// panics caught from the drain).
    pub stats: OutputStats,
}

/// An output could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddOutputError {
    /// Another output already has this name.
    #[error("a log output named {0:?} already exists: give each output its own name")]
    DuplicateName(String),
}

/// Failures of `Hub::flush` and `Hub::shutdown`, one per output that did not flush.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log shutdown: {}", .failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct FlushErrors {
    /// Each output's failure.
    pub failures: Vec<FlushError>,
}

thread_local! {
    /// This thread's last state snapshot: (hub id, generation, state).
    static SNAPSHOT: std::cell::RefCell<Option<(u64, u64, Arc<HubState>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Everything a log call reads, swapped as one snapshot.
#[derive(Clone)]
struct HubState {
    outputs: Vec<Arc<OutputEntry>>,
    secrets: SecretKeys,
    error_backtraces: bool,
}

/// Hub ids are never reused, so a cached snapshot cannot be taken for another hub's.
static NEXT_HUB_ID: AtomicU64 = AtomicU64::new(1);

struct HubInner {
    id: u64,
    state: ArcSwap<HubState>,
    /// Bumped on every change of the state; a thread re-reads its cached snapshot when it
    /// moves.
    generation: AtomicU64,
    loggers: RwLock<HashMap<Arc<str>, Arc<LoggerCore>>>,
    unrouted: AtomicU64,
    next_id: AtomicU64,
    change: Mutex<()>,
}

/// Builds a [`Hub`].
#[derive(Debug, Clone)]
#[must_use]
pub struct HubBuilder {
    secrets: SecretKeys,
    error_backtraces: bool,
}

impl HubBuilder {
    /// Replaces the secret-key patterns (default: [`SecretKeys::default`]).
    pub fn with_secret_keys(mut self, secrets: SecretKeys) -> Self {
        self.secrets = secrets;
        self
    }
    /// Whether ERROR records carry a stack trace (default: off). When on, each ERROR
    /// call captures and symbolises its stack on the caller's thread: the first one loads
    /// the program's debug information (tens of MiB, a hundred milliseconds or more),
    /// each one costs tens of microseconds. A trace whose frames all lack symbols
    /// (`<unknown>`, a release build without debug information) is left out.
    pub fn with_error_backtraces(mut self, on: bool) -> Self {
        self.error_backtraces = on;
        self
    }
    /// The hub.
    pub fn build(self) -> Hub {
        crate::clock::calibrate_in_background();
        Hub {
            inner: Arc::new(HubInner {
                id: NEXT_HUB_ID.fetch_add(1, Ordering::Relaxed),
                state: ArcSwap::from_pointee(HubState {
                    outputs: Vec::new(),
                    secrets: self.secrets,
                    error_backtraces: self.error_backtraces,
                }),
                generation: AtomicU64::new(1),
                loggers: RwLock::new(HashMap::new()),
                unrouted: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
                change: Mutex::new(()),
            }),
        }
    }
}

/// Holds the outputs and hands out loggers. A program usually has one, which the
/// `piko-obs` facade owns; this crate never installs anything globally.
///
/// Loggers follow the hub: one obtained before an output is added writes to it too.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use piko_obs_logger::{Hub, Level, Output, OutputStats, Record, FlushError, attr};
///
/// #[derive(Default)]
/// struct Lines(Mutex<Vec<String>>);
/// impl Output for Lines {
///     fn write(&self, r: &Record<'_>) {
///         self.0.lock().unwrap().push(format!("{} {}", r.level(), r.msg()));
///     }
///     fn flush(&self, _: std::time::Duration) -> Result<(), FlushError> { Ok(()) }
/// }
///
/// let hub = Hub::builder().build();
/// let log = hub.get_logger("myapp/db");   // before any output exists
/// let lines = Arc::new(Lines::default());
/// hub.add_output("test", Level::INFO, lines.clone()).unwrap();
/// log.notice("pool ready", &[attr::int("size", 8)]);
/// log.debug("not shown", &[]);
/// assert_eq!(*lines.0.lock().unwrap(), ["NOTICE pool ready"]);
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::builder().build()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field(
                "outputs",
                &self
                    .inner
                    .state
                    .load()
                    .outputs
                    .iter()
                    .map(|o| o.name.clone())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A builder with the defaults: default secret keys, no stack traces on ERROR.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            secrets: SecretKeys::default(),
            error_backtraces: false,
        }
    }

    /// Replaces the secret-key patterns. Loggers made by `with` before the change keep
    /// masking their bound fields with the patterns of that time.
    pub fn set_secret_keys(&self, secrets: SecretKeys) {
        self.update(|st| st.secrets = secrets);
    }

    /// Turns stack traces on ERROR records on or off.
    pub fn set_error_backtraces(&self, on: bool) {
        self.update(|st| st.error_backtraces = on);
    }

    /// Changes the state under the change lock, bumps the generation, and sets every
    /// logger's threshold from the new state, so a log call reads one number to know
    /// whether its level is on.
    fn update<R>(&self, f: impl FnOnce(&mut HubState) -> R) -> R {
        let _g = self.inner.change.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = HubState::clone(&self.inner.state.load());
        let r = f(&mut next);
        let next = Arc::new(next);
        self.inner.state.store(next.clone());
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        // A logger made meanwhile read the new state (stored above) or is in the map
        // by now and is set here.
        for core in self
            .inner
            .loggers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            core.set_min(&next);
        }
        r
    }

    /// Adds an output that receives every record at or above `filter`'s level for the
    /// record's logger name.
    pub fn add_output(
        &self,
        name: impl Into<String>,
        filter: impl Into<Directives>,
        output: impl Output,
    ) -> Result<OutputId, AddOutputError> {
        self.add(name.into(), filter.into(), Sink::Native(Arc::new(output)))
    }

    /// Adds any slog drain as an output. It sees slog records: the nearest slog level,
    /// the exact piko level name in `record.tag()`, the logger name and bound fields in
    /// the owned key-values, and secret values already masked.
    pub fn add_drain<D>(
        &self,
        name: impl Into<String>,
        filter: impl Into<Directives>,
        drain: D,
    ) -> Result<OutputId, AddOutputError>
    where
        D: slog::Drain<Err = slog::Never> + Send + Sync + 'static,
    {
        self.add(
            name.into(),
            filter.into(),
            Sink::Slog(Box::new(DiscardOk(drain))),
        )
    }

    fn add(
        &self,
        name: String,
        filter: Directives,
        sink: Sink,
    ) -> Result<OutputId, AddOutputError> {
        let id = OutputId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        self.update(|st| {
            if st.outputs.iter().any(|o| o.name == name) {
                return Err(AddOutputError::DuplicateName(name));
            }
            st.outputs.push(Arc::new(OutputEntry {
                id,
                name,
                filter,
                sink,
                panics: AtomicU64::new(0),
            }));
            Ok(id)
        })
    }

    /// Removes an output and closes it (writing what it queued) within `timeout`.
    /// Returns whether it existed.
    pub fn remove_output(&self, id: OutputId, timeout: Duration) -> Result<bool, FlushError> {
        let removed = self.update(|st| {
            let removed = st.outputs.iter().find(|o| o.id == id).cloned();
            st.outputs.retain(|o| o.id != id);
            removed
        });
        match removed {
            Some(o) => close_entry(&o, timeout).map(|()| true),
            None => Ok(false),
        }
    }

    /// The outputs, in the order they were added.
    pub fn outputs(&self) -> Vec<OutputInfo> {
        self.inner
            .state
            .load()
            .outputs
            .iter()
            .map(|o| OutputInfo {
                id: o.id,
                name: o.name.clone(),
                filter: o.filter.clone(),
                stats: {
                    let mut s = match &o.sink {
                        Sink::Native(out) => out.stats(),
                        Sink::Slog(_) => OutputStats::default(),
                    };
                    s.write_errors += o.panics.load(Ordering::Relaxed);
                    s
                },
            })
            .collect()
    }

    /// Lines at INFO or above that were logged while the hub had no output at all.
    pub fn unrouted(&self) -> u64 {
        self.inner.unrouted.load(Ordering::Relaxed)
    }

    /// The most verbose level any output takes for any logger.
    pub fn min_level(&self) -> Level {
        self.inner
            .state
            .load()
            .outputs
            .iter()
            .map(|o| o.filter.min_level())
            .min()
            .unwrap_or(Level::INFO)
    }

    /// Writes everything accepted so far. The whole call takes at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushErrors> {
        let deadline = Instant::now() + timeout.min(LONGEST_WAIT);
        let failures: Vec<FlushError> = self
            .inner
            .state
            .load()
            .outputs
            .iter()
            .filter_map(|o| {
                flush_entry(o, deadline.saturating_duration_since(Instant::now())).err()
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(FlushErrors { failures })
        }
    }

    /// Removes every output, then closes each (writing what it queued and stopping its
    /// writer thread), all within `timeout`. Later lines count as unrouted. Calling it
    /// twice is harmless. It also ends the thread that calibrates the records' clock, if
    /// that is still under way (within `timeout`), for every hub of the process: the next
    /// hub built starts it again.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), FlushErrors> {
        let deadline = Instant::now() + timeout.min(LONGEST_WAIT);
        crate::clock::stop_calibration(deadline);
        let removed = self.update(|st| std::mem::take(&mut st.outputs));
        let failures: Vec<FlushError> = removed
            .iter()
            .filter_map(|o| {
                close_entry(o, deadline.saturating_duration_since(Instant::now())).err()
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(FlushErrors { failures })
        }
    }

    /// A logger named `name`. Cheap: loggers of the same name share their state.
    pub fn logger(&self, name: &str) -> Logger {
        self.get_logger(name)
    }

    /// A logger named `name`: [`logger`](Self::logger), under Piko's name.
    pub fn get_logger(&self, name: &str) -> Logger {
        if let Some(core) = self
            .inner
            .loggers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Logger {
                bound: Bindings::Ready(core.root.clone()),
                core: core.clone(),
            };
        }
        let mut map = self
            .inner
            .loggers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let core = map
            .entry(Arc::from(name))
            .or_insert_with_key(|name| {
                let mut name_json = Vec::new();
                crate::json::write_str(&mut name_json, name);
                let state = self.inner.state.load();
                let core = LoggerCore {
                    hub: self.inner.clone(),
                    name: name.clone(),
                    name_json: name_json.into_boxed_slice(),
                    min: AtomicI32::new(Level::INFO.value()),
                    root: Arc::new(bound(name, Arc::from(Vec::new()), &state.secrets)),
                };
                core.set_min(&state);
                Arc::new(core)
            })
            .clone();
        Logger {
            bound: Bindings::Ready(core.root.clone()),
            core,
        }
    }
}

fn bound(name: &Arc<str>, attrs: Arc<[OwnedAttr]>, secrets: &SecretKeys) -> Bound {
    let mut json = Vec::with_capacity(attrs.len() * 48);
    for a in attrs.iter() {
        json.push(b',');
        crate::json::write_str(&mut json, a.key());
        json.push(b':');
        crate::json::write_value(&mut json, &a.as_attr().value(), secrets.is_secret(a.key()));
    }
    Bound {
        json,
        slog_values: slog::OwnedKVList::from(slog::OwnedKV(BoundKv {
            logger: name.clone(),
            attrs: attrs.clone(),
            secrets: secrets.clone(),
        })),
        attrs,
    }
}

fn close_entry(o: &OutputEntry, timeout: Duration) -> Result<(), FlushError> {
    match &o.sink {
        Sink::Native(out) => out.close(timeout),
        Sink::Slog(_) => flush_entry(o, timeout),
    }
}

fn flush_entry(o: &OutputEntry, timeout: Duration) -> Result<(), FlushError> {
    match &o.sink {
        Sink::Native(out) => out.flush(timeout),
        Sink::Slog(d) => match d.flush() {
            // A slog drain that cannot flush keeps nothing queued.
            Ok(()) | Err(slog::FlushError::NotSupported) => Ok(()),
            Err(e) => Err(FlushError::Failed {
                output: o.name.clone(),
                reason: e.to_string(),
            }),
        },
    }
}

struct DiscardOk<D>(D);

impl<D: slog::Drain<Err = slog::Never>> slog::Drain for DiscardOk<D> {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, r: &slog::Record<'_>, v: &slog::OwnedKVList) -> Result<(), slog::Never> {
        self.0.log(r, v).map(|_| ())
    }
    fn flush(&self) -> Result<(), slog::FlushError> {
        self.0.flush()
    }
}

struct LoggerCore {
    hub: Arc<HubInner>,
    name: Arc<str>,
    /// `name` encoded once as a JSON string literal.
    name_json: Box<[u8]>,
    /// The lowest level any output takes for this name, set by the hub on every change
    /// of its state.
    min: AtomicI32,
    root: Arc<Bound>,
}

impl LoggerCore {
    fn set_min(&self, state: &HubState) {
        let min = state
            .outputs
            .iter()
            .map(|o| o.filter.level_for(&self.name))
            .min()
            // With no output, INFO and above still reach `dispatch` to be counted.
            .unwrap_or(Level::INFO);
        self.min.store(min.value(), Ordering::Relaxed);
    }
}

/// A named logger with bound fields. Cloning is cheap; loggers are `Send + Sync`.
///
/// Every level has a method that takes the message and a slice of attributes; the
/// source of the record is the caller's file and line. The macros ([`info!`](crate::info)
/// and friends) add the module path and skip building attributes for disabled levels.
#[derive(Clone)]
pub struct Logger {
    core: Arc<LoggerCore>,
    bound: Bindings,
}

/// A logger's bound fields: encoded, or a parent's plus a span's ids that are encoded on
/// the first line logged (most span loggers of a busy service never log). The span's ids
/// are held inline, so making a span logger allocates nothing; a clone made before the
/// first line encodes them again on its own first line.
#[derive(Clone)]
enum Bindings {
    Ready(Arc<Bound>),
    Span(SpanBindings),
}

#[derive(Clone)]
struct SpanBindings {
    /// The parent logger's fields; `None` for the logger's root ones (`core.root`),
    /// which a span logger made from `get_logger`'s logger then does not hold twice.
    parent: Option<Arc<Bound>>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    resolved: std::sync::OnceLock<Arc<Bound>>,
}

impl Bindings {
    #[inline]
    fn get(&self, core: &LoggerCore) -> &Arc<Bound> {
        match self {
            Bindings::Ready(b) => b,
            Bindings::Span(s) => s.resolved.get_or_init(|| {
                let (mut t, mut sp) = ([0u8; 32], [0u8; 16]);
                let ids = [
                    OwnedAttr::from_attr(&crate::attr::string(
                        crate::attr::keys::TRACE_ID,
                        crate::attr::hex(&s.trace_id, &mut t),
                    )),
                    OwnedAttr::from_attr(&crate::attr::string(
                        crate::attr::keys::SPAN_ID,
                        crate::attr::hex(&s.span_id, &mut sp),
                    )),
                ];
                // A span logger made from another replaces its ids instead of repeating them.
                let parent = s.parent.as_ref().unwrap_or(&core.root);
                let all: Arc<[OwnedAttr]> = parent
                    .attrs
                    .iter()
                    .filter(|a| {
                        a.key() != crate::attr::keys::TRACE_ID
                            && a.key() != crate::attr::keys::SPAN_ID
                    })
                    .cloned()
                    .chain(ids)
                    .collect();
                Arc::new(bound(&core.name, all, &core.hub.state.load().secrets))
            }),
        }
    }
}

// A panic cannot leave a logger or hub half-updated: their state is swapped whole.
impl std::panic::UnwindSafe for Logger {}
impl std::panic::RefUnwindSafe for Logger {}
impl std::panic::UnwindSafe for Hub {}
impl std::panic::RefUnwindSafe for Hub {}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("name", &self.core.name)
            .field("bound", &self.bound.get(&self.core).attrs.len())
            .finish()
    }
}

impl Logger {
    /// The name given to `get_logger`.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Whether a record at `level` would reach at least one output.
    #[inline]
    pub fn enabled(&self, level: Level) -> bool {
        level.value() >= self.core.min.load(Ordering::Relaxed)
    }

    /// A child logger whose every line also carries `attrs`; `self` is unchanged.
    pub fn with(&self, attrs: &[Attr<'_>]) -> Logger {
        if attrs.is_empty() {
            return self.clone();
        }
        let base = self.bound.get(&self.core);
        let all: Arc<[OwnedAttr]> = base
            .attrs
            .iter()
            .cloned()
            .chain(attrs.iter().map(OwnedAttr::from_attr))
            .collect();
        Logger {
            core: self.core.clone(),
            bound: Bindings::Ready(Arc::new(bound(
                &self.core.name,
                all,
                &self.core.hub.state.load().secrets,
            ))),
        }
    }

    /// A child logger whose every line also carries `trace_id` and `span_id` (32 and 16
    /// lower-case hex digits), like `with`, but the two fields are only encoded when the
    /// child first logs: a span's logger that never writes a line allocates nothing.
    pub fn with_span_ids(&self, trace_id: [u8; 16], span_id: [u8; 8]) -> Logger {
        let parent = match &self.bound {
            Bindings::Ready(b) if Arc::ptr_eq(b, &self.core.root) => None,
            other => Some(other.get(&self.core).clone()),
        };
        Logger {
            core: self.core.clone(),
            bound: Bindings::Span(SpanBindings {
                parent,
                trace_id,
                span_id,
                resolved: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Logs at any level, with an explicit source.
    #[inline]
    pub fn log_at(&self, level: Level, source: &Source, msg: &str, attrs: &[Attr<'_>]) {
        if self.enabled(level) {
            self.dispatch(level, source, msg, attrs);
        }
    }

    /// Logs at any level.
    #[inline]
    #[track_caller]
    pub fn log(&self, level: Level, msg: &str, attrs: &[Attr<'_>]) {
        if self.enabled(level) {
            self.dispatch(level, &Source::caller(), msg, attrs);
        }
    }

    #[inline(never)]
    fn dispatch(&self, level: Level, source: &Source, msg: &str, attrs: &[Attr<'_>]) {
        let hub = &*self.core.hub;
        let hub_id = hub.id;
        let generation = hub.generation.load(Ordering::Acquire);
        // The state snapshot is cached per thread, keyed by hub and generation, so a log
        // call reads it without an atomic read-modify-write. A nested call (a value
        // whose Display logs) finds the cell borrowed and loads the state itself.
        SNAPSHOT.with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let fresh = matches!(&*slot, Some((h, g, _)) if *h == hub_id && *g == generation);
                if !fresh {
                    *slot = Some((hub_id, generation, hub.state.load_full()));
                }
                if let Some((_, _, state)) = &*slot {
                    self.dispatch_in(state, level, source, msg, attrs);
                }
            }
            Err(_) => self.dispatch_in(&hub.state.load(), level, source, msg, attrs),
        });
    }

    fn dispatch_in(
        &self,
        state: &HubState,
        level: Level,
        source: &Source,
        msg: &str,
        attrs: &[Attr<'_>],
    ) {
        let hub = &*self.core.hub;
        if state.outputs.is_empty() {
            hub.unrouted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let stack = (state.error_backtraces && level >= Level::ERROR)
            .then(StackTrace::capture)
            .filter(|st| !st.frames().is_empty());
        let name: &str = &self.core.name;
        let bound = self.bound.get(&self.core);
        let record = Record {
            level,
            time: crate::clock::now(),
            msg,
            logger: name,
            logger_json: &self.core.name_json,
            source,
            bound: &bound.attrs,
            bound_json: &bound.json,
            attrs,
            stack: stack.as_ref(),
            secrets: &state.secrets,
        };
        for o in state.outputs.iter() {
            if level < o.filter.level_for(name) {
                continue;
            }
            let delivered = catch_unwind(AssertUnwindSafe(|| match &o.sink {
                Sink::Native(out) => out.write(&record),
                Sink::Slog(drain) => {
                    let loc = location(source);
                    let level_name = level.name();
                    let rs = slog::RecordStatic {
                        location: &loc,
                        tag: level_name.as_str(),
                        level: level.to_slog(),
                    };
                    let kv = RecordKv {
                        attrs,
                        stack: stack.as_ref(),
                        secrets: &state.secrets,
                    };
                    let args = format_args!("{msg}");
                    let r = slog::Record::new(&rs, &args, slog::BorrowedKV(&kv));
                    let _ = drain.log(&r, &bound.slog_values);
                }
            }));
            if delivered.is_err() {
                o.panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Logs at TRACE (-8).
    #[inline]
    #[track_caller]
    pub fn trace(&self, msg: &str, attrs: &[Attr<'_>]) {
        self.log(Level::TRACE, msg, attrs)
    }
    /// Logs at INTERNAL (-6).
    #[inline]
    #[track_caller]
    pub fn internal(&self, msg: &str, attrs: &[Attr<'_>]) {
        self.log(Level::INTERNAL, msg, attrs)
    }
    /// Logs at DEBUG (-4).
    #[inline]
    #[track_caller]
    pub fn debug(&self, msg: &str, attrs: &[Attr<'_>]) {
        self.log(Level::DEBUG, msg, attrs)
    }
    /// Logs at INFO (0).
    #[inline]
    #[track_caller]
    pub fn info(&self, msg: &str, attrs: &[Attr<'_>]) {
        self.log(Level::INFO, msg, attrs)
    }
    /// Logs at NOTICE (2).
    #[inline]
    #[track_caller]
    pub fn notice(&self, msg: &str, attrs: &[Attr<'_>]) {
        self.log(Level::NOTICE, msg, attrs)
    }
    /// Logs at WARN (4).
    #[inline]
    #[track_caller]
    pub fn warn(&self, msg: &str, attrs: &[Attr<'_>]) {
        self.log(Level::WARN, msg, attrs)
    }
    /// Logs at ERROR (8); the record carries a stack trace when the hub turned them on.
    #[inline]
    #[track_caller]
    pub fn error(&self, msg: &str, attrs: &[Attr<'_>]) {
        self.log(Level::ERROR, msg, attrs)
    }
    /// Logs at ERROR, then panics with the message (Piko's `Panic`).
    #[track_caller]
    pub fn panic(&self, msg: &str, attrs: &[Attr<'_>]) -> ! {
        self.log(Level::ERROR, msg, attrs);
        panic!("{msg}")
    }
}
