//! The guide's first program, line for line: the run mode from the first argument, JSON
//! lines in prod or pretty ones in dev, then one line from the `myapp` logger.
//!
//! `LOG_LEVEL` sets the level of the program's lines (`LOG_LEVEL=error` hides
//! `Server started`), `PIKO_LOG_LEVEL` that of piko-obs's own (`Added JSON console
//! output`). Each line is printed once: the output added here takes standard output
//! over from the console output of `init()`.
//!
//! ```sh
//! cargo run -p piko-obs --example guide_first_program -- prod
//! ```

use std::process::ExitCode;

use piko_obs::RunMode;
use piko_obs::logger::{self, attr};

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "dev".to_string());
    let run_mode: RunMode = match mode.parse() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("guide_first_program: {e}");
            return ExitCode::from(2);
        }
    };
    // The one set-up call of a Rust program: its guard writes every queued line when
    // `main` returns. This program serves nothing, so no probe server.
    let _guard = match piko_obs::builder()
        .with_run_mode(run_mode)
        .with_health_enabled(false)
        .init()
    {
        Ok(g) => g,
        Err(e) => {
            eprintln!("guide_first_program: {e}");
            return ExitCode::from(2);
        }
    };
    let added = match run_mode {
        RunMode::Prod => logger::add_json_output(),
        RunMode::Dev => logger::add_pretty_output(),
    };
    if let Err(e) = added {
        eprintln!("guide_first_program: {e}");
        return ExitCode::from(2);
    }
    let log = logger::get_logger("myapp");
    log.info("Server started", &[attr::string("mode", &mode)]);
    ExitCode::SUCCESS
}
