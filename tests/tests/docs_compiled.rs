//! The guide and the reference pages stay true to the code: every Rust block in them is
//! compiled as a doctest of the facade (the page is included under `cfg(doctest)`), none
//! is marked `ignore`, and every YAML block parses, the Kubernetes manifest pointing its
//! probes at the probe server's default paths. (`cargo xtask integration` runs
//! `promtool check config` on the guide's Prometheus configuration.)

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Each fenced block of `text`: its info string and its body. A fence may be indented
/// (a block inside a list item, which rustdoc compiles too); the body loses the
/// fence's indentation.
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // (the fence's indentation, info string, body)
    let mut open: Option<(usize, String, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(info)) => open = Some((indent, info.trim().to_string(), String::new())),
            (Some(_), Some(rest)) if rest.trim().is_empty() => {
                out.extend(open.take().map(|(_, info, body)| (info, body)));
            }
            (Some((fence, _, body)), _) => {
                let cut = indent.min(*fence);
                body.push_str(&line[cut..]);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    out
}

#[test]
fn the_block_finder_sees_indented_fences() {
    let text =
        "- a list item:\n  ```rust\n  let x = 1;\n    let y = x;\n  ```\n\n```yaml\na: 1\n```\n";
    assert_eq!(
        blocks(text),
        [
            ("rust".to_string(), "let x = 1;\n  let y = x;\n".to_string()),
            ("yaml".to_string(), "a: 1\n".to_string()),
        ]
    );
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("docs/how-to/monitor-production.md")];
    let mut reference: Vec<PathBuf> = std::fs::read_dir(root().join("docs/reference"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    reference.sort();
    pages.extend(reference);
    pages
}

#[test]
fn every_rust_block_of_the_guide_and_the_reference_is_compiled() {
    // Included by the tests crate, which is never packaged: no published crate's
    // doctests include a file from outside the crate.
    let lib = std::fs::read_to_string(root().join("tests/src/lib.rs")).unwrap();
    let mut rust_blocks = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let rel = page
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for (info, _) in blocks(&text) {
            // rustdoc compiles untagged blocks and `rust...` blocks.
            let is_rust = info.is_empty() || info.split(',').next() == Some("rust");
            if !is_rust {
                continue;
            }
            rust_blocks += 1;
            assert!(
                !info.contains("ignore"),
                "{rel}: a Rust block marked `{info}` is not compiled; make it compile"
            );
            assert!(
                lib.contains(&format!("include_str!(\"../../{rel}\")")),
                "{rel} has Rust blocks but tests/src/lib.rs does not include it as a doctest"
            );
        }
    }
    assert!(
        rust_blocks >= 15,
        "the guide alone has 15 Rust blocks; found {rust_blocks}"
    );
}

#[test]
fn every_yaml_block_parses_and_the_manifest_probes_the_default_paths() {
    use yaml_rust2::{Yaml, YamlLoader};
    let guide = std::fs::read_to_string(root().join("docs/how-to/monitor-production.md")).unwrap();
    let mut manifests = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (info, body) in blocks(&text).into_iter().filter(|(i, _)| i == "yaml") {
            let docs = YamlLoader::load_from_str(&body).unwrap_or_else(|e| {
                panic!("{}: a {info} block does not parse: {e}", page.display())
            });
            assert!(!docs.is_empty());
        }
    }
    for (_, body) in blocks(&guide).into_iter().filter(|(i, _)| i == "yaml") {
        let doc = &YamlLoader::load_from_str(&body).unwrap()[0];
        if doc["kind"].as_str() != Some("Deployment") {
            continue;
        }
        manifests += 1;
        let c = &doc["spec"]["template"]["spec"]["containers"][0];
        let health_port = c["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some("health"))
            .expect("a port named health");
        assert_eq!(
            health_port["containerPort"],
            Yaml::Integer(9090),
            "the default probe port"
        );
        for (probe, path) in [
            ("livenessProbe", "/live"),
            ("readinessProbe", "/ready"),
            ("startupProbe", "/startup"),
        ] {
            assert_eq!(c[probe]["httpGet"]["path"].as_str(), Some(path), "{probe}");
            assert_eq!(
                c[probe]["httpGet"]["port"].as_str(),
                Some("health"),
                "{probe}"
            );
        }
    }
    assert_eq!(manifests, 1, "the guide has one Deployment manifest");
}
