//! The pretty console format: Piko's columns, colours per output, and no way for a value
//! to break the line.

use std::time::Duration;

use piko_obs_logger::{Hub, Level, attr};
use piko_obs_logger_drains::{ColorChoice, PrettyOutput};
use piko_obs_testkit::Capture;

const T: Duration = Duration::from_secs(10);

fn pretty(color: ColorChoice) -> (Hub, Capture) {
    let hub = Hub::default();
    let cap = Capture::new();
    let out = PrettyOutput::writer(cap.clone())
        .with_color(color)
        .build()
        .unwrap();
    hub.add_output("pretty", Level::TRACE, out).unwrap();
    (hub, cap)
}

#[test]
fn columns_extras_sorted_and_source_last() {
    let (hub, cap) = pretty(ColorChoice::Never);
    let log = hub
        .get_logger("bootstrap")
        .with(&[attr::string("mode", "dev")]);
    log.info(
        "Server started",
        &[attr::int("port", 8080), attr::bool("tls", false)],
    );
    hub.flush(T).unwrap();
    let line = cap.lines().remove(0);
    let cols: Vec<&str> = line.split(" | ").collect();
    assert_eq!(cols.len(), 8, "{line}");
    let hms = cols[0];
    assert_eq!(hms.len(), 8);
    assert!(hms.chars().enumerate().all(|(i, c)| if i == 2 || i == 5 {
        c == ':'
    } else {
        c.is_ascii_digit()
    }));
    assert_eq!(cols[1], "INFO  ");
    assert_eq!(cols[2], std::process::id().to_string());
    assert_eq!(cols[4], format!("{:<28}", "bootstrap"));
    assert_eq!(cols[5], "Server started");
    assert_eq!(cols[6], "mode=dev port=8080 tls=false");
    assert!(cols[7].starts_with("logger_pretty.rs:"), "{line}");
    assert!(!line.contains('\u{1b}'));
}

#[test]
fn long_level_names_are_not_cut_and_offsets_print() {
    let (hub, cap) = pretty(ColorChoice::Never);
    let log = hub.get_logger("x");
    log.internal("a", &[]);
    log.log(Level::new(3), "b", &[]);
    hub.flush(T).unwrap();
    let lines = cap.lines();
    assert_eq!(lines[0].split(" | ").nth(1), Some("INTERNAL"));
    assert_eq!(lines[1].split(" | ").nth(1), Some("INFO+3"));
}

#[test]
fn colours_follow_pikos_table_when_on() {
    let (hub, cap) = pretty(ColorChoice::Always);
    let log = hub.get_logger("c");
    log.info("hello", &[attr::int("k", 1)]);
    log.error("bad", &[]);
    hub.flush(T).unwrap();
    let text = cap.text();
    assert!(text.contains("\u{1b}[33mINFO  \u{1b}[0m"), "{text:?}");
    assert!(text.contains("\u{1b}[31mERROR \u{1b}[0m"), "{text:?}");
    assert!(text.contains("\u{1b}[97mhello\u{1b}[0m"));
    assert!(text.contains("\u{1b}[36mk\u{1b}[0m=1"));
}

#[test]
fn colour_is_per_output_not_global() {
    let hub = Hub::default();
    let coloured = Capture::new();
    let plain = Capture::new();
    hub.add_output(
        "a",
        Level::INFO,
        PrettyOutput::writer(coloured.clone())
            .with_color(ColorChoice::Always)
            .build()
            .unwrap(),
    )
    .unwrap();
    // Adding a colourless output afterwards does not turn the first one's colour off.
    hub.add_output(
        "b",
        Level::INFO,
        PrettyOutput::writer(plain.clone())
            .with_color(ColorChoice::Never)
            .build()
            .unwrap(),
    )
    .unwrap();
    hub.get_logger("x").info("m", &[]);
    hub.flush(T).unwrap();
    assert!(coloured.text().contains('\u{1b}'));
    assert!(!plain.text().contains('\u{1b}'));
}

#[test]
fn control_characters_and_ansi_escapes_are_neutralised() {
    let (hub, cap) = pretty(ColorChoice::Never);
    let forged =
        "ok\u{9b}31m\n12:00:00 | ERROR  | 1 | host | forged | fake line\u{1b}[2J\r\u{9b}31m";
    hub.get_logger("in").warn(
        forged,
        &[
            attr::string("user", forged),
            attr::strings("list", &["a\nb"]),
        ],
    );
    hub.flush(T).unwrap();
    let text = cap.text();
    assert_eq!(text.lines().count(), 1, "{text:?}");
    assert!(!text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{9b}'));
    assert!(text.contains("ok\\u{9b}31m\\n12:00:00"), "{text}");
    assert!(text.contains("\\x1b[2J\\r\\u{9b}31m"));
    assert!(text.contains("list=a\\nb"));
}

#[test]
fn error_lines_end_with_a_stack_block_and_values_render_readably() {
    let (hub, cap) = pretty(ColorChoice::Never);
    hub.set_error_backtraces(true);
    let err = std::io::Error::other("disk full");
    hub.get_logger("store").error(
        "write failed",
        &[
            attr::error(&err),
            attr::duration("took", Duration::from_micros(1500)),
            attr::string("password", "hunter2"),
        ],
    );
    hub.flush(T).unwrap();
    let text = cap.text();
    let mut lines = text.lines();
    let first = lines.next().unwrap();
    assert!(first.contains("error=disk full"), "{first}");
    assert!(first.contains("took=1.5ms"), "{first}");
    assert!(first.contains("password=[REDACTED]") && !text.contains("hunter2"));
    assert_eq!(lines.next(), Some("  Stack trace:"));
    let frame = lines.next().unwrap();
    assert!(frame.starts_with('\t'), "{frame:?}");
}
