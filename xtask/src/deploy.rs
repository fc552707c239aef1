//! `cargo xtask deploy`: every file of `deploy/` (and the `Dockerfile`) checked by a
//! real tool: the Kubernetes manifests by `kubernetes-validate --strict`, the Prometheus
//! Operator monitors by a JSON schema of their fields (`jsonschema`), the Prometheus
//! configuration and rules by `promtool check` and `promtool test rules`, the Grafana
//! dashboard's expressions by `promtool check rules` and against the running example's
//! `/metrics`, and the Dockerfile's `HEALTHCHECK` command against the running example.

use std::process::Command;
use std::time::Duration;

use crate::monitor::{Check, Monitor, run_checks, start_monitor, start_monitor_with};
use crate::support::{
    Result, cargo, http_get, jq, pipe_through, root, run as run_cmd, signal, wait_bounded,
};

/// The checks of YAML files that need a YAML parser (Python's, installed with
/// kubernetes-validate): the monitors' schema, how the manifests fit together, the
/// Dockerfile against the Deployment, every alert unit-tested.
const DEPLOY_CHECK: &str = include_str!("deploy_check.py");

/// Metrics the dashboard may name although the example does not serve them at rest:
/// each appears at its first event only (a refused series), so it is checked to be the
/// toolkit's own name instead (the source file that defines it).
const EVENT_ONLY: &[(&str, &str)] = &[(
    "piko_obs_metrics_series_refused_total",
    "crates/piko-obs-metrics/src/guard.rs",
)];

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
        "piko-obs-probe",
    ]);
    run_cmd(build)?;
    let checks = [
        Check {
            name: "deploy/kubernetes accepted by kubernetes-validate --strict",
            run: kubernetes_validate,
        },
        Check {
            name: "deploy/kubernetes monitors match their schema, the manifests and the Dockerfile fit together, every alert is unit-tested",
            run: fit_together,
        },
        Check {
            name: "deploy/prometheus accepted by promtool check config and check rules, its unit tests pass",
            run: prometheus_with_promtool,
        },
        Check {
            name: "deploy/grafana expressions parse (promtool) and name only series the example serves",
            run: dashboard_against_example,
        },
        Check {
            name: "the Dockerfile's HEALTHCHECK command answers for the running example",
            run: healthcheck_against_example,
        },
        Check {
            name: "the probe server's address and paths come from PIKO_HEALTH_* when code sets none",
            run: probe_settings_from_environment,
        },
        Check {
            name: "the example starts with an unwritable HOME: dead letters in memory and on stderr, counted on /metrics; a dead-letter path set but unwritable fails init naming it",
            run: unwritable_home,
        },
    ];
    run_checks("deploy", &checks)
}

/// Runs `tool ARGS` (bounded to 60 s): its stdout, or an error with both outputs.
fn tool(tool: &str, args: &[&str], install: &str) -> Result<String> {
    let (status, out, err) = pipe_through(tool, args, b"", Duration::from_secs(60), install)?;
    let out = String::from_utf8_lossy(&out).into_owned();
    if status.success() {
        Ok(out)
    } else {
        Err(format!("{tool} {}: {status}\n{out}{err}", args.join(" ")))
    }
}

fn path(rel: &str) -> Result<String> {
    root()
        .join(rel)
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{rel}: not UTF-8"))
}

fn kubernetes_validate() -> Result {
    // The monitors are custom resources, which kubernetes-validate skips: they are
    // checked by their own schema in `fit_together`.
    let files = [
        path("deploy/kubernetes/deployment.yaml")?,
        path("deploy/kubernetes/service.yaml")?,
    ];
    let mut args = vec!["--strict", "--quiet"];
    args.extend(files.iter().map(String::as_str));
    tool(
        "kubernetes-validate",
        &args,
        "the kubernetes-validate pip package",
    )?;
    // Strict mode is what catches a misspelt field: a copy with one is refused.
    let text = std::fs::read_to_string(&files[0]).map_err(|e| e.to_string())?;
    let typo = text.replacen("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1);
    if typo == text {
        return Err("deployment.yaml has no readOnlyRootFilesystem".into());
    }
    let copy = std::env::temp_dir().join(format!("piko-obs-typo-{}.yaml", std::process::id()));
    std::fs::write(&copy, typo).map_err(|e| e.to_string())?;
    let refused = tool(
        "kubernetes-validate",
        &["--strict", "--quiet", copy.to_str().ok_or("path")?],
        "the kubernetes-validate pip package",
    );
    let _ = std::fs::remove_file(&copy);
    match refused {
        Err(e) if e.contains("readOnlyRootFileSystem") => Ok(()),
        Err(e) => Err(format!(
            "the misspelt copy was refused for another reason: {e}"
        )),
        Ok(_) => Err("kubernetes-validate accepted readOnlyRootFileSystem (a typo)".into()),
    }
}

/// The Python checks' output: the arguments of the Dockerfile's `cargo build`, the
/// binaries it copies, and the arguments of its HEALTHCHECK command.
fn python_checks() -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
    let out = tool(
        "python3",
        &["-c", DEPLOY_CHECK, &path("")?],
        "python3 with the kubernetes-validate pip package (PyYAML, jsonschema)",
    )?;
    let pick = |prefix: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    };
    let build = pick("build ")
        .first()
        .map(|a| a.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    Ok((build, pick("copy "), pick("arg ")))
}

fn fit_together() -> Result {
    python_checks().map(drop)
}

fn prometheus_with_promtool() -> Result {
    const DEBIAN: &str = "Debian's prometheus";
    // `check config` also checks the rule files it loads (alerts.yml).
    tool(
        "promtool",
        &[
            "check",
            "config",
            &path("deploy/prometheus/prometheus.yml")?,
        ],
        DEBIAN,
    )?;
    tool(
        "promtool",
        &["check", "rules", &path("deploy/prometheus/alerts.yml")?],
        DEBIAN,
    )?;
    let out = tool(
        "promtool",
        &["test", "rules", &path("deploy/prometheus/alerts.test.yml")?],
        DEBIAN,
    )?;
    if out.contains("SUCCESS") {
        Ok(())
    } else {
        Err(format!("promtool test rules did not report SUCCESS: {out}"))
    }
}

/// Every PromQL expression of the dashboard, with Grafana's interval variables replaced
/// by durations, and the metrics its template variables query (`label_values(M, L)`).
fn dashboard_exprs(file: &str) -> Result<(Vec<String>, Vec<String>)> {
    let exprs = tool(
        "jq",
        &[
            "-r",
            r#".panels[] | .. | objects | select(has("expr")) | .expr | gsub("\\$__rate_interval|\\$__interval"; "1m") | gsub("\\$__range"; "1h") | tojson"#,
            file,
        ],
        "jq",
    )?;
    let variables = tool(
        "jq",
        &[
            "-r",
            r#".templating.list[] | select(.type == "query") | .query.query // .query"#,
            file,
        ],
        "jq",
    )?;
    let exprs: Vec<String> = exprs.lines().map(str::to_string).collect();
    let mut metrics = Vec::new();
    for v in variables.lines() {
        let metric = v
            .strip_prefix("label_values(")
            .and_then(|r| r.split(',').next())
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| format!("template variable query {v:?} is not label_values(M, L)"))?;
        metrics.push(metric.to_string());
    }
    if exprs.is_empty() {
        return Err("the dashboard has no expression".into());
    }
    Ok((exprs, metrics))
}

/// The text of a JSON string literal as jq's `tojson` writes it.
fn json_string(literal: &str) -> Result<String> {
    let inner = literal
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .ok_or_else(|| format!("not a JSON string: {literal}"))?;
    let mut text = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('"' | '\\' | '/')) => text.push(e),
            Some('n') => text.push('\n'),
            Some('t') => text.push('\t'),
            other => return Err(format!("unexpected escape \\{other:?} in {literal}")),
        }
    }
    Ok(text)
}

/// PromQL keywords and aggregation operators: identifiers that are not metric names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The metric names of a PromQL expression: its identifiers outside label matchers,
/// ranges, strings and `by (...)`-like label lists, other than keywords and functions.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_to = |i: &mut usize, close: char| {
        while *i < chars.len() && chars[*i] != close {
            if chars[*i] == '"' || chars[*i] == '\'' {
                let q = chars[*i];
                *i += 1;
                while *i < chars.len() && chars[*i] != q {
                    *i += if chars[*i] == '\\' { 2 } else { 1 };
                }
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            skip_to(&mut i, '}');
        } else if c == '[' {
            skip_to(&mut i, ']');
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            skip_to(&mut i, c);
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            let label_list = [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ];
            if call && label_list.contains(&word.as_str()) {
                i = next + 1;
                skip_to(&mut i, ')');
            } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Reads the example's stdout as it comes, so that a full pipe never blocks its
/// writers.
fn drain_stdout(out: std::io::BufReader<std::process::ChildStdout>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut out = out;
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut sink);
    })
}

/// The names of the series in a Prometheus text exposition (a histogram's or summary's
/// `_bucket`, `_sum`, `_count` each count as served).
fn served_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The example, configured so that every part of the pipeline records its series
/// (OTLP and Sentry on, pointed at a closed loopback port: exports fail, and are
/// counted), after requests on each route and a call of each probe.
fn example_metrics() -> Result<String> {
    let closed = crate::support::free_port()?;
    let otlp = format!("http://127.0.0.1:{closed}");
    let dsn = format!("http://deploycheck@127.0.0.1:{closed}/1");
    let Monitor {
        mut process,
        out,
        probes,
        app,
        ..
    } = start_monitor(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ("SENTRY_DSN", dsn.as_str()),
    ])?;
    let drain = drain_stdout(out);
    let result = (|| {
        for p in ["/", "/", "/fail"] {
            http_get(&app, p)?;
        }
        for p in ["/live", "/ready", "/startup"] {
            http_get(&probes, p)?;
        }
        // The span and log-record exports fail and are counted within the export
        // interval; bounded wait for the failure counters to show.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = http_get(&probes, "/metrics")?;
            if code != 200 {
                return Err(format!("/metrics answered {code}"));
            }
            let served = served_names(&body);
            if served.contains("piko_obs_spans_export_failed_total")
                && served.contains("piko_obs_sentry_envelopes_total")
                || std::time::Instant::now() > deadline
            {
                return Ok(body);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })();
    signal(process.0.id(), "TERM")?;
    let _ = wait_bounded(&mut process.0, Duration::from_secs(20))?;
    let _ = drain.join();
    result
}

fn dashboard_against_example() -> Result {
    let file = path("deploy/grafana/piko-obs.json")?;
    let (exprs, variable_metrics) = dashboard_exprs(&file)?;
    promtool_parses(&exprs)?;
    let served = served_names(&example_metrics()?);
    let (named, missing) = missing_names(&exprs, &variable_metrics, &served)?;
    if named < exprs.len() {
        return Err(format!(
            "{named} metric names found in {} expressions",
            exprs.len()
        ));
    }
    if !missing.is_empty() {
        return Err(format!(
            "the dashboard queries series the example does not serve: {}",
            missing.join(", ")
        ));
    }
    // The check itself: a copy of the dashboard given a panel on a series nobody
    // serves is refused, naming it.
    let bogus = "piko_obs_no_such_series_total";
    let copy = tool(
        "jq",
        &[
            &format!(
                r#".panels += [{{"id": 999, "type": "timeseries", "targets": [{{"refId": "A", "expr": "sum(rate({bogus}[$__rate_interval]))"}}]}}]"#
            ),
            &file,
        ],
        "jq",
    )?;
    let copy_file =
        std::env::temp_dir().join(format!("piko-obs-dashboard-{}.json", std::process::id()));
    std::fs::write(&copy_file, copy).map_err(|e| e.to_string())?;
    let copied = dashboard_exprs(copy_file.to_str().ok_or("path")?);
    let _ = std::fs::remove_file(&copy_file);
    let (copy_exprs, copy_variables) = copied?;
    let (_, refused) = missing_names(&copy_exprs, &copy_variables, &served)?;
    if refused != [bogus] {
        return Err(format!(
            "a panel on {bogus} was not refused alone: the check found {refused:?}"
        ));
    }
    eprintln!(
        "deploy: {} dashboard expressions parse; the {named} metric names they use are served",
        exprs.len()
    );
    Ok(())
}

/// Each expression parses: promtool checks it as a recording rule.
fn promtool_parses(exprs: &[String]) -> Result {
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        // `e` is a JSON string, which is a YAML double-quoted scalar.
        rules.push_str(&format!(
            "      - record: dashboard_panel_expr_{i}\n        expr: {e}\n"
        ));
    }
    let file = std::env::temp_dir().join(format!("piko-obs-dashboard-{}.yml", std::process::id()));
    std::fs::write(&file, &rules).map_err(|e| e.to_string())?;
    let checked = tool(
        "promtool",
        &["check", "rules", file.to_str().ok_or("path")?],
        "Debian's prometheus",
    );
    let _ = std::fs::remove_file(&file);
    let checked = checked?;
    if checked.contains(&format!("SUCCESS: {} rules found", exprs.len())) {
        Ok(())
    } else {
        Err(format!("promtool check rules: {checked}"))
    }
}

/// How many metric names the expressions and variables use, and those of them that
/// are not `served` (sorted, once each); an event-only metric counts as served when the
/// toolkit's source defines it.
fn missing_names(
    exprs: &[String],
    variable_metrics: &[String],
    served: &std::collections::BTreeSet<String>,
) -> Result<(usize, Vec<String>)> {
    let mut missing = Vec::new();
    let mut named = 0;
    for name in exprs
        .iter()
        .map(|e| json_string(e))
        .collect::<Result<Vec<_>>>()?
        .iter()
        .flat_map(|e| metric_names(e))
        .chain(variable_metrics.iter().cloned())
    {
        named += 1;
        if served.contains(&name) {
            continue;
        }
        match EVENT_ONLY.iter().find(|(n, _)| *n == name) {
            Some((_, source)) => {
                let text = std::fs::read_to_string(root().join(source))
                    .map_err(|e| format!("{source}: {e}"))?;
                if !text.contains(&format!("\"{name}\"")) {
                    missing.push(format!("{name} (not defined in {source})"));
                }
            }
            None => missing.push(name),
        }
    }
    missing.sort();
    missing.dedup();
    Ok((named, missing))
}

fn healthcheck_against_example() -> Result {
    let (build, copied, argv) = python_checks()?;
    // The Dockerfile's own build command, here in the debug profile (a release build
    // takes too long for CI), produces the binaries the image copies.
    let mut cargo_build = cargo();
    cargo_build
        .arg("build")
        .args(build.iter().filter(|a| *a != "--release"));
    run_cmd(cargo_build)?;
    for src in &copied {
        let debug = src.replacen("target/release/", "", 1);
        let built = root().join("target/debug").join(&debug);
        if !built.is_file() {
            return Err(format!(
                "the Dockerfile copies {src}, which the build does not produce ({built:?} is missing)"
            ));
        }
    }
    let (program, args) = argv.split_first().ok_or("no HEALTHCHECK command")?;
    let binary = program.rsplit('/').next().unwrap_or(program);
    let local = root().join("target/debug").join(binary);
    let url = args.last().ok_or("the HEALTHCHECK command has no URL")?;
    let path = url
        .strip_prefix("http://")
        .and_then(|r| r.split_once('/'))
        .map(|(_, p)| format!("/{p}"))
        .ok_or_else(|| format!("HEALTHCHECK URL {url} is not http://host:port/path"))?;
    let run = |url: &str| -> Result<i32> {
        let mut full: Vec<&str> = args[..args.len() - 1].iter().map(String::as_str).collect();
        full.push(url);
        let mut child = Command::new(&local)
            .args(&full)
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("{local:?}: {e}"))?;
        let status = wait_bounded(&mut child, Duration::from_secs(10))?;
        status.code().ok_or_else(|| "killed by a signal".into())
    };
    let mut monitor = start_monitor(&[])?;
    let result = (|| {
        // The same command, on the example's probe port on this machine.
        let code = run(&format!("http://{}{path}", monitor.probes))?;
        if code != 0 {
            return Err(format!(
                "{binary} {path} exited {code} for the running example"
            ));
        }
        // And it fails where nothing listens.
        let closed = format!("http://127.0.0.1:{}{path}", crate::support::free_port()?);
        let code = run(&closed)?;
        if code != 1 {
            return Err(format!("{binary} on a closed port exited {code}, not 1"));
        }
        Ok(())
    })();
    signal(monitor.process.0.id(), "TERM")?;
    let _ = wait_bounded(&mut monitor.process.0, Duration::from_secs(20))?;
    result
}

/// Operators move the probes without a rebuild: with `HEALTH_PORT` blank the example
/// sets no port in code, so the `PIKO_HEALTH_*` variables apply.
fn probe_settings_from_environment() -> Result {
    let port = crate::support::free_port()?.to_string();
    let Monitor {
        mut process,
        out,
        probes,
        startup,
        ..
    } = start_monitor(&[
        ("HEALTH_PORT", ""),
        ("PIKO_HEALTH_PORT", port.as_str()),
        ("PIKO_HEALTH_BIND_ADDRESS", "127.0.0.1"),
        ("PIKO_HEALTH_READY_PATH", "/readyz"),
        ("PIKO_HEALTH_LIVE_PATH", "/livez"),
    ])?;
    let drain = drain_stdout(out);
    let result = (|| {
        if probes != format!("127.0.0.1:{port}") {
            return Err(format!(
                "the probes listen on {probes}, not 127.0.0.1:{port}"
            ));
        }
        for (path, want) in [
            ("/readyz", 200),
            ("/livez", 200),
            ("/ready", 404),
            ("/startup", 200),
        ] {
            let (code, _) = http_get(&probes, path)?;
            if code != want {
                return Err(format!("GET {path} answered {code}, not {want}"));
            }
        }
        jq(
            &format!(
                r#"map(select(.msg == "piko-obs started")) | length == 1
                  and .[0].probes == "http://127.0.0.1:{port} /livez /readyz /startup""#
            ),
            startup.as_bytes(),
        )
    })();
    signal(process.0.id(), "TERM")?;
    let _ = wait_bounded(&mut process.0, Duration::from_secs(20))?;
    let _ = drain.join();
    result
}

/// A read-only root file system, as the Deployment sets it: the default dead-letter
/// file cannot be created. Here HOME is a path under a regular file, which no user
/// (root included) can create folders in.
fn unwritable_home() -> Result {
    let dir = std::env::temp_dir().join(format!("piko-obs-rohome-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = unwritable_home_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn unwritable_home_in(dir: &std::path::Path) -> Result {
    let file = dir.join("not-a-folder");
    std::fs::write(&file, "").map_err(|e| e.to_string())?;
    let home = file.join("home");
    let home = home.to_str().ok_or("path")?;
    // An alert that cannot be delivered: a webhook on a closed port, so the start-up
    // alert is dead-lettered at shutdown.
    let closed = format!("http://127.0.0.1:{}/hook", crate::support::free_port()?);
    let Monitor {
        mut process,
        out,
        probes,
        startup,
        ..
    } = start_monitor_with(
        &[
            ("HOME", home),
            ("XDG_STATE_HOME", ""),
            // Blank is unset: the default path under HOME applies.
            ("PIKO_NOTIFICATION_DEAD_LETTER_PATH", ""),
            ("WEBHOOK_URL", closed.as_str()),
        ],
        std::process::Stdio::piped(),
    )?;
    let mut stderr = process.0.stderr.take().ok_or("stderr")?;
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let drain = drain_stdout(out);
    let (code, metrics) = http_get(&probes, "/metrics")?;
    signal(process.0.id(), "TERM")?;
    let status = wait_bounded(&mut process.0, Duration::from_secs(30))?;
    let _ = drain.join();
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("the example exited with {status}: {errors}"));
    }
    if code != 200 || !metrics.contains("\npiko_obs_notifications_dead_letter_in_memory 0\n") {
        return Err(format!(
            "/metrics ({code}) has no piko_obs_notifications_dead_letter_in_memory 0:\n{metrics}"
        ));
    }
    jq(
        r#"(map(select(.level == "WARN" and .logger == "piko-obs/notification")) | length == 1
            and (.[0].path | endswith("/home/.local/state/piko-obs/notifications.dead-letter.jsonl")))
          and (map(select(.msg == "piko-obs started")) | length == 1
            and (.[0].dead_letters | startswith("memory and stderr (default file ")))"#,
        startup.as_bytes(),
    )
    .map_err(|e| format!("the start-up lines: {e}"))?;
    let kept: Vec<&str> = errors
        .lines()
        .filter_map(|l| l.strip_prefix("piko-obs: notify.dead_letter.in_memory: "))
        .collect();
    jq(
        r#"length == 1 and .[0].notification.content.title == "Service started"
          and .[0].providers == ["webhook"]"#,
        kept.join("\n").as_bytes(),
    )
    .map_err(|e| format!("the dead letter on stderr: {e}; stderr: {errors}"))?;
    // A path the operator set must be writable: init() fails, naming the variable.
    let bad = file.join("dead-letters.jsonl");
    let mut child = crate::monitor::monitor_command()
        .1
        .env("PIKO_NOTIFICATION_DEAD_LETTER_PATH", &bad)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("the monitor example: {e}"))?;
    let mut stderr = child.stderr.take().ok_or("stderr")?;
    let status = wait_bounded(&mut child, Duration::from_secs(20))?;
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
    let want = format!(
        "PIKO_NOTIFICATION_DEAD_LETTER_PATH: notification dead-letter file {}",
        bad.display()
    );
    if status.code() != Some(2) || !err.contains(&want) {
        return Err(format!(
            "with PIKO_NOTIFICATION_DEAD_LETTER_PATH unwritable the example exited {status}, expected 2 and {want:?}: {err}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::metric_names;

    #[test]
    fn metric_names_skip_labels_functions_and_keywords() {
        assert_eq!(
            metric_names(
                r#"histogram_quantile(0.99, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{job=~"$job", x="a{b}"}[1m]))) / on (job) group_left (pod) up > bool 0.5"#
            ),
            ["http_server_request_duration_seconds_bucket", "up"]
        );
        assert_eq!(
            metric_names("sum without (instance) (process_threads) or vector(0)"),
            ["process_threads"]
        );
    }
}
