//! Records of the `log` crate, from dependencies, into the same outputs.

use std::borrow::Cow;

use crate::hub::Hub;
use crate::level::Level;
use crate::record::Source;

/// A `log::Log` that sends every `log` record to a hub, under a logger named after the
/// record's target (`hyper::proto::h1`), so directives such as `hyper=warn` apply.
/// Levels map one to one: `Error` is ERROR, `Warn` WARN, `Info` INFO, `Debug` DEBUG,
/// `Trace` TRACE. Installing it (`log::set_boxed_logger`) is the facade's job.
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
        logger.log_at(level, &source, &msg, &[]);
    }

    fn flush(&self) {}
}
