//! The example service of the guide "How to monitor a production deployment".
//!
//! `monitor dev` (the default) writes pretty console lines, `monitor prod` JSON lines.
//! It logs `Server started` with the run mode, then runs until SIGTERM or SIGINT, and
//! shuts down in order, writing every queued line.
//!
//! Environment: `PIKO_LOG_LEVEL` (framework level, default info), `LOG_LEVEL` (levels of
//! outputs added in code), `NO_COLOR` / `FORCE_COLOR` (console colours),
//! `PIKO_DISABLE_CONSOLE_LOG=true` (no console output).

use std::process::ExitCode;

use piko_obs::logger::{self, attr};
use piko_obs::{PikoObs, RunMode};

const USAGE: &str = "usage: monitor [dev|prod] [--help]

Runs the piko-obs example service until SIGTERM or SIGINT.

  dev    pretty, coloured console lines (default)
  prod   JSON lines

Environment:
  PIKO_LOG_LEVEL            framework log level or directives (default info)
  LOG_LEVEL                 level of outputs added in code (default info)
  NO_COLOR, FORCE_COLOR     console colours in dev mode
  PIKO_DISABLE_CONSOLE_LOG  set to true to turn the console output off";

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("--help" | "-h")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let mode: RunMode = match arg.as_deref().unwrap_or("dev").parse() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("monitor: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let guard = match PikoObs::builder().with_run_mode(mode).init() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("monitor: {e}");
            return ExitCode::from(2);
        }
    };
    let log = logger::get_logger("monitor");
    log.notice("Server started", &[attr::string("mode", mode.as_str())]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let signal = runtime.block_on(wait_for_signal());
    log.notice("Server stopping", &[attr::string("signal", signal)]);
    if let Err(e) = guard.shutdown() {
        eprintln!("monitor: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
