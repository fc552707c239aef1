//! A small program the facade tests run as a child process, so that each scenario gets
//! a fresh process environment and fresh global state.
//!
//! `log_probe SCENARIO [ARG]`, where SCENARIO is one of:
//! - `framework [LEVEL]`: prod console at `with_log_level(LEVEL)` (or `PIKO_LOG_LEVEL`),
//!   then one line per level from loggers `app` and `app/db`;
//! - `output [LEVEL]`: no console; `add_json_output` (with `with_level(LEVEL)` if given,
//!   else `LOG_LEVEL`), then the same lines;
//! - `flood N`: prod console, N lines from 4 threads, then `main` returns (the guard drops);
//! - `bridge`: records through the `log` crate;
//! - `tracing`: events through the `tracing` crate;
//! - `badfile PATH`: tries `add_file_output(PATH)` and prints the error;
//! - `rotate DIR`: 2,000 JSON lines into DIR/app.log, rotated every 16 KiB and gzipped,
//!   keeping every backup;
//! - `threads DIR`: console plus a file output in DIR, logs, shuts down, then prints the
//!   names of the threads still running, one per line;
//! - `stdout-first`: `add_json_output` before a prod `init()`, then one line;
//! - `stdout-twice`: `add_json_output`, then `add_pretty_output`, whose error it prints;
//! - `tracing-app-layer`: the program's own `tracing` registry with piko-obs's layer
//!   installed first, then a prod `init()` and an event;
//! - `tracing-app-own`: the program's own `tracing` subscriber without the layer
//!   installed first (writing to stderr), then a prod `init()` and an event;
//! - `otlp [ENDPOINT]`: `init()` with OTLP from the `OTEL_*` variables, and in code the
//!   endpoint ENDPOINT (if given) with `with_otlp_enabled(true)` and the header
//!   `authorization: code` (`PROBE_CODE_HEADER=1`) and no compression
//!   (`PROBE_CODE_NO_COMPRESSION=1`); then a span with a log line inside
//!   and a counter, and a shutdown; prints `init: ok` or `init: <error>`, then
//!   `propagated: NAMES`, the headers the installed propagators carry on from an
//!   incoming `traceparent` and `baggage`;
//! - `console`: a prod `init()` (JSON lines on stdout) with OTLP from the `OTEL_*`
//!   variables only, then, as a child of the incoming trace
//!   `4bf92f3577b34da6a3ce929d0e0e4736`, the span `console probe span` with the line
//!   `inside the console probe span`, the counter `console_probe_runs_total`, and a
//!   shutdown; prints `init: ok` or `init: <error>`;
//! - `sampled`: `init()` with OTLP from the `OTEL_*` variables only, no console, a
//!   wait of 1 s (for a remote sampler's first strategy), five root spans
//!   `sampled probe span`, and a shutdown; prints `init: ok` or `init: <error>`;
//! - `sdk-diagnostics`: a prod `init()` (JSON lines on stdout) with OTLP from the
//!   `OTEL_*` variables only, a span, and a shutdown whose error it prints (an exporter
//!   pointed at a closed port fails, and the SDK says so through `tracing`).

use std::process::ExitCode;

use piko_obs::RunMode;
use piko_obs::logger::{self, Level, OutputOptions, attr};

/// `init()`, printing `init: ok`, or `init: <error>` and giving `None`.
fn init_printed(b: piko_obs::Builder) -> Option<piko_obs::Guard> {
    match b.init() {
        Ok(g) => {
            println!("init: ok");
            Some(g)
        }
        Err(e) => {
            println!("init: {e}");
            None
        }
    }
}

/// An incoming request's headers: the `traceparent` of trace
/// `4bf92f3577b34da6a3ce929d0e0e4736`, and `baggage`.
fn incoming() -> axum::http::HeaderMap {
    let mut incoming = axum::http::HeaderMap::new();
    incoming.insert(
        "traceparent",
        axum::http::HeaderValue::from_static(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    );
    incoming.insert(
        "baggage",
        axum::http::HeaderValue::from_static("tenant=acme"),
    );
    incoming
}

fn each_level() {
    for name in ["app", "app/db"] {
        let log = logger::get_logger(name);
        for level in Level::ALL {
            log.log(level, "probe", &[attr::string("at", &level.to_string())]);
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_default();
    let arg = args.next();
    match scenario.as_str() {
        "framework" => {
            let mut b = piko_obs::builder()
                .with_health_enabled(false)
                .with_run_mode(RunMode::Prod);
            if let Some(l) = arg {
                b = b.with_log_level(l);
            }
            let _guard = match b.init() {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            each_level();
        }
        "output" => {
            let _guard = piko_obs::builder()
                .with_health_enabled(false)
                .with_console_output(false)
                .init()
                .expect("init");
            let options = match arg {
                Some(l) => OutputOptions::default().with_level(l),
                None => OutputOptions::default(),
            };
            if let Err(e) = logger::add_json_output_with(options) {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            each_level();
        }
        "flood" => {
            let n: usize = arg.and_then(|a| a.parse().ok()).unwrap_or(10_000);
            let _guard = piko_obs::builder()
                .with_health_enabled(false)
                .with_run_mode(RunMode::Prod)
                .init()
                .expect("init");
            std::thread::scope(|s| {
                for t in 0..4 {
                    s.spawn(move || {
                        let log = logger::get_logger("flood");
                        for i in (t..n).step_by(4) {
                            log.info("line", &[attr::uint("i", i as u64)]);
                        }
                    });
                }
            });
        }
        "bridge" => {
            let _guard = piko_obs::builder()
                .with_health_enabled(false)
                .with_run_mode(RunMode::Prod)
                .with_log_level("info,chatty=error")
                .init()
                .expect("init");
            let cause = std::io::Error::other("peer reset");
            log::info!(target: "hyper::proto", peer = "127.0.0.1", port = 8080, tls = true, ratio = 0.5; "connection {} accepted", 7);
            log::debug!(target: "hyper::proto", "hidden at info");
            log::warn!(target: "chatty", "hidden below error");
            log::error!(target: "chatty", error:err = cause; "shown at error");
        }
        "tracing" => {
            let _guard = piko_obs::builder()
                .with_health_enabled(false)
                .with_run_mode(RunMode::Prod)
                .with_log_level("info,sqlx=warn")
                .init()
                .expect("init");
            let err = std::io::Error::other("pool closed");
            tracing::info!(target: "tower_http::trace", status = 200, latency_ms = 1.5, path = "/orders", "finished processing request");
            tracing::debug!(target: "tower_http::trace", "hidden at info");
            tracing::info!(target: "sqlx::query", "hidden below warn");
            tracing::error!(target: "sqlx::pool", error = &err as &(dyn std::error::Error + 'static), "acquire failed");
            let span = tracing::info_span!("request", id = 7);
            let _entered = span.enter();
            tracing::warn!(target: "app", retry = true, "inside a span");
        }
        "badfile" => {
            let path = arg.unwrap_or_default();
            match logger::add_file_output(&path) {
                Ok(_) => println!("opened"),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            }
        }
        "rotate" => {
            let dir = std::path::PathBuf::from(arg.unwrap_or_default());
            let guard = piko_obs::builder()
                .with_health_enabled(false)
                .with_console_output(false)
                .init()
                .expect("init");
            let rotation = logger::RotationOptions {
                max_size_bytes: 16 * 1024,
                max_backups: 0,
                max_age: None,
                compress: true,
            };
            logger::add_file_output_with(
                dir.join("app.log"),
                OutputOptions::default().with_json().with_rotation(rotation),
            )
            .expect("file output");
            let log = logger::get_logger("rotate");
            for i in 0..2000u64 {
                log.info("rotating", &[attr::uint("i", i)]);
            }
            guard.shutdown().expect("shutdown");
        }
        "threads" => {
            let dir = std::path::PathBuf::from(arg.unwrap_or_default());
            let guard = piko_obs::builder()
                .with_health_enabled(false)
                .with_run_mode(RunMode::Prod)
                .init()
                .expect("init");
            logger::add_file_output(dir.join("app.log")).expect("file output");
            logger::get_logger("t").info("before shutdown", &[]);
            guard.shutdown().expect("shutdown");
            // The threads still alive after the shutdown, by name.
            let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
            for task in tasks.flatten() {
                let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                println!("thread {}", name.trim());
            }
        }
        "stdout-first" => {
            logger::add_json_output().expect("json output");
            let _guard = piko_obs::builder()
                .with_health_enabled(false)
                .with_run_mode(RunMode::Prod)
                .init()
                .expect("init");
            logger::get_logger("app").info("once", &[]);
        }
        "stdout-twice" => {
            let _guard = piko_obs::builder()
                .with_health_enabled(false)
                .with_run_mode(RunMode::Prod)
                .init()
                .expect("init");
            logger::add_json_output().expect("json output");
            if let Err(e) = logger::add_pretty_output() {
                eprintln!("{e}");
            }
            logger::get_logger("app").info("once", &[]);
        }
        "tracing-app-layer" | "tracing-app-own" => {
            use tracing_subscriber::layer::SubscriberExt as _;
            let installed = if scenario == "tracing-app-layer" {
                tracing::subscriber::set_global_default(
                    tracing_subscriber::registry().with(logger::tracing_layer()),
                )
            } else {
                tracing::subscriber::set_global_default(
                    tracing_subscriber::fmt()
                        .with_writer(std::io::stderr)
                        .finish(),
                )
            };
            installed.expect("the program's subscriber");
            let _guard = piko_obs::builder()
                .with_health_enabled(false)
                .with_run_mode(RunMode::Prod)
                .init()
                .expect("init() with the program's subscriber installed");
            tracing::info!(target: "app", order_id = 7, "through the program's subscriber");
        }
        "otlp" => {
            let mut b = piko_obs::builder()
                .with_console_output(false)
                .with_health_enabled(false)
                .with_otlp_metric_interval(std::time::Duration::from_millis(100));
            if let Some(endpoint) = arg {
                b = b.with_otlp_endpoint(endpoint).with_otlp_enabled(true);
            }
            if std::env::var("PROBE_CODE_HEADER").is_ok() {
                b = b.with_otlp_headers([("authorization", "code")]);
            }
            if std::env::var("PROBE_CODE_NO_COMPRESSION").is_ok() {
                b = b.with_otlp_compression(piko_obs::otlp::Compression::None);
            }
            let Some(guard) = init_printed(b) else {
                return ExitCode::SUCCESS;
            };
            // Carried on by the propagators installed, with export on or off.
            let mut outgoing = axum::http::HeaderMap::new();
            piko_obs::otlp::inject_context(
                &piko_obs::otlp::extract_context(&incoming()),
                &mut outgoing,
            );
            let mut names: Vec<&str> = outgoing.keys().map(|k| k.as_str()).collect();
            names.sort_unstable();
            println!("propagated: {}", names.join(","));
            tracing::info_span!("probe span").in_scope(|| {
                tracing::info!(target: "app", "inside the probe span");
            });
            metrics::counter!("probe_runs_total").increment(1);
            guard.shutdown().expect("shutdown");
        }
        "console" => {
            let b = piko_obs::Builder::default()
                .with_run_mode(RunMode::Prod)
                .with_health_enabled(false)
                .with_otlp_metric_interval(std::time::Duration::from_millis(100));
            let Some(guard) = init_printed(b) else {
                return ExitCode::SUCCESS;
            };
            let parent = piko_obs::otlp::extract_context(&incoming());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime for the span");
            runtime
                .block_on(piko_obs::otlp::run_in_span_from(
                    &parent,
                    &logger::get_logger("app"),
                    "console probe span",
                    Vec::new(),
                    |log| async move {
                        log.info("inside the console probe span", &[]);
                        Ok::<(), std::io::Error>(())
                    },
                ))
                .expect("the span's work");
            metrics::counter!("console_probe_runs_total").increment(1);
            guard.shutdown().expect("shutdown");
        }
        "sampled" => {
            let b = piko_obs::builder()
                .with_console_output(false)
                .with_health_enabled(false);
            let Some(guard) = init_printed(b) else {
                return ExitCode::SUCCESS;
            };
            // The remote sampler's first fetch starts with the pipeline: let it answer.
            std::thread::sleep(std::time::Duration::from_secs(1));
            for _ in 0..5 {
                tracing::info_span!("sampled probe span").in_scope(|| {});
            }
            guard.shutdown().expect("shutdown");
        }
        "sdk-diagnostics" => {
            let b = piko_obs::Builder::default()
                .with_run_mode(RunMode::Prod)
                .with_health_enabled(false);
            let Some(guard) = init_printed(b) else {
                return ExitCode::SUCCESS;
            };
            tracing::info_span!("diagnostics probe span").in_scope(|| {
                tracing::info!(target: "app", "inside the diagnostics probe span");
            });
            if let Err(e) = guard.shutdown() {
                println!("shutdown: {e}");
            }
        }
        other => {
            eprintln!("unknown scenario {other:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
