//! Fuzzing by property tests of the two line formats, end to end through a hub, its
//! writer thread and a real writer: messages, logger names and values of arbitrary
//! Unicode (control characters, `\u{2028}`, C1 controls, ANSI escapes) give one line per
//! record; a JSON line parses and gives the exact text back; a pretty line holds no raw
//! control character.
//!
//! Each property runs `PIKO_FUZZ_CASES` cases (default 256); see `tests/src/fuzz.rs`.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use piko_obs_logger::{Hub, Level, attr};
use piko_obs_logger_drains::{ColorChoice, JsonOutput, PrettyOutput};
use piko_obs_tests::fuzz::fuzz;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

/// A writer whose bytes the test takes after each record (unlike `Capture`, taking
/// empties it, so a long run does not copy a growing buffer).
#[derive(Clone, Default)]
struct Taken(Arc<Mutex<Vec<u8>>>);

impl Taken {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Write for Taken {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Text with a bias to what breaks lines and terminals, and any character besides.
fn nasty_text() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(
            &[
                '\n', '\r', '\t', '\0', '\u{b}', '\u{c}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}',
                '\u{2028}', '\u{2029}', '\u{feff}', '\u{fffd}', '"', '\\', '/', '=', '|', ' ',
                'é', '😀',
            ][..]
        ),
        3 => prop::char::range('a', 'z'),
    ];
    prop::collection::vec(c, 0..40).prop_map(String::from_iter)
}

/// A record's content: level (below ERROR: ERROR records add a stack trace), logger
/// name, message, a bound value, a string, a list and a displayed value.
#[derive(Debug, Clone)]
struct Content {
    level: Level,
    logger: String,
    msg: String,
    bound: String,
    text: String,
    list: Vec<String>,
    shown: String,
}

fn content() -> impl Strategy<Value = Content> {
    (
        (-40i32..8).prop_map(Level::new),
        nasty_text(),
        nasty_text(),
        nasty_text(),
        nasty_text(),
        prop::collection::vec(nasty_text(), 0..4),
        nasty_text(),
    )
        .prop_map(|(level, logger, msg, bound, text, list, shown)| Content {
            level,
            logger,
            msg,
            bound,
            text,
            list,
            shown,
        })
}

/// Logs `c` once on `hub` and returns what the output wrote for it.
fn log_one(hub: &Hub, out: &Taken, c: &Content) -> Vec<u8> {
    let shown: &(dyn std::fmt::Display + Sync) = &c.shown;
    hub.get_logger(&c.logger)
        .with(&[attr::string("region", &c.bound)])
        .log(
            c.level,
            &c.msg,
            &[
                attr::string("note", &c.text),
                attr::strings("items", c.list.as_slice()),
                attr::display("shown", shown),
                attr::int("n", 7),
            ],
        );
    hub.flush(T).unwrap();
    out.take()
}

/// The one line of `bytes`: valid UTF-8 ending in `\n`, with no other `\n`.
fn one_line(bytes: &[u8]) -> Result<&str, TestCaseError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| TestCaseError::fail(format!("not UTF-8 ({e}): {bytes:?}")))?;
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| TestCaseError::fail(format!("no final newline: {text:?}")))?;
    prop_assert!(!line.contains('\n'), "more than one line: {:?}", text);
    Ok(line)
}

#[test]
fn fuzz_json_line_parses_and_round_trips() {
    let hub = Hub::default();
    let out = Taken::default();
    hub.add_output(
        "json",
        Level::new(i32::MIN),
        JsonOutput::writer(out.clone()).build().unwrap(),
    )
    .unwrap();
    fuzz("json_line_round_trips", content(), |c| {
        let bytes = log_one(&hub, &out, &c);
        let line = one_line(&bytes)?;
        prop_assert!(!line.contains('\r'), "raw CR: {:?}", line);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {line:?}")))?;
        prop_assert_eq!(&v["msg"], &Value::from(c.msg.as_str()));
        prop_assert_eq!(&v["logger"], &Value::from(c.logger.as_str()));
        prop_assert_eq!(&v["level"], &Value::from(c.level.to_string()));
        prop_assert_eq!(&v["region"], &Value::from(c.bound.as_str()));
        prop_assert_eq!(&v["note"], &Value::from(c.text.as_str()));
        prop_assert_eq!(&v["items"], &Value::from(c.list.clone()));
        prop_assert_eq!(&v["shown"], &Value::from(c.shown.as_str()));
        prop_assert_eq!(&v["n"], &Value::from(7));
        Ok(())
    });
}

/// Removes the SGR sequences the pretty format paints with (`ESC [ digits ; m`).
fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('\u{1b}') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.strip_prefix('[').and_then(|a| {
            let end = a.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
            a[end..].strip_prefix('m')
        }) {
            Some(tail) => rest = tail,
            None => {
                out.push('\u{1b}');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn pretty_property(name: &str, color: ColorChoice) {
    let hub = Hub::default();
    let out = Taken::default();
    hub.add_output(
        "pretty",
        Level::new(i32::MIN),
        PrettyOutput::writer(out.clone())
            .with_color(color)
            .build()
            .unwrap(),
    )
    .unwrap();
    fuzz(name, content(), |c| {
        let bytes = log_one(&hub, &out, &c);
        let line = one_line(&bytes)?;
        let plain = strip_colours(line);
        if color == ColorChoice::Never {
            prop_assert_eq!(&plain, line);
        }
        // No raw control character (C0, DEL, C1): no second line, no carriage return,
        // no terminal escape that the format did not paint itself.
        prop_assert!(
            !plain.chars().any(|ch| ch.is_control()),
            "raw control character in {:?}",
            line
        );
        // The columns are all there: the values cannot forge or swallow a separator
        // count below the eight columns.
        prop_assert!(plain.split(" | ").count() >= 8, "{:?}", plain);
        Ok(())
    });
}

#[test]
fn fuzz_pretty_line_is_one_line() {
    pretty_property("pretty_line_is_one_line", ColorChoice::Never);
}

#[test]
fn fuzz_pretty_line_is_one_line_in_colour() {
    pretty_property("pretty_line_is_one_line_in_colour", ColorChoice::Always);
}
