//! The JSON output end to end: hub, loggers, formats and the writer thread, with the
//! checklist rows of Piko's logger that apply (bugs fixed).

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use piko_obs_logger::{Hub, Level, Output, attr, context, keys};
use piko_obs_logger_drains::{JsonOutput, TimeZone};
use piko_obs_testkit::Capture;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(10);

/// Adds a JSON output named `name` writing into `cap`.
fn add_capture(hub: &Hub, name: &str, level: Level, cap: &Capture) {
    hub.add_output(
        name,
        level,
        JsonOutput::writer(cap.clone()).build().unwrap(),
    )
    .unwrap();
}

fn hub_with_json(level: &str) -> (Hub, Capture) {
    let hub = Hub::default();
    let cap = Capture::new();
    let out = JsonOutput::writer(cap.clone()).build().unwrap();
    hub.add_output(
        "json",
        level.parse::<piko_obs_logger::Directives>().unwrap(),
        out,
    )
    .unwrap();
    (hub, cap)
}

#[derive(Debug)]
struct Outer(Mid);
#[derive(Debug)]
struct Mid(Root);
#[derive(Debug)]
struct Root;
impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("charge failed")
    }
}
impl fmt::Display for Mid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payment gateway unavailable")
    }
}
impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection refused")
    }
}
impl Error for Outer {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}
impl Error for Mid {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}
impl Error for Root {}

#[test]
fn json_line_has_keys_in_order_and_documented_encodings() {
    let (hub, cap) = hub_with_json("info");
    let log = hub
        .get_logger("checkout/api")
        .with(&[attr::string("region", "eu-west-1")]);
    #[derive(serde::Serialize)]
    struct Cart {
        items: u32,
        skus: Vec<&'static str>,
    }
    let cart = Cart {
        items: 2,
        skus: vec!["a", "b"],
    };
    let when = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
    let tags = ["x", "y"];
    log.info(
        "order placed",
        &[
            attr::int("status", 201),
            attr::uint("big", u64::MAX),
            attr::float("ratio", 0.25),
            attr::bool("cached", false),
            attr::duration("elapsed", Duration::from_secs(15)),
            attr::time("at", when),
            attr::strings("tags", &tags),
            attr::any("cart", &cart),
            attr::null("coupon"),
        ],
    );
    hub.flush(T).unwrap();
    let text = cap.text();
    let line = text.lines().next().unwrap();
    // Key order: time, level, msg, logger, source, bound, own fields in order.
    let order: Vec<&str> = [
        "\"time\"",
        "\"level\"",
        "\"msg\"",
        "\"logger\"",
        "\"source\"",
        "\"region\"",
        "\"status\"",
        "\"big\"",
        "\"ratio\"",
        "\"cached\"",
        "\"elapsed\"",
        "\"at\"",
        "\"tags\"",
        "\"cart\"",
        "\"coupon\"",
    ]
    .to_vec();
    let positions: Vec<usize> = order.iter().map(|k| line.find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");

    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["msg"], "order placed");
    assert_eq!(v["logger"], "checkout/api");
    assert_eq!(
        v["source"]["file"],
        "crates/piko-obs-logger-drains/tests/logger_json.rs"
    );
    assert!(v["source"]["line"].as_u64().unwrap() > 0);
    assert_eq!(v["region"], "eu-west-1");
    assert_eq!(v["status"], 201);
    assert_eq!(v["big"], u64::MAX);
    assert_eq!(v["ratio"], 0.25);
    assert_eq!(v["cached"], false);
    assert_eq!(v["elapsed"], 15_000_000_000u64);
    assert_eq!(v["at"], "2023-11-14T22:13:20.000000005Z");
    assert_eq!(v["tags"], json!(["x", "y"]));
    assert_eq!(v["cart"], json!({"items": 2, "skus": ["a", "b"]}));
    assert_eq!(v["coupon"], Value::Null);
    // RFC 3339 with nanoseconds and an offset (Z or ±hh:mm).
    let t = v["time"].as_str().unwrap();
    assert_eq!(
        t.len(),
        "2026-11-25T16:45:50.123456789".len() + if t.ends_with('Z') { 1 } else { 6 }
    );
    assert_eq!(&t[10..11], "T");
}

#[test]
fn error_attribute_keeps_the_chain_and_error_records_carry_a_stack() {
    let (hub, cap) = hub_with_json("info");
    hub.set_error_backtraces(true);
    let err = Outer(Mid(Root));
    let log = hub.get_logger("payments");
    log.error("charge failed", &[attr::error(&err)]);
    log.warn("retrying", &[attr::error(&err)]);
    hub.flush(T).unwrap();
    let lines = cap.json_lines();
    assert_eq!(
        lines[0]["error"],
        json!({"message": "charge failed", "sources": ["payment gateway unavailable", "connection refused"]})
    );
    let stack = lines[0]["stack_trace"].as_array().unwrap();
    assert!(!stack.is_empty());
    assert!(
        stack
            .iter()
            .any(|f| f.as_str().unwrap().contains("logger_json")),
        "{stack:?}"
    );
    assert!(
        lines[1].get("stack_trace").is_none(),
        "only ERROR carries a stack"
    );
}

#[test]
fn error_backtraces_are_off_by_default_and_can_be_turned_off() {
    for hub in [
        Hub::default(),
        Hub::builder().with_error_backtraces(false).build(),
    ] {
        let cap = Capture::new();
        add_capture(&hub, "json", Level::INFO, &cap);
        hub.get_logger("x").error("boom", &[]);
        hub.flush(T).unwrap();
        assert!(cap.json_lines()[0].get("stack_trace").is_none());
    }
}

#[test]
fn every_level_prints_its_own_name() {
    let (hub, cap) = hub_with_json("trace");
    let log = hub.get_logger("levels");
    for level in Level::ALL {
        log.log(level, "x", &[]);
    }
    log.log(Level::new(3), "x", &[]);
    log.log(Level::new(-5), "x", &[]);
    hub.flush(T).unwrap();
    let names: Vec<String> = cap
        .json_lines()
        .iter()
        .map(|l| l["level"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "TRACE", "INTERNAL", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR", "INFO+3", "DEBUG-1"
        ]
    );
}

#[test]
fn per_output_levels_and_per_logger_directives() {
    let hub = Hub::default();
    let debug = Capture::new();
    let errors = Capture::new();
    add_capture(&hub, "debug", Level::DEBUG, &debug);
    hub.add_output(
        "errors",
        "error,app/db=warn"
            .parse::<piko_obs_logger::Directives>()
            .unwrap(),
        JsonOutput::writer(errors.clone()).build().unwrap(),
    )
    .unwrap();
    let app = hub.get_logger("app/http");
    let db = hub.get_logger("app/db/pool");
    app.info("info from http", &[]);
    app.error("error from http", &[]);
    db.warn("warn from db", &[]);
    db.info("info from db", &[]);
    app.trace("trace from http", &[]);
    hub.flush(T).unwrap();
    let msgs = |c: &Capture| -> Vec<String> {
        c.json_lines()
            .iter()
            .map(|l| l["msg"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        msgs(&debug),
        [
            "info from http",
            "error from http",
            "warn from db",
            "info from db"
        ]
    );
    assert_eq!(msgs(&errors), ["error from http", "warn from db"]);
    assert!(app.enabled(Level::DEBUG));
    assert!(!app.enabled(Level::TRACE));
}

#[test]
fn with_binds_fields_and_leaves_the_parent_alone() {
    let (hub, cap) = hub_with_json("info");
    let parent = hub.get_logger("svc");
    let child = parent.with(&[attr::string("request_id", "r-1")]);
    let grandchild = child.with(&[attr::int("attempt", 2)]);
    parent.info("parent", &[]);
    child.info("child", &[]);
    grandchild.info("grandchild", &[attr::bool("own", true)]);
    hub.flush(T).unwrap();
    let l = cap.json_lines();
    assert!(l[0].get("request_id").is_none());
    assert_eq!(l[1]["request_id"], "r-1");
    assert_eq!(l[2]["request_id"], "r-1");
    assert_eq!(l[2]["attempt"], 2);
    assert_eq!(l[2]["own"], true);
}

#[test]
fn a_logger_obtained_before_outputs_writes_to_them() {
    let hub = Hub::default();
    let early = hub.get_logger("early");
    early.info("nowhere to go", &[]);
    assert_eq!(hub.unrouted(), 1);
    let cap = Capture::new();
    add_capture(&hub, "json", Level::INFO, &cap);
    early.info("now written", &[]);
    hub.flush(T).unwrap();
    assert_eq!(cap.json_lines()[0]["msg"], "now written");
}

#[test]
fn fan_out_gives_each_output_each_record_once() {
    let hub = Hub::default();
    let a = Capture::new();
    let b = Capture::new();
    add_capture(&hub, "a", Level::INFO, &a);
    add_capture(&hub, "b", Level::INFO, &b);
    assert!(
        hub.add_output(
            "a",
            Level::INFO,
            JsonOutput::writer(Capture::new()).build().unwrap()
        )
        .unwrap_err()
        .to_string()
        .contains("already exists")
    );
    hub.get_logger("x").info("once", &[]);
    hub.flush(T).unwrap();
    assert_eq!(a.lines().len(), 1);
    assert_eq!(b.lines().len(), 1);
}

#[test]
fn eight_threads_of_ten_thousand_lines_give_eighty_thousand_intact_lines() {
    let (hub, cap) = hub_with_json("info");
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let log = hub.get_logger("load").with(&[attr::uint("thread", t)]);
            s.spawn(move || {
                for i in 0..10_000u64 {
                    log.info(
                        "request handled",
                        &[
                            attr::uint("i", i),
                            attr::string("path", "/api/v1/users \"quoted\"\n"),
                        ],
                    );
                }
            });
        }
    });
    hub.flush(T).unwrap();
    let lines = cap.json_lines();
    assert_eq!(lines.len(), 80_000);
    let mut seen = vec![vec![false; 10_000]; 8];
    for l in &lines {
        assert_eq!(l["path"], "/api/v1/users \"quoted\"\n");
        seen[l["thread"].as_u64().unwrap() as usize][l["i"].as_u64().unwrap() as usize] = true;
    }
    assert!(seen.iter().flatten().all(|s| *s), "every line arrives once");
    let stats = hub.outputs()[0].stats;
    assert_eq!(
        (stats.accepted, stats.written, stats.dropped),
        (80_000, 80_000, 0)
    );
}

#[test]
fn shutdown_writes_every_queued_line_then_counts_later_lines_as_unrouted() {
    let (hub, cap) = hub_with_json("info");
    let log = hub.get_logger("bye");
    for i in 0..20_000u64 {
        log.info("queued", &[attr::uint("i", i)]);
    }
    hub.shutdown(T).unwrap();
    assert_eq!(cap.json_lines().len(), 20_000);
    // The hub dropped its outputs: later lines are counted as unrouted.
    log.info("after shutdown", &[]);
    assert_eq!(hub.unrouted(), 1);
    hub.shutdown(T).unwrap();
}

#[test]
fn secrets_are_masked_in_bound_and_own_fields() {
    let (hub, cap) = hub_with_json("info");
    let log = hub
        .get_logger("auth")
        .with(&[attr::string("api_key", "sk-live-123")]);
    log.info(
        "login",
        &[
            attr::string("Authorization", "Bearer abc"),
            attr::string("password", "hunter2"),
            attr::string("user", "alice"),
            attr::int("token", 987_654_321),
        ],
    );
    hub.flush(T).unwrap();
    let text = cap.text();
    for secret in ["sk-live-123", "Bearer abc", "hunter2", "987654321"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let l = &cap.json_lines()[0];
    assert_eq!(l["api_key"], "[REDACTED]");
    assert_eq!(l["Authorization"], "[REDACTED]");
    assert_eq!(l["user"], "alice");
}

#[test]
fn control_characters_cannot_forge_a_json_line() {
    let (hub, cap) = hub_with_json("info");
    let evil = "x\"}\n{\"level\":\"ERROR\",\"msg\":\"forged\"}\u{1b}[2J\u{0}";
    hub.get_logger("in").info(evil, &[attr::string("v", evil)]);
    hub.flush(T).unwrap();
    let lines = cap.json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["msg"], evil);
    assert_eq!(lines[0]["v"], evil);
}

#[test]
fn utc_time_zone_prints_z() {
    let hub = Hub::default();
    let cap = Capture::new();
    let out = JsonOutput::writer(cap.clone())
        .with_time_zone(TimeZone::Utc)
        .build()
        .unwrap();
    hub.add_output("json", Level::INFO, out).unwrap();
    hub.get_logger("t").info("x", &[]);
    hub.flush(T).unwrap();
    let t = cap.json_lines()[0]["time"].as_str().unwrap().to_string();
    assert!(t.ends_with('Z'), "{t}");
    let year: i32 = t[..4].parse().unwrap();
    let now_year = 1970
        + (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 31_556_952) as i32;
    assert!((year - now_year).abs() <= 1);
}

#[test]
fn macros_add_the_module_and_context_carries_the_logger() {
    let (hub, cap) = hub_with_json("debug");
    let log = hub
        .get_logger("ctx")
        .with(&[attr::string(keys::REQUEST_ID, "r-9")]);
    piko_obs_logger::debug!(log, "from macro", attr::int("n", 1));
    let fallback = hub.get_logger("fallback");
    assert!(!context::has_logger());
    assert_eq!(context::from_context(&fallback).name(), "fallback");
    context::in_scope(&log, || {
        assert!(context::has_logger());
        context::expect_current().info("from context", &[]);
    });
    let missing = std::panic::catch_unwind(context::expect_current).unwrap_err();
    let text = missing
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| missing.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(text.contains("no logger in context"), "{text}");
    hub.flush(T).unwrap();
    let l = cap.json_lines();
    assert_eq!(l[0]["source"]["module"], "logger_json");
    assert_eq!(l[0]["n"], 1);
    assert_eq!(l[1]["msg"], "from context");
    assert_eq!(l[1]["request_id"], "r-9");
}

#[test]
fn panic_logs_an_error_then_panics() {
    let (hub, cap) = hub_with_json("info");
    hub.set_error_backtraces(true);
    let log = hub.get_logger("p");
    let r = std::panic::catch_unwind(|| log.panic("invariant broken", &[attr::int("k", 1)]));
    assert!(r.is_err());
    hub.flush(T).unwrap();
    let l = &cap.json_lines()[0];
    assert_eq!(l["level"], "ERROR");
    assert_eq!(l["msg"], "invariant broken");
    assert!(l["stack_trace"].is_array());
}

#[test]
fn standard_keys_are_piko_strings() {
    assert_eq!(keys::METHOD, "method");
    assert_eq!(keys::MTD, "mtd");
    assert_eq!(keys::CTX, "ctx");
    assert_eq!(keys::ERROR, "error");
    assert_eq!(keys::STACK_TRACE, "stack_trace");
    assert_eq!(keys::TRACE_ID, "trace_id");
    assert_eq!(keys::SPAN_ID, "span_id");
}

#[test]
fn a_panicking_output_is_counted_and_the_others_still_write() {
    struct Explodes;
    impl Output for Explodes {
        fn write(&self, _: &piko_obs_logger::Record<'_>) {
            panic!("output bug");
        }
        fn flush(&self, _: Duration) -> Result<(), piko_obs_logger::FlushError> {
            Ok(())
        }
    }
    let (hub, cap) = hub_with_json("info");
    hub.add_output("explodes", Level::INFO, Arc::new(Explodes))
        .unwrap();
    hub.get_logger("x").info("still written", &[]);
    hub.flush(T).unwrap();
    assert_eq!(cap.json_lines()[0]["msg"], "still written");
    let info = hub
        .outputs()
        .into_iter()
        .find(|o| o.name == "explodes")
        .unwrap();
    assert_eq!(info.stats.write_errors, 1);
}

#[test]
fn span_ids_bound_lazily_print_like_any_bound_field() {
    let (hub, cap) = hub_with_json("info");
    let parent = hub
        .get_logger("spans")
        .with(&[attr::string("tenant", "acme")]);
    let trace = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ];
    let span = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
    let log = parent.with_span_ids(trace, span);
    log.info("inside", &[]);
    // A child of a span logger keeps the ids, and so does a span logger of a span logger.
    log.with(&[attr::int("step", 2)]).info("child", &[]);
    log.with_span_ids(trace, [0xff; 8]).info("nested", &[]);
    // A span logger of a logger with no bound field (it holds no copy of the root's).
    let root_span = hub.get_logger("spans").with_span_ids(trace, span);
    let clone = root_span.clone();
    root_span.info("from the root", &[]);
    clone.info("from a clone", &[]);
    hub.flush(T).unwrap();
    let mut lines: Vec<Value> = cap
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for l in lines.drain(3..) {
        assert_eq!(l["logger"], "spans");
        assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(l["span_id"], "00f067aa0ba902b7");
        assert!(l.get("tenant").is_none(), "{l}");
    }
    for l in &lines {
        assert_eq!(l["tenant"], "acme");
        assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }
    assert_eq!(lines[0]["span_id"], "00f067aa0ba902b7");
    assert_eq!(lines[1]["span_id"], "00f067aa0ba902b7");
    assert_eq!(lines[1]["step"], 2);
    assert_eq!(lines[2]["span_id"], "ffffffffffffffff");
    assert_eq!(
        cap.lines()[2].matches("\"span_id\"").count(),
        1,
        "replaced, not repeated"
    );
}
