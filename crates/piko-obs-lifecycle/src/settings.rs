//! The one precedence of start-up settings: **code, then environment, then default**,
//! and the two errors of a setting: [`EnvSettingError`] (a variable's value) and
//! [`ConfigError`] (a setting a part's builder refuses).

use std::error::Error;
use std::fmt;

/// An environment variable set to a value that cannot work: the variable, its value
/// (these settings hold no secret) and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSettingError {
    /// The variable.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl fmt::Display for EnvSettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "environment variable {}={:?}: {}",
            self.variable, self.value, self.reason
        )
    }
}

impl Error for EnvSettingError {}

/// A setting that cannot work, found when a part is built: names the setting (a field
/// of the part's configuration, such as `OtlpConfig.endpoint`, or a variable) and how to
/// fix it. It never holds a secret: a token, a password or a header value stays out of
/// `reason`.
///
/// ```
/// use piko_obs_lifecycle::settings::ConfigError;
/// let e = ConfigError::new("slack webhook URL", "must be an https:// URL");
/// assert_eq!(e.setting, "slack webhook URL");
/// assert_eq!(e.to_string(), "slack webhook URL: must be an https:// URL");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting: a configuration field or an environment variable.
    pub setting: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl ConfigError {
    /// The error of `setting`, with what is wrong and how to fix it.
    pub fn new(setting: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.reason)
    }
}

impl Error for ConfigError {}

/// `code` when given, else `variable` read through `env` and parsed (unset or blank
/// counts as not given), else `default()`.
///
/// ```
/// use piko_obs_lifecycle::settings::pick;
/// let env = |k: &str| (k == "PORT").then(|| "x".to_string());
/// let parse = |v: &str| v.parse::<u16>().map_err(|_| "use 0 to 65535".to_string());
/// assert_eq!(pick(Some(1), "PORT", &env, parse, || 9090), Ok(1));
/// let e = pick(None, "PORT", &env, parse, || 9090).unwrap_err();
/// assert_eq!(e.to_string(), "environment variable PORT=\"x\": use 0 to 65535");
/// assert_eq!(pick(None, "OTHER", &env, parse, || 9090), Ok(9090));
/// ```
pub fn pick<T>(
    code: Option<T>,
    variable: &'static str,
    env: &impl Fn(&str) -> Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
    default: impl FnOnce() -> T,
) -> Result<T, EnvSettingError> {
    if let Some(v) = code {
        return Ok(v);
    }
    match env(variable).filter(|v| !v.trim().is_empty()) {
        Some(value) => parse(value.trim()).map_err(|reason| EnvSettingError {
            variable,
            value,
            reason,
        }),
        None => Ok(default()),
    }
}
