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

use crate::attr::{REDACTED, SecretKeys, Value, error_chain, write_cached_key};

/// Appends `s` as a JSON string literal, with quotes.
#[inline]
pub fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.reserve(s.len() + 2);
    buf.push(b'"');
    // Most text (keys, messages, paths) has nothing to escape: one check over its
    // words, then one copy.
    if is_clean(s.as_bytes()) {
        buf.extend_from_slice(s.as_bytes());
    } else {
        write_str_body(buf, s);
    }
    buf.push(b'"');
}

/// Appends the object member prefix `,"key":` for the static `key` and returns whether
/// the key's values must be masked under `secrets`. Both the encoded prefix and the answer
/// are cached per thread by the key's address, so a key seen before costs one lookup and
/// one copy, with no escape check and no pattern matching.
///
/// ```
/// use piko_obs_logger::{SecretKeys, json};
/// let secrets = SecretKeys::default();
/// let mut buf = Vec::new();
/// assert!(!json::write_member_key(&mut buf, "path", &secrets));
/// assert!(json::write_member_key(&mut buf, "api_key", &secrets));
/// assert_eq!(buf, br#","path":,"api_key":"#);
/// ```
#[inline]
pub fn write_member_key(buf: &mut Vec<u8>, key: &'static str, secrets: &SecretKeys) -> bool {
    write_cached_key(buf, key, secrets)
}

/// The 8 bytes of `b` from `at`, little-endian; a word that needs escaping (zero bytes)
/// when there are fewer, which sends the caller to the byte-by-byte path.
#[inline]
fn word_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Whether no byte of `b` needs escaping, checked a word at a time: whole words, then
/// the last 8 bytes again (overlapping), or for 4 to 7 bytes the first and last 4.
#[inline]
fn is_clean(b: &[u8]) -> bool {
    let n = b.len();
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            if word_needs_escape(word_at(b, i)) {
                return false;
            }
            i += 8;
        }
        i == n || !word_needs_escape(word_at(b, n - 8))
    } else if n >= 4 {
        let half = |at: usize| {
            b.get(at..at + 4)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .map_or(0, u32::from_le_bytes)
        };
        !word_needs_escape(u64::from(half(0)) | u64::from(half(n - 4)) << 32)
    } else {
        b.iter().all(|&c| ESCAPE[usize::from(c)] == 0)
    }
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

/// Whether any of the 8 bytes in `w` needs escaping: below 0x20, `"`, `\\` or 0x7f.
/// Exact for "any" (the usual zero-byte bit trick), so a `false` lets 8 bytes through.
#[inline]
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = (w ^ (ONES * b'"' as u64)).wrapping_sub(ONES) & !(w ^ (ONES * b'"' as u64));
    let backslash = (w ^ (ONES * b'\\' as u64)).wrapping_sub(ONES) & !(w ^ (ONES * b'\\' as u64));
    let del = (w ^ (ONES * 0x7f)).wrapping_sub(ONES) & !(w ^ (ONES * 0x7f));
    (below_space | quote | backslash | del) & HIGH != 0
}

/// Appends the escaped body of a JSON string, without quotes.
#[inline]
pub fn write_str_body(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip clean words eight bytes at a time.
        while let Some(chunk) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            if word_needs_escape(w) {
                break;
            }
            i += 8;
        }
        let Some(&b) = bytes.get(i) else { break };
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
///
/// Values with at most six decimals (`12.5`, `0.25`, `3.0`), the usual latencies and
/// ratios, take a fast exact path: `v` is printed as `n / 10^k` only when dividing `n` by
/// `10^k` gives back exactly `v`, so the text parses back to the same `f64`. Other
/// values go through ryu's shortest representation.
pub fn write_f64(buf: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        if v != 0.0 && v.abs() < 1e12 {
            for (k, scale) in [(3usize, 1e3f64), (6, 1e6)] {
                let scaled = v * scale;
                // Truncation is exact when `scaled` is a whole number; otherwise the
                // comparisons fail and the next scale (or ryu) is tried.
                let whole = scaled as i64;
                if whole as f64 == scaled && whole as f64 / scale == v {
                    write_scaled(buf, whole, k);
                    return;
                }
            }
        }
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

/// Appends `whole / 10^k` in decimal: the integer part, a point, then the fraction
/// without trailing zeros (`0` when it is zero), from one integer conversion.
fn write_scaled(buf: &mut Vec<u8>, whole: i64, k: usize) {
    let mut digits = itoa::Buffer::new();
    let text = digits.format(whole.unsigned_abs()).as_bytes();
    if whole < 0 {
        buf.push(b'-');
    }
    // Fewer digits than `k`: the integer part is 0 and the fraction has leading zeros.
    let (int, frac, zeros) = match text.len().checked_sub(k) {
        Some(0) | None => (&b"0"[..], text, k.saturating_sub(text.len())),
        Some(n) => (&text[..n], &text[n..], 0),
    };
    let kept = frac.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
    buf.extend_from_slice(int);
    buf.push(b'.');
    if kept == 0 {
        buf.push(b'0');
    } else {
        buf.extend_from_slice(&b"00000"[..zeros.min(5)]);
        buf.extend_from_slice(&frac[..kept]);
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

    /// The word-at-a-time check agrees with the byte-by-byte escape at every length up to
    /// 24 and every position of a character that needs escaping.
    #[test]
    fn the_clean_text_check_finds_every_escape_at_every_position() {
        for len in 0..=24 {
            let clean = "a".repeat(len);
            let mut fast = Vec::new();
            write_str(&mut fast, &clean);
            assert_eq!(fast, format!("\"{clean}\"").into_bytes());
            for at in 0..len {
                for bad in ['"', '\\', '\n', '\u{1}', '\u{7f}'] {
                    let mut text = clean.clone().into_bytes();
                    text[at] = bad as u8;
                    let text = String::from_utf8(text).unwrap();
                    let mut slow = vec![b'"'];
                    write_str_body(&mut slow, &text);
                    slow.push(b'"');
                    let mut fast = Vec::new();
                    write_str(&mut fast, &text);
                    assert_eq!(fast, slow, "{text:?}");
                    assert_ne!(fast.len(), len + 2, "{text:?} was escaped");
                }
            }
        }
    }

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
    fn every_byte_value_round_trips_at_every_offset() {
        for b in 0u8..0x80 {
            for offset in 0..9 {
                let mut s = "abcdefghij"[..offset].to_string();
                s.push(char::from(b));
                s.push_str("tail-of-text");
                let out = enc(Value::Str(&s));
                let back: String = serde_json::from_str(&out).unwrap();
                assert_eq!(back, s, "byte {b:#x} at {offset}");
            }
        }
        let s = "naïve ☃ \u{80}\u{9b} end";
        assert_eq!(
            serde_json::from_str::<String>(&enc(Value::Str(s))).unwrap(),
            s
        );
    }

    #[test]
    fn floats_parse_back_to_the_same_value() {
        let mut values = vec![
            12.5,
            0.25,
            3.0,
            -3.0,
            0.1,
            0.2,
            0.3,
            1.0 / 3.0,
            1e-7,
            123456.789,
            1e11 + 0.5,
            -0.001,
            0.000001,
            2.5e-6,
            999999.999999,
            1e12,
            1e300,
            f64::MIN_POSITIVE,
            -0.0,
            0.0,
            f64::MAX,
            5e-324,
        ];
        let mut x = 0.7f64;
        for _ in 0..10_000 {
            x = (x * 3.9 * (1.0 - x)).abs();
            values.push(x * 1000.0);
            values.push((x * 1e6).round() / 1e3);
        }
        for v in values {
            let mut b = Vec::new();
            write_f64(&mut b, v);
            let text = String::from_utf8(b).unwrap();
            let back: f64 = text.parse().unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v:?} printed as {text}");
            assert!(
                text.contains('.') || text.contains('e'),
                "{text} must read as a float"
            );
        }
        let mut b = Vec::new();
        write_f64(&mut b, 12.5);
        assert_eq!(b, b"12.5");
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
