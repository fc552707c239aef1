//! Events of the `tracing` crate, from dependencies, into the same outputs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing_core::callsite::Identifier;

use tracing_core::field::{Field, Visit};
use tracing_core::span;
use tracing_core::subscriber::{Interest, Subscriber};
use tracing_core::{Event, LevelFilter, Metadata};

use crate::attr::{Attr, OwnedAttr, Value};
use crate::hub::Hub;
use crate::level::Level;
use crate::record::Source;

/// Sends `tracing` events to a hub, under a logger named after the event's target, at
/// the same level name (ERROR, WARN, INFO, DEBUG, TRACE), or at the level a
/// [`LEVEL_FIELD`] field names (`tracing::info!(piko.level = "notice", "Server
/// started")` is a NOTICE line; any level text piko-obs reads works). The `message`
/// field becomes the message; the other fields become attributes, with their types.
///
/// It is a `Subscriber` of its own, which throws spans away (their ids are handed out so
/// instrumented code runs); the OTLP crate's `tracing` layer uses it for events
/// ([`TracingBridge::log_event`]) and turns spans into OpenTelemetry spans. Installing
/// either as the global default is the facade's job.
#[derive(Debug)]
pub struct TracingBridge {
    hub: Hub,
    next_span: AtomicU64,
    limited: Vec<(&'static str, Duration)>,
    floors: Vec<(&'static str, Level)>,
    ceilings: Vec<(&'static str, Level)>,
    /// Per call site of a rate-limited target: when it last got through, and how many
    /// events were held back since.
    last: Mutex<HashMap<Identifier, (Instant, u64)>>,
}

impl TracingBridge {
    /// A bridge into `hub`.
    pub fn new(hub: Hub) -> TracingBridge {
        TracingBridge {
            hub,
            next_span: AtomicU64::new(1),
            limited: Vec::new(),
            floors: Vec::new(),
            ceilings: Vec::new(),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Lets at most one event a call site through per `interval` for targets starting
    /// with `prefix` (the OpenTelemetry SDK reports each failed export: a dead collector
    /// would otherwise write a line every few seconds forever). The next event that gets
    /// through carries `suppressed`, the number held back.
    pub fn with_rate_limit(mut self, prefix: &'static str, interval: Duration) -> TracingBridge {
        self.limited.push((prefix, interval));
        self
    }

    /// Drops events below `level` from targets starting with `prefix`, whatever the
    /// outputs take (the OpenTelemetry SDK says at INFO that it installed its providers:
    /// the facade keeps its WARN and ERROR only).
    pub fn with_target_floor(mut self, prefix: &'static str, level: Level) -> TracingBridge {
        self.floors.push((prefix, level));
        self
    }

    /// Lowers events above `level` from targets starting with `prefix` to `level` (the
    /// facade writes the OpenTelemetry SDK's export failures as WARN: a collector outage is
    /// a problem of the telemetry pipeline, not an application error for Sentry and
    /// alerts).
    pub fn with_target_ceiling(mut self, prefix: &'static str, level: Level) -> TracingBridge {
        self.ceilings.push((prefix, level));
        self
    }

    fn level(&self, m: &Metadata<'_>) -> Level {
        self.cap(m, level_of(m.level()))
    }

    /// `level`, lowered to the ceiling of `m`'s target, if it has one.
    fn cap(&self, m: &Metadata<'_>, level: Level) -> Level {
        self.ceilings
            .iter()
            .filter(|(p, _)| m.target().starts_with(p))
            .fold(level, |l, (_, ceiling)| l.min(*ceiling))
    }

    fn below_floor(&self, m: &Metadata<'_>) -> bool {
        self.floors
            .iter()
            .any(|(p, floor)| m.target().starts_with(p) && level_of(m.level()) < *floor)
    }

    /// `None` when the event is held back; else how many were held back before it.
    fn admit(&self, m: &Metadata<'_>) -> Option<u64> {
        let Some((_, interval)) = self.limited.iter().find(|(p, _)| m.target().starts_with(p))
        else {
            return Some(0);
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match last.get_mut(&m.callsite()) {
            Some((at, held)) if now.duration_since(*at) < *interval => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                last.insert(m.callsite(), (now, 0));
                Some(0)
            }
        }
    }
}

/// The field that sets an event's level by name (`piko.level = "notice"`), for the
/// levels `tracing` does not have; it is not written as an attribute. A value that is
/// not a level leaves the event's own level, and is written as an attribute.
pub const LEVEL_FIELD: &str = "piko.level";

impl TracingBridge {
    /// Writes `event` to the hub, as the subscriber does, with `extra` attributes after
    /// its own fields (the ids of the span it was recorded in, say): through the
    /// target's floor, ceiling and rate limit, if its logger takes its level.
    pub fn log_event(&self, event: &Event<'_>, extra: &[Attr<'_>]) {
        let m = event.metadata();
        let logger = self.hub.get_logger(m.target());
        let named = m.fields().field(LEVEL_FIELD).is_some();
        if self.below_floor(m) || !named && !logger.enabled(self.level(m)) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match fields.level {
            Some(named) => self.cap(m, named),
            None => self.level(m),
        };
        if named && !logger.enabled(level) {
            return;
        }
        let Some(held) = self.admit(m) else {
            return;
        };
        if held > 0 {
            fields.attrs.push(OwnedAttr::from_attr(&Attr::new(
                "suppressed",
                Value::Uint(held),
            )));
        }
        let mut attrs: Vec<Attr<'_>> = fields.attrs.iter().map(OwnedAttr::as_attr).collect();
        attrs.extend_from_slice(extra);
        // Events without a message (the OpenTelemetry SDK's carry a `name` field, such
        // as `PeriodicReader.ExportError`) take their name as the message.
        if fields.message.is_empty() {
            fields.message = attrs
                .iter()
                .find(|a| a.key() == "name")
                .map(|a| match a.value() {
                    Value::Str(s) => s.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_else(|| m.name().to_string());
        }
        let source = Source {
            file: m.file().unwrap_or("<unknown>"),
            line: m.line().unwrap_or(0),
            module: m.module_path(),
        };
        logger.log_at(level, &source, &fields.message, &attrs);
    }

    /// Whether the hub takes anything from the call site `metadata` describes: a span,
    /// or an event at a level some output takes.
    pub fn takes(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_span()
            || metadata.fields().field(LEVEL_FIELD).is_some()
            || !self.below_floor(metadata)
                && self
                    .hub
                    .get_logger(metadata.target())
                    .enabled(self.level(metadata))
    }

    /// The hub events go to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

fn level_of(level: &tracing_core::Level) -> Level {
    Level::from_tracing(level)
}

/// The most verbose `tracing` filter that lets `level` through.
pub(crate) fn tracing_filter(level: Level) -> LevelFilter {
    match level.value() {
        v if v > 8 => LevelFilter::OFF,
        v if v > 4 => LevelFilter::ERROR,
        v if v > 0 => LevelFilter::WARN,
        v if v > -4 => LevelFilter::INFO,
        v if v > -8 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    level: Option<Level>,
    attrs: Vec<OwnedAttr>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value<'_>) {
        self.attrs
            .push(OwnedAttr::from_attr(&Attr::new(field.name(), value)));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            let text = format!("{value:?}");
            self.push(field, Value::Str(&text));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else if field.name() == LEVEL_FIELD
            && let Ok(level) = crate::level::parse_level(value)
        {
            self.level = Some(level);
        } else {
            self.push(field, Value::Str(value));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::Uint(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::Float(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::Error(value));
    }
}

impl Subscriber for TracingBridge {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // Outputs and their levels change at run time: ask `enabled` every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.takes(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(tracing_filter(self.hub.min_level()))
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        self.log_event(event, &[]);
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}
