//! Piko's seven levels, their names, and the one parser for level text.

use std::fmt;
use std::str::FromStr;

/// A log level: a signed integer where higher means more severe, as in Piko.
///
/// The seven named levels are constants; any other integer is a valid level too and
/// prints as the nearest named level at or below it plus an offset (`INFO+1`, `DEBUG-2`).
///
/// ```
/// use piko_obs_logger::Level;
/// assert_eq!(Level::NOTICE.value(), 2);
/// assert_eq!(Level::NOTICE.to_string(), "NOTICE");
/// assert_eq!(Level::new(3).to_string(), "INFO+3");
/// assert_eq!("Warning".parse::<Level>().unwrap(), Level::WARN);
/// assert_eq!(" -6 ".parse::<Level>().unwrap(), Level::INTERNAL);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(i32);

impl Level {
    /// Framework internals and tight loops (-8).
    pub const TRACE: Level = Level(-8);
    /// Framework lifecycle and caches (-6).
    pub const INTERNAL: Level = Level(-6);
    /// Debugging an application (-4).
    pub const DEBUG: Level = Level(-4);
    /// Normal operation; the default threshold (0).
    pub const INFO: Level = Level(0);
    /// Lifecycle events such as start-up and shutdown (2).
    pub const NOTICE: Level = Level(2);
    /// Recoverable problems (4).
    pub const WARN: Level = Level(4);
    /// Failures; ERROR records carry a stack trace by default (8).
    pub const ERROR: Level = Level(8);

    /// The seven named levels, least severe first.
    pub const ALL: [Level; 7] = [
        Level::TRACE,
        Level::INTERNAL,
        Level::DEBUG,
        Level::INFO,
        Level::NOTICE,
        Level::WARN,
        Level::ERROR,
    ];

    /// The level text the parser accepts, as listed in error messages.
    pub const ACCEPTED: &'static str = "trace, internal, debug, info, notice, warn (or warning), error, one of these with an offset such as INFO+3, or an integer such as -6";

    /// A level from its integer value.
    pub const fn new(value: i32) -> Level {
        Level(value)
    }

    /// The integer value.
    pub const fn value(self) -> i32 {
        self.0
    }

    /// The name of a named level, `None` for the others.
    pub const fn static_name(self) -> Option<&'static str> {
        match self.0 {
            -8 => Some("TRACE"),
            -6 => Some("INTERNAL"),
            -4 => Some("DEBUG"),
            0 => Some("INFO"),
            2 => Some("NOTICE"),
            4 => Some("WARN"),
            8 => Some("ERROR"),
            _ => None,
        }
    }

    /// The printed name: a named level's own name, else the nearest of
    /// `DEBUG`, `INFO`, `WARN`, `ERROR` at or below it with a signed offset (Go slog's rule,
    /// which Piko follows). Below DEBUG the base is DEBUG, so -10 is `DEBUG-6`.
    pub fn name(self) -> LevelName {
        if let Some(n) = self.static_name() {
            return LevelName::from_str(n);
        }
        let (base, base_value) = match self.0 {
            v if v >= 8 => ("ERROR", 8),
            v if v >= 4 => ("WARN", 4),
            v if v >= 0 => ("INFO", 0),
            _ => ("DEBUG", -4),
        };
        let offset = i64::from(self.0) - base_value;
        let mut name = LevelName::from_str(base);
        name.push(if offset >= 0 { b'+' } else { b'-' });
        let mut digits = itoa::Buffer::new();
        for b in digits.format(offset.unsigned_abs()).bytes() {
            name.push(b);
        }
        name
    }

    /// The nearest slog level, for records handed to plain slog drains. NOTICE maps to
    /// `Info` and INTERNAL to `Debug`; the exact name travels in the record's tag.
    pub fn to_slog(self) -> slog::Level {
        match self.0 {
            v if v >= 8 => slog::Level::Error,
            v if v >= 4 => slog::Level::Warning,
            v if v >= 0 => slog::Level::Info,
            v if v >= -6 => slog::Level::Debug,
            _ => slog::Level::Trace,
        }
    }

    /// The level for a slog level: `Critical` and `Error` are ERROR.
    pub fn from_slog(level: slog::Level) -> Level {
        match level {
            slog::Level::Critical | slog::Level::Error => Level::ERROR,
            slog::Level::Warning => Level::WARN,
            slog::Level::Info => Level::INFO,
            slog::Level::Debug => Level::DEBUG,
            slog::Level::Trace => Level::TRACE,
        }
    }

    /// The level for a `log` crate level.
    pub fn from_log(level: log::Level) -> Level {
        match level {
            log::Level::Error => Level::ERROR,
            log::Level::Warn => Level::WARN,
            log::Level::Info => Level::INFO,
            log::Level::Debug => Level::DEBUG,
            log::Level::Trace => Level::TRACE,
        }
    }

    /// The level for a `tracing` level.
    pub fn from_tracing(level: &tracing_core::Level) -> Level {
        match *level {
            tracing_core::Level::ERROR => Level::ERROR,
            tracing_core::Level::WARN => Level::WARN,
            tracing_core::Level::INFO => Level::INFO,
            tracing_core::Level::DEBUG => Level::DEBUG,
            _ => Level::TRACE,
        }
    }

    /// The most verbose `log` crate filter that still lets this level through.
    pub fn to_log_filter(self) -> log::LevelFilter {
        match self.0 {
            v if v > 8 => log::LevelFilter::Off,
            v if v > 4 => log::LevelFilter::Error,
            v if v > 0 => log::LevelFilter::Warn,
            v if v > -4 => log::LevelFilter::Info,
            v if v > -8 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    }
}

impl Default for Level {
    fn default() -> Self {
        Level::INFO
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().as_str())
    }
}

impl fmt::Debug for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Level({} = {})", self.name().as_str(), self.0)
    }
}

/// A level's printed name, held inline so naming never allocates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LevelName {
    bytes: [u8; 24],
    len: u8,
}

impl LevelName {
    fn from_str(s: &str) -> LevelName {
        let mut n = LevelName {
            bytes: [0; 24],
            len: 0,
        };
        for b in s.bytes() {
            n.push(b);
        }
        n
    }

    fn push(&mut self, b: u8) {
        if usize::from(self.len) < self.bytes.len() {
            self.bytes[usize::from(self.len)] = b;
            self.len += 1;
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever pushed.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("LEVEL")
    }
}

impl fmt::Debug for LevelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Level text that is not a level name or an integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log level {value:?}: use one of {accepted}", accepted = Level::ACCEPTED)]
pub struct ParseLevelError {
    /// The text that was given.
    pub value: String,
}

/// Parses level text: a name in any case with surrounding space trimmed (`warn` and
/// `warning` are the same), a name with a signed offset as levels print
/// (`INFO+3`, `debug-2`), or an integer. This is the one parser every piko-obs input uses.
pub fn parse_level(text: &str) -> Result<Level, ParseLevelError> {
    let t = text.trim();
    if let Some(level) = named(t) {
        return Ok(level);
    }
    // Fuzzing found that printed names such as `INFO+3` (any level that is not one of the
    // seven) did not parse back, so directives printed with them did not either.
    let offset = t.find(['+', '-']).and_then(|i| {
        let (name, offset) = t.split_at(i);
        let base = i64::from(named(name)?.0);
        let digits = &offset[1..];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: i64 = digits.parse().ok()?;
        let value = if offset.starts_with('+') {
            base.checked_add(n)?
        } else {
            base.checked_sub(n)?
        };
        i32::try_from(value).ok().map(Level)
    });
    if let Some(level) = offset {
        return Ok(level);
    }
    t.parse::<i32>().map(Level).map_err(|_| ParseLevelError {
        value: text.to_string(),
    })
}

/// The level named by `t` (any case), if it is one of the names.
fn named(t: &str) -> Option<Level> {
    const NAMED: [(&str, Level); 8] = [
        ("trace", Level::TRACE),
        ("internal", Level::INTERNAL),
        ("debug", Level::DEBUG),
        ("info", Level::INFO),
        ("notice", Level::NOTICE),
        ("warn", Level::WARN),
        ("warning", Level::WARN),
        ("error", Level::ERROR),
    ];
    NAMED
        .iter()
        .find(|(name, _)| t.eq_ignore_ascii_case(name))
        .map(|(_, level)| *level)
}

impl FromStr for Level {
    type Err = ParseLevelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_level(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_piko_values_and_strictly_ordered() {
        let values: Vec<i32> = Level::ALL.iter().map(|l| l.value()).collect();
        assert_eq!(values, vec![-8, -6, -4, 0, 2, 4, 8]);
        assert!(Level::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn names_of_named_and_offset_levels() {
        let names: Vec<String> = Level::ALL.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            names,
            [
                "TRACE", "INTERNAL", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR"
            ]
        );
        assert_eq!(Level::new(3).to_string(), "INFO+3");
        assert_eq!(Level::new(1).to_string(), "INFO+1");
        assert_eq!(Level::new(-5).to_string(), "DEBUG-1");
        assert_eq!(Level::new(12).to_string(), "ERROR+4");
        assert_eq!(Level::new(-10).to_string(), "DEBUG-6");
        assert_eq!(Level::new(i32::MIN).to_string(), "DEBUG-2147483644");
    }

    #[test]
    fn parser_takes_names_in_any_case_trimmed_and_integers() {
        for (text, level) in [
            ("trace", Level::TRACE),
            ("INTERNAL", Level::INTERNAL),
            (" Debug ", Level::DEBUG),
            ("info", Level::INFO),
            ("NoTiCe", Level::NOTICE),
            ("warn", Level::WARN),
            ("WARNING\n", Level::WARN),
            ("error", Level::ERROR),
            ("-6", Level::INTERNAL),
            (" 3", Level::new(3)),
            ("INFO+3", Level::new(3)),
            ("debug-2", Level::new(-6)),
            ("DEBUG-2147483644", Level::new(i32::MIN)),
        ] {
            assert_eq!(parse_level(text), Ok(level), "{text:?}");
        }
    }

    #[test]
    fn unknown_level_names_the_value_and_lists_accepted() {
        let err = parse_level("verbose").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"verbose\""), "{msg}");
        assert!(
            msg.contains("trace, internal, debug, info, notice, warn"),
            "{msg}"
        );
        assert!(parse_level("").is_err());
        assert!(parse_level("fatal").is_err());
        for bad in [
            "INFO+",
            "INFO+-3",
            "INFO++3",
            "INFO + 3",
            "ERROR+2147483640",
            "fatal+1",
        ] {
            assert!(parse_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slog_mapping_keeps_severity_order() {
        assert_eq!(Level::NOTICE.to_slog(), slog::Level::Info);
        assert_eq!(Level::INTERNAL.to_slog(), slog::Level::Debug);
        assert_eq!(Level::ERROR.to_slog(), slog::Level::Error);
        assert_eq!(Level::TRACE.to_slog(), slog::Level::Trace);
        assert_eq!(Level::from_slog(slog::Level::Critical), Level::ERROR);
        assert_eq!(Level::INFO.to_log_filter(), log::LevelFilter::Info);
        assert_eq!(Level::TRACE.to_log_filter(), log::LevelFilter::Trace);
    }
}
