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
        let t = chrono::DateTime::<chrono::Utc>::from(self.0);
        f.write_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
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
