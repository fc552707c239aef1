//! The command line: `piko-obs-probe [--timeout DURATION] [--quiet] URL`, its help and
//! its usage errors.

use std::fmt;
use std::time::Duration;

use crate::VERSION;
use crate::url::{Url, parse_url};

/// The timeout when `--timeout` is not given.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest `--timeout` accepted (a day).
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Exit code: usage error (bad URL, flag or duration).
pub(crate) const EXIT_USAGE: u8 = 2;

/// The one-line usage, printed with usage errors.
pub(crate) const USAGE: &str = "usage: piko-obs-probe [--timeout DURATION] [--quiet] URL";

/// The text printed by `--help`.
pub(crate) fn help_text() -> String {
    format!(
        "piko-obs-probe {VERSION}: GET a plain-HTTP URL; exit 0 when it answers 200, 1 otherwise.

{USAGE}

  URL                     http://host[:port][/path][?query]; the host is a name, an IPv4
                          address or [IPv6]; port 80 unless given; https is not supported
  -t, --timeout DURATION  bound of the whole run (resolve, connect, send, read):
                          like 2s, 500ms, 1.5s or 1m; default 3s
  -q, --quiet             print nothing, only set the exit code
  -h, --help              print this help
  -V, --version           print the version

Prints one line: \"healthy: 200 <state or body excerpt>\" or \"unhealthy: <status and
state or body excerpt, or the error>\".

Exit codes: 0 the URL answered 200; 1 anything else (another status, connection
refused, timeout, malformed answer); 2 usage error.

Dockerfile:
  HEALTHCHECK --interval=10s --timeout=3s CMD [\"/usr/local/bin/piko-obs-probe\", \"--timeout\", \"2s\", \"http://127.0.0.1:9090/live\"]"
    )
}

/// A usage error: a bad URL, flag or duration. The binary prints it and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    message: String,
}

impl UsageError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// What is wrong, in one line.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// The settings of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Args {
    /// The URL to probe.
    pub(crate) url: Url,
    /// The bound of the whole run.
    pub(crate) timeout: Duration,
    /// Print nothing, only set the exit code.
    pub(crate) quiet: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Probe a URL.
    Probe(Args),
    /// Print the help ([`help_text`]) and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// Parses the command line, without the program name.
///
/// `--help` and `--version` win as soon as they are seen; `--` ends the options.
pub(crate) fn parse_args<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut url: Option<String> = None;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut quiet = false;
    let mut options_ended = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.as_ref();
        let is_option = !options_ended && arg.starts_with('-') && arg != "-";
        if !is_option {
            if let Some(first) = &url {
                return Err(UsageError::new(format!(
                    "unexpected argument {arg:?}: give one URL (already have {first:?})"
                )));
            }
            url = Some(arg.to_owned());
            continue;
        }
        match arg {
            "--" => options_ended = true,
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-q" | "--quiet" => quiet = true,
            "-t" | "--timeout" => {
                let Some(value) = args.next() else {
                    return Err(UsageError::new(format!(
                        "{arg} needs a value, like 2s or 500ms"
                    )));
                };
                timeout = parse_timeout(arg, value.as_ref())?;
            }
            _ => {
                if let Some(value) = arg.strip_prefix("--timeout=") {
                    timeout = parse_timeout("--timeout", value)?;
                } else {
                    return Err(UsageError::new(format!("unknown option {arg}")));
                }
            }
        }
    }
    let Some(url) = url else {
        return Err(UsageError::new(
            "missing URL, like http://127.0.0.1:9090/live",
        ));
    };
    Ok(Command::Probe(Args {
        url: parse_url(&url)?,
        timeout,
        quiet,
    }))
}

fn parse_timeout(flag: &str, value: &str) -> Result<Duration, UsageError> {
    parse_duration(value).map_err(|e| UsageError::new(format!("{flag}: {e}")))
}

/// Parses a duration like `2s`, `500ms`, `1.5s` or `1m`: a decimal number and a unit
/// (`ms`, `s`, `m`). Zero, a missing unit and more than a day (24 hours) are errors.
///
/// ```
/// use std::time::Duration;
/// use piko_obs_probe::parse_duration;
///
/// assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
/// assert_eq!(parse_duration("0.25s").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("0s").is_err());
/// assert!(parse_duration("3").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, UsageError> {
    let bad = |why: &str| {
        UsageError::new(format!(
            "invalid duration {text:?}: {why} (write it like 2s, 500ms or 1.5s)"
        ))
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(bad("no number"));
    }
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "" => return Err(bad("no unit")),
        _ => return Err(bad("unknown unit; use ms, s or m")),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
        return Err(bad("not a number"));
    }
    if whole.len() > 12 {
        return Err(bad("too long; at most 24h"));
    }
    let whole: u128 = whole.parse().map_err(|_| bad("not a number"))?;
    let mut nanos = whole * unit_nanos;
    let mut scale = unit_nanos;
    for digit in fraction.bytes() {
        scale /= 10;
        nanos += u128::from(digit - b'0') * scale;
    }
    if nanos == 0 {
        return Err(bad("it must be more than zero"));
    }
    if nanos > MAX_TIMEOUT.as_nanos() {
        return Err(bad("too long; at most 24h"));
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad("too long; at most 24h"))?;
    // The remainder is below 10^9, so it fits.
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_duration(text: &str) -> String {
        parse_duration(text).unwrap_err().message().to_owned()
    }

    fn err_args(args: &[&str]) -> String {
        parse_args(args).unwrap_err().message().to_owned()
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0.001s").unwrap(), Duration::from_millis(1));
        assert_eq!(
            parse_duration("2.5ms").unwrap(),
            Duration::from_micros(2500)
        );
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("0.5m").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("24h").ok(), None, "hours are not a unit");
        assert_eq!(parse_duration("1440m").unwrap(), MAX_TIMEOUT);
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        let hint = "(write it like 2s, 500ms or 1.5s)";
        assert_eq!(
            err_duration("0s"),
            format!("invalid duration \"0s\": it must be more than zero {hint}")
        );
        assert!(err_duration("0ms").contains("more than zero"));
        assert!(err_duration("0.0000000001s").contains("more than zero"));
        assert_eq!(
            err_duration("3"),
            format!("invalid duration \"3\": no unit {hint}")
        );
        assert_eq!(
            err_duration("s"),
            format!("invalid duration \"s\": no number {hint}")
        );
        assert_eq!(
            err_duration(""),
            format!("invalid duration \"\": no number {hint}")
        );
        assert!(err_duration("3h").contains("unknown unit; use ms, s or m"));
        assert!(err_duration("3 s").contains("unknown unit"));
        assert!(err_duration("-1s").contains("no number"));
        for text in [".5s", "1.s", "1..5s", "1.2.3s"] {
            assert!(err_duration(text).contains("not a number"), "{text}");
        }
        assert!(err_duration("1441m").contains("too long; at most 24h"));
        assert!(err_duration("99999999999999999999s").contains("too long"));
    }

    #[test]
    fn args_parse() {
        let probe = |args: &[&str]| match parse_args(args).unwrap() {
            Command::Probe(args) => args,
            other => panic!("{other:?}"),
        };
        let args = probe(&["http://127.0.0.1:9090/live"]);
        assert_eq!(
            args.url,
            Url {
                host: "127.0.0.1".to_owned(),
                port: 9090,
                target: "/live".to_owned(),
            }
        );
        assert_eq!(args.timeout, DEFAULT_TIMEOUT);
        assert!(!args.quiet);

        let args = probe(&["--timeout", "500ms", "--quiet", "http://h/"]);
        assert_eq!(args.timeout, Duration::from_millis(500));
        assert!(args.quiet);
        let args = probe(&["http://h/", "-t", "1.5s", "-q"]);
        assert_eq!(args.timeout, Duration::from_millis(1500));
        assert!(args.quiet);
        assert_eq!(
            probe(&["--timeout=2s", "http://h/"]).timeout,
            Duration::from_secs(2)
        );
        assert_eq!(
            probe(&["--timeout", "1s", "--timeout", "2s", "http://h/"]).timeout,
            Duration::from_secs(2),
            "the last --timeout wins"
        );
        assert_eq!(
            probe(&["--", "http://h/"]).url,
            Url {
                host: "h".to_owned(),
                port: 80,
                target: "/".to_owned(),
            }
        );

        assert_eq!(parse_args(["--help"]).unwrap(), Command::Help);
        assert_eq!(parse_args(["http://h/", "-h"]).unwrap(), Command::Help);
        assert_eq!(parse_args(["--version"]).unwrap(), Command::Version);
        assert_eq!(parse_args(["-V"]).unwrap(), Command::Version);
    }

    #[test]
    fn a_docker_command_line_parses() {
        let Ok(Command::Probe(args)) =
            parse_args(["--timeout", "2s", "http://127.0.0.1:9090/live"])
        else {
            panic!("a valid command line");
        };
        assert_eq!(args.timeout, Duration::from_secs(2));
        assert!(!args.quiet);
        assert_eq!(
            parse_args(["--nope"]).unwrap_err().message(),
            "unknown option --nope"
        );
    }

    #[test]
    fn bad_args_say_what_is_wrong() {
        assert_eq!(
            err_args(&[]),
            "missing URL, like http://127.0.0.1:9090/live"
        );
        assert_eq!(
            err_args(&["--quiet"]),
            "missing URL, like http://127.0.0.1:9090/live"
        );
        assert_eq!(err_args(&["--nope", "http://h/"]), "unknown option --nope");
        assert_eq!(err_args(&["-x"]), "unknown option -x");
        assert_eq!(
            err_args(&["http://h/", "--timeout"]),
            "--timeout needs a value, like 2s or 500ms"
        );
        assert_eq!(
            err_args(&["--timeout", "0s", "http://h/"]),
            "--timeout: invalid duration \"0s\": it must be more than zero (write it like 2s, 500ms or 1.5s)"
        );
        assert!(
            err_args(&["--timeout=soon", "http://h/"])
                .starts_with("--timeout: invalid duration \"soon\"")
        );
        assert_eq!(
            err_args(&["http://a/", "http://b/"]),
            "unexpected argument \"http://b/\": give one URL (already have \"http://a/\")"
        );
        assert!(err_args(&["https://h/"]).starts_with("https is not supported"));
        assert!(err_args(&["--", "--quiet"]).contains("has no scheme"));
    }

    #[test]
    fn help_mentions_usage_exit_codes_and_docker() {
        let help = help_text();
        assert!(help.contains(USAGE));
        assert!(help.contains("2 usage error"));
        assert!(help.contains("HEALTHCHECK --interval=10s --timeout=3s CMD [\"/usr/local/bin/piko-obs-probe\", \"--timeout\", \"2s\", \"http://127.0.0.1:9090/live\"]"));
    }
}
