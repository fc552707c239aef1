//! `cargo xtask integration`: piko-obs checked by real third-party programs, on this
//! machine only, each step bounded in time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Result, cargo, root, wait_bounded};

struct Check {
    name: &'static str,
    run: fn() -> Result,
}

pub(crate) fn run() -> Result {
    let mut build = cargo();
    build.args([
        "build",
        "--locked",
        "-p",
        "piko-obs",
        "--example",
        "monitor",
        "-p",
        "piko-obs-tests",
        "--bin",
        "log_probe",
    ]);
    crate::run(build)?;
    let checks = [
        Check {
            name: "monitor prod JSON lines read by jq",
            run: monitor_json_with_jq,
        },
        Check {
            name: "rotated log files read by gzip",
            run: rotated_files_with_gzip,
        },
    ];
    let mut failed = 0;
    for c in &checks {
        match (c.run)() {
            Ok(()) => eprintln!("integration: ok   {}", c.name),
            Err(e) => {
                failed += 1;
                eprintln!("integration: FAIL {}: {e}", c.name);
            }
        }
    }
    println!(
        "integration: {} passed, {failed} failed",
        checks.len() - failed
    );
    if failed > 0 {
        Err(format!("{failed} integration check(s) failed"))
    } else {
        Ok(())
    }
}

fn jq(filter: &str, input: &[u8]) -> Result {
    let mut child = Command::new("jq")
        .args(["-e", "-s", filter])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("jq: {e} (install Debian's jq)"))?;
    child
        .stdin
        .take()
        .ok_or("jq stdin")?
        .write_all(input)
        .map_err(|e| e.to_string())?;
    let status = wait_bounded(&mut child, Duration::from_secs(30))?;
    if status.success() {
        Ok(())
    } else {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().ok_or("stderr")?, &mut err);
        Err(format!(
            "jq -e '{filter}' rejected the output {status}: {err}"
        ))
    }
}

fn monitor_json_with_jq() -> Result {
    let exe = root().join("target/debug/examples/monitor");
    let mut child = Command::new(&exe)
        .arg("prod")
        .env_remove("PIKO_LOG_LEVEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{exe:?}: {e}"))?;
    let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
    let mut text = String::new();
    out.read_line(&mut text).map_err(|e| e.to_string())?;
    crate::run({
        let mut kill = Command::new("kill");
        kill.args(["-TERM", &child.id().to_string()]);
        kill
    })?;
    let status = wait_bounded(&mut child, Duration::from_secs(15))?;
    std::io::Read::read_to_string(&mut out, &mut text).map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("monitor exited with {status}"));
    }
    jq(
        r#"length == 2
          and .[0].msg == "Server started" and .[0].mode == "prod" and .[0].level == "NOTICE"
          and .[0].logger == "monitor" and (.[0].source.line | type) == "number"
          and (.[0].time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}(Z|[+-][0-9]{2}:[0-9]{2})$"))
          and .[1].msg == "Server stopping" and .[1].signal == "SIGTERM""#,
        text.as_bytes(),
    )
}

fn rotated_files_with_gzip() -> Result {
    let dir = std::env::temp_dir().join(format!("piko-obs-rotate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let probe = root().join("target/debug/log_probe");
        let mut child = Command::new(&probe)
            .args(["rotate", dir.to_str().ok_or("path")?])
            .spawn()
            .map_err(|e| format!("{probe:?}: {e}"))?;
        let status = wait_bounded(&mut child, Duration::from_secs(60))?;
        if !status.success() {
            return Err(format!("log_probe rotate exited with {status}"));
        }
        let mut lines = 0usize;
        let mut gz = 0usize;
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let text = if name.ends_with(".gz") {
                gz += 1;
                let out = Command::new("gzip")
                    .arg("-dc")
                    .arg(&path)
                    .output()
                    .map_err(|e| format!("gzip: {e}"))?;
                if !out.status.success() {
                    return Err(format!("gzip -dc {path:?} failed: {}", out.status));
                }
                String::from_utf8(out.stdout).map_err(|e| e.to_string())?
            } else {
                std::fs::read_to_string(&path).map_err(|e| e.to_string())?
            };
            lines += text.lines().count();
        }
        if gz == 0 {
            return Err("no gzipped backup was written".into());
        }
        if lines != 2000 {
            return Err(format!("{lines} lines across the files, expected 2000"));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
