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
//! The binary is a thin wrapper over [`run_cli`]. A program that wants the check without
//! the command line calls [`probe`] with a [`Url`] from [`parse_url`] and a timeout (from
//! [`parse_duration`] if it is text), and gets an [`Outcome`]: an [`Answer`] or a
//! [`Failure`].
//!
//! The crate's modules follow the run: `args` (the command line), `url` (the URL),
//! `http` (one `GET` within a deadline) and `report` (the outcome and its line).
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

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

mod args;
mod http;
mod report;
mod url;

pub use args::{UsageError, parse_duration};
pub use http::probe;
pub use report::{Answer, Failure, Outcome, Stage};
pub use url::{Url, parse_url};

use args::{Command, EXIT_USAGE, USAGE, help_text, parse_args};

/// The version of this crate, sent in the `User-Agent` header.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the command line `args` (without the program name) as the `piko-obs-probe`
/// binary does: prints the line on stdout (unless `--quiet`), or a usage error on stderr,
/// and returns the exit code (0 on `200`, 1 otherwise, 2 on a usage error).
///
/// A closed stdout or stderr does not change the exit code.
pub fn run_cli<I>(args: I) -> ExitCode
where
    I: IntoIterator<Item = OsString>,
{
    let mut texts = Vec::new();
    for arg in args {
        match arg.into_string() {
            Ok(arg) => texts.push(arg),
            Err(raw) => return usage_error(&format!("argument {raw:?} is not valid UTF-8")),
        }
    }
    match parse_args(&texts) {
        Ok(Command::Help) => {
            print_line(&help_text());
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            print_line(&format!("piko-obs-probe {VERSION}"));
            ExitCode::SUCCESS
        }
        Ok(Command::Probe(args)) => {
            let outcome = probe(&args.url, args.timeout);
            if !args.quiet {
                print_line(&outcome.to_string());
            }
            ExitCode::from(outcome.exit_code())
        }
        Err(error) => usage_error(error.message()),
    }
}

/// Prints one line on stdout; a closed stdout must not turn the exit code into a panic.
fn print_line(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn usage_error(message: &str) -> ExitCode {
    let _ = writeln!(
        io::stderr().lock(),
        "piko-obs-probe: {message}\n{USAGE}\n(--help for more)"
    );
    ExitCode::from(EXIT_USAGE)
}
