//! Project automation, run as `cargo xtask <command>`:
//!
//! - `ci`: format check, `cargo deny check licenses bans sources` (when cargo-deny is
//!   installed), clippy with `-D warnings`, docs with `-D warnings`, every test, then
//!   `integration` and `deploy`;
//! - `integration [WORD]`: (only the checks whose name holds WORD) the toolkit against real third-party programs and peers: the example
//!   service's JSON lines read by `jq`, rotated log files read by `gzip`, its readiness
//!   probed by Debian's `prometheus-blackbox-exporter`, its `/metrics` checked by
//!   `promtool` and scraped by a Prometheus server, the guide's Prometheus configuration
//!   checked by `promtool`, its alerts received by a sink per provider variable (the
//!   webhook's Standard Webhooks signature verified by `openssl`), its three OpenTelemetry
//!   signals by an OTLP receiver, its Sentry events by a Sentry endpoint, a run given
//!   secrets searched for them, three replicas alerting through Debian's
//!   `prometheus-alertmanager` (one instance, an HA pair, stopped and back), the shipped
//!   Alertmanager configuration checked by `amtool`, and every other example run and
//!   checked;
//! - `deploy`: the operator's kit in `deploy/` and the `Dockerfile`, each file checked by
//!   a real tool: `kubernetes-validate --strict`, a JSON schema for the Prometheus
//!   Operator monitors, `promtool check config|rules` and `promtool test rules`, the
//!   Grafana dashboard's expressions parsed by promtool and matched against the example's
//!   `/metrics`, the image's `HEALTHCHECK` command run against the example, the example
//!   with its probes moved by `PIKO_HEALTH_*` and with an unwritable `HOME`;
//! - `soak [--minutes N]`: the example service under load for N minutes (default 10)
//!   while its OTLP collector, Sentry endpoint and webhook stop, hang and come back; then
//!   the accounting of requests, log lines, spans, events and alerts, and its memory;
//! - `fuzz [--minutes N] [--cases C]`: the fuzz targets in rounds of C cases per property
//!   (default 100,000), each round with a new seed, until N minutes are spent (default
//!   60); then the runs, cases and time per property;
//! - `bench [NAME]`: the benchmarks (`logger` with criterion, `logger-threads` with its own
//!   harness, `health` and `probes` with wrk, `startup`, `metrics` with criterion and wrk,
//!   `notification` and `otlp` with criterion), all or the one named, then their sections
//!   of `docs/performance.md`;
//! - `buildtime`: the clean build time and crate count of the facade with the logger
//!   only, of the full facade and of `tracing-subscriber` with `json`, each in a fresh
//!   target directory, into the `build time` section of `docs/performance.md`;
//! - `facade-size [--check]`: the facade's code lines outside tests (neither blank nor a
//!   comment) and its longest function, against the thin-facade targets (800 lines, 60 a function; `ci` fails past the
//!   ones met); with `--check`, fails past both.

//!
//! The modules depend one way: `main` dispatches to the commands (`ci`, `integration`,
//! `deploy`, `soak`, `fuzz`, `bench`, `buildtime`, `facade-size`); `ci` runs `integration`,
//! `deploy`, the checks of `features` and `facade_size`; `integration` runs the checks of `examples`, `secrets`
//! and `alertmanager`; those and `deploy` start the example service and run named checks
//! through `monitor`; `bench` runs the wrk comparisons of `wrk`; `buildtime` writes its
//! section with `bench`'s writer; all of them use `support` (programs, ports, and the
//! testkit's HTTP GET and webhook sink) and the reports use `report` (date, machine,
//! median), which use nothing else of the xtask.

use std::process::ExitCode;

mod alertmanager;
mod bench;
mod buildtime;
mod ci;
mod deploy;
mod examples;
mod facade_size;
mod features;
mod fuzz;
mod integration;
mod monitor;
mod probes;
mod report;
mod secrets;
mod soak;
mod startup;
mod support;
mod threads;
mod wrk;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run_all(),
        Some("integration") => integration::run(),
        Some("deploy") => deploy::run(),
        Some("soak") => soak::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("bench") => bench::run(args.get(1).map(String::as_str)),
        Some("buildtime") => buildtime::run(),
        Some("facade-size") => {
            let check = args.get(1).is_some_and(|a| a == "--check");
            facade_size::run(facade_size::Limits {
                lines: check,
                function: check,
            })
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | integration [WORD] | deploy | soak [--minutes N] | fuzz [--minutes N] [--cases C] | bench [logger | logger-threads | health | probes | startup | metrics | notification | otlp] | buildtime | facade-size [--check]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
