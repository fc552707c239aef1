//! Check kinds, states and the status tree, with Piko's JSON shape.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// Which question a probe answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// Is the process alive (restart it if not)?
    Liveness,
    /// Can it take traffic now?
    Readiness,
    /// Has it finished starting (Kubernetes startup probe)?
    Startup,
}

impl CheckKind {
    /// `liveness`, `readiness` or `startup`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Liveness => "liveness",
            CheckKind::Readiness => "readiness",
            CheckKind::Startup => "startup",
        }
    }

    /// `Liveness`, `Readiness` or `Startup`, as in the top-level messages.
    pub fn title(self) -> &'static str {
        match self {
            CheckKind::Liveness => "Liveness",
            CheckKind::Readiness => "Readiness",
            CheckKind::Startup => "Startup",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A health state; JSON writes it in upper case. Ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Working.
    Healthy,
    /// Working with problems: probes still answer 200.
    Degraded,
    /// Not working: probes answer 503.
    Unhealthy,
}

impl State {
    /// `HEALTHY`, `DEGRADED` or `UNHEALTHY`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "HEALTHY",
            State::Degraded => "DEGRADED",
            State::Unhealthy => "UNHEALTHY",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One node of a health tree.
///
/// JSON: `name`, `state`, `message` (left out when empty), `timestamp` (RFC 3339, UTC),
/// `duration` (text such as `1.234ms`), `dependencies` (left out when empty).
///
/// ```
/// use piko_obs_health::{State, Status};
/// let s = Status::new("db", State::Degraded).with_message("replica lag 3s");
/// let json = serde_json::to_value(&s).unwrap();
/// assert_eq!(json["state"], "DEGRADED");
/// assert_eq!(json["message"], "replica lag 3s");
/// assert!(json.get("dependencies").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Display name.
    pub name: String,
    /// The state.
    pub state: State,
    /// Why, when it matters.
    pub message: String,
    /// When the check finished.
    pub timestamp: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Nested statuses.
    pub dependencies: Vec<Status>,
}

impl Status {
    /// A status with no message, timestamped now, taking no time.
    pub fn new(name: impl Into<String>, state: State) -> Status {
        Status {
            name: name.into(),
            state,
            message: String::new(),
            timestamp: SystemTime::now(),
            duration: Duration::ZERO,
            dependencies: Vec::new(),
        }
    }
    /// A healthy status.
    pub fn healthy(name: impl Into<String>) -> Status {
        Status::new(name, State::Healthy)
    }
    /// A degraded status with a message.
    pub fn degraded(name: impl Into<String>, message: impl Into<String>) -> Status {
        Status::new(name, State::Degraded).with_message(message)
    }
    /// An unhealthy status with a message.
    pub fn unhealthy(name: impl Into<String>, message: impl Into<String>) -> Status {
        Status::new(name, State::Unhealthy).with_message(message)
    }
    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Status {
        self.message = message.into();
        self
    }
    /// Adds a nested status.
    pub fn with_dependency(mut self, dep: Status) -> Status {
        self.dependencies.push(dep);
        self
    }
    /// Sets the duration.
    pub fn with_duration(mut self, d: Duration) -> Status {
        self.duration = d;
        self
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n =
            4 + usize::from(!self.message.is_empty()) + usize::from(!self.dependencies.is_empty());
        let mut st = s.serialize_struct("Status", n)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("state", &self.state)?;
        if !self.message.is_empty() {
            st.serialize_field("message", &self.message)?;
        } else {
            st.skip_field("message")?;
        }
        st.serialize_field("timestamp", &Shown(Rfc3339(self.timestamp)))?;
        st.serialize_field("duration", &Shown(DurationText(self.duration)))?;
        if !self.dependencies.is_empty() {
            st.serialize_field("dependencies", &self.dependencies)?;
        } else {
            st.skip_field("dependencies")?;
        }
        st.end()
    }
}

/// Serialises a `Display` value as a string without building one first.
struct Shown<T>(T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A time as RFC 3339 in UTC, with 3, 6 or 9 fractional digits as needed.
struct Rfc3339(SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.duration_since(SystemTime::UNIX_EPOCH) {
            // Formatted by hand: this runs for every status of every probe request.
            Ok(since) if since.as_secs() < 253_402_300_800 => {
                let mut buf = [0u8; 30];
                let n = format_utc(since, &mut buf);
                f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
            }
            _ => {
                let t = chrono::DateTime::<chrono::Utc>::from(self.0);
                f.write_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
        }
    }
}

/// Writes `YYYY-MM-DDTHH:MM:SS[.fff[fff[fff]]]Z` for a time since the epoch before
/// the year 10000; returns the length.
fn format_utc(since: Duration, buf: &mut [u8; 30]) -> usize {
    fn put(buf: &mut [u8], at: usize, value: u64, width: usize) {
        let mut v = value;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    put(buf, 0, year, 4);
    buf[4] = b'-';
    put(buf, 5, month, 2);
    buf[7] = b'-';
    put(buf, 8, day, 2);
    buf[10] = b'T';
    put(buf, 11, rem / 3600, 2);
    buf[13] = b':';
    put(buf, 14, (rem / 60) % 60, 2);
    buf[16] = b':';
    put(buf, 17, rem % 60, 2);
    let nanos = u64::from(since.subsec_nanos());
    let mut n = 19;
    if nanos != 0 {
        buf[n] = b'.';
        let (value, width) = if nanos % 1_000_000 == 0 {
            (nanos / 1_000_000, 3)
        } else if nanos % 1_000 == 0 {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        put(buf, n + 1, value, width);
        n += 1 + width;
    }
    buf[n] = b'Z';
    n + 1
}

/// RFC 3339 in UTC with as many fractional digits as needed (`2026-05-05T10:00:00.004500Z`).
pub fn rfc3339(t: SystemTime) -> String {
    Rfc3339(t).to_string()
}

/// A duration as Go prints it.
struct DurationText(Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let nanos = d.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000 {
            return write!(f, "{nanos}ns");
        }
        if nanos < 1_000_000 {
            decimal(f, nanos, 1_000)?;
            return f.write_str("µs");
        }
        if nanos < 1_000_000_000 {
            decimal(f, nanos, 1_000_000)?;
            return f.write_str("ms");
        }
        let total_secs = d.as_secs();
        let (h, m) = (total_secs / 3600, (total_secs / 60) % 60);
        if h > 0 {
            write!(f, "{h}h{m}m")?;
        } else if m > 0 {
            write!(f, "{m}m")?;
        }
        let secs = u128::from(total_secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos());
        decimal(f, secs, 1_000_000_000)?;
        f.write_str("s")
    }
}

/// A duration as short text, as Go prints it: `0s`, `812ns`, `12.3µs`, `1.52ms`,
/// `2.0001s`, `1m3.5s`, `2h0m0s`.
pub fn duration_text(d: Duration) -> String {
    DurationText(d).to_string()
}

/// Writes `value / unit` with the fraction's trailing zeros removed.
fn decimal(f: &mut fmt::Formatter<'_>, value: u128, unit: u128) -> fmt::Result {
    let whole = value / unit;
    let mut frac = value % unit;
    write!(f, "{whole}")?;
    if frac == 0 {
        return Ok(());
    }
    let mut width = unit.ilog10() as usize;
    while frac.is_multiple_of(10) {
        frac /= 10;
        width -= 1;
    }
    write!(f, ".{frac:0width$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_chrono_across_dates_and_precisions() {
        let chrono_text = |t: SystemTime| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        };
        let mut secs: u64 = 0;
        // Days across leap years, centuries and 2000; every fraction precision.
        for i in 0..20_000u64 {
            secs = secs.wrapping_add(86_399 * 7 + i * 13_337) % 253_402_300_799;
            let nanos = match i % 4 {
                0 => 0,
                1 => (i as u32 % 1000) * 1_000_000,
                2 => (i as u32 % 1_000_000) * 1_000,
                _ => (i as u32 * 7919) % 1_000_000_000,
            };
            let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
            assert_eq!(rfc3339(t), chrono_text(t), "{secs}.{nanos}");
        }
        let y2k_leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(y2k_leap), "2000-02-29T00:00:00Z");
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339(before), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(812), "812ns"),
            (Duration::from_nanos(12_300), "12.3µs"),
            (Duration::from_micros(1520), "1.52ms"),
            (Duration::from_micros(1234), "1.234ms"),
            (Duration::from_nanos(2_000_100_000), "2.0001s"),
            (Duration::from_millis(63_500), "1m3.5s"),
            (Duration::from_secs(7200), "2h0m0s"),
            (Duration::from_secs(5), "5s"),
        ];
        for (d, text) in cases {
            assert_eq!(duration_text(d), text, "{d:?}");
        }
    }

    #[test]
    fn json_shape_and_key_order() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 4_500_000);
        let mut child = Status::healthy("cache");
        child.timestamp = t;
        let mut s = Status::unhealthy("app", "Readiness check found issues")
            .with_dependency(child)
            .with_duration(Duration::from_micros(1234));
        s.timestamp = t;
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(
            text,
            r#"{"name":"app","state":"UNHEALTHY","message":"Readiness check found issues","timestamp":"2023-11-14T22:13:20.004500Z","duration":"1.234ms","dependencies":[{"name":"cache","state":"HEALTHY","timestamp":"2023-11-14T22:13:20.004500Z","duration":"0s"}]}"#
        );
    }

    #[test]
    fn states_order_from_best_to_worst() {
        assert!(State::Healthy < State::Degraded && State::Degraded < State::Unhealthy);
        assert_eq!(State::Unhealthy.to_string(), "UNHEALTHY");
    }
}
