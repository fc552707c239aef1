//! The log side: a `sentry_slog::SentryDrain` whose mapper turns piko-obs records into
//! events with the real error chain, and lower records into breadcrumbs.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use piko_obs_logger::{Level, keys};
use sentry_core::Hub;
use sentry_core::protocol::{
    Breadcrumb, Context, Event, Exception, Frame, Level as SentryLevel, Map, SpanId, Stacktrace,
    TraceContext, TraceId, Value,
};
use sentry_slog::{RecordMapping, SentryDrain};
use slog::{KV, Key, OwnedKVList, Record, Serializer};

use crate::config::SentryConfig;

/// Where the drain finds the trace and span of the current span when the record has no
/// `trace_id`/`span_id` fields: 32 and 16 hex digits. The facade passes one that reads
/// the OpenTelemetry context.
pub type TraceSource = Arc<dyn Fn() -> Option<(String, String)> + Send + Sync>;

/// How records map to Sentry: thresholds, tag keys and the trace source.
#[derive(Clone)]
pub struct DrainOptions {
    event_level: Level,
    breadcrumb_level: Level,
    tag_keys: Arc<[&'static str]>,
    trace_source: Option<TraceSource>,
}

impl fmt::Debug for DrainOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainOptions")
            .field("event_level", &self.event_level)
            .field("breadcrumb_level", &self.breadcrumb_level)
            .field("tag_keys", &self.tag_keys)
            .field("trace_source", &self.trace_source.is_some())
            .finish()
    }
}

impl DrainOptions {
    /// The thresholds and tag keys of `config`, with no trace source.
    pub fn from_config(config: &SentryConfig) -> DrainOptions {
        DrainOptions {
            event_level: config.event_level,
            breadcrumb_level: config.breadcrumb_level,
            tag_keys: config.tag_keys.clone().into(),
            trace_source: None,
        }
    }

    /// Sets where the current span's ids come from.
    #[must_use]
    pub fn with_trace_source(mut self, source: TraceSource) -> DrainOptions {
        self.trace_source = Some(source);
        self
    }

    /// The lowest level the drain uses: give it to the log hub as the output's filter.
    pub fn min_level(&self) -> Level {
        self.event_level.min(self.breadcrumb_level)
    }

    /// What a record becomes.
    pub fn map(&self, record: &Record<'_>, values: &OwnedKVList) -> RecordMapping {
        let level = piko_level(record);
        if level >= self.event_level {
            RecordMapping::Event(Box::new(self.event(level, record, values)))
        } else if level >= self.breadcrumb_level {
            RecordMapping::Breadcrumb(breadcrumb(level, record, values))
        } else {
            RecordMapping::Ignore
        }
    }

    fn event(&self, level: Level, record: &Record<'_>, values: &OwnedKVList) -> Event<'static> {
        let mut c = Collector::default();
        let _ = record.kv().serialize(record, &mut c);
        let _ = values.serialize(record, &mut c);

        let mut event = Event {
            message: Some(record.msg().to_string()),
            level: sentry_level(level),
            logger: c.logger.take(),
            ..Default::default()
        };
        if let Some(mut chain) = c.exceptions.take() {
            if let (Some(st), Some(last)) = (c.stack.take(), chain.last_mut()) {
                last.stacktrace = Some(st);
            }
            event.exception = chain.into();
        } else if let Some(st) = c.stack.take() {
            event.stacktrace = Some(st);
        }
        let mut source = serde_json::Map::new();
        source.insert("file".into(), record.file().into());
        source.insert("line".into(), record.line().into());
        if !record.module().is_empty() {
            source.insert("module".into(), record.module().into());
        }
        c.extra.insert(keys::SOURCE.into(), Value::Object(source));
        for key in self.tag_keys.iter() {
            if let Some(v) = c.extra.get(*key) {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                event.tags.insert((*key).to_string(), truncate(text, 200));
            }
        }
        let ids = match (c.trace_id.take(), c.span_id.take()) {
            (Some(t), Some(s)) => Some((t, s)),
            _ => self.trace_source.as_ref().and_then(|f| f()),
        };
        if let Some(tc) = ids.and_then(|(t, s)| trace_context(&t, &s)) {
            event
                .contexts
                .insert("trace".into(), Context::Trace(Box::new(tc)));
        }
        event.extra = c.extra;
        event
    }
}

fn breadcrumb(level: Level, record: &Record<'_>, values: &OwnedKVList) -> Breadcrumb {
    let mut b = sentry_slog::breadcrumb_from_record(record, values);
    b.level = sentry_level(level);
    if let Some(Value::String(name)) = b.data.remove(keys::LOGGER) {
        b.category = Some(name);
    }
    b
}

/// Builds the drain: `SentryDrain` over `slog::Discard`, mapping with `options`, run on
/// `hub`. Every record is handled with `hub` as the thread's current Sentry hub, so the
/// drain does not depend on which hub a thread happened to inherit.
pub fn sentry_drain(options: DrainOptions, hub: Arc<Hub>) -> HubDrain {
    HubDrain {
        inner: SentryDrain::new(slog::Discard)
            .mapper(move |record, values| options.map(record, values)),
        hub,
    }
}

/// A `sentry_slog::SentryDrain` bound to one Sentry hub (see [`sentry_drain`]).
pub struct HubDrain {
    inner: SentryDrain<slog::Discard>,
    hub: Arc<Hub>,
}

impl fmt::Debug for HubDrain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubDrain").finish_non_exhaustive()
    }
}

impl slog::Drain for HubDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        Hub::run(self.hub.clone(), || self.inner.log(record, values))
    }
}

/// The piko level of a slog record: its tag when the log hub set one, else the nearest.
fn piko_level(record: &Record<'_>) -> Level {
    if let Ok(level) = piko_obs_logger::parse_level(record.tag()) {
        return level;
    }
    match record.level() {
        slog::Level::Critical | slog::Level::Error => Level::ERROR,
        slog::Level::Warning => Level::WARN,
        slog::Level::Info => Level::INFO,
        slog::Level::Debug => Level::DEBUG,
        slog::Level::Trace => Level::TRACE,
    }
}

/// Sentry's level for a piko level.
pub fn sentry_level(level: Level) -> SentryLevel {
    if level >= Level::ERROR {
        SentryLevel::Error
    } else if level >= Level::WARN {
        SentryLevel::Warning
    } else if level >= Level::INFO {
        SentryLevel::Info
    } else {
        SentryLevel::Debug
    }
}

fn trace_context(trace_id: &str, span_id: &str) -> Option<TraceContext> {
    let trace_id: TraceId = trace_id.parse().ok()?;
    let span_id: SpanId = span_id.parse().ok()?;
    Some(TraceContext {
        trace_id,
        span_id,
        ..Default::default()
    })
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The exception chain of an error, outermost last, as Sentry wants it; the type of each
/// link is read from its `Debug` text, as `sentry::event_from_error` does.
pub fn exception_chain(err: &(dyn StdError + 'static)) -> Vec<Exception> {
    sentry_core::event_from_error(err).exception.values
}

/// Frames printed by the log hub (`function at file:line:col`, the log call first) as a
/// Sentry stack trace (the outermost caller first).
fn stacktrace(text: &str) -> Option<Stacktrace> {
    let frames: Vec<Frame> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (function, at) = match line.split_once(" at ") {
                Some((f, at)) => (f.trim(), Some(at.trim())),
                None => (line.trim(), None),
            };
            let mut frame = Frame {
                function: Some(function.to_string()),
                ..Default::default()
            };
            if let Some(at) = at {
                let mut parts = at.rsplitn(3, ':');
                let col = parts.next();
                let line_no = parts.next();
                let file = parts.next();
                match (file, line_no, col) {
                    (Some(file), Some(l), Some(c)) => {
                        frame.abs_path = Some(file.to_string());
                        frame.lineno = l.parse().ok();
                        frame.colno = c.parse().ok();
                    }
                    _ => frame.abs_path = Some(at.to_string()),
                }
            }
            frame
        })
        .rev()
        .collect();
    (!frames.is_empty()).then_some(Stacktrace {
        frames,
        ..Default::default()
    })
}

/// Collects a record's fields into Sentry's extra map, keeping the first error's chain,
/// the logger name, the span ids and the stack aside.
#[derive(Default)]
struct Collector {
    extra: Map<String, Value>,
    exceptions: Option<Vec<Exception>>,
    stack: Option<Stacktrace>,
    logger: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
}

impl Collector {
    fn put(&mut self, key: Key, value: Value) {
        // slog hands over the record's own fields before the bound ones: the first wins.
        self.extra.entry(key.to_string()).or_insert(value);
    }
}

macro_rules! emit_into {
    ($($name:ident: $t:ty),* $(,)?) => {
        $(fn $name(&mut self, key: Key, val: $t) -> slog::Result {
            self.put(key, val.into());
            Ok(())
        })*
    };
}

impl Serializer for Collector {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let text = val.to_string();
        if key == keys::STACK_TRACE {
            self.stack = stacktrace(&text);
            return Ok(());
        }
        self.put(key, Value::String(text));
        Ok(())
    }

    fn emit_str(&mut self, key: Key, val: &str) -> slog::Result {
        match key {
            keys::LOGGER if self.logger.is_none() => self.logger = Some(val.to_string()),
            keys::TRACE_ID if self.trace_id.is_none() => self.trace_id = Some(val.to_string()),
            keys::SPAN_ID if self.span_id.is_none() => self.span_id = Some(val.to_string()),
            _ => {}
        }
        if key != keys::LOGGER {
            self.put(key, Value::String(val.to_string()));
        }
        Ok(())
    }

    fn emit_error(&mut self, key: Key, err: &(dyn StdError + 'static)) -> slog::Result {
        let chain = exception_chain(err);
        let text: Vec<Cow<'_, str>> = chain
            .iter()
            .rev()
            .filter_map(|e| e.value.as_deref().map(Cow::Borrowed))
            .collect();
        self.put(key, Value::String(text.join(": ")));
        if self.exceptions.is_none() {
            self.exceptions = Some(chain);
        }
        Ok(())
    }

    fn emit_none(&mut self, key: Key) -> slog::Result {
        self.put(key, Value::Null);
        Ok(())
    }

    fn emit_unit(&mut self, key: Key) -> slog::Result {
        self.put(key, Value::Null);
        Ok(())
    }

    emit_into! {
        emit_usize: usize, emit_isize: isize, emit_bool: bool,
        emit_u8: u8, emit_i8: i8, emit_u16: u16, emit_i16: i16, emit_u32: u32, emit_i32: i32,
        emit_f32: f32, emit_u64: u64, emit_i64: i64, emit_f64: f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Inner;
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("connection refused")
        }
    }
    impl StdError for Inner {}

    #[derive(Debug)]
    struct Outer(Inner);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loading the basket failed")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn map(level: Level, f: impl FnOnce(&Record<'_>) -> RecordMapping) -> RecordMapping {
        let name = level.name();
        let rs = slog::RecordStatic {
            location: &slog::RecordLocation {
                file: "src/basket.rs",
                line: 42,
                column: 0,
                function: "",
                module: "shop::basket",
            },
            tag: name.as_str(),
            level: level.to_slog(),
        };
        let args = format_args!("basket failed");
        let kv = slog::o!("tenant" => "acme");
        let r = slog::Record::new(&rs, &args, slog::BorrowedKV(&kv));
        f(&r)
    }

    #[test]
    fn thresholds_choose_event_breadcrumb_or_nothing() {
        let options = DrainOptions::from_config(&SentryConfig::default());
        let values = OwnedKVList::from(slog::o!("logger" => "shop"));
        let kind = |level| match map(level, |r| options.map(r, &values)) {
            RecordMapping::Event(_) => "event",
            RecordMapping::Breadcrumb(_) => "breadcrumb",
            RecordMapping::Ignore => "ignore",
            _ => "other",
        };
        assert_eq!(kind(Level::ERROR), "event");
        assert_eq!(kind(Level::WARN), "breadcrumb");
        assert_eq!(kind(Level::NOTICE), "breadcrumb");
        assert_eq!(kind(Level::INFO), "breadcrumb");
        assert_eq!(kind(Level::DEBUG), "ignore");
        let warn_events =
            DrainOptions::from_config(&SentryConfig::default().with_event_level(Level::WARN));
        let kind = |level| match map(level, |r| warn_events.map(r, &values)) {
            RecordMapping::Event(_) => "event",
            _ => "not an event",
        };
        // A threshold: WARN and everything above it, ERROR included (Piko's list did not).
        assert_eq!(kind(Level::WARN), "event");
        assert_eq!(kind(Level::ERROR), "event");
    }

    #[test]
    fn the_error_chain_becomes_the_exception_outermost_last() {
        let chain = exception_chain(&Outer(Inner));
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].ty, "Inner");
        assert_eq!(chain[0].value.as_deref(), Some("connection refused"));
        assert_eq!(chain[1].ty, "Outer");
        assert_eq!(chain[1].value.as_deref(), Some("loading the basket failed"));
    }

    #[test]
    fn fields_become_extra_tags_and_trace_context() {
        let options = DrainOptions::from_config(&SentryConfig::default().with_tag_keys(["tenant"]));
        let values = OwnedKVList::from(slog::o!(
            "trace_id" => "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id" => "00f067aa0ba902b7",
            "logger" => "shop"
        ));
        let RecordMapping::Event(event) = map(Level::ERROR, |r| options.map(r, &values)) else {
            panic!("an ERROR record must become an event");
        };
        assert_eq!(event.message.as_deref(), Some("basket failed"));
        assert_eq!(event.logger.as_deref(), Some("shop"));
        assert_eq!(event.tags.get("tenant").map(String::as_str), Some("acme"));
        assert_eq!(event.extra["tenant"], "acme");
        assert_eq!(event.extra["source"]["line"], 42);
        let Some(Context::Trace(tc)) = event.contexts.get("trace") else {
            panic!("no trace context");
        };
        assert_eq!(tc.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tc.span_id.to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn printed_frames_become_a_stack_trace_outermost_first() {
        let st = stacktrace("shop::basket::load at src/basket.rs:42:9\nmain at src/main.rs:7:5")
            .unwrap();
        assert_eq!(st.frames.len(), 2);
        assert_eq!(st.frames[0].function.as_deref(), Some("main"));
        assert_eq!(st.frames[1].abs_path.as_deref(), Some("src/basket.rs"));
        assert_eq!(st.frames[1].lineno, Some(42));
        assert_eq!(st.frames[1].colno, Some(9));
    }
}
