//! `piko-obs-probe`: a tiny health-check CLI for containers without curl.
//!
//! What it is for: a Docker `HEALTHCHECK` (or a Kubernetes `exec` probe) in an image that
//! has no curl or wget, such as a distroless or `scratch` image holding one Rust service.
//! It sends one `GET` to a plain-HTTP URL, usually the piko-obs probe server on its own
//! loopback port, and exits 0 when the answer is `200`, 1 otherwise, printing one line
//! that says why. It depends on std only: no async runtime, no HTTP or TLS crate.
//!
//! ```text
//! piko-obs-probe [--timeout DURATION] [--quiet] URL
//! ```
//!
//! - `URL`: `http://host[:port][/path][?query]`; the host is a name, an IPv4 address or
//!   an `[IPv6]` address; the port is 80 unless given; the path is `/` unless given.
//!   `https://` is refused (a usage error): the piko-obs probe server runs on its own
//!   loopback port, usually over plain HTTP, so probe that port.
//! - `--timeout DURATION` (`-t`): `2s`, `500ms`, `1.5s` or `1m`; default `3s`. It bounds
//!   the whole run: name resolution, connecting, sending the request and reading the
//!   answer all share it.
//! - `--quiet` (`-q`): print nothing, only set the exit code.
//! - `--help` (`-h`), `--version` (`-V`).
//!
//! In a Dockerfile:
//!
//! ```dockerfile
//! HEALTHCHECK --interval=10s --timeout=3s CMD ["/usr/local/bin/piko-obs-probe", "--timeout", "2s", "http://127.0.0.1:9090/live"]
//! ```
//!
//! Keep the probe's `--timeout` below Docker's `--timeout`, so the probe reports its own
//! timeout ("no answer within 2s ...") instead of being killed by Docker.
//!
//! # Exit codes and output
//!
//! | exit | meaning | line on stdout (unless `--quiet`) |
//! |---|---|---|
//! | 0 | the URL answered `200` | `healthy: 200 HEALTHY` |
//! | 1 | anything else: another status, connection refused, timeout, a malformed answer | `unhealthy: 503 UNHEALTHY`, `unhealthy: connection refused to 127.0.0.1:9090`, `unhealthy: no answer within 3s from 127.0.0.1:9090` |
//! | 2 | usage error: a bad URL, flag or duration | nothing; the problem and the usage on stderr |
//!
//! When the body is the piko-obs health JSON (`{"name":..,"state":"HEALTHY",...}`) the
//! line shows its `state`; otherwise it shows the first 200 characters of the body on
//! one line. Docker keeps that line in `docker inspect` (`.State.Health.Log`).
//!
//! # HTTP, minimally
//!
//! One HTTP/1.1 request with `Host`, `User-Agent: piko-obs-probe/<version>` and
//! `Connection: close`. The status line is parsed strictly (`HTTP/1.x NNN reason`);
//! `1xx` interim answers are skipped. The answer is read up to 64 KiB; the body ends at
//! its `Content-Length`, at the last chunk of a chunked body, or when the server closes.
//! Once the status line and headers are in, the status decides: a body cut short (by the
//! 64 KiB cap, a close or the deadline) only shortens the excerpt.
//!
//! # As a library
//!
//! The binary is a thin wrapper over [`parse_args`] and [`probe`]; [`parse_url`] and
//! [`parse_duration`] are the pieces of [`parse_args`].
//!
//! ```
//! use std::time::Duration;
//! use piko_obs_probe::{parse_duration, parse_url};
//!
//! let url = parse_url("http://127.0.0.1:9090/live").unwrap();
//! assert_eq!((url.host.as_str(), url.port, url.target.as_str()), ("127.0.0.1", 9090, "/live"));
//! assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
//! assert!(parse_url("https://127.0.0.1:9443/live").is_err());
//! ```
//!
//! ```no_run
//! use std::time::Duration;
//! use piko_obs_probe::{parse_url, probe};
//!
//! let outcome = probe(&parse_url("http://127.0.0.1:9090/ready")?, Duration::from_secs(2));
//! println!("{outcome}"); // healthy: 200 HEALTHY
//! let _exit_code = outcome.exit_code(); // 0 on 200, else 1
//! # Ok::<(), piko_obs_probe::UsageError>(())
//! ```
//!
//! No feature flags; no dependencies beyond std.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The version of this crate, sent in the `User-Agent` header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The timeout when `--timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest `--timeout` accepted (a day).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// At most this many bytes of the answer (status line, headers and body) are read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The printed excerpt of a body holds at most this many characters.
pub const EXCERPT_CHARS: usize = 200;

/// Exit code: the URL answered `200`.
pub const EXIT_HEALTHY: u8 = 0;

/// Exit code: anything else (another status, no connection, timeout, malformed answer).
pub const EXIT_UNHEALTHY: u8 = 1;

/// Exit code: usage error (bad URL, flag or duration).
pub const EXIT_USAGE: u8 = 2;

/// The one-line usage, printed with usage errors.
pub const USAGE: &str = "usage: piko-obs-probe [--timeout DURATION] [--quiet] URL";

/// The text printed by `--help`.
pub fn help_text() -> String {
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

// ---------------------------------------------------------------------------------------
// Usage errors and arguments
// ---------------------------------------------------------------------------------------

/// A usage error: a bad URL, flag or duration. The binary prints it and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    message: String,
}

impl UsageError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// What is wrong, in one line.
    pub fn message(&self) -> &str {
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
pub struct Args {
    /// The URL to probe.
    pub url: Url,
    /// The bound of the whole run.
    pub timeout: Duration,
    /// Print nothing, only set the exit code.
    pub quiet: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
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
///
/// ```
/// use std::time::Duration;
/// use piko_obs_probe::{Command, parse_args};
///
/// let Ok(Command::Probe(args)) = parse_args(["--timeout", "2s", "http://127.0.0.1:9090/live"]) else {
///     panic!("a valid command line");
/// };
/// assert_eq!(args.timeout, Duration::from_secs(2));
/// assert!(!args.quiet);
/// assert_eq!(parse_args(["--nope"]).unwrap_err().message(), "unknown option --nope");
/// ```
pub fn parse_args<I>(args: I) -> Result<Command, UsageError>
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
/// (`ms`, `s`, `m`). Zero, a missing unit and more than [`MAX_TIMEOUT`] are errors.
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

// ---------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The host as written, without the brackets of an IPv6 address.
    pub host: String,
    /// The port (80 unless given).
    pub port: u16,
    /// The request target: the path and the query, `/` at least. Any `#fragment` is
    /// dropped.
    pub target: String,
}

impl Url {
    /// The value of the `Host` header: the host (in brackets if IPv6), and `:port`
    /// unless it is 80.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.target)
    }
}

/// Parses `http://host[:port][/path][?query]`.
///
/// The host is a name, an IPv4 address or an IPv6 address in brackets; the port is 80
/// unless given; the target is `/` unless given. `https://`, other schemes, user info
/// (`user@`), spaces and control characters are errors that say what is wrong.
///
/// ```
/// use piko_obs_probe::parse_url;
///
/// let url = parse_url("http://[::1]:9090/ready?verbose=1").unwrap();
/// assert_eq!((url.host.as_str(), url.port, url.target.as_str()), ("::1", 9090, "/ready?verbose=1"));
/// assert_eq!(parse_url("http://example.com").unwrap().target, "/");
/// ```
pub fn parse_url(text: &str) -> Result<Url, UsageError> {
    if text.is_empty() {
        return Err(UsageError::new(
            "empty URL; give one like http://127.0.0.1:9090/live",
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UsageError::new(format!(
            "URL {text:?} contains a space or a control character; percent-encode it"
        )));
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(UsageError::new(format!(
            "URL {text:?} has no scheme; write http://{text}"
        )));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(UsageError::new(format!(
            "https is not supported ({text}): piko-obs-probe speaks plain HTTP only; probe \
             the plain-HTTP probe port instead (the piko-obs probe server runs on its own \
             loopback port, usually http, e.g. http://127.0.0.1:9090/live)"
        )));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(UsageError::new(format!(
            "unsupported scheme {scheme:?} in {text:?}; piko-obs-probe speaks http:// only"
        )));
    }
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(UsageError::new(format!(
            "user info (user@host) is not supported in {text:?}"
        )));
    }
    if authority.is_empty() {
        return Err(UsageError::new(format!("missing host in {text:?}")));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inside, tail)) = bracketed.split_once(']') else {
            return Err(UsageError::new(format!(
                "missing ] after the IPv6 address in {text:?}"
            )));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(UsageError::new(format!(
                "[{inside}] is not an IPv6 address (in {text:?})"
            )));
        }
        let port = match tail {
            "" => None,
            _ => match tail.strip_prefix(':') {
                Some(port) => Some(port),
                None => {
                    return Err(UsageError::new(format!(
                        "unexpected {tail:?} after the IPv6 address in {text:?}"
                    )));
                }
            },
        };
        (inside, port)
    } else {
        if authority.matches(':').count() > 1 {
            return Err(UsageError::new(format!(
                "an IPv6 host goes in brackets, like http://[::1]:9090/live (in {text:?})"
            )));
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(UsageError::new(format!("missing host in {text:?}")));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(UsageError::new(format!(
                "invalid host {host:?} in {text:?}"
            )));
        }
        (host, port)
    };
    let port = match port {
        None => 80,
        Some("") => {
            return Err(UsageError::new(format!(
                "missing port after ':' in {text:?}"
            )));
        }
        Some(port) => match port.parse::<u16>() {
            Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(UsageError::new(format!(
                    "invalid port {port:?} in {text:?}: a number from 1 to 65535"
                )));
            }
        },
    };
    let target = if target.is_empty() {
        "/".to_owned()
    } else if target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_owned()
    };
    Ok(Url {
        host: host.to_owned(),
        port,
        target,
    })
}

// ---------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with an HTTP status.
    Answered(Answer),
    /// No usable answer.
    Failed(Failure),
}

impl Outcome {
    /// Whether the URL answered `200`.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Outcome::Answered(answer) if answer.status == 200)
    }

    /// The process exit code: [`EXIT_HEALTHY`] or [`EXIT_UNHEALTHY`].
    pub fn exit_code(&self) -> u8 {
        if self.is_healthy() {
            EXIT_HEALTHY
        } else {
            EXIT_UNHEALTHY
        }
    }
}

/// The printed line: `healthy: 200 HEALTHY`, `unhealthy: 503 UNHEALTHY`,
/// `unhealthy: connection refused to 127.0.0.1:9090`, ...
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Answered(answer) => {
                let word = if answer.status == 200 {
                    "healthy"
                } else {
                    "unhealthy"
                };
                write!(f, "{word}: {}", answer.status)?;
                let summary = answer.summary();
                if summary.is_empty() {
                    Ok(())
                } else {
                    write!(f, " {summary}")
                }
            }
            Outcome::Failed(failure) => write!(f, "unhealthy: {failure}"),
        }
    }
}

/// An HTTP answer: its status and (up to the 64 KiB cap) its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code of the status line.
    pub status: u16,
    /// The body, de-chunked, possibly cut short by the cap, a close or the deadline.
    pub body: Vec<u8>,
}

impl Answer {
    /// The `state` of the piko-obs health JSON if the body is one, else the first
    /// [`EXCERPT_CHARS`] characters of the body on one line.
    pub fn summary(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        match health_state(&text) {
            Some(state) => state.to_owned(),
            None => excerpt(&text),
        }
    }
}

/// Why a probe run got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The host name did not resolve.
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        error: String,
    },
    /// Every address refused the connection (the last one is named).
    Refused {
        /// The address that refused.
        addr: SocketAddr,
    },
    /// Connecting failed otherwise (the last address tried is named).
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: String,
    },
    /// Sending the request failed.
    Send {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: String,
    },
    /// Reading failed before the end of the headers.
    Receive {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: String,
    },
    /// The server closed the connection before the end of the headers.
    Closed {
        /// The address.
        addr: SocketAddr,
        /// How many bytes had come.
        received: usize,
    },
    /// The answer is not HTTP/1.x.
    Malformed {
        /// The address.
        addr: SocketAddr,
        /// What is wrong.
        reason: String,
    },
    /// The timeout passed before the end of the headers.
    Timeout {
        /// The timeout of the run.
        timeout: Duration,
        /// What was being waited for.
        stage: Stage,
    },
}

/// What a run was waiting for when its timeout passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Resolving the host name.
    Resolve {
        /// The host name.
        host: String,
    },
    /// Connecting (the last address tried is named).
    Connect {
        /// The address.
        addr: SocketAddr,
    },
    /// Sending the request.
    Send {
        /// The address.
        addr: SocketAddr,
    },
    /// Reading the status line and headers.
    Answer {
        /// The address.
        addr: SocketAddr,
        /// How many bytes had come.
        received: usize,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Resolve { host, error } => write!(f, "cannot resolve {host}: {error}"),
            Failure::Refused { addr } => write!(f, "connection refused to {addr}"),
            Failure::Connect { addr, error } => write!(f, "cannot connect to {addr}: {error}"),
            Failure::Send { addr, error } => {
                write!(f, "cannot send the request to {addr}: {error}")
            }
            Failure::Receive { addr, error } => {
                write!(f, "error reading the answer from {addr}: {error}")
            }
            Failure::Closed { addr, received: 0 } => {
                write!(f, "connection closed by {addr} without an answer")
            }
            Failure::Closed { addr, received } => write!(
                f,
                "connection closed by {addr} before the end of the headers ({received} bytes received)"
            ),
            Failure::Malformed { addr, reason } => {
                write!(f, "malformed answer from {addr}: {reason}")
            }
            Failure::Timeout { timeout, stage } => match stage {
                Stage::Resolve { host } => {
                    write!(f, "no answer within {timeout:?} (resolving {host})")
                }
                Stage::Connect { addr } => {
                    write!(f, "no answer within {timeout:?} (connecting to {addr})")
                }
                Stage::Send { addr } => write!(
                    f,
                    "no answer within {timeout:?} (sending the request to {addr})"
                ),
                Stage::Answer { addr, received: 0 } => {
                    write!(f, "no answer within {timeout:?} from {addr}")
                }
                Stage::Answer { addr, received } => write!(
                    f,
                    "no complete answer within {timeout:?} from {addr} ({received} bytes received)"
                ),
            },
        }
    }
}

impl std::error::Error for Failure {}

/// Finds the top-level `"state"` string of a piko-obs health JSON body
/// (`{"name":"app","state":"HEALTHY",...}`) with a small scan (no JSON library).
///
/// Returns `None` unless the body is a JSON object whose top-level `state` is a short
/// word (letters, digits, `_`, `-`); nested `state`s (of dependencies) are skipped.
///
/// ```
/// use piko_obs_probe::health_state;
///
/// let body = r#"{"name":"app","dependencies":[{"name":"db","state":"UNHEALTHY"}],"state":"DEGRADED"}"#;
/// assert_eq!(health_state(body), Some("DEGRADED"));
/// assert_eq!(health_state("ok"), None);
/// ```
pub fn health_state(body: &str) -> Option<&str> {
    let mut scan = Scan {
        bytes: body.as_bytes(),
        pos: 0,
    };
    scan.space();
    scan.eat(b'{')?;
    loop {
        scan.space();
        if scan.peek()? == b'}' {
            return None;
        }
        let (key_start, key_end) = scan.string()?;
        scan.space();
        scan.eat(b':')?;
        scan.space();
        if &body[key_start..key_end] == "state" {
            let (start, end) = scan.string()?;
            let state = &body[start..end];
            let word = !state.is_empty()
                && state.len() <= 32
                && state
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            return word.then_some(state);
        }
        scan.value()?;
        scan.space();
        match scan.bump()? {
            b',' => {}
            _ => return None,
        }
    }
}

/// A cursor over JSON bytes; every method returns `None` on anything unexpected.
struct Scan<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.bump()? == want).then_some(())
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// A string; returns the byte range between its quotes (escapes left as they are).
    fn string(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.pos;
        loop {
            match self.bump()? {
                b'"' => return Some((start, self.pos - 1)),
                b'\\' => {
                    self.bump()?;
                }
                _ => {}
            }
        }
    }

    /// Skips one value: a string, an object or array (whatever it nests), or a literal.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                        }
                        b'{' | b'[' => {
                            depth += 1;
                            self.pos += 1;
                        }
                        b'}' | b']' => {
                            depth -= 1;
                            self.pos += 1;
                            if depth == 0 {
                                return Some(());
                            }
                        }
                        _ => self.pos += 1,
                    }
                }
            }
            _ => {
                let start = self.pos;
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                ) {
                    self.pos += 1;
                }
                (self.pos > start).then_some(())
            }
        }
    }
}

/// The first [`EXCERPT_CHARS`] characters of a text on one line: runs of whitespace and
/// control characters become one space.
///
/// ```
/// assert_eq!(piko_obs_probe::excerpt("  ok\r\n\tall good\n"), "ok all good");
/// ```
pub fn excerpt(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(EXCERPT_CHARS)
        .collect()
}

// ---------------------------------------------------------------------------------------
// The probe
// ---------------------------------------------------------------------------------------

/// Probes `url` once: resolves the host, connects (trying each address), sends
/// `GET target HTTP/1.1` and reads the answer, all within `timeout`.
///
/// Never panics on what the network does; a host name is resolved on a helper thread so
/// that a slow resolver cannot hold the run past its timeout.
pub fn probe(url: &Url, timeout: Duration) -> Outcome {
    match run(url, timeout) {
        Ok(answer) => Outcome::Answered(answer),
        Err(failure) => Outcome::Failed(failure),
    }
}

fn run(url: &Url, timeout: Duration) -> Result<Answer, Failure> {
    let start = Instant::now();
    let deadline = start.checked_add(timeout.min(MAX_TIMEOUT)).unwrap_or(start);
    let addrs = resolve(url, deadline, timeout)?;
    let (mut stream, addr) = connect(&addrs, deadline, timeout)?;
    send(&mut stream, addr, url, deadline, timeout)?;
    receive(&mut stream, addr, deadline, timeout)
}

/// The time left before `deadline`, `None` once it has passed.
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn resolve(url: &Url, deadline: Instant, timeout: Duration) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    let timed_out = || Failure::Timeout {
        timeout,
        stage: Stage::Resolve {
            host: url.host.clone(),
        },
    };
    let left = remaining(deadline).ok_or_else(timed_out)?;
    let (tx, rx) = mpsc::channel();
    let (host, port) = (url.host.clone(), url.port);
    thread::Builder::new()
        .name("piko-obs-probe-resolve".to_owned())
        .spawn(move || {
            let found = (host.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.collect::<Vec<_>>());
            // The receiver is gone if the run timed out; nothing to do then.
            let _ = tx.send(found);
        })
        .map_err(|e| Failure::Resolve {
            host: url.host.clone(),
            error: format!("cannot start the resolver thread: {e}"),
        })?;
    match rx.recv_timeout(left) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(Failure::Resolve {
            host: url.host.clone(),
            error: "no address found".to_owned(),
        }),
        Ok(Err(e)) => Err(Failure::Resolve {
            host: url.host.clone(),
            error: e.to_string(),
        }),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(timed_out()),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Failure::Resolve {
            host: url.host.clone(),
            error: "the resolver thread stopped".to_owned(),
        }),
    }
}

/// Tries each address in turn; each gets an equal share of the time left, so an address
/// that drops packets cannot take the time of the ones after it.
fn connect(
    addrs: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), Failure> {
    let mut last = None;
    for (index, addr) in addrs.iter().enumerate() {
        let Some(left) = remaining(deadline) else {
            break;
        };
        let tries_left = u32::try_from(addrs.len() - index).unwrap_or(u32::MAX);
        let share = (left / tries_left).max(Duration::from_millis(1)).min(left);
        match TcpStream::connect_timeout(addr, share) {
            Ok(stream) => return Ok((stream, *addr)),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                last = Some(Failure::Refused { addr: *addr });
            }
            Err(e) if is_timeout(&e) => {
                last = Some(Failure::Timeout {
                    timeout,
                    stage: Stage::Connect { addr: *addr },
                });
            }
            Err(e) => {
                last = Some(Failure::Connect {
                    addr: *addr,
                    error: e.to_string(),
                });
            }
        }
    }
    Err(last.unwrap_or_else(|| Failure::Timeout {
        timeout,
        stage: Stage::Connect {
            addr: addrs
                .first()
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        },
    }))
}

fn send(
    stream: &mut TcpStream,
    addr: SocketAddr,
    url: &Url,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), Failure> {
    let timed_out = || Failure::Timeout {
        timeout,
        stage: Stage::Send { addr },
    };
    let left = remaining(deadline).ok_or_else(timed_out)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: piko-obs-probe/{VERSION}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.target,
        url.authority()
    );
    let result = stream
        .set_write_timeout(Some(left))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .and_then(|()| stream.flush());
    match result {
        Ok(()) => Ok(()),
        Err(e) if is_timeout(&e) => Err(timed_out()),
        Err(e) => Err(Failure::Send {
            addr,
            error: e.to_string(),
        }),
    }
}

fn receive(
    stream: &mut TcpStream,
    addr: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    // Why reading stopped before the answer was complete.
    let stop = loop {
        match parse_answer(&buf, false) {
            Parsed::Answer(answer) => return Ok(answer),
            Parsed::Malformed(reason) => return Err(Failure::Malformed { addr, reason }),
            Parsed::NeedMore => {}
        }
        let room = MAX_ANSWER_BYTES - buf.len();
        if room == 0 {
            break Stop::Cap;
        }
        let Some(left) = remaining(deadline) else {
            break Stop::Deadline;
        };
        if let Err(e) = stream.set_read_timeout(Some(left)) {
            break Stop::Error(e);
        }
        let want = room.min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => break Stop::Closed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => break Stop::Deadline,
            Err(e) => break Stop::Error(e),
        }
    };
    // Whatever stopped the reading, complete headers make an answer.
    match parse_answer(&buf, true) {
        Parsed::Answer(answer) => Ok(answer),
        Parsed::Malformed(reason) => Err(Failure::Malformed { addr, reason }),
        Parsed::NeedMore => Err(match stop {
            Stop::Cap => Failure::Malformed {
                addr,
                reason: format!("no end of the headers in the first {MAX_ANSWER_BYTES} bytes"),
            },
            Stop::Deadline => Failure::Timeout {
                timeout,
                stage: Stage::Answer {
                    addr,
                    received: buf.len(),
                },
            },
            Stop::Closed => Failure::Closed {
                addr,
                received: buf.len(),
            },
            Stop::Error(e) => Failure::Receive {
                addr,
                error: e.to_string(),
            },
        }),
    }
}

enum Stop {
    Cap,
    Deadline,
    Closed,
    Error(io::Error),
}

// ---------------------------------------------------------------------------------------
// Parsing the answer
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// The headers (or, when not `finished`, the body) are not complete yet.
    NeedMore,
    Answer(Answer),
    Malformed(String),
}

/// Parses the bytes read so far. With `finished`, complete headers make an answer
/// whatever the body holds; without it, the body must be complete too.
fn parse_answer(buf: &[u8], finished: bool) -> Parsed {
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        let Some((head_len, body_start)) = head_end(rest) else {
            // Reject a non-HTTP answer as soon as it shows, without waiting for more.
            return match check_first_line(rest) {
                Ok(()) => Parsed::NeedMore,
                Err(reason) => Parsed::Malformed(reason),
            };
        };
        let mut lines = rest[..head_len]
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
        let status = match parse_status_line(lines.next().unwrap_or_default()) {
            Ok(status) => status,
            Err(reason) => return Parsed::Malformed(reason),
        };
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for line in lines.filter(|line| !line.is_empty()) {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Parsed::Malformed(format!("bad header line {}", show(line)));
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                let Some(n) = parse_number(value, 10) else {
                    return Parsed::Malformed(format!("bad Content-Length {}", show(value)));
                };
                if length.is_some_and(|old| old != n) {
                    return Parsed::Malformed("two different Content-Length headers".to_owned());
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
        }
        let body = &rest[body_start..];
        if (100..200).contains(&status) && status != 101 {
            // An interim answer (100 Continue, 103 Early Hints): the real one follows.
            start += body_start;
            continue;
        }
        let (body, complete) = if status == 101 || status == 204 || status == 304 {
            (Vec::new(), true)
        } else if chunked {
            match decode_chunked(body) {
                Ok(decoded) => decoded,
                Err(reason) => return Parsed::Malformed(reason),
            }
        } else if let Some(length) = length {
            let take = usize::try_from(length).map_or(body.len(), |n| n.min(body.len()));
            (body[..take].to_vec(), body.len() as u64 >= length)
        } else {
            (body.to_vec(), false)
        };
        return if complete || finished {
            Parsed::Answer(Answer { status, body })
        } else {
            Parsed::NeedMore
        };
    }
}

/// Where the head ends: `(length of the head without its blank line, start of the body)`.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = find(buf, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = find(buf, b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Checks the start of an answer whose head is not complete yet.
fn check_first_line(buf: &[u8]) -> Result<(), String> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line = &buf[..end];
            parse_status_line(line.strip_suffix(b"\r").unwrap_or(line)).map(|_| ())
        }
        None => {
            const PREFIX: &[u8] = b"HTTP/1.";
            let n = buf.len().min(PREFIX.len());
            if buf[..n] == PREFIX[..n] {
                Ok(())
            } else {
                Err(format!("not an HTTP/1.x status line: {}", show(buf)))
            }
        }
    }
}

/// `HTTP/1.x NNN [reason]`, strictly: returns the status code.
fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let bad = || format!("not an HTTP/1.x status line: {}", show(line));
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(bad)?;
    match rest {
        [minor, b' ', a @ b'1'..=b'5', b, c, tail @ ..]
            if minor.is_ascii_digit()
                && b.is_ascii_digit()
                && c.is_ascii_digit()
                && (tail.is_empty() || tail[0] == b' ')
                && !tail.iter().any(|&t| t.is_ascii_control() && t != b'\t') =>
        {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => Err(bad()),
    }
}

/// Digits only (decimal or hexadecimal), at most 16 of them.
fn parse_number(text: &[u8], radix: u32) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    if !text.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(text, radix).ok()
}

/// Decodes as much of a chunked body as has come: `(data, whether the last chunk came)`.
fn decode_chunked(data: &[u8]) -> Result<(Vec<u8>, bool), String> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(end) = data[pos..].iter().position(|&b| b == b'\n') else {
            return Ok((out, false));
        };
        let line = &data[pos..pos + end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let Some(size) = parse_number(size_text.trim_ascii(), 16) else {
            return Err(format!("bad chunk size line {}", show(line)));
        };
        pos += end + 1;
        if size == 0 {
            return Ok((out, true));
        }
        let available = data.len() - pos;
        let Some(size) = usize::try_from(size).ok().filter(|&size| size <= available) else {
            out.extend_from_slice(&data[pos..]);
            return Ok((out, false));
        };
        out.extend_from_slice(&data[pos..pos + size]);
        pos += size;
        let tail = &data[pos..];
        if tail.starts_with(b"\r\n") {
            pos += 2;
        } else if tail.starts_with(b"\n") {
            pos += 1;
        } else if tail.is_empty() || tail == b"\r" {
            return Ok((out, false));
        } else {
            return Err("a chunk is not followed by CRLF".to_owned());
        }
    }
}

/// Up to 60 bytes, quoted and escaped, for messages.
fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]);
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_url(text: &str) -> String {
        parse_url(text).unwrap_err().message().to_owned()
    }

    fn err_duration(text: &str) -> String {
        parse_duration(text).unwrap_err().message().to_owned()
    }

    fn err_args(args: &[&str]) -> String {
        parse_args(args).unwrap_err().message().to_owned()
    }

    fn url(host: &str, port: u16, target: &str) -> Url {
        Url {
            host: host.to_owned(),
            port,
            target: target.to_owned(),
        }
    }

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url("http://127.0.0.1:9090/live").unwrap(),
            url("127.0.0.1", 9090, "/live")
        );
        assert_eq!(
            parse_url("http://example.com").unwrap(),
            url("example.com", 80, "/")
        );
        assert_eq!(
            parse_url("HTTP://Example.com:8080").unwrap(),
            url("Example.com", 8080, "/")
        );
        assert_eq!(
            parse_url("http://localhost:9090?full=1").unwrap(),
            url("localhost", 9090, "/?full=1")
        );
        assert_eq!(
            parse_url("http://[::1]:9090/ready?x=1&y=2#frag").unwrap(),
            url("::1", 9090, "/ready?x=1&y=2")
        );
        assert_eq!(
            parse_url("http://[fe80::1]/").unwrap(),
            url("fe80::1", 80, "/")
        );
        assert_eq!(
            parse_url("http://my_host-1.svc.cluster.local:65535/a/b").unwrap(),
            url("my_host-1.svc.cluster.local", 65535, "/a/b")
        );
    }

    #[test]
    fn urls_display_and_authority() {
        let v6 = parse_url("http://[::1]:9090/live").unwrap();
        assert_eq!(v6.authority(), "[::1]:9090");
        assert_eq!(v6.to_string(), "http://[::1]:9090/live");
        let v4 = parse_url("http://10.0.0.1/x?y").unwrap();
        assert_eq!(v4.authority(), "10.0.0.1");
        assert_eq!(v4.to_string(), "http://10.0.0.1/x?y");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(err_url("").starts_with("empty URL"));
        let https = err_url("https://127.0.0.1:9443/live");
        assert!(https.starts_with("https is not supported"), "{https}");
        assert!(https.contains("plain-HTTP probe port"), "{https}");
        assert!(err_url("HTTPS://x/").starts_with("https is not supported"));
        assert_eq!(
            err_url("ftp://x/"),
            "unsupported scheme \"ftp\" in \"ftp://x/\"; piko-obs-probe speaks http:// only"
        );
        assert_eq!(
            err_url("127.0.0.1:9090/live"),
            "URL \"127.0.0.1:9090/live\" has no scheme; write http://127.0.0.1:9090/live"
        );
        assert_eq!(err_url("http:///live"), "missing host in \"http:///live\"");
        assert_eq!(err_url("http://:80/"), "missing host in \"http://:80/\"");
        assert_eq!(
            err_url("http://host:/"),
            "missing port after ':' in \"http://host:/\""
        );
        for port in ["0", "65536", "+80", "8o", "-1"] {
            let text = format!("http://host:{port}/");
            assert_eq!(
                err_url(&text),
                format!("invalid port {port:?} in {text:?}: a number from 1 to 65535")
            );
        }
        assert!(err_url("http://a b/").contains("contains a space or a control character"));
        assert!(err_url("http://x/\n").contains("control character"));
        assert!(err_url("http://user:pw@host/").starts_with("user info"));
        assert!(err_url("http://::1/").starts_with("an IPv6 host goes in brackets"));
        assert!(err_url("http://[::1/").starts_with("missing ]"));
        assert!(err_url("http://[nope]/").starts_with("[nope] is not an IPv6 address"));
        assert!(err_url("http://[::1]x/").starts_with("unexpected \"x\""));
        assert!(err_url("http://ex%61mple/").starts_with("invalid host \"ex%61mple\""));
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
        assert_eq!(args.url, url("127.0.0.1", 9090, "/live"));
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
        assert_eq!(probe(&["--", "http://h/"]).url, url("h", 80, "/"));

        assert_eq!(parse_args(["--help"]).unwrap(), Command::Help);
        assert_eq!(parse_args(["http://h/", "-h"]).unwrap(), Command::Help);
        assert_eq!(parse_args(["--version"]).unwrap(), Command::Version);
        assert_eq!(parse_args(["-V"]).unwrap(), Command::Version);
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
    fn status_lines_are_strict() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable"),
            Ok(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204"), Ok(204));
        assert_eq!(parse_status_line(b"HTTP/1.1 404 "), Ok(404));
        for bad in [
            &b"HTTP/2 200 OK"[..],
            b"HTTP/1.1 200OK",
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 600 Nope",
            b"HTTP/1.1  200 OK",
            b"http/1.1 200 OK",
            b"HTTP/1.x 200 OK",
            b"HTTP/1.1 200 O\x01K",
            b"SSH-2.0-OpenSSH_9.6",
            b"",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_status_line(b"garbage").unwrap_err(),
            "not an HTTP/1.x status line: \"garbage\""
        );
    }

    fn answer(status: u16, body: &str) -> Parsed {
        Parsed::Answer(Answer {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn answers_with_content_length_end_at_the_length() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_answer(full, false), answer(200, "hello"));
        assert_eq!(
            parse_answer(&full[..full.len() - 2], false),
            Parsed::NeedMore
        );
        assert_eq!(
            parse_answer(&full[..full.len() - 2], true),
            answer(200, "hel")
        );
        // Bytes past the length are not body.
        let more = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhello";
        assert_eq!(parse_answer(more, false), answer(200, "he"));
        // Bare LF line ends are accepted.
        assert_eq!(
            parse_answer(b"HTTP/1.0 503 No\nContent-Length: 2\n\nno", false),
            answer(503, "no")
        );
    }

    #[test]
    fn answers_without_length_end_at_close() {
        let buf = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\npartial";
        assert_eq!(parse_answer(buf, false), Parsed::NeedMore);
        assert_eq!(parse_answer(buf, true), answer(200, "partial"));
        assert_eq!(
            parse_answer(b"HTTP/1.1 204 No Content\r\n\r\n", false),
            answer(204, "")
        );
    }

    #[test]
    fn chunked_answers_are_decoded() {
        let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n6;ext=1\r\npedia \r\nD\r\nin\r\n\r\nchunks.\r\n0\r\n\r\n";
        assert_eq!(
            parse_answer(buf, false),
            answer(200, "Wikipedia in\r\n\r\nchunks.")
        );
        // Cut inside the second chunk: complete headers make an answer of what came.
        let cut = &buf[..70];
        assert_eq!(parse_answer(cut, false), Parsed::NeedMore);
        assert_eq!(parse_answer(cut, true), answer(200, "Wikipedia"));
        assert_eq!(
            parse_answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                false
            ),
            Parsed::Malformed("bad chunk size line \"zz\"".to_owned())
        );
        assert_eq!(
            parse_answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
                false
            ),
            Parsed::Malformed("a chunk is not followed by CRLF".to_owned())
        );
    }

    #[test]
    fn interim_answers_are_skipped() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(parse_answer(buf, false), answer(200, "ok"));
        assert_eq!(
            parse_answer(b"HTTP/1.1 100 Continue\r\n\r\n", true),
            Parsed::NeedMore
        );
    }

    #[test]
    fn malformed_answers_are_reported_early() {
        // Not HTTP at all: rejected from the first bytes, before a newline comes.
        assert_eq!(
            parse_answer(b"SSH-2.0", false),
            Parsed::Malformed("not an HTTP/1.x status line: \"SSH-2.0\"".to_owned())
        );
        assert_eq!(parse_answer(b"HTTP/1", false), Parsed::NeedMore);
        assert_eq!(parse_answer(b"", false), Parsed::NeedMore);
        assert!(matches!(
            parse_answer(b"HTTP/1.1 OK\r\n", false),
            Parsed::Malformed(_)
        ));
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false),
            Parsed::Malformed("bad header line \"no colon\"".to_owned())
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false),
            Parsed::Malformed("bad Content-Length \"-1\"".to_owned())
        );
        assert_eq!(
            parse_answer(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Parsed::Malformed("two different Content-Length headers".to_owned())
        );
    }

    #[test]
    fn health_state_is_found_at_the_top_level_only() {
        let piko = r#"{"name":"app","state":"UNHEALTHY","message":"Readiness check found issues","timestamp":"2023-11-14T22:13:20.004500Z","duration":"1.234ms","dependencies":[{"name":"cache","state":"HEALTHY","timestamp":"2023-11-14T22:13:20.004500Z","duration":"0s"}]}"#;
        assert_eq!(health_state(piko), Some("UNHEALTHY"));
        assert_eq!(
            health_state(
                " {\n \"name\" : \"a\\\"state\\\":\\\"X\" ,\n \"state\" : \"HEALTHY\" }\n"
            ),
            Some("HEALTHY")
        );
        assert_eq!(
            health_state(
                r#"{"n":1.5,"ok":true,"x":null,"deps":{"state":"NO"},"state":"DEGRADED"}"#
            ),
            Some("DEGRADED")
        );
        assert_eq!(health_state(r#"{"deps":[{"state":"HEALTHY"}]}"#), None);
        assert_eq!(health_state(r#"{"state":42}"#), None);
        assert_eq!(health_state(r#"{"state":"has space"}"#), None);
        assert_eq!(health_state(r#"{"state":""}"#), None);
        assert_eq!(health_state(r#"["state","HEALTHY"]"#), None);
        assert_eq!(health_state(r#"{"name":"cut"#), None);
        assert_eq!(health_state("state: HEALTHY"), None);
        assert_eq!(health_state(""), None);
    }

    #[test]
    fn excerpts_are_one_line_and_capped() {
        assert_eq!(excerpt("line one\r\nline two\n"), "line one line two");
        assert_eq!(excerpt(""), "");
        assert_eq!(excerpt("a\u{0}b"), "a b");
        let long = "é".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS);
    }

    #[test]
    fn outcome_lines() {
        let ok = Outcome::Answered(Answer {
            status: 200,
            body: br#"{"name":"a","state":"HEALTHY"}"#.to_vec(),
        });
        assert_eq!(ok.to_string(), "healthy: 200 HEALTHY");
        assert_eq!(ok.exit_code(), EXIT_HEALTHY);
        let empty = Outcome::Answered(Answer {
            status: 200,
            body: Vec::new(),
        });
        assert_eq!(empty.to_string(), "healthy: 200");
        let not_found = Outcome::Answered(Answer {
            status: 404,
            body: b"404 page\nnot found\n".to_vec(),
        });
        assert_eq!(not_found.to_string(), "unhealthy: 404 404 page not found");
        assert_eq!(not_found.exit_code(), EXIT_UNHEALTHY);
        let addr = SocketAddr::from(([127, 0, 0, 1], 9090));
        assert_eq!(
            Outcome::Failed(Failure::Refused { addr }).to_string(),
            "unhealthy: connection refused to 127.0.0.1:9090"
        );
        let timeout = |stage| {
            Outcome::Failed(Failure::Timeout {
                timeout: Duration::from_secs(3),
                stage,
            })
            .to_string()
        };
        assert_eq!(
            timeout(Stage::Answer { addr, received: 0 }),
            "unhealthy: no answer within 3s from 127.0.0.1:9090"
        );
        assert_eq!(
            timeout(Stage::Answer { addr, received: 7 }),
            "unhealthy: no complete answer within 3s from 127.0.0.1:9090 (7 bytes received)"
        );
        assert_eq!(
            timeout(Stage::Connect { addr }),
            "unhealthy: no answer within 3s (connecting to 127.0.0.1:9090)"
        );
        assert_eq!(
            Outcome::Failed(Failure::Timeout {
                timeout: Duration::from_millis(1500),
                stage: Stage::Resolve {
                    host: "db".to_owned()
                },
            })
            .to_string(),
            "unhealthy: no answer within 1.5s (resolving db)"
        );
    }

    #[test]
    fn help_mentions_usage_exit_codes_and_docker() {
        let help = help_text();
        assert!(help.contains(USAGE));
        assert!(help.contains("2 usage error"));
        assert!(help.contains("HEALTHCHECK --interval=10s --timeout=3s CMD [\"/usr/local/bin/piko-obs-probe\", \"--timeout\", \"2s\", \"http://127.0.0.1:9090/live\"]"));
    }
}
