//! The JSON encoding of values, shared by the JSON output and every adapter that needs
//! the same shape. Writes straight into a byte buffer; never fails.
//!
//! | value | JSON |
//! |---|---|
//! | text, `display` | string, every control character escaped |
//! | list of strings | array of strings |
//! | integers, floats | numbers (non-finite floats as the strings `NaN`, `inf`, `-inf`) |
//! | time | RFC 3339 string in UTC with nanoseconds, `2026-11-25T16:45:50.123456789Z` |
//! | duration | integer nanoseconds (as Piko) |
//! | error | `{"message": "...", "sources": ["cause", "root cause"]}` |
//! | `any` | the value's own serde JSON |
//! | `null` | `null` |
//! | a secret key's value | `"[REDACTED]"` |

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::attr::{REDACTED, Value, error_chain};

/// Appends `s` as a JSON string literal, with quotes.
pub fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    write_str_body(buf, s);
    buf.push(b'"');
}

/// For each byte: 0 when it is copied as is, else the character after `\\` in its
/// escape (`u` for the `\\u00XX` form).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x7f] = b'u';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t
};

/// Appends the escaped body of a JSON string, without quotes.
#[inline]
pub fn write_str_body(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let esc = ESCAPE[usize::from(b)];
        if esc == 0 {
            i += 1;
            continue;
        }
        buf.extend_from_slice(&bytes[start..i]);
        if esc == b'u' {
            buf.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            buf.extend_from_slice(&[b'\\', esc]);
        }
        i += 1;
        start = i;
    }
    buf.extend_from_slice(&bytes[start..]);
}

/// Appends a float as a JSON number (non-finite values as strings).
pub fn write_f64(buf: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let mut b = ryu::Buffer::new();
        buf.extend_from_slice(b.format_finite(v).as_bytes());
    } else if v.is_nan() {
        buf.extend_from_slice(b"\"NaN\"");
    } else if v > 0.0 {
        buf.extend_from_slice(b"\"inf\"");
    } else {
        buf.extend_from_slice(b"\"-inf\"");
    }
}

/// Appends an integer.
pub fn write_i64(buf: &mut Vec<u8>, v: i64) {
    let mut b = itoa::Buffer::new();
    buf.extend_from_slice(b.format(v).as_bytes());
}

/// Appends an unsigned integer.
pub fn write_u64(buf: &mut Vec<u8>, v: u64) {
    let mut b = itoa::Buffer::new();
    buf.extend_from_slice(b.format(v).as_bytes());
}

/// Appends a value in the encoding of the module table. `secret` masks it.
pub fn write_value(buf: &mut Vec<u8>, value: &Value<'_>, secret: bool) {
    if secret {
        write_str(buf, REDACTED);
        return;
    }
    match *value {
        Value::Str(s) => write_str(buf, s),
        Value::Strings(l) => {
            buf.push(b'[');
            for i in 0..l.len() {
                if i > 0 {
                    buf.push(b',');
                }
                write_str(buf, l.get(i));
            }
            buf.push(b']');
        }
        Value::Int(v) => write_i64(buf, v),
        Value::Uint(v) => write_u64(buf, v),
        Value::Float(v) => write_f64(buf, v),
        Value::Bool(v) => buf.extend_from_slice(if v { b"true" } else { b"false" }),
        Value::Time(t) => {
            buf.push(b'"');
            write_rfc3339(buf, t, 0, 9);
            buf.push(b'"');
        }
        Value::Duration(d) => write_u64(buf, duration_nanos(d)),
        Value::Error(e) => write_chain(buf, &error_chain(e)),
        Value::ErrorChain(c) => write_chain(buf, c),
        Value::Display(d) => {
            let start = buf.len();
            let _ = write!(buf, "{d}");
            escape_tail(buf, start);
        }
        Value::Any(v) => {
            let start = buf.len();
            let mut ser = serde_json::Serializer::new(&mut *buf);
            if let Err(e) = erased_serde::serialize(v, &mut ser) {
                buf.truncate(start);
                write_str(buf, &format!("!serialize: {e}"));
            }
        }
        Value::Null => buf.extend_from_slice(b"null"),
    }
}

/// Nanoseconds of a duration, saturating at `u64::MAX`.
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn write_chain<S: AsRef<str>>(buf: &mut Vec<u8>, chain: &[S]) {
    buf.extend_from_slice(b"{\"message\":");
    write_str(buf, chain.first().map_or("", |s| s.as_ref()));
    buf.extend_from_slice(b",\"sources\":[");
    for (i, s) in chain.iter().skip(1).enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_str(buf, s.as_ref());
    }
    buf.extend_from_slice(b"]}");
}

/// Turns the raw text written at `buf[start..]` into a quoted, escaped JSON string.
fn escape_tail(buf: &mut Vec<u8>, start: usize) {
    let raw = buf.split_off(start);
    let text = String::from_utf8_lossy(&raw);
    write_str(buf, &text);
}

/// Appends `t` as RFC 3339 at `offset_secs` east of UTC (`Z` when 0), with `digits`
/// fractional digits (0, 3, 6 or 9).
pub fn write_rfc3339(buf: &mut Vec<u8>, t: SystemTime, offset_secs: i32, digits: u32) {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let n = d.subsec_nanos();
            if n == 0 {
                (-(d.as_secs() as i64), 0)
            } else {
                (-(d.as_secs() as i64) - 1, 1_000_000_000 - n)
            }
        }
    };
    let local = secs + i64::from(offset_secs);
    let days = local.div_euclid(86_400);
    let sod = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    push_num(buf, y, 4);
    buf.push(b'-');
    push_num(buf, i64::from(m), 2);
    buf.push(b'-');
    push_num(buf, i64::from(d), 2);
    buf.push(b'T');
    push_num(buf, sod / 3600, 2);
    buf.push(b':');
    push_num(buf, (sod / 60) % 60, 2);
    buf.push(b':');
    push_num(buf, sod % 60, 2);
    if digits > 0 {
        buf.push(b'.');
        let digits = digits.min(9);
        let frac = i64::from(nanos / 10u32.pow(9 - digits));
        push_num(buf, frac, digits as usize);
    }
    if offset_secs == 0 {
        buf.push(b'Z');
    } else {
        buf.push(if offset_secs > 0 { b'+' } else { b'-' });
        let off = offset_secs.unsigned_abs();
        push_num(buf, i64::from(off / 3600), 2);
        buf.push(b':');
        push_num(buf, i64::from((off / 60) % 60), 2);
    }
}

fn push_num(buf: &mut Vec<u8>, v: i64, width: usize) {
    let mut b = itoa::Buffer::new();
    let s = b.format(v.unsigned_abs());
    if v < 0 {
        buf.push(b'-');
    }
    for _ in s.len()..width {
        buf.push(b'0');
    }
    buf.extend_from_slice(s.as_bytes());
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: Value<'_>) -> String {
        let mut b = Vec::new();
        write_value(&mut b, &v, false);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn strings_escape_every_control_character() {
        let s = "a\"b\\c\nd\re\tf\u{1b}[31mg\u{0}h\u{7f}é";
        let out = enc(Value::Str(s));
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, s);
        assert!(!out.contains('\u{1b}') && !out.contains('\n'));
    }

    #[test]
    fn values_encode_as_documented() {
        assert_eq!(enc(Value::Duration(Duration::from_secs(15))), "15000000000");
        assert_eq!(enc(Value::Float(1.5)), "1.5");
        assert_eq!(enc(Value::Float(f64::NAN)), "\"NaN\"");
        assert_eq!(enc(Value::Int(-3)), "-3");
        assert_eq!(enc(Value::Null), "null");
        let t = UNIX_EPOCH + Duration::new(1_764_089_150, 123_456_789);
        assert_eq!(enc(Value::Time(t)), "\"2025-11-25T16:45:50.123456789Z\"");
        let chain = ["outer".to_string(), "inner".to_string()];
        assert_eq!(
            enc(Value::ErrorChain(&chain)),
            r#"{"message":"outer","sources":["inner"]}"#
        );
        let obj = serde_json::json!({"a": [1, 2]});
        assert_eq!(enc(Value::Any(&obj)), r#"{"a":[1,2]}"#);
        let list = ["x", "y\"z"];
        assert_eq!(enc(Value::Strings((&list).into())), r#"["x","y\"z"]"#);
        let mut b = Vec::new();
        write_value(&mut b, &Value::Str("hunter2"), true);
        assert_eq!(b, b"\"[REDACTED]\"");
    }

    #[test]
    fn rfc3339_with_offsets_and_before_the_epoch() {
        let t = UNIX_EPOCH + Duration::new(1_764_089_150, 5_000_000);
        let mut b = Vec::new();
        write_rfc3339(&mut b, t, 3600, 9);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "2025-11-25T17:45:50.005000000+01:00"
        );
        let mut b = Vec::new();
        write_rfc3339(&mut b, t, -(5 * 3600 + 30 * 60), 3);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "2025-11-25T11:15:50.005-05:30"
        );
        let mut b = Vec::new();
        write_rfc3339(&mut b, UNIX_EPOCH - Duration::new(1, 0), 0, 0);
        assert_eq!(String::from_utf8(b).unwrap(), "1969-12-31T23:59:59Z");
        // Leap day.
        let mut b = Vec::new();
        write_rfc3339(&mut b, UNIX_EPOCH + Duration::from_secs(951_782_400), 0, 0);
        assert_eq!(String::from_utf8(b).unwrap(), "2000-02-29T00:00:00Z");
    }
}
