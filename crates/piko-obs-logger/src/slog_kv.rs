//! Attributes seen through slog's `KV` trait, for records handed to plain slog drains.

use std::fmt;

use crate::attr::{Attr, OwnedAttr, REDACTED, SecretKeys, Value};
use crate::json;
use crate::record::{Source, StackTrace};

pub(crate) fn emit(
    ser: &mut dyn slog::Serializer,
    a: &Attr<'_>,
    secrets: &SecretKeys,
) -> slog::Result {
    let key = a.key();
    if secrets.is_secret_static(key) {
        return ser.emit_str(key, REDACTED);
    }
    match a.value() {
        Value::Str(s) => ser.emit_str(key, s),
        Value::Int(v) => ser.emit_i64(key, v),
        Value::Uint(v) => ser.emit_u64(key, v),
        Value::Float(v) => ser.emit_f64(key, v),
        Value::Bool(v) => ser.emit_bool(key, v),
        Value::Null => ser.emit_none(key),
        Value::Error(e) => ser.emit_error(key, e),
        Value::ErrorChain(c) => ser.emit_arguments(key, &format_args!("{}", c.join(": "))),
        Value::Display(d) => ser.emit_arguments(key, &format_args!("{d}")),
        Value::Duration(d) => ser.emit_arguments(key, &format_args!("{d:?}")),
        other => {
            // Lists, times and serde values: their JSON text.
            let mut buf = Vec::new();
            json::write_value(&mut buf, &other, false);
            let text = String::from_utf8_lossy(&buf);
            let text = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(&text);
            ser.emit_str(key, text)
        }
    }
}

/// A record's own fields plus, for ERROR records, the stack.
pub(crate) struct RecordKv<'a> {
    pub(crate) attrs: &'a [Attr<'a>],
    pub(crate) stack: Option<&'a StackTrace>,
    pub(crate) secrets: &'a SecretKeys,
}

impl slog::KV for RecordKv<'_> {
    fn serialize(&self, _: &slog::Record<'_>, ser: &mut dyn slog::Serializer) -> slog::Result {
        for a in self.attrs {
            emit(ser, a, self.secrets)?;
        }
        if let Some(st) = self.stack {
            ser.emit_arguments(
                crate::attr::keys::STACK_TRACE,
                &format_args!("{}", st.frames().join("\n")),
            )?;
        }
        Ok(())
    }
}

/// A logger's name and bound fields, as the `OwnedKVList` of every slog record.
pub(crate) struct BoundKv {
    pub(crate) logger: std::sync::Arc<str>,
    pub(crate) attrs: std::sync::Arc<[OwnedAttr]>,
    pub(crate) secrets: SecretKeys,
}

impl slog::KV for BoundKv {
    fn serialize(&self, _: &slog::Record<'_>, ser: &mut dyn slog::Serializer) -> slog::Result {
        // slog serialises a list newest-first; emit in reverse so that a drain which
        // reverses again (as slog-json does) prints them in the order they were bound.
        for a in self.attrs.iter().rev() {
            emit(ser, &a.as_attr(), &self.secrets)?;
        }
        ser.emit_str(crate::attr::keys::LOGGER, &self.logger)
    }
}

impl fmt::Debug for BoundKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundKv")
            .field("logger", &self.logger)
            .finish_non_exhaustive()
    }
}

pub(crate) fn location(source: &Source) -> slog::RecordLocation {
    slog::RecordLocation {
        file: source.file,
        line: source.line,
        column: 0,
        function: "",
        module: source.module.unwrap_or(""),
    }
}
