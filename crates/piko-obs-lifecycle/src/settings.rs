//! The one precedence of start-up settings: **code, then environment, then default**,
//! and the two errors of a setting: [`EnvSettingError`] (a variable's value) and
//! [`ConfigError`] (a setting a part's builder refuses). The settings every part shares
//! live here too: the [`RunMode`] (`PIKO_RUN_MODE`) and the [`Identity`] (environment
//! and release) every signal names.

use std::error::Error;
use std::fmt;
use std::str::FromStr;

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

/// The run mode, `dev` or `prod` (`with_run_mode` wins).
pub const PIKO_RUN_MODE: &str = "PIKO_RUN_MODE";

/// How the service runs: decides the console format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// Development: pretty, coloured console lines.
    #[default]
    Dev,
    /// Production: JSON lines.
    Prod,
}

/// Piko's `RunModeDev`.
pub const RUN_MODE_DEV: RunMode = RunMode::Dev;
/// Piko's `RunModeProd`.
pub const RUN_MODE_PROD: RunMode = RunMode::Prod;

impl RunMode {
    /// `dev` or `prod`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Dev => "dev",
            RunMode::Prod => "prod",
        }
    }

    /// The run mode of `code`, else [`PIKO_RUN_MODE`] read through `env`, else dev.
    ///
    /// ```
    /// use piko_obs_lifecycle::settings::RunMode;
    /// let env = |k: &str| (k == "PIKO_RUN_MODE").then(|| "prod".to_string());
    /// assert_eq!(RunMode::resolve(None, &env), Ok(RunMode::Prod));
    /// assert_eq!(RunMode::resolve(Some(RunMode::Dev), &env), Ok(RunMode::Dev));
    /// ```
    pub fn resolve(
        code: Option<RunMode>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<RunMode, EnvSettingError> {
        pick(
            code,
            PIKO_RUN_MODE,
            env,
            |v| v.parse().map_err(|_| "use dev or prod".to_string()),
            || RunMode::Dev,
        )
    }
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not a run mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRunModeError(pub String);

impl fmt::Display for ParseRunModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown run mode {:?}: use dev or prod", self.0)
    }
}

impl Error for ParseRunModeError {}

impl FromStr for RunMode {
    type Err = ParseRunModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dev" | "development" => Ok(RunMode::Dev),
            "prod" | "production" => Ok(RunMode::Prod),
            _ => Err(ParseRunModeError(s.to_string())),
        }
    }
}

/// Every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`, RFC 3986).
const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` with every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`, RFC 3986)
/// written as `%XX`: what [`percent_decode`] reads back.
pub fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

/// Decodes `%XX` escapes (the W3C baggage octet encoding the variables use); `None`
/// for a `%` not followed by two hex digits (fuzzing found that `from_str_radix` also
/// takes a sign, so `%+a` once decoded to a line feed) or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let well_formed = s.bytes().enumerate().all(|(i, b)| {
        b != b'%'
            || s.as_bytes()
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The value `OTEL_RESOURCE_ATTRIBUTES` gives `key` (`deployment.environment.name`,
/// `service.version`; the last one given, percent-decoded), read through `env`; `None`
/// when it gives none or cannot be read (the OTLP settings report that).
pub fn resource_attribute(env: impl Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    let text = env("OTEL_RESOURCE_ATTRIBUTES")?;
    key_value_pairs("OTEL_RESOURCE_ATTRIBUTES", &text)
        .ok()?
        .into_iter()
        .rev()
        .find(|(_, k, _)| k == key)
        .map(|(_, _, v)| v)
}

/// Parses `key=value,key2=value2` (values percent-decoded) into numbered pairs (from
/// 1, counting the non-empty entries). An error names the entry's position and the rule
/// it breaks, never its text: a malformed header entry is often a credential.
pub fn key_value_pairs(
    setting: &str,
    text: &str,
) -> Result<Vec<(usize, String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (i, item) in text
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .enumerate()
    {
        let n = i + 1;
        let Some((k, v)) = item.split_once('=') else {
            return Err(ConfigError::new(
                setting,
                format!("entry {n} has no '=': expected key=value pairs separated by commas"),
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(ConfigError::new(
                setting,
                format!("entry {n} has an empty key"),
            ));
        }
        let v = percent_decode(v).ok_or_else(|| {
            ConfigError::new(
                setting,
                format!(
                    "the value of entry {n} has a bad %-escape (write % as %25, and each \
                     escape as % and two hex digits)"
                ),
            )
        })?;
        out.push((n, k.to_string(), v));
    }
    Ok(out)
}

/// The deployment environment and the release every signal names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Sentry's `environment`, the OTLP resource's `deployment.environment.name`, the
    /// alerts' `environment`; `None` when unset everywhere (never `""`).
    pub environment: Option<String>,
    /// Sentry's `release`, the OTLP resource's `service.version`; `None` when unset.
    pub release: Option<String>,
}

impl Identity {
    /// The environment and the release in the one documented order: code, then Sentry's
    /// variables (`SENTRY_ENVIRONMENT`, `SENTRY_RELEASE`), then `OTEL_RESOURCE_ATTRIBUTES`
    /// (`deployment.environment.name`, `service.version`: [`resource_attribute`]), then piko-obs's own (`PIKO_ENVIRONMENT`, then `ENVIRONMENT`;
    /// `PIKO_SERVICE_VERSION`). Blank counts as unset.
    ///
    /// ```
    /// use piko_obs_lifecycle::settings::Identity;
    /// let env = |k: &str| match k {
    ///     "OTEL_RESOURCE_ATTRIBUTES" => Some("service.version=2.1".to_string()),
    ///     "ENVIRONMENT" => Some("staging".to_string()),
    ///     _ => None,
    /// };
    /// let id = Identity::resolve(None, None, env);
    /// assert_eq!(id.environment.as_deref(), Some("staging"));
    /// assert_eq!(id.release.as_deref(), Some("2.1"));
    /// ```
    pub fn resolve(
        environment: Option<String>,
        release: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Identity {
        let attribute = |key: &str| resource_attribute(&env, key);
        let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let environment = set(environment)
            .or_else(|| set(env("SENTRY_ENVIRONMENT")))
            .or_else(|| set(attribute("deployment.environment.name")))
            .or_else(|| set(env("PIKO_ENVIRONMENT")))
            .or_else(|| set(env("ENVIRONMENT")));
        let release = set(release)
            .or_else(|| set(env("SENTRY_RELEASE")))
            .or_else(|| set(attribute("service.version")))
            .or_else(|| set(env("PIKO_SERVICE_VERSION")));
        Identity {
            environment,
            release,
        }
    }
}

/// The program's file name without its extension (`piko-obs` when it cannot be read):
/// the default service name.
pub fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "piko-obs".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> + Copy {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        }
    }

    fn identity(
        environment: Option<String>,
        release: Option<String>,
        env: impl Fn(&str) -> Option<String> + Copy,
    ) -> (Option<String>, Option<String>) {
        let id = Identity::resolve(environment, release, env);
        (id.environment, id.release)
    }

    #[test]
    fn code_then_sentry_then_otel_resource_then_piko_variables() {
        let all = vars(&[
            ("SENTRY_ENVIRONMENT", "sentry-env"),
            ("SENTRY_RELEASE", "sentry-rel"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=otel-env,service.version=otel-rel",
            ),
            ("PIKO_ENVIRONMENT", "piko-env"),
            ("ENVIRONMENT", "plain-env"),
            ("PIKO_SERVICE_VERSION", "piko-rel"),
        ]);
        assert_eq!(
            identity(Some("code".into()), Some("1.0".into()), all),
            (Some("code".into()), Some("1.0".into()))
        );
        assert_eq!(
            identity(None, None, all),
            (Some("sentry-env".into()), Some("sentry-rel".into()))
        );
        let otel = vars(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=otel-env,service.version=otel-rel",
            ),
            ("ENVIRONMENT", "plain-env"),
        ]);
        assert_eq!(
            identity(None, None, otel),
            (Some("otel-env".into()), Some("otel-rel".into()))
        );
        let plain = vars(&[("ENVIRONMENT", "plain-env"), ("SENTRY_ENVIRONMENT", " ")]);
        assert_eq!(
            identity(None, None, plain),
            (Some("plain-env".into()), None)
        );
        assert_eq!(identity(Some("".into()), None, vars(&[])), (None, None));
    }

    #[test]
    fn resource_attributes_are_percent_decoded_and_a_malformed_list_gives_none() {
        let encoded = vars(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=prod%20eu,service.version=1.0%2Brc",
        )]);
        assert_eq!(
            identity(None, None, encoded),
            (Some("prod eu".into()), Some("1.0+rc".into()))
        );
        let malformed = vars(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.version=1.0,oops"),
            ("PIKO_SERVICE_VERSION", "piko-rel"),
        ]);
        assert_eq!(identity(None, None, malformed).1, Some("piko-rel".into()));
        let e = key_value_pairs("OTEL_RESOURCE_ATTRIBUTES", "a=%zz").unwrap_err();
        assert_eq!(e.setting, "OTEL_RESOURCE_ATTRIBUTES");
        assert!(e.reason.contains("entry 1"), "{e}");
    }

    #[test]
    fn the_run_mode_is_code_then_its_variable_then_dev() {
        let prod = vars(&[(PIKO_RUN_MODE, "prod")]);
        assert_eq!(RunMode::resolve(None, &prod).unwrap(), RunMode::Prod);
        assert_eq!(
            RunMode::resolve(Some(RunMode::Dev), &prod).unwrap(),
            RunMode::Dev
        );
        assert_eq!(RunMode::resolve(None, &vars(&[])).unwrap(), RunMode::Dev);
        let e = RunMode::resolve(None, &vars(&[(PIKO_RUN_MODE, "staging")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable PIKO_RUN_MODE=\"staging\": use dev or prod"
        );
        assert_eq!("Production".parse(), Ok(RunMode::Prod));
        assert_eq!(
            "qa".parse::<RunMode>().unwrap_err().to_string(),
            "unknown run mode \"qa\": use dev or prod"
        );
    }
}
