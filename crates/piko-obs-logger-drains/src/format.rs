//! The two line formats: JSON lines (production) and Piko's pretty console (development).

use std::io::Write as _;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use piko_obs_logger::json::{self, write_rfc3339, write_str, write_value};
use piko_obs_logger::{Attr, Level, REDACTED, Record, Value};

/// Re-exported from `piko-obs-logger`, where other adapters (the stdout notifier) find it.
pub use piko_obs_logger::write_neutralised;

/// Turns a record into one line of bytes, ending in `\n`.
pub trait Format: Send + Sync + 'static {
    /// Appends the record's line to `buf`.
    fn format(&self, record: &Record<'_>, buf: &mut Vec<u8>);

    /// Whether [`format`](Format::format) runs no code but its own and that of the
    /// record's values, and never logs: then a queued output may format a line whose
    /// values are plain data (no `Display`, `Error` or `Serialize` of the caller's)
    /// straight into its queue, under the queue's lock, instead of formatting it aside
    /// and copying it in. The built-in formats answer `true`; the default is `false`.
    fn is_self_contained(&self) -> bool {
        false
    }
}

/// Which clock offset line times are printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeZone {
    /// The machine's local offset (`+01:00`), as Piko prints; `Z` where local is UTC.
    #[default]
    Local,
    /// UTC (`Z`).
    Utc,
}

/// The local offset, looked up once a minute rather than on every line.
#[derive(Debug)]
struct OffsetCache {
    zone: TimeZone,
    minute: AtomicI64,
    offset: AtomicI32,
}

impl OffsetCache {
    fn new(zone: TimeZone) -> OffsetCache {
        OffsetCache {
            zone,
            minute: AtomicI64::new(i64::MIN),
            offset: AtomicI32::new(0),
        }
    }

    fn offset_at(&self, t: SystemTime) -> i32 {
        if self.zone == TimeZone::Utc {
            return 0;
        }
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let minute = secs / 60;
        if self.minute.load(Ordering::Relaxed) != minute {
            let off = chrono::DateTime::from_timestamp(secs, 0)
                .map(|utc| {
                    use chrono::Offset as _;
                    utc.with_timezone(&chrono::Local)
                        .offset()
                        .fix()
                        .local_minus_utc()
                })
                .unwrap_or(0);
            self.offset.store(off, Ordering::Relaxed);
            self.minute.store(minute, Ordering::Relaxed);
        }
        self.offset.load(Ordering::Relaxed)
    }
}

/// One JSON object per line:
/// `{"time":…,"level":…,"msg":…,"logger":…,"source":{"file":…,"line":…,"module":…},`
/// then the bound fields, then the record's fields in the order given, then
/// `stack_trace` (an array of frames) on ERROR records. Values are encoded as
/// [`piko_obs_logger::json`] documents; secret keys' values are `"[REDACTED]"`.
#[derive(Debug)]
pub struct JsonFormat {
    offset: OffsetCache,
}

impl JsonFormat {
    /// A JSON format printing times in `zone`.
    pub fn new(zone: TimeZone) -> JsonFormat {
        JsonFormat {
            offset: OffsetCache::new(zone),
        }
    }
}

impl Default for JsonFormat {
    fn default() -> Self {
        JsonFormat::new(TimeZone::Local)
    }
}

#[inline]
fn json_field(buf: &mut Vec<u8>, record: &Record<'_>, a: &Attr<'_>) {
    let secret = record.write_json_key(buf, a.key());
    write_value(buf, &a.value(), secret);
}

thread_local! {
    /// The last second formatted on this thread: (seconds, offset,
    /// `YYYY-MM-DDTHH:MM:SS.`).
    static SECOND: std::cell::RefCell<(i64, i32, [u8; 20])> =
        const { std::cell::RefCell::new((i64::MIN, 0, [0; 20])) };
}

/// RFC 3339 with nanoseconds, reusing the date and time of day while the second is the
/// same: the common case is the 20-byte prefix copied from where it is kept, then the
/// nine digits as one 8-byte word and a byte.
fn write_time(buf: &mut Vec<u8>, t: SystemTime, offset: i32) {
    let Ok(d) = t.duration_since(UNIX_EPOCH) else {
        write_rfc3339(buf, t, offset, 9);
        return;
    };
    let secs = d.as_secs() as i64;
    let reused = SECOND
        .try_with(|c| {
            let c = c.try_borrow().ok()?;
            (c.0 == secs && c.1 == offset).then(|| buf.extend_from_slice(&c.2))
        })
        .ok()
        .flatten()
        .is_some();
    if reused {
        let n = d.subsec_nanos();
        buf.extend_from_slice(&eight_digits(n / 10).to_le_bytes());
        buf.push(b'0' + (n % 10) as u8);
        write_offset(buf, offset);
    } else {
        let start = buf.len();
        write_rfc3339(buf, t, offset, 9);
        if let Some(p) = buf.get(start..start + 20)
            && let Ok(p) = <[u8; 20]>::try_from(p)
            // Only a four-digit year has the point here.
            && p[19] == b'.'
        {
            let _ = SECOND.try_with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    *c = (secs, offset, p);
                }
            });
        }
    }
}

/// The two decimal digits of each number below 100, as a little-endian `u16`.
static PAIRS: [u16; 100] = {
    let mut t = [0u16; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = u16::from_le_bytes([b'0' + (i / 10) as u8, b'0' + (i % 10) as u8]);
        i += 1;
    }
    t
};

/// `n` (below 10^8) as eight digits with leading zeros, in the bytes of a little-endian
/// word, two digits at a time.
#[inline]
fn eight_digits(n: u32) -> u64 {
    let pair = |v: u32| u64::from(PAIRS[(v % 100) as usize]);
    pair(n / 1_000_000) | pair(n / 10_000) << 16 | pair(n / 100) << 32 | pair(n) << 48
}

fn write_offset(buf: &mut Vec<u8>, offset: i32) {
    if offset == 0 {
        buf.push(b'Z');
    } else {
        let off = offset.unsigned_abs();
        let _ = write!(
            buf,
            "{}{:02}:{:02}",
            if offset > 0 { '+' } else { '-' },
            off / 3600,
            (off / 60) % 60
        );
    }
}

/// One call site's `,"source":{...}` member, by the addresses of its static file and
/// module and its line.
type SourceSlot = (usize, u32, usize, Vec<u8>);

thread_local! {
    /// Source members already encoded: a call site always prints the same one.
    static SOURCES: std::cell::RefCell<[SourceSlot; 64]> =
        std::cell::RefCell::new(std::array::from_fn(|_| (0, 0, 0, Vec::new())));
}

fn encode_source(buf: &mut Vec<u8>, src: &piko_obs_logger::Source) {
    buf.extend_from_slice(b",\"source\":{\"file\":");
    write_str(buf, src.file);
    buf.extend_from_slice(b",\"line\":");
    json::write_u64(buf, u64::from(src.line));
    if let Some(m) = src.module {
        buf.extend_from_slice(b",\"module\":");
        write_str(buf, m);
    }
    buf.push(b'}');
}

/// Writes the source member, reusing its encoding: a `&'static str`'s address always
/// names the same text, so (file, line, module) identifies the bytes.
fn write_source(buf: &mut Vec<u8>, src: &piko_obs_logger::Source) {
    let file = src.file.as_ptr() as usize ^ src.file.len().rotate_left(48);
    let module = src
        .module
        .map_or(0, |m| m.as_ptr() as usize ^ m.len().rotate_left(48));
    let h = (file as u64 ^ u64::from(src.line).rotate_left(20) ^ (module as u64).rotate_left(7))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 58;
    SOURCES.with(|c| match c.try_borrow_mut() {
        Ok(mut cache) => {
            let e = &mut cache[h as usize];
            if e.0 != file || e.1 != src.line || e.2 != module || e.3.is_empty() {
                e.3.clear();
                encode_source(&mut e.3, src);
                (e.0, e.1, e.2) = (file, src.line, module);
            }
            buf.extend_from_slice(&e.3);
        }
        Err(_) => encode_source(buf, src),
    })
}

impl Format for JsonFormat {
    fn is_self_contained(&self) -> bool {
        true
    }

    fn format(&self, record: &Record<'_>, buf: &mut Vec<u8>) {
        let t = record.time();
        buf.extend_from_slice(b"{\"time\":\"");
        write_time(buf, t, self.offset.offset_at(t));
        buf.extend_from_slice(b"\",\"level\":\"");
        let level = record.level();
        match level.static_name() {
            Some(n) => buf.extend_from_slice(n.as_bytes()),
            None => buf.extend_from_slice(level.name().as_str().as_bytes()),
        }
        buf.extend_from_slice(b"\",\"msg\":");
        write_str(buf, record.msg());
        buf.extend_from_slice(b",\"logger\":");
        match record.logger_json() {
            [] => write_str(buf, record.logger()),
            encoded => buf.extend_from_slice(encoded),
        }
        write_source(buf, record.source());
        buf.extend_from_slice(record.bound_json());
        for a in record.attrs() {
            json_field(buf, record, a);
        }
        if let Some(st) = record.stack() {
            buf.extend_from_slice(b",\"stack_trace\":[");
            for (i, f) in st.frames().iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_str(buf, f);
            }
            buf.push(b']');
        }
        buf.extend_from_slice(b"}\n");
    }
}

/// Piko's pretty console line, adapted to Rust:
///
/// `HH:MM:SS | LEVEL  | pid | host | logger (28 wide) | message | key=value … | file.rs:42`
///
/// The extra fields (bound and own) are sorted by key, as Piko does. Control
/// characters and ANSI escapes in the message and values are shown escaped (`\n`,
/// `\x1b`), so one call can never print a second line or repaint the terminal. ERROR
/// records end with an indented `Stack trace:` block. Colours follow Piko's table and are
/// decided per output.
#[derive(Debug)]
pub struct PrettyFormat {
    color: bool,
    pid: u32,
    host: String,
    offset: OffsetCache,
}

impl PrettyFormat {
    /// A pretty format; `color` turns ANSI colours on.
    pub fn new(color: bool) -> PrettyFormat {
        PrettyFormat {
            color,
            pid: std::process::id(),
            host: hostname(),
            offset: OffsetCache::new(TimeZone::Local),
        }
    }

    /// Whether this format writes colours.
    pub fn color(&self) -> bool {
        self.color
    }

    fn paint(&self, buf: &mut Vec<u8>, code: &str, f: impl FnOnce(&mut Vec<u8>)) {
        if self.color {
            buf.extend_from_slice(b"\x1b[");
            buf.extend_from_slice(code.as_bytes());
            buf.push(b'm');
            f(buf);
            buf.extend_from_slice(b"\x1b[0m");
        } else {
            f(buf);
        }
    }
}

/// The ANSI colour Piko gives each level.
pub fn level_color(level: Level) -> &'static str {
    match level.value() {
        -8 => "90",
        -6 => "90;3",
        -4 => "32",
        0 => "33",
        2 => "93",
        4 => "93;1",
        8 => "31",
        _ => "37",
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

fn pretty_value(buf: &mut Vec<u8>, v: &Value<'_>) {
    match *v {
        Value::Str(s) => write_neutralised(buf, s),
        Value::Strings(l) => {
            for (i, s) in l.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_neutralised(buf, s);
            }
        }
        Value::Duration(d) => {
            let _ = write!(buf, "{d:?}");
        }
        Value::Time(t) => write_rfc3339(buf, t, 0, 6),
        Value::Error(e) => {
            write_neutralised(buf, &piko_obs_logger::attr::error_chain(e).join(": "))
        }
        Value::ErrorChain(c) => write_neutralised(buf, &c.join(": ")),
        Value::Display(d) => write_neutralised(buf, &d.to_string()),
        Value::Any(_) => {
            let mut tmp = Vec::new();
            write_value(&mut tmp, v, false);
            write_neutralised(buf, &String::from_utf8_lossy(&tmp));
        }
        _ => {
            let start = buf.len();
            write_value(buf, v, false);
            debug_assert!(!buf[start..].contains(&b'\n'));
        }
    }
}

impl Format for PrettyFormat {
    fn is_self_contained(&self) -> bool {
        true
    }

    fn format(&self, record: &Record<'_>, buf: &mut Vec<u8>) {
        let t = record.time();
        let mut time = Vec::with_capacity(32);
        write_rfc3339(&mut time, t, self.offset.offset_at(t), 0);
        // "YYYY-MM-DDTHH:MM:SS..." -> "HH:MM:SS"
        let hms = &time[11..19];
        self.paint(buf, "34", |b| b.extend_from_slice(hms));
        buf.extend_from_slice(b" | ");
        let level = record.level();
        self.paint(buf, level_color(level), |b| {
            let _ = write!(b, "{:<6}", level.name().as_str());
        });
        buf.extend_from_slice(b" | ");
        self.paint(buf, "37", |b| {
            let _ = write!(b, "{}", self.pid);
        });
        buf.extend_from_slice(b" | ");
        self.paint(buf, "94", |b| write_neutralised(b, &self.host));
        buf.extend_from_slice(b" | ");
        self.paint(buf, "35", |b| {
            let start = b.len();
            write_neutralised(b, record.logger());
            let width = b.len() - start;
            b.resize(b.len() + 28usize.saturating_sub(width), b' ');
        });
        buf.extend_from_slice(b" | ");
        self.paint(buf, "97", |b| write_neutralised(b, record.msg()));

        let mut extras: Vec<Attr<'_>> = record.bound().collect();
        extras.extend_from_slice(record.attrs());
        if !extras.is_empty() {
            extras.sort_by(|a, b| a.key().cmp(b.key()));
            buf.extend_from_slice(b" |");
            for a in &extras {
                buf.push(b' ');
                self.paint(buf, "36", |b| b.extend_from_slice(a.key().as_bytes()));
                buf.push(b'=');
                if record.is_secret(a.key()) {
                    buf.extend_from_slice(REDACTED.as_bytes());
                } else {
                    pretty_value(buf, &a.value());
                }
            }
        }
        let src = record.source();
        buf.extend_from_slice(b" | ");
        self.paint(buf, "90", |b| {
            let base = src.file.rsplit(['/', '\\']).next().unwrap_or(src.file);
            write_neutralised(b, base);
            let _ = write!(b, ":{}", src.line);
        });
        if let Some(st) = record.stack() {
            self.paint(buf, "90", |b| {
                b.extend_from_slice(b"\n  Stack trace:");
                for f in st.frames() {
                    b.extend_from_slice(b"\n\t");
                    write_neutralised(b, f);
                }
            });
        }
        buf.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Lines within one second reuse its date and time of day; each line's time reads as
    /// the full RFC 3339 encoding of its own instant.
    #[test]
    fn times_within_a_second_match_the_full_encoding() {
        let base = UNIX_EPOCH + Duration::from_secs(1_764_089_150);
        for (i, nanos) in [0, 5, 123_456_789, 999_999_999, 10_000_000, 7]
            .into_iter()
            .enumerate()
        {
            for offset in [0, 3600, -(5 * 3600 + 30 * 60)] {
                let t = base + Duration::new(i as u64 % 2, nanos);
                let mut full = Vec::new();
                write_rfc3339(&mut full, t, offset, 9);
                let mut fast = Vec::new();
                write_time(&mut fast, t, offset);
                write_time(&mut fast, t, offset);
                assert_eq!(fast, [full.clone(), full].concat(), "{nanos} {offset}");
            }
        }
    }

    #[test]
    fn eight_digits_keep_leading_zeros() {
        for n in [0, 7, 10, 99_999_999, 1_234_567, 50_000_000] {
            let text = String::from_utf8(eight_digits(n).to_le_bytes().to_vec()).unwrap();
            assert_eq!(text, format!("{n:08}"));
        }
    }
}
