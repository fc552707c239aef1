//! Records of the `log` crate, from dependencies, into the same outputs.

use std::borrow::Cow;

use crate::attr::{Attr, OwnedAttr, Value};
use crate::hub::Hub;
use crate::intern::intern;
use crate::level::Level;
use crate::record::Source;

/// A `log::Log` that sends every `log` record to a hub, under a logger named after the
/// record's target (`hyper::proto::h1`), so directives such as `hyper=warn` apply.
/// Levels map one to one: `Error` is ERROR, `Warn` WARN, `Info` INFO, `Debug` DEBUG,
/// `Trace` TRACE. The record's key-values (`log::info!(order_id = 7; "placed")`) are
/// fields with their types: integers, floats, booleans, text, and an error with its
/// source chain; anything else as its text. Keys are kept in the bounded set of
/// [`crate::intern`]; past it a key-value is written under `kv` as `key=value`.
/// Installing it (`log::set_boxed_logger`) is the facade's job.
#[derive(Debug, Clone)]
pub struct LogBridge {
    hub: Hub,
}

impl LogBridge {
    /// A bridge into `hub`.
    pub fn new(hub: Hub) -> LogBridge {
        LogBridge { hub }
    }
}

impl log::Log for LogBridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.hub
            .get_logger(metadata.target())
            .enabled(Level::from_log(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        let logger = self.hub.get_logger(record.target());
        let level = Level::from_log(record.level());
        if !logger.enabled(level) {
            return;
        }
        let msg: Cow<'_, str> = match record.args().as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(record.args().to_string()),
        };
        let source = Source {
            file: record.file_static().unwrap_or("<unknown>"),
            line: record.line().unwrap_or(0),
            module: record.module_path_static(),
        };
        let mut kvs = KeyValues::default();
        let _ = record.key_values().visit(&mut kvs);
        let attrs: Vec<Attr<'_>> = kvs.attrs.iter().map(OwnedAttr::as_attr).collect();
        logger.log_at(level, &source, &msg, &attrs);
    }

    fn flush(&self) {}
}

/// A record's key-values as owned attributes.
#[derive(Default)]
struct KeyValues {
    attrs: Vec<OwnedAttr>,
}

impl<'kvs> log::kv::VisitSource<'kvs> for KeyValues {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let Some(key) = intern(key.as_str()) else {
            let text = format!("{}={value}", key.as_str());
            self.attrs
                .push(OwnedAttr::from_attr(&Attr::new("kv", Value::Str(&text))));
            return Ok(());
        };
        let text;
        let value = if let Some(i) = value.to_i64() {
            Value::Int(i)
        } else if let Some(u) = value.to_u64() {
            Value::Uint(u)
        } else if let Some(f) = value.to_f64() {
            Value::Float(f)
        } else if let Some(b) = value.to_bool() {
            Value::Bool(b)
        } else if let Some(e) = value.to_borrowed_error() {
            Value::Error(e)
        } else if let Some(s) = value.to_borrowed_str() {
            Value::Str(s)
        } else {
            text = value.to_string();
            Value::Str(&text)
        };
        self.attrs
            .push(OwnedAttr::from_attr(&Attr::new(key, value)));
        Ok(())
    }
}
