//! The `piko-obs-probe` binary: `piko-obs-probe [--timeout DURATION] [--quiet] URL`.
//!
//! Exits 0 when the URL answers 200, 1 otherwise, 2 on a usage error. The work is in
//! the library (`piko_obs_probe`); see its documentation.

use std::io::{self, Write};
use std::process::ExitCode;

use piko_obs_probe::{Command, EXIT_USAGE, USAGE, VERSION, help_text, parse_args, probe};

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(raw) => return usage_error(&format!("argument {raw:?} is not valid UTF-8")),
        }
    }
    match parse_args(&args) {
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
