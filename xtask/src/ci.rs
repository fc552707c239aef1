//! `cargo xtask ci`: format check, licences, clippy with `-D warnings` (the workspace,
//! each provider feature alone, and the feature checks of `features`), the facade's size
//! (`facade_size`), `cargo package --workspace`, docs with
//! `-D warnings`, every test, then `integration`.

use std::process::Stdio;

use crate::integration;
use crate::support::{Result, cargo, run};

/// The manifest of xtask, a workspace of its own.
const XTASK: &str = "xtask/Cargo.toml";

/// Runs every check CI runs, stopping at the first that fails.
pub(crate) fn run_all() -> Result {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;
    // xtask is a workspace of its own (xtask/Cargo.toml): its format, lints and tests.
    for check in [
        &["fmt", "--manifest-path", XTASK, "--", "--check"][..],
        &[
            "clippy",
            "--manifest-path",
            XTASK,
            "--target-dir",
            "target",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &[
            "test",
            "--manifest-path",
            XTASK,
            "--target-dir",
            "target",
            "--locked",
        ],
    ] {
        let mut c = cargo();
        c.args(check);
        run(c)?;
    }
    // Licences, banned or duplicate crates, sources (deny.toml); the advisories check
    // needs the RustSec database from GitHub, so it is not run here.
    let deny_installed = cargo()
        .args(["deny", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if deny_installed {
        let mut deny = cargo();
        deny.args([
            "deny",
            "--locked",
            "check",
            "--hide-inclusion-graph",
            "licenses",
            "bans",
            "sources",
        ]);
        run(deny)?;
    } else {
        eprintln!("xtask: cargo-deny is not installed: `cargo install cargo-deny --locked`");
    }
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    // Each provider feature builds alone, warning-free.
    for feature in [
        "",
        "slack",
        "discord",
        "pagerduty",
        "teams",
        "googlechat",
        "ntfy",
        "webhook",
        "stdout",
        "alertmanager",
    ] {
        crate::features::clippy_alone("piko-obs-notify-providers", feature)?;
    }
    // Each facade feature alone, warp and tower alone, and a light logger-only facade.
    crate::features::check()?;
    // How thin the facade is (fails past its limits once they are met).
    crate::facade_size::ci()?;
    // Every crate packages and its package builds on its own (no file from outside it).
    // Dirty is allowed: the runs above may leave files, and nothing is published here.
    forget_packaged_crates()?;
    let mut package = cargo();
    package.args(["package", "--workspace", "--locked", "--allow-dirty"]);
    run(package)?;
    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;
    let mut test = cargo();
    test.args(["test", "--workspace", "--locked"]);
    run(test)?;
    integration::run()?;
    crate::deploy::run()
}

/// Removes what an earlier `cargo package` left: the workspace's crates unpacked under
/// `$CARGO_HOME/registry/src`, `target/package`, and the libraries built from the
/// unpacked crates. cargo verifies each crate against the ones packaged before it,
/// unpacked there; at an unchanged version it would take an earlier run's unpacking, with
/// that run's sources, and the libraries built from it (a registry crate is never rebuilt
/// for a change of its files), instead of this one's.
fn forget_packaged_crates() -> Result {
    let target = crate::support::root().join("target");
    remove(&target.join("package"))?;
    let deps = target.join("debug/deps");
    let names = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
        entries.map(|e| e.path()).collect()
    };
    // The hashes of the piko-obs libraries whose dep-info names sources under the
    // registry: built from a package.
    let hashes: Vec<String> = names(&deps)
        .iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let stem = name.strip_prefix("piko_obs")?.strip_suffix(".d")?;
            let text = std::fs::read_to_string(path).ok()?;
            let hash = stem.rsplit('-').next()?;
            text.contains("/registry/src/").then(|| format!("-{hash}"))
        })
        .collect();
    for dir in [deps, target.join("debug/.fingerprint")] {
        for path in names(&dir) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| hashes.iter().any(|h| n.contains(h.as_str()))) {
                remove(&path)?;
            }
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return Ok(());
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        for krate in std::fs::read_dir(registry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if krate.file_name().to_string_lossy().starts_with("piko-obs") {
                remove(&krate.path())?;
            }
        }
    }
    Ok(())
}

/// Removes a file or a directory and what it holds; nothing to remove is fine.
fn remove(path: &std::path::Path) -> Result {
    let gone = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else if path.exists() {
        std::fs::remove_file(path)
    } else {
        Ok(())
    };
    gone.map_err(|e| format!("removing {}: {e}", path.display()))
}
