//! `cargo xtask bench [NAME]`: runs the criterion benchmarks, then writes
//! `docs/performance.md` with each goal as a ratio of two benchmarks of the same run.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::{field, machine, median, today};
use crate::support::{Result, cargo_bench, root};

/// A goal: `numerator / denominator <= bound`, both criterion ids (`group/function`).
struct Goal {
    what: &'static str,
    numerator: &'static str,
    denominator: &'static str,
    bound: f64,
    /// What the profile shows costs the time, printed when the bound is not met.
    cause: Option<&'static str>,
}

/// The bound of a row measured for scale: rendered empty, never "not met".
const NO_BOUND: f64 = f64::INFINITY;

/// Why a row written on the caller's thread can miss its bound, from callgrind's count of
/// a release build.
const FORMAT_CAUSE: &str = "formatting itself: callgrind counts 2,022 instructions a \
    5-field line on the direct path (2,294 before the key cache, the float and time \
    changes; slog-json 2,874): the format's own code 825 (five key-cache lookups and \
    copies, time, level, source), the values 638 (the float 198), the message's escape \
    check and copy 115, the format's `memcpy` calls 99, the time's subtraction 37, the \
    hub (clock, filter, writer) 308, counted while records still read `SystemTime::now()` \
    (35 ns here), before the counter-based clock (10 ns)";

/// Why a queued row can miss its bound, from the profile of a release build.
const QUEUE_CAUSE: &str = "the queue's own cost over the direct path: the line is written \
    into the queue's buffer (two 64 KiB buffers, swapped with the writer, against a per-thread \
    buffer that stays in the first-level cache on the direct path), and the lock is taken and \
    released once a line; see where the time went, above";

struct Suite {
    name: &'static str,
    about: &'static str,
    goals: &'static [Goal],
}

const SUITES: &[Suite] = &[
    Suite {
        name: "logger",
        about: "piko-obs's logger against slog-json, slog and tracing-subscriber, compiled into one \
            benchmark binary (`tests/benches/logger.rs`) and run in the same process. Line: \
            message `request handled` plus `path` (text), `status` (int), `latency_ms` (float), \
            `cached` (bool), `elapsed` (duration). piko-obs lines also carry `logger` and the \
            `source` object, which the peers do not print. piko-obs runs in its default mode: \
            formatted on the caller's thread, written by its writer thread through the bounded \
            queue (blocking when full, so the time per line is the pipeline's). Where the \
            time went (`perf record -e cpu-clock` of the 3 bound + 2 own fields line through \
            the queue, which missed its bound in one of two runs at 0.80): reading the clock, \
            `SystemTime::now()` at 35 ns on this virtual machine, was 18-20 % of the caller's \
            samples, now 12 % (each thread reads the system clock once a millisecond and the \
            time-stamp counter in between); and the callers spent 8 % of their samples in \
            `futex` wake-ups of the writer thread, which blocked on the queue's lock each \
            batch, so the caller unlocking it had to wake it, now 0.5 % (the writer tries the \
            lock before blocking). The writer takes a batch about every 64 KiB of lines, at \
            least 50 us apart, on its own timer.",
        goals: &[
            Goal {
                what: "JSON line, message + 5 fields, to `io::sink()`, written on the caller's thread (`direct()`, as slog-json writes): at most 0.7 x raw slog-json",
                numerator: "json5_sink/piko_obs_direct",
                denominator: "json5_sink/slog_json",
                bound: 0.7,
                cause: Some(FORMAT_CAUSE),
            },
            Goal {
                what: "the same line through the default queue and writer thread: at most 0.75 x raw slog-json",
                numerator: "json5_sink/piko_obs",
                denominator: "json5_sink/slog_json",
                bound: 0.75,
                cause: Some(QUEUE_CAUSE),
            },
            Goal {
                what: "the same line through the queue, the peer printing the same `logger` and source fields",
                numerator: "json5_sink/piko_obs",
                denominator: "json5_sink/slog_json_same_content",
                bound: 1.0,
                cause: None,
            },
            Goal {
                what: "the same line through the queue: at most 0.4 x tracing-subscriber's JSON formatter",
                numerator: "json5_sink/piko_obs",
                denominator: "json5_sink/tracing_json",
                bound: 0.4,
                cause: None,
            },
            Goal {
                what: "the same line as a `tracing` event through piko-obs's bridge: at most tracing-subscriber's own JSON formatter",
                numerator: "json5_sink/piko_obs_via_tracing",
                denominator: "json5_sink/tracing_json",
                bound: 1.0,
                cause: None,
            },
            Goal {
                what: "the same line as a `tracing` event through piko-obs's layer in a `tracing_subscriber` registry: at most 0.5 x tracing-subscriber's JSON formatter",
                numerator: "json5_sink/piko_obs_via_tracing_layer",
                denominator: "json5_sink/tracing_json",
                bound: 0.5,
                cause: None,
            },
            Goal {
                what: "JSON line to a `/dev/null` file through the queue: at most slog-json behind a `LineWriter`",
                numerator: "json5_devnull/piko_obs",
                denominator: "json5_devnull/slog_json_linewriter",
                bound: 1.0,
                cause: None,
            },
            Goal {
                what: "3 bound + 2 own fields to `io::sink()`, direct: at most 0.7 x raw slog (slog-json)",
                numerator: "bound3_own2_sink/piko_obs_direct",
                denominator: "bound3_own2_sink/slog_json",
                bound: 0.7,
                cause: Some(FORMAT_CAUSE),
            },
            Goal {
                what: "3 bound + 2 own fields through the queue: at most 0.75 x raw slog (slog-json)",
                numerator: "bound3_own2_sink/piko_obs",
                denominator: "bound3_own2_sink/slog_json",
                bound: 0.75,
                cause: Some(QUEUE_CAUSE),
            },
            Goal {
                what: "3 bound + 2 own fields through the queue, the peer printing the same `logger` and source",
                numerator: "bound3_own2_sink/piko_obs",
                denominator: "bound3_own2_sink/slog_json_same_content",
                bound: 1.0,
                cause: None,
            },
            Goal {
                what: "disabled level (`debug` method, 5 fields): at most half of slog's runtime level check",
                numerator: "disabled_debug5/piko_obs_method",
                denominator: "disabled_debug5/slog_levelfilter",
                bound: 0.5,
                cause: Some(
                    "the bound is below the floor of any method taking `(&str, &[Attr])`: its caller builds the five 40-byte attributes on its stack before the call (22 stores, besides a store and a load for each of the 9 words through `black_box`), and building and handing over those same arguments with no logger at all costs more than half of slog's check (the `arguments_only` row below), while the method adds nothing measurable to them (the row after it). Fewer stores need a 32-byte attribute (key length and kind in one word), which needs `unsafe` to read back; a test build of that layout came to 0.51. The `debug!` macro checks the level before building the attributes",
                ),
            },
            Goal {
                what: "the `debug` method's own arguments (message and 5 attributes) built and handed to `black_box`, no logger: the floor of any method taking them, against slog's runtime level check (no bound)",
                numerator: "disabled_debug5/arguments_only",
                denominator: "disabled_debug5/slog_levelfilter",
                bound: NO_BOUND,
                cause: None,
            },
            Goal {
                what: "disabled level (`debug` method, 5 fields): at most 1.1 x its own arguments built with no logger (what the method adds to its floor)",
                numerator: "disabled_debug5/piko_obs_method",
                denominator: "disabled_debug5/arguments_only",
                bound: 1.1,
                cause: None,
            },
            Goal {
                what: "disabled level (`debug!` macro, 5 fields): at most half of slog's runtime level check",
                numerator: "disabled_debug5/piko_obs_macro",
                denominator: "disabled_debug5/slog_levelfilter",
                bound: 0.5,
                cause: None,
            },
            Goal {
                what: "an ERROR line with the 5 fields, the defaults (no stack trace), through the queue: at most 3 x the same line at INFO",
                numerator: "error5_sink/piko_obs_error",
                denominator: "error5_sink/piko_obs_info",
                bound: 3.0,
                cause: None,
            },
        ],
    },
    Suite {
        name: "metrics",
        about: "piko-obs's recorder (the Prometheus exporter behind piko-obs's series guard, which \
            refuses invalid names and caps label sets) against the exporter's own recorder, in \
            one benchmark binary (`tests/benches/metrics.rs`). The request middleware is \
            measured with wrk in the `metrics-http` section.",
        goals: &[
            Goal {
                what: "counter increment through a handle from piko-obs's recorder: at most 1.2 x a handle cached from the exporter's recorder",
                numerator: "counter_handle/piko_obs",
                denominator: "counter_handle/metrics_exporter",
                bound: 1.2,
                cause: None,
            },
            Goal {
                what: "`counter!` with two labels on every call (registry lookup, and the guard's check): at most 1.2 x the same macro into the exporter's recorder",
                numerator: "counter_macro/piko_obs",
                denominator: "counter_macro/metrics_exporter",
                bound: 1.2,
                cause: None,
            },
            Goal {
                what: "rendering 10,000 series, piko-obs also refreshing its process metrics: at most 1.1 x the exporter's own render",
                numerator: "render_10k/piko_obs",
                denominator: "render_10k/metrics_exporter",
                bound: 1.1,
                cause: None,
            },
        ],
    },
    Suite {
        name: "notification",
        about: "The cost of `enqueue` (the notification's time stamped, its providers \
            checked, a job queued for the dispatcher) against a bare bounded tokio channel \
            taking the same notification, both drained by consumers, in one benchmark \
            binary (`tests/benches/notification.rs`); each timed stretch is 5,000 calls, \
            then the queue drains untimed. The caller's latency while every provider is down \
            is in the `notification-down` section.",
        goals: &[Goal {
            what: "`enqueue` of a notification with 2 fields: at most 1.5 x a bare `tokio::sync::mpsc` `try_send` of it",
            numerator: "enqueue/piko_obs",
            denominator: "enqueue/tokio_mpsc",
            bound: 1.5,
            cause: None,
        }],
    },
    Suite {
        name: "otlp",
        about: "OpenTelemetry costs, exporters discarding what they get (`tests/benches/otlp.rs`): \
            `run_in_span` (a span from the installed tracer, a logger naming it, the operation \
            polled to completion, a panic seen as it unwinds through the poll) against the same async operation run with the \
            SDK alone (a span started, made current while the future runs, ended) on the same \
            executor and the same bounded processor; and a log line to a JSON output and the OTLP output (through the \
            pipeline's `BoundedLogProcessor`) inside a recording span, through the span's logger \
            with its ids bound as in `run_in_span` (the line also becomes a span event; lines come \
            in requests of 100, each a fresh span, so every span has room for its events), \
            against the same lines through the plain logger outside a span.",
        goals: &[
            Goal {
                what: "`run_in_span` start and end: at most 1.1 x a raw SDK span with the same processor",
                numerator: "span/run_in_span",
                denominator: "span/raw_sdk",
                bound: 1.1,
                cause: None,
            },
            Goal {
                what: "a log line inside a span: at most 1.3 x the same line outside one",
                numerator: "log_line/inside_span",
                denominator: "log_line/outside_span",
                bound: 1.3,
                cause: None,
            },
            Goal {
                what: "a `tracing` span (`#[instrument]`'s: created with a field, entered, exited, closed) through piko-obs's layer: at most 1.2 x tracing-opentelemetry's layer on the same SDK provider",
                numerator: "tracing_span/piko_obs_layer",
                denominator: "tracing_span/tracing_opentelemetry",
                bound: 1.2,
                cause: None,
            },
        ],
    },
];

/// How many times each benchmark process runs; the report gives the median ratio.
const RUNS: usize = 3;

/// One goal's measurements: (numerator ns, denominator ns) per run.
type Samples = Vec<(f64, f64)>;

pub(crate) fn run(only: Option<&str>) -> Result {
    let suites: Vec<&Suite> = SUITES
        .iter()
        .filter(|s| only.is_none_or(|n| n == s.name))
        .collect();
    let health = only.is_none_or(|n| n == "health");
    let metrics_http = only.is_none_or(|n| n == "metrics");
    let threads = only.is_none_or(|n| n == "logger-threads");
    let probes = only.is_none_or(|n| n == "probes");
    let startup = only.is_none_or(|n| n == "startup");
    if suites.is_empty() && !health && !threads && !probes && !startup {
        let mut names: Vec<&str> = SUITES.iter().map(|s| s.name).collect();
        names.extend(["health", "logger-threads", "probes", "startup"]);
        return Err(format!(
            "no benchmark named {:?}; choose one of {}",
            only.unwrap_or(""),
            names.join(", ")
        ));
    }
    if threads {
        let section = crate::threads::section()?;
        replace_section("logger-threads", &section)?;
    }
    if startup {
        let section = crate::startup::section()?;
        replace_section("startup", &section)?;
    }
    if probes {
        let section = crate::probes::probes()?;
        replace_section("probes", &section)?;
    }
    if health {
        let section = crate::wrk::health()?;
        replace_section("health", &section)?;
    }
    if metrics_http {
        let section = crate::wrk::metrics_http()?;
        replace_section("metrics-http", &section)?;
    }
    if suites.is_empty() {
        return Ok(());
    }
    let mut results: Vec<(&Suite, Vec<Samples>)> = Vec::new();
    let mut down: Vec<String> = Vec::new();
    for s in &suites {
        let mut samples: Vec<Samples> = vec![Vec::new(); s.goals.len()];
        for run in 1..=RUNS {
            eprintln!("xtask: bench {} run {run} of {RUNS}", s.name);
            cargo_bench(s.name)?;
            if s.name == "notification" {
                let path = root().join("target/criterion/notification_down.json");
                down.push(
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                );
            }
            for (g, out) in s.goals.iter().zip(samples.iter_mut()) {
                if let (Some(n), Some(d)) = (median_ns(g.numerator), median_ns(g.denominator)) {
                    out.push((n, d));
                }
            }
        }
        results.push((s, samples));
    }
    write_report(&results)?;
    if !down.is_empty() {
        replace_section("notification-down", &down_report(&down))?;
    }
    Ok(())
}

fn down_report(runs: &[String]) -> String {
    let col = |name: &str| runs.iter().map(|r| field(r, name)).collect::<Vec<_>>();
    let max = |name: &str| col(name).into_iter().fold(f64::NAN, f64::max);
    let sum = |name: &str| col(name).iter().sum::<f64>();
    let p99 = median(col("p99_ns"));
    let p999 = median(col("p999_ns"));
    let mut md = String::from("## notification-down\n\n");
    md.push_str(
        "10,000 `enqueue` calls in a row while the only provider refuses connections \
         (`tests/benches/notification.rs`, `all_down`): the queue (1,000) fills, failed \
         attempts wait for their retries, the overflow goes to the dead-letter writer \
         (10,000 waiting, written in groups with one fsync each). `enqueue` never waits: a \
         full queue sends to the dead-letter writer, and a full writer counts a drop. It \
         reads the queue's sender without a lock, moves the notification into the \
         writer's lock-free ring (allocated once) and allocates nothing; the service has \
         defaults (source, environment, service), filled in later by the worker or the \
         writer.\n\n\
         Each call is timed alone, and the thread's context switches are read around it \
         (`getrusage(RUSAGE_THREAD)`): a voluntary switch means the call slept (waited for \
         a lock, ours or the allocator's, or for anything else), an involuntary one that \
         the machine took the core away in its middle, which no call can prevent. The \
         bounds: no call sleeps, and no call that was not preempted takes over 1 ms \
         (the worst of all runs). The peer, a bare `try_send` of the same notification \
         into a tokio channel of the same size drained by a task, is timed the same way \
         in the same loop (the two alternate which goes first), so it meets the same \
         scheduler and the same allocator. Percentiles: the median of the runs'.\n\n",
    );
    md.push_str("| goal | measured | bound | result |\n|---|---:|---:|---|\n");
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    let mut goal = |what: &str, v: String, bound: String, ok: bool| {
        let _ = writeln!(md, "| {what} | {v} | {bound} | {} |", verdict(ok));
    };
    let slept = sum("slept");
    goal(
        "`enqueue` calls in which the caller slept, all runs",
        format!("{slept:.0}"),
        "0".into(),
        slept == 0.0,
    );
    let undisturbed = max("max_undisturbed_ns");
    goal(
        "worst `enqueue` call that was not preempted, all runs",
        fmt_ns(undisturbed),
        fmt_ns(1_000_000.0),
        undisturbed <= 1_000_000.0,
    );
    goal(
        "99th percentile of `enqueue` latency, every provider down",
        fmt_ns(p99),
        fmt_ns(50_000.0),
        p99 <= 50_000.0,
    );
    goal(
        "99.9th percentile of `enqueue` latency, every provider down",
        fmt_ns(p999),
        fmt_ns(1_000_000.0),
        p999 <= 1_000_000.0,
    );
    let dropped = sum("dropped");
    goal(
        "notifications dropped (all others were queued or dead-lettered)",
        format!("{dropped:.0}"),
        "0".into(),
        dropped == 0.0,
    );
    let count = |v: f64| {
        if v.is_nan() {
            "not measured".to_string()
        } else {
            format!("{v:.0}")
        }
    };
    let each =
        |f: &dyn Fn(&str) -> String| runs.iter().map(|r| f(r)).collect::<Vec<_>>().join(", ");
    let pair = |ours: &str, peer: &str, f: &dyn Fn(f64) -> String| {
        each(&|r| format!("{} ({})", f(field(r, ours)), f(field(r, peer))))
    };
    let rows = [
        (
            "99th and 99.9th percentiles of the peer",
            format!(
                "{} and {}",
                fmt_ns(median(col("peer_p99_ns"))),
                fmt_ns(median(col("peer_p999_ns")))
            ),
        ),
        (
            "calls that slept, each run: `enqueue` (peer)",
            pair("slept", "peer_slept", &count),
        ),
        (
            "calls preempted, each run: `enqueue` (peer)",
            pair("preempted", "peer_preempted", &count),
        ),
        (
            "worst call not preempted, each run: `enqueue` (peer)",
            pair("max_undisturbed_ns", "peer_max_undisturbed_ns", &fmt_ns),
        ),
        (
            "worst call of each run, preempted or not: `enqueue` (peer)",
            pair("max_ns", "peer_max_ns", &fmt_ns),
        ),
        (
            "calls over 1 ms in each run: `enqueue` (peer)",
            pair("over_1ms", "peer_over_1ms", &count),
        ),
    ];
    for (what, value) in rows {
        let _ = writeln!(md, "| {what} | {value} | | |");
    }
    let _ = writeln!(md, "\nMeasured {} on {}.", today(), machine());
    md
}

/// Where criterion writes its estimates: `criterion` in the target folder, which is
/// `CARGO_TARGET_DIR` when set (as cargo and criterion read it), else `target`.
fn criterion_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), |d| root().join(d));
    target.join("criterion")
}

/// Criterion's median estimate for `id`, in nanoseconds.
fn median_ns(id: &str) -> Option<f64> {
    let path = criterion_dir().join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let at = text.find("\"median\"")?;
    let rest = &text[at..];
    let p = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let num: String = rest[p..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    num.parse().ok()
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

fn bound_cell(bound: f64) -> String {
    if bound.is_infinite() {
        String::new()
    } else {
        format!("{bound:.2}")
    }
}

fn write_report(results: &[(&Suite, Vec<Samples>)]) -> Result {
    for (s, samples) in results {
        let mut md = String::new();
        let _ = writeln!(md, "## {}\n\n{}\n", s.name, s.about);
        md.push_str(
            "| goal | piko-obs | peer | ratio (median) | range | bound | result |\n|---|---:|---:|---:|---:|---:|---|\n",
        );
        for (g, runs) in s.goals.iter().zip(samples) {
            if runs.is_empty() {
                let _ = writeln!(
                    md,
                    "| {} (`{}` / `{}`) | - | - | - | - | {} | not measured |",
                    g.what,
                    g.numerator,
                    g.denominator,
                    bound_cell(g.bound)
                );
                continue;
            }
            let ratios: Vec<f64> = runs.iter().map(|(n, d)| n / d).collect();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            let ratio = median(ratios);
            let n = median(runs.iter().map(|r| r.0).collect());
            let d = median(runs.iter().map(|r| r.1).collect());
            let _ = writeln!(
                md,
                "| {} (`{}` / `{}`) | {} | {} | {:.2} | {:.2}-{:.2} | {} | {} |",
                g.what,
                g.numerator,
                g.denominator,
                fmt_ns(n),
                fmt_ns(d),
                ratio,
                lo,
                hi,
                bound_cell(g.bound),
                match (ratio <= g.bound, g.cause) {
                    _ if g.bound.is_infinite() => String::new(),
                    (true, _) => "met".to_string(),
                    (false, Some(cause)) => format!("**not met**: {cause}"),
                    (false, None) => "**not met**".to_string(),
                }
            );
        }
        let _ = writeln!(md, "\nMeasured {} on {}.", today(), machine());
        replace_section(s.name, &md)?;
    }
    Ok(())
}

const HEADER: &str = "# Performance\n\nWritten by `cargo xtask bench [NAME]`; do not edit by hand. Each section is \
rewritten when its benchmark runs, and keeps the machine and date it was measured on. Every goal \
is a ratio of two measurements taken in the same run (criterion medians, or wrk rounds \
alternating between the two servers), because this class of machine is shared and noisy: \
absolute figures move 10-30 % between runs, ratios much less. Benchmark processes run several \
times; the tables give the median ratio and the range, and a goal is met when the median \
ratio is within its bound. Ratio changes under about 15 % are noise.\n";

/// Replaces (or appends) the `## name` section of docs/performance.md.
pub(crate) fn replace_section(name: &str, section: &str) -> Result {
    let path = root().join("docs/performance.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut sections: Vec<(String, String)> = Vec::new();
    for chunk in old.split("\n## ").skip(1) {
        let title = chunk.lines().next().unwrap_or("").trim().to_string();
        sections.push((title, format!("## {}", chunk.trim_end())));
    }
    let new = section.trim_end().to_string();
    match sections.iter_mut().find(|(t, _)| t == name) {
        Some(slot) => slot.1 = new,
        None => sections.push((name.to_string(), new)),
    }
    let order = |t: &str| match t {
        "logger" => 0,
        "logger-threads" => 1,
        "health" => 2,
        "probes" => 3,
        "startup" => 4,
        "metrics" => 5,
        "metrics-http" => 6,
        "notification" => 7,
        "notification-down" => 8,
        "otlp" => 9,
        _ => 10,
    };
    sections.sort_by_key(|(t, _)| order(t));
    let mut md = String::from(HEADER);
    for (_, body) in &sections {
        md.push('\n');
        md.push_str(body);
        md.push('\n');
    }
    write_file(&path, &md)?;
    eprintln!("xtask: wrote the {name} section of {}", path.display());
    print!("{section}");
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
