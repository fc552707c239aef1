//! Level directives (`info,myapp/db=debug`) and the environment precedence rule.

use std::fmt;
use std::str::FromStr;

use crate::level::{Level, ParseLevelError, parse_level};

/// Environment variable for the framework level: the level of the outputs that the
/// piko-obs facade creates itself.
pub const PIKO_LOG_LEVEL: &str = "PIKO_LOG_LEVEL";
/// Environment variable for the outputs a program adds (`add_json_output` and friends).
pub const LOG_LEVEL: &str = "LOG_LEVEL";

/// A default level plus per-logger-name overrides; the longest matching name prefix wins.
///
/// Text form: comma-separated items, each either a level (the default) or
/// `name=level`. A prefix matches a logger name that equals it, or that continues with
/// `/`, `:` or `.` after it, so `myapp/db` matches `myapp/db/pool` but not `myapp/dbx`.
///
/// ```
/// use piko_obs_logger::{Directives, Level};
/// let d: Directives = "info, myapp/db=debug, myapp/db/pool=warn".parse().unwrap();
/// assert_eq!(d.level_for("myapp/http"), Level::INFO);
/// assert_eq!(d.level_for("myapp/db/query"), Level::DEBUG);
/// assert_eq!(d.level_for("myapp/db/pool"), Level::WARN);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Directives {
    default: Level,
    /// Sorted by prefix length, longest first, so the first match wins.
    rules: Vec<(String, Level)>,
}

impl Directives {
    /// Directives with only a default level.
    pub fn new(default: Level) -> Directives {
        Directives {
            default,
            rules: Vec::new(),
        }
    }

    /// Adds an override for loggers whose names start with `prefix`.
    pub fn with_rule(mut self, prefix: impl Into<String>, level: Level) -> Directives {
        let prefix = prefix.into();
        self.rules.retain(|(p, _)| *p != prefix);
        self.rules.push((prefix, level));
        self.rules.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        self
    }

    /// These directives, with the levels of the loggers named `prefix` or under it taken
    /// from `other`, unless these already name `prefix` or a logger under it.
    ///
    /// The facade uses it to let `PIKO_LOG_LEVEL` govern piko-obs's own loggers in the
    /// outputs that `LOG_LEVEL` governs.
    ///
    /// ```
    /// use piko_obs_logger::{Directives, Level};
    /// let user: Directives = "error".parse().unwrap();
    /// let framework: Directives = "warn,piko-obs/otlp=debug".parse().unwrap();
    /// let d = user.with_scope_from("piko-obs", &framework);
    /// assert_eq!(d.level_for("myapp"), Level::ERROR);
    /// assert_eq!(d.level_for("piko-obs/notification"), Level::WARN);
    /// assert_eq!(d.level_for("piko-obs/otlp"), Level::DEBUG);
    /// // Named in the first directives: left as it is.
    /// let own: Directives = "error,piko-obs=trace".parse().unwrap();
    /// assert_eq!(own.with_scope_from("piko-obs", &framework).level_for("piko-obs/otlp"), Level::TRACE);
    /// ```
    pub fn with_scope_from(self, prefix: &str, other: &Directives) -> Directives {
        let under = |p: &str| {
            p.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', ':', '.']))
        };
        if self.rules.iter().any(|(p, _)| under(p)) {
            return self;
        }
        let mut d = self.with_rule(prefix, other.level_for(prefix));
        for (p, l) in &other.rules {
            if under(p) {
                d = d.with_rule(p.clone(), *l);
            }
        }
        d
    }

    /// Whether an override names a logger whose name starts with `text` (`"opentelemetry"`
    /// for the `opentelemetry`, `opentelemetry_sdk` and `opentelemetry-otlp` targets).
    ///
    /// ```
    /// use piko_obs_logger::Directives;
    /// let d: Directives = "warn,opentelemetry_sdk=debug".parse().unwrap();
    /// assert!(d.names_starting_with("opentelemetry"));
    /// assert!(!d.names_starting_with("hyper"));
    /// ```
    pub fn names_starting_with(&self, text: &str) -> bool {
        self.rules.iter().any(|(p, _)| p.starts_with(text))
    }

    /// The level without any override.
    pub fn default_level(&self) -> Level {
        self.default
    }

    /// The most verbose level any directive allows: nothing below it can pass.
    pub fn min_level(&self) -> Level {
        self.rules
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, Level::min)
    }

    /// The threshold for the logger called `name`.
    pub fn level_for(&self, name: &str) -> Level {
        for (prefix, level) in &self.rules {
            if let Some(rest) = name.strip_prefix(prefix.as_str())
                && (rest.is_empty() || rest.starts_with(['/', ':', '.']))
            {
                return *level;
            }
        }
        self.default
    }

    /// Parses directive text; see the type's documentation for the form.
    pub fn parse(text: &str) -> Result<Directives, ParseDirectivesError> {
        let mut d = Directives::new(Level::INFO);
        let mut saw_default = false;
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            match item.split_once('=') {
                None => {
                    if saw_default {
                        return Err(ParseDirectivesError::TwoDefaults {
                            text: text.to_string(),
                        });
                    }
                    d.default =
                        parse_level(item).map_err(|source| ParseDirectivesError::Level {
                            item: item.to_string(),
                            source,
                        })?;
                    saw_default = true;
                }
                Some((name, level)) => {
                    let name = name.trim();
                    if name.is_empty() || name.contains(char::is_whitespace) {
                        return Err(ParseDirectivesError::BadName {
                            item: item.to_string(),
                        });
                    }
                    let level =
                        parse_level(level).map_err(|source| ParseDirectivesError::Level {
                            item: item.to_string(),
                            source,
                        })?;
                    d = d.with_rule(name, level);
                }
            }
        }
        Ok(d)
    }
}

impl Default for Directives {
    fn default() -> Self {
        Directives::new(Level::INFO)
    }
}

impl From<Level> for Directives {
    fn from(level: Level) -> Self {
        Directives::new(level)
    }
}

impl FromStr for Directives {
    type Err = ParseDirectivesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Directives::parse(s)
    }
}

impl fmt::Display for Directives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.default)?;
        for (p, l) in self.rules.iter().rev() {
            write!(f, ",{p}={l}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Directives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Directives({self})")
    }
}

/// Directive text that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDirectivesError {
    /// An item's level is not a level.
    #[error("bad log level directive {item:?}: {source}")]
    Level {
        /// The offending item.
        item: String,
        /// Why its level did not parse.
        source: ParseLevelError,
    },
    /// An item `name=level` has an empty name or one with spaces.
    #[error(
        "bad log level directive {item:?}: the logger name before '=' must be non-empty and have no spaces (for example myapp/db=debug)"
    )]
    BadName {
        /// The offending item.
        item: String,
    },
    /// More than one item without a name.
    #[error(
        "bad log level directives {text:?}: give one default level at most (for example info,myapp/db=debug)"
    )]
    TwoDefaults {
        /// The whole text.
        text: String,
    },
}

/// A level setting that failed, naming where it came from (the environment variable or
/// the option in code) so the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {source}")]
pub struct LevelSettingError {
    /// `environment variable LOG_LEVEL`, or `option` followed by the name the caller
    /// gives its setting in code.
    pub origin: String,
    /// What was wrong with the text.
    pub source: ParseDirectivesError,
}

/// Resolves a level setting with the one precedence rule of piko-obs: a value set in code
/// wins over the environment variable `env_var`, which wins over the default INFO.
/// `lookup` reads the environment (pass `|k| std::env::var(k).ok()`), so tests need not
/// touch the process environment. An empty variable counts as unset.
pub fn resolve_directives(
    in_code: Option<(&str, &str)>,
    env_var: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Directives, LevelSettingError> {
    if let Some((option, text)) = in_code {
        return Directives::parse(text).map_err(|source| LevelSettingError {
            origin: format!("option {option}"),
            source,
        });
    }
    match lookup(env_var) {
        Some(v) if !v.trim().is_empty() => {
            Directives::parse(&v).map_err(|source| LevelSettingError {
                origin: format!("environment variable {env_var}"),
                source,
            })
        }
        _ => Ok(Directives::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_at_name_boundaries() {
        let d = Directives::parse("warn,myapp=info,myapp/db=debug").unwrap();
        assert_eq!(d.level_for("other"), Level::WARN);
        assert_eq!(d.level_for("myapp"), Level::INFO);
        assert_eq!(d.level_for("myapp/http"), Level::INFO);
        assert_eq!(d.level_for("myapp/db"), Level::DEBUG);
        assert_eq!(d.level_for("myapp/db/pool"), Level::DEBUG);
        assert_eq!(d.level_for("myapp/dbx"), Level::INFO);
        assert_eq!(d.level_for("myappx"), Level::WARN);
        assert_eq!(d.min_level(), Level::DEBUG);
        let rust = Directives::parse("info,hyper=warn").unwrap();
        assert_eq!(rust.level_for("hyper::proto::h1"), Level::WARN);
    }

    #[test]
    fn default_only_and_integer_levels() {
        assert_eq!(
            Directives::parse("DEBUG").unwrap().level_for("x"),
            Level::DEBUG
        );
        assert_eq!(
            Directives::parse("-6").unwrap().default_level(),
            Level::INTERNAL
        );
        assert_eq!(Directives::parse("").unwrap().default_level(), Level::INFO);
        assert_eq!(
            Directives::parse("a=notice").unwrap().to_string(),
            "INFO,a=NOTICE"
        );
    }

    #[test]
    fn bad_directives_name_the_item() {
        let e = Directives::parse("info,db=loud").unwrap_err().to_string();
        assert!(e.contains("\"db=loud\"") && e.contains("\"loud\""), "{e}");
        let e = Directives::parse("info,=debug").unwrap_err().to_string();
        assert!(e.contains("logger name"), "{e}");
        let e = Directives::parse("info,debug").unwrap_err().to_string();
        assert!(e.contains("one default level"), "{e}");
    }

    #[test]
    fn code_wins_over_environment_which_wins_over_default() {
        let env = |k: &str| (k == LOG_LEVEL).then(|| "debug".to_string());
        let none = |_: &str| None;
        let from_code = resolve_directives(Some(("with_level", "warn")), LOG_LEVEL, env).unwrap();
        assert_eq!(from_code.default_level(), Level::WARN);
        let from_env = resolve_directives(None, LOG_LEVEL, env).unwrap();
        assert_eq!(from_env.default_level(), Level::DEBUG);
        let default = resolve_directives(None, LOG_LEVEL, none).unwrap();
        assert_eq!(default.default_level(), Level::INFO);
        let blank = resolve_directives(None, LOG_LEVEL, |_| Some("  ".into())).unwrap();
        assert_eq!(blank.default_level(), Level::INFO);
    }

    #[test]
    fn resolution_errors_name_their_origin() {
        let e = resolve_directives(None, PIKO_LOG_LEVEL, |_| Some("chatty".into()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("environment variable PIKO_LOG_LEVEL"), "{e}");
        let e = resolve_directives(Some(("with_log_level", "x=y")), PIKO_LOG_LEVEL, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("option with_log_level"), "{e}");
    }
}
