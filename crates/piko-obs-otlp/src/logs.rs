//! The logger's records as OpenTelemetry log records: an [`Output`] for the piko-obs
//! log hub.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{Key, KeyValue, StringValue};

use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use piko_obs_logger::attr::{hex, keys};
use piko_obs_logger::intern::intern;
use piko_obs_logger::{FlushError, Level, Output, OutputStats, REDACTED, Record, Value};

/// Exports each record as an OpenTelemetry log record: its time, severity (number and
/// Piko's level name), message as the body, the logger name (`logger`), the source
/// (`code.filepath`, `code.lineno`), every attribute (secret keys masked), and the
/// trace and span ids of the span current where the line was written (as the record's
/// trace context; a span logger's `trace_id` and `span_id` fields naming that same span
/// are not repeated as attributes).
pub struct OtelLogOutput {
    logger: SdkLogger,
    provider: SdkLoggerProvider,
    accepted: AtomicU64,
    /// Lines written while OpenTelemetry telemetry is suppressed (inside an export, where
    /// the SDK's own failure reports come from): not exported, which would loop.
    suppressed: AtomicU64,
    span_events: bool,
}

impl std::fmt::Debug for OtelLogOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelLogOutput")
            .field("accepted", &self.accepted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl OtelLogOutput {
    /// An output emitting through `provider`.
    pub fn new(provider: &SdkLoggerProvider) -> OtelLogOutput {
        OtelLogOutput {
            logger: provider.logger("piko-obs"),
            provider: provider.clone(),
            accepted: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            span_events: true,
        }
    }

    /// Whether a line written inside a recording span is also added to it as an event
    /// (named with its message, at the line's time, with a `level` attribute unless the
    /// level is INFO), and an ERROR line sets the span's status to ERROR (default on).
    pub fn with_span_events(mut self, on: bool) -> OtelLogOutput {
        self.span_events = on;
        self
    }
}

/// The OpenTelemetry severity of a Piko level: never lower for a higher level, so a
/// backend's severity filter keeps what a level filter would (INTERNAL, between TRACE
/// and DEBUG, is the highest trace severity).
pub fn severity(level: Level) -> Severity {
    match level.value() {
        v if v < Level::INTERNAL.value() => Severity::Trace,
        v if v < Level::DEBUG.value() => Severity::Trace4,
        v if v < Level::INFO.value() => Severity::Debug,
        v if v < Level::NOTICE.value() => Severity::Info,
        v if v < Level::WARN.value() => Severity::Info2,
        v if v < Level::ERROR.value() => Severity::Warn,
        _ => Severity::Error,
    }
}

fn any_value(v: Value<'_>) -> Option<AnyValue> {
    Some(match v {
        Value::Str(s) => AnyValue::from(s.to_string()),
        Value::Strings(list) => AnyValue::ListAny(Box::new(
            list.iter().map(|s| AnyValue::from(s.to_string())).collect(),
        )),
        Value::Int(i) => AnyValue::from(i),
        Value::Uint(u) => match i64::try_from(u) {
            Ok(i) => AnyValue::from(i),
            Err(_) => AnyValue::from(u.to_string()),
        },
        Value::Float(f) => AnyValue::from(f),
        Value::Bool(b) => AnyValue::from(b),
        Value::Time(t) => AnyValue::from(
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ),
        Value::Duration(d) => AnyValue::from(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        Value::Error(e) => AnyValue::from(piko_obs_logger::attr::error_chain(e).join(": ")),
        Value::ErrorChain(c) => AnyValue::from(c.join(": ")),
        Value::Display(d) => AnyValue::from(d.to_string()),
        Value::Any(a) => AnyValue::from(
            serde_json::to_string(a).unwrap_or_else(|e| format!("<unencodable: {e}>")),
        ),
        Value::Null => return None,
        _ => return None,
    })
}

impl Output for OtelLogOutput {
    fn write(&self, record: &Record<'_>) {
        // The SDK would drop it without a count: counted here instead (as a line
        // dropped, not accepted, like a full queue's).
        if opentelemetry::Context::is_current_telemetry_suppressed() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let mut r = self.logger.create_log_record();
        // Written by the application through the SDK: observed when it was written, as
        // the log data model says for records that originate in OpenTelemetry.
        r.set_timestamp(record.time());
        r.set_observed_timestamp(record.time());
        let level = record.level();
        r.set_severity_number(severity(level));
        if let Some(name) = level.static_name() {
            r.set_severity_text(name);
        }
        // A message seen before is not copied (`intern`): the body, its copy in the
        // processor's queue and the span event share it.
        let msg = intern(record.msg());
        r.set_body(AnyValue::String(match msg {
            Some(m) => StringValue::from(m),
            None => StringValue::from(record.msg().to_string()),
        }));
        r.add_attribute(
            Key::from_static_str("logger"),
            AnyValue::String(match intern(record.logger()) {
                Some(name) => StringValue::from(name),
                None => StringValue::from(record.logger().to_string()),
            }),
        );
        let src = record.source();
        r.add_attribute(
            Key::from_static_str("code.filepath"),
            AnyValue::String(StringValue::from(src.file)),
        );
        r.add_attribute(
            Key::from_static_str("code.lineno"),
            AnyValue::from(i64::from(src.line)),
        );
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let sc = span.span_context();
        // The span's ids are the record's trace context: a span logger's `trace_id` and
        // `span_id` fields that say the same are not repeated as attributes.
        if sc.is_valid() {
            r.set_trace_context(sc.trace_id(), sc.span_id(), Some(sc.trace_flags()));
        }
        let mut buf = [0u8; 32];
        for a in record.bound().chain(record.attrs().iter().copied()) {
            if sc.is_valid()
                && let Value::Str(v) = a.value()
            {
                let same = match a.key() {
                    keys::TRACE_ID => v == hex(&sc.trace_id().to_bytes(), &mut buf),
                    keys::SPAN_ID => v == hex(&sc.span_id().to_bytes(), &mut buf[..16]),
                    _ => false,
                };
                if same {
                    continue;
                }
            }
            let value = if record.is_secret(a.key()) {
                Some(AnyValue::String(StringValue::from(REDACTED)))
            } else {
                any_value(a.value())
            };
            if let Some(v) = value {
                r.add_attribute(Key::from_static_str(a.key()), v);
            }
        }
        // A sampled span records (the check needs no lock); any other may too.
        if self.span_events && (sc.is_sampled() || span.is_recording()) {
            let text = || -> Cow<'static, str> {
                match msg {
                    Some(m) => Cow::Borrowed(m),
                    None => Cow::Owned(record.msg().to_string()),
                }
            };
            // INFO, the level of most lines, is the event's level when it has none, so
            // the common event allocates nothing.
            let attributes = match level {
                Level::INFO => Vec::new(),
                _ => vec![KeyValue::new("level", level.static_name().unwrap_or("LOG"))],
            };
            span.add_event_with_timestamp(text(), record.time(), attributes);
            if level >= Level::ERROR {
                span.set_status(opentelemetry::trace::Status::error(text()));
            }
        }
        self.logger.emit(r);
    }

    /// Asks the log-record processor to export what it holds and waits at most
    /// `timeout`: the flush waits for the export, which a collector that never answers
    /// holds for the whole export timeout, so it runs on a thread of its own.
    fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let provider = self.provider.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("piko-obs-otlp-log-flush".into())
            .spawn(move || {
                let _ = tx.send(provider.force_flush());
            });
        if let Err(e) = spawned {
            return Err(FlushError::Failed {
                output: "otlp".into(),
                reason: format!("cannot start the flush thread: {e}"),
            });
        }
        match rx.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(FlushError::Failed {
                output: "otlp".into(),
                reason: e.to_string(),
            }),
            Err(_) => Err(FlushError::Failed {
                output: "otlp".into(),
                reason: format!("the export did not finish within {timeout:?}"),
            }),
        }
    }

    /// `accepted` and `written` count the records handed to the OpenTelemetry SDK,
    /// whose log-record processor exports them (and counts what it drops or fails to
    /// export: `Pipeline::logs`); `dropped` counts the lines written while telemetry was
    /// suppressed (the SDK's own reports from inside an export), which are not exported.
    fn stats(&self) -> OutputStats {
        let n = self.accepted.load(Ordering::Relaxed);
        OutputStats {
            accepted: n,
            written: n,
            dropped: self.suppressed.load(Ordering::Relaxed),
            ..OutputStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_never_goes_down_as_the_level_goes_up() {
        let mut last = 0;
        for v in -12..=16 {
            let s = severity(Level::new(v)) as i32;
            assert!(s >= last, "level {v}: {s} after {last}");
            last = s;
        }
        let named: Vec<(Level, Severity)> = vec![
            (Level::TRACE, Severity::Trace),
            (Level::INTERNAL, Severity::Trace4),
            (Level::DEBUG, Severity::Debug),
            (Level::INFO, Severity::Info),
            (Level::NOTICE, Severity::Info2),
            (Level::WARN, Severity::Warn),
            (Level::ERROR, Severity::Error),
        ];
        for (level, expected) in named {
            assert_eq!(severity(level), expected, "{level:?}");
        }
    }
}
