//! The feature checks of `cargo xtask ci`: the facade with each subsystem feature alone
//! and with none, the crates that offer both warp and tower with each alone, all
//! warning-free; and the facade without default features compiles no warp, hyper,
//! tonic, reqwest, sentry or OpenTelemetry crate.

use crate::support::{Result, cargo, run};

/// The facade's subsystem features (the logger is always there).
const FACADE_FEATURES: [&str; 6] = ["", "health", "metrics", "otlp", "sentry", "notify"];

/// Crates that offer a warp and a tower integration, each behind its own feature.
const WEB_CRATES: [&str; 2] = ["piko-obs-metrics", "piko-obs-otlp"];

/// Crates that `piko-obs` with `default-features = false` must not compile.
const HEAVY: [&str; 7] = [
    "warp",
    "hyper",
    "tonic",
    "reqwest",
    "sentry",
    "opentelemetry",
    "opentelemetry_sdk",
];

/// Runs the checks, stopping at the first that fails.
pub(crate) fn check() -> Result {
    for feature in FACADE_FEATURES {
        clippy_alone("piko-obs", feature)?;
    }
    for krate in WEB_CRATES {
        for feature in ["", "warp", "tower"] {
            clippy_alone(krate, feature)?;
        }
    }
    logger_only_is_light()
}

/// `cargo clippy -p <krate> --no-default-features --features <feature> -- -D warnings`.
pub(crate) fn clippy_alone(krate: &str, feature: &str) -> Result {
    let mut c = cargo();
    c.args([
        "clippy",
        "--locked",
        "-p",
        krate,
        "--no-default-features",
        "--features",
        feature,
        "--",
        "-D",
        "warnings",
    ]);
    run(c)
}

/// `cargo tree -p piko-obs --no-default-features -e normal` names none of [`HEAVY`].
fn logger_only_is_light() -> Result {
    let out = cargo()
        .args([
            "tree",
            "--locked",
            "-p",
            "piko-obs",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .map_err(|e| format!("cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let tree = String::from_utf8_lossy(&out.stdout);
    let found = heavy_crates(&tree);
    if found.is_empty() {
        eprintln!("xtask: piko-obs without default features compiles none of {HEAVY:?}");
        Ok(())
    } else {
        Err(format!(
            "piko-obs with default-features = false compiles {found:?}: gate them behind a feature"
        ))
    }
}

/// The crates of [`HEAVY`] that a `cargo tree --prefix none --format {p}` output names
/// (one `name vX.Y.Z` a line).
fn heavy_crates(tree: &str) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| HEAVY.contains(name))
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::heavy_crates;

    #[test]
    fn heavy_crates_are_found_by_exact_name() {
        let tree = "piko-obs v0.1.0\nslog v2.8.2\nwarp v0.4.3\nhyper v1.7.0\nhyper-util v0.1.17\nopentelemetry-http v0.33.1\nwarp v0.4.3\n";
        assert_eq!(heavy_crates(tree), ["hyper", "warp"]);
        assert!(heavy_crates("piko-obs v0.1.0\nslog v2.8.2\n").is_empty());
    }
}
