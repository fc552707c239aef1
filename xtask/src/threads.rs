//! `cargo xtask bench logger-threads`: many threads logging into one output
//! (`tests/benches/logger_threads.rs`), run in several processes; the section of
//! `docs/performance.md` with lines per second against the peers, the lines each lost,
//! and where piko-obs's time goes.

use std::fmt::Write as _;

use crate::report::{field, load_average, machine, median, today};
use crate::support::{Result, cargo_bench, root};

/// Benchmark processes.
const RUNS: usize = 3;
const THREADS: [u32; 4] = [1, 2, 4, 8];
/// piko-obs must write at least this many times the faster lossless peer's lines/s.
const BOUND: f64 = 1.5;

/// One measurement line of the benchmark.
struct Row {
    run: usize,
    round: u32,
    threads: u32,
    imp: String,
    sent: f64,
    written: f64,
    writes: f64,
    lines_per_s: f64,
}

fn text_field(json: &str, name: &str) -> String {
    json.split(&format!("\"{name}\":\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// Runs the benchmark [`RUNS`] times and returns the section.
pub(crate) fn section() -> Result<String> {
    let mut rows = Vec::new();
    let mut loads = Vec::new();
    for run_no in 1..=RUNS {
        eprintln!("xtask: bench logger-threads run {run_no} of {RUNS}");
        let before = load_average();
        cargo_bench("logger_threads")?;
        loads.push((before, load_average()));
        let path = root().join("target/criterion/logger_threads.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for l in text.lines() {
            rows.push(Row {
                run: run_no,
                round: field(l, "round") as u32,
                threads: field(l, "threads") as u32,
                imp: text_field(l, "imp"),
                sent: field(l, "sent"),
                written: field(l, "written"),
                writes: field(l, "writes"),
                lines_per_s: field(l, "lines_per_s"),
            });
        }
    }
    Ok(report(&rows, &loads))
}

/// The measurement of `imp` in the same run, round and thread count as `r`.
fn peer<'a>(rows: &'a [Row], r: &Row, imp: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|p| p.run == r.run && p.round == r.round && p.threads == r.threads && p.imp == imp)
}

/// Median ratio over every round of every run, and the range of the runs' medians.
fn ratio_stats(rows: &[Row], threads: u32, f: impl Fn(&Row) -> Option<f64>) -> (f64, f64, f64) {
    let mine = |run: Option<usize>| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.imp == "piko_obs" && r.threads == threads)
            .filter(|r| run.is_none_or(|n| r.run == n))
            .filter_map(&f)
            .collect()
    };
    let per_run: Vec<f64> = (1..=RUNS)
        .map(|n| mine(Some(n)))
        .filter(|v| !v.is_empty())
        .map(median)
        .collect();
    let lo = per_run.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = per_run.iter().copied().fold(0.0, f64::max);
    (median(mine(None)), lo, hi)
}

/// The median of one measure of `imp` at `threads`.
fn median_of(rows: &[Row], imp: &str, threads: u32, f: impl Fn(&Row) -> f64) -> f64 {
    median(
        rows.iter()
            .filter(|r| r.imp == imp && r.threads == threads)
            .map(f)
            .collect(),
    )
}

fn lost(rows: &[Row], imp: &str, threads: u32) -> (f64, f64) {
    let (sent, written) = rows
        .iter()
        .filter(|r| r.imp == imp && r.threads == threads)
        .fold((0.0, 0.0), |(s, w), r| (s + r.sent, w + r.written));
    (sent - written, sent)
}

fn kilo(v: f64) -> String {
    format!("{:.0} k", v / 1000.0)
}

fn report(rows: &[Row], loads: &[(f64, f64)]) -> String {
    let mut md = String::from("## logger-threads\n\n");
    md.push_str(
        "Many threads, one output (`tests/benches/logger_threads.rs`): 1, 2, 4 and 8 threads \
         each log the 5-field JSON line of the `logger` section to one `/dev/null` file, \
         120,000 lines a measurement shared between the threads; the clock runs from the \
         threads' start until the output has written every line it will write and stopped. \
         piko-obs in its default mode (lossless: a caller waits for room, at most 1 s) \
         against `tracing-appender`'s `non_blocking` writer under tracing-subscriber's JSON \
         formatter and `slog-async` in front of slog-json (behind a `LineWriter`), each in \
         its lossless setting (`lossy(false)`, `OverflowStrategy::Block`) and its default \
         one (lossy, a 128,000-line queue; `DropAndReport`, a 128-record channel). The \
         destination counts the lines and `write` calls reaching it: a line sent and never \
         written is lost, and lines per `write` is the writer's batching. Every \
         implementation runs at every thread count in each of 5 rounds per process, the \
         order rotating; ratios are taken within a round, the median over all rounds of \
         all processes, the range that of the processes' medians. Speeds are lines \
         written per second (medians).\n\n",
    );
    md.push_str(
        "| goal | piko-obs | tracing-appender lossless | slog-async Block | ratio to the faster (median) | range | bound | piko-obs lines lost | result |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for t in THREADS {
        let faster = |r: &Row| {
            let a = peer(rows, r, "tracing_appender_lossless")?.lines_per_s;
            let b = peer(rows, r, "slog_async_block")?.lines_per_s;
            Some(r.lines_per_s / a.max(b))
        };
        let (ratio, lo, hi) = ratio_stats(rows, t, faster);
        let (lost_lines, _) = lost(rows, "piko_obs", t);
        let ok = ratio >= BOUND && lost_lines == 0.0;
        let _ = writeln!(
            md,
            "| {t} thread{}: at least {BOUND} x the faster lossless peer's lines/s, none lost | {} | {} | {} | {ratio:.2} | {lo:.2}-{hi:.2} | {BOUND:.2} | {lost_lines:.0} | {} |",
            if t == 1 { "" } else { "s" },
            kilo(median_of(rows, "piko_obs", t, |r| r.lines_per_s)),
            kilo(median_of(rows, "tracing_appender_lossless", t, |r| r.lines_per_s)),
            kilo(median_of(rows, "slog_async_block", t, |r| r.lines_per_s)),
            if ok { "met" } else { "**not met**" },
        );
    }
    md.push_str(
        "\nThe peers in their default (lossy) settings, in the same rounds: lines written \
         per second, and the lines lost of all sent.\n\n\
         | threads | tracing-appender default | lost | slog-async default | lost |\n|---:|---:|---:|---:|---:|\n",
    );
    for t in THREADS {
        let share = |imp: &str| {
            let (l, s) = lost(rows, imp, t);
            format!("{l:.0} ({:.1} %)", 100.0 * l / s.max(1.0))
        };
        let _ = writeln!(
            md,
            "| {t} | {} | {} | {} | {} |",
            kilo(median_of(rows, "tracing_appender_default", t, |r| r.lines_per_s)),
            share("tracing_appender_default"),
            kilo(median_of(rows, "slog_async_default", t, |r| r.lines_per_s)),
            share("slog_async_default"),
        );
    }
    md.push_str(
        "\nWhere piko-obs's time goes, in the same rounds: formatting alone (each thread \
         formats into its buffer, no queue), the pipeline into a destination that counts \
         and discards (formatting and the queue, no `write(2)`), and the whole pipeline to \
         `/dev/null`; and lines per `write` call, for piko-obs's writer and the peers'.\n\n\
         | threads | format only | + queue | + `write(2)` (piko-obs) | lines per `write`: piko-obs | tracing-appender lossless | slog-async Block |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for t in THREADS {
        let per_write = |imp: &str| {
            format!(
                "{:.1}",
                median_of(rows, imp, t, |r| r.written / r.writes.max(1.0))
            )
        };
        let _ = writeln!(
            md,
            "| {t} | {} | {} | {} | {} | {} | {} |",
            kilo(median_of(rows, "piko_obs_format_only", t, |r| r.lines_per_s)),
            kilo(median_of(rows, "piko_obs_no_syscall", t, |r| r.lines_per_s)),
            kilo(median_of(rows, "piko_obs", t, |r| r.lines_per_s)),
            per_write("piko_obs"),
            per_write("tracing_appender_lossless"),
            per_write("slog_async_block"),
        );
    }
    let load = loads
        .iter()
        .map(|(a, b)| format!("{a:.2} → {b:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        md,
        "\nLoad average (1 min) before → after each process: {load}.\n\nMeasured {} on {}.",
        today(),
        machine()
    );
    md
}
