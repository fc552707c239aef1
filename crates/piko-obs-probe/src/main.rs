//! The `piko-obs-probe` binary: `piko-obs-probe [--timeout DURATION] [--quiet] URL`.
//!
//! Exits 0 when the URL answers 200, 1 otherwise, 2 on a usage error. The work is in
//! the library (`piko_obs_probe::run_cli`); see its documentation.

use std::process::ExitCode;

fn main() -> ExitCode {
    piko_obs_probe::run_cli(std::env::args_os().skip(1))
}
