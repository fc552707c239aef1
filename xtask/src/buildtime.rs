//! `cargo xtask buildtime`: the clean build time and crate count of the facade with the
//! logger only, of the full facade, and of a peer (a throwaway crate depending on
//! `tracing-subscriber` with its `json` feature), each in a fresh target directory with
//! the same profile, one after the other; the table goes to the `build time` section of
//! `docs/performance.md`, with the load average around each build (the machine is
//! shared: a busy one makes every build slower, so compare rows of one run).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::support::{Result, cargo, root};

/// One clean build: its wall time, the crates it compiled, the load average before.
struct Measured {
    seconds: f64,
    crates: usize,
    load: String,
}

/// Builds each case and writes the table.
pub(crate) fn run() -> Result {
    let scratch = std::env::temp_dir().join(format!("piko-obs-buildtime-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let peer = write_peer(&scratch.join("peer"))?;
    let mut rows = Vec::new();
    for (name, args, dir) in [
        (
            "piko-obs, logger only (`--no-default-features`)",
            vec!["build", "-p", "piko-obs", "--no-default-features"],
            root(),
        ),
        (
            "piko-obs, every feature (default)",
            vec!["build", "-p", "piko-obs"],
            root(),
        ),
        (
            "peer: tracing-subscriber with `json`",
            vec!["build"],
            peer.clone(),
        ),
    ] {
        let target = scratch.join(format!("target-{}", rows.len()));
        let mut c = cargo();
        c.args(&args)
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target);
        let m = measure(c)?;
        let _ = std::fs::remove_dir_all(&target);
        rows.push((name, m));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let mut md = String::from(
        "## build time\n\nClean `cargo build` (dev profile) of each, in a fresh target directory, one after the other in one run of `cargo xtask buildtime`; crates are the `Compiling` lines. The load average (1, 5, 15 min) is read before each build: the machine is shared, so compare rows of one run, not runs.\n\n| build | time | crates | load average before |\n|---|---:|---:|---|\n",
    );
    for (name, m) in &rows {
        md.push_str(&format!(
            "| {name} | {:.0} s | {} | {} |\n",
            m.seconds, m.crates, m.load
        ));
    }
    md.push_str(&format!(
        "\nMeasured {} on {}.\n",
        crate::report::today(),
        crate::report::machine()
    ));
    crate::bench::replace_section("build time", &md)
}

/// Runs a build and counts the crates it compiled.
fn measure(mut c: Command) -> Result<Measured> {
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    eprintln!("xtask: $ {c:?}");
    let started = Instant::now();
    let out = c.output().map_err(|e| format!("{c:?}: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{c:?} failed: {log}"));
    }
    Ok(Measured {
        seconds,
        crates: compiled_crates(&log),
        load,
    })
}

/// The `Compiling` lines of a cargo log.
fn compiled_crates(log: &str) -> usize {
    log.lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .count()
}

/// A crate that depends on `tracing-subscriber` with `json` and logs one line.
fn write_peer(dir: &Path) -> Result<std::path::PathBuf> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    let write = |p: std::path::PathBuf, text: &str| {
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"buildtime-peer\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\ntracing = \"0.1\"\ntracing-subscriber = { version = \"0.3\", features = [\"json\"] }\n\n[workspace]\n",
    )?;
    write(
        src.join("main.rs"),
        "fn main() {\n    tracing_subscriber::fmt().json().init();\n    tracing::info!(answer = 42, \"started\");\n}\n",
    )?;
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::compiled_crates;

    #[test]
    fn crates_are_the_compiling_lines() {
        let log = "   Compiling libc v0.2.0\n    Checking x\n   Compiling piko-obs v0.1.0\n    Finished `dev`\n";
        assert_eq!(compiled_crates(log), 2);
    }
}
