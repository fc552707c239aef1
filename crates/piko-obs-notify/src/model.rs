//! What a notification is: its content, its context, where it goes.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// How urgent a notification is. The default is [`Priority::Normal`] (Piko defaults to
/// low, which its own documentation calls a bug).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Informational.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Needs attention soon.
    High,
    /// Needs attention now.
    Critical,
}

impl Priority {
    /// `low`, `normal`, `high` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    /// Parses `low`, `normal`, `high` or `critical` (any case), or Piko's numbers 0 to 3.
    pub fn parse(text: &str) -> Option<Priority> {
        match text.trim().to_ascii_lowercase().as_str() {
            "low" | "0" => Some(Priority::Low),
            "normal" | "1" => Some(Priority::Normal),
            "high" | "2" => Some(Priority::High),
            "critical" | "3" => Some(Priority::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Priority {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Text, or Piko's numbers, so entries written by either read back.
        let v = serde_json::Value::deserialize(d)?;
        let text = match &v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        Priority::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown priority {v}")))
    }
}

/// Named values shown with a notification, in the order they were added. Setting a
/// name again replaces its value in place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// No fields.
    pub fn new() -> Fields {
        Fields::default()
    }

    /// Sets `name` to `value`, keeping the position of an existing `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut f = Fields::new();
        for (k, v) in iter {
            f.insert(k, v);
        }
        f
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of names to text")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Fields, A::Error> {
                let mut f = Fields::new();
                while let Some((k, v)) = a.next_entry::<String, String>()? {
                    f.insert(k, v);
                }
                Ok(f)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Content {
    /// The headline.
    pub title: String,
    /// The body.
    pub message: String,
    /// Named values, in order.
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    pub fields: Fields,
    /// An image to show, where the platform can.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_url: String,
}

/// Where and when a notification comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Context {
    /// When it was raised (set when it is sent, if not before).
    #[serde(with = "rfc3339")]
    pub timestamp: SystemTime,
    /// The component that raised it.
    #[serde(default)]
    pub source: String,
    /// The deployment environment (`production`, `staging`); left out of the JSON when
    /// unset, never `""`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub environment: String,
    /// The service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// The trace it belongs to (taken from the current span when not set).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_id: String,
    /// How urgent it is.
    #[serde(default)]
    pub priority: Priority,
    /// The notification's own id, assigned once when it is created and kept by clones,
    /// retries, the dead-letter file and replays, so that a receiver can tell a resend
    /// from a new notification (the webhook provider sends it as `webhook-id`). An
    /// entry written without one (by an older version) gets a fresh id when read. A
    /// copy meant as a new notification, not a resend, needs [`Context::new_id`].
    #[serde(default = "Context::new_id")]
    pub id: String,
}

impl Default for Context {
    /// An empty context with normal priority and a fresh [`id`](Context::id).
    fn default() -> Self {
        Context {
            timestamp: SystemTime::UNIX_EPOCH,
            source: String::new(),
            environment: String::new(),
            service: String::new(),
            trace_id: String::new(),
            priority: Priority::Normal,
            id: Context::new_id(),
        }
    }
}

impl Context {
    /// The set ones of source, environment, service and trace id, in that order, under
    /// the labels the chat providers show them with (`Source`, `Environment`, `Service`,
    /// `Trace`).
    pub fn labelled(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("Source", self.source.as_str()),
            ("Environment", self.environment.as_str()),
            ("Service", self.service.as_str()),
            ("Trace", self.trace_id.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
    }

    /// A new notification id: `ntf_` then 32 lower-case hex digits (the time in
    /// nanoseconds, a random number drawn once per process, and a counter), unique in
    /// this process and, in practice, across processes and restarts. Only letters,
    /// digits and `_`, so it fits any header.
    pub fn new_id() -> String {
        use std::hash::{BuildHasher as _, Hasher as _};
        use std::sync::OnceLock;
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static SALT: OnceLock<u64> = OnceLock::new();
        // RandomState is seeded from the operating system's randomness.
        let salt = *SALT.get_or_init(|| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish()
        });
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!(
            "ntf_{nanos:016x}{:016x}",
            salt ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        )
    }
}

/// A notification: content, context, and the providers it goes to (none: the default
/// provider). Piko's `SendParams`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Notification {
    /// What it says.
    pub content: Content,
    /// Where and when it comes from.
    pub context: Context,
    /// The providers it goes to; empty means the default provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Options for providers (for example PagerDuty's `event_action` and `dedup_key`).
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    pub provider_options: Fields,
}

impl Notification {
    /// A notification with a title and a message, normal priority, and a fresh id
    /// (see [`Context::id`]).
    pub fn new(title: impl Into<String>, message: impl Into<String>) -> Notification {
        let mut n = Notification::default();
        n.content.title = title.into();
        n.content.message = message.into();
        n
    }

    /// Whether it has neither title nor message (text only of whitespace counts as
    /// none: the platforms trim it away, and some refuse what is left).
    pub fn is_empty(&self) -> bool {
        self.content.title.trim().is_empty() && self.content.message.trim().is_empty()
    }
}

/// RFC 3339 in UTC, with the precision needed.
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn text(t: SystemTime) -> String {
        chrono::DateTime::<chrono::Utc>::from(t)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        chrono::DateTime::parse_from_rfc3339(&s)
            .map(SystemTime::from)
            .map_err(|e| serde::de::Error::custom(format!("timestamp {s:?}: {e}")))
    }
}

/// Cuts `text` to at most `max` characters, ending with a visible marker when it had
/// to cut. `max` counts characters, not bytes.
pub fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    const MARKER: &str = "… [truncated]";
    if max == 0 || text.chars().count() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let marker_len = MARKER.chars().count();
    if max <= marker_len {
        return std::borrow::Cow::Owned(text.chars().take(max).collect());
    }
    let mut out: String = text.chars().take(max - marker_len).collect();
    out.push_str(MARKER);
    std::borrow::Cow::Owned(out)
}

/// Cuts `text` to at most `max` bytes of UTF-8 (on a character boundary), with the
/// marker, for platforms that count bytes.
pub fn truncate_bytes(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    const MARKER: &str = "… [truncated]";
    if max == 0 || text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    if max <= MARKER.len() {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        return std::borrow::Cow::Owned(text[..end].to_string());
    }
    let mut end = max - MARKER.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{MARKER}", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_insertion_order_and_replace_in_place() {
        let mut f = Fields::new();
        f.insert("b", "1");
        f.insert("a", "2");
        f.insert("b", "3");
        let v: Vec<_> = f.iter().collect();
        assert_eq!(v, [("b", "3"), ("a", "2")]);
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"{"b":"3","a":"2"}"#);
        let back: Fields = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn priority_defaults_to_normal_and_reads_piko_numbers() {
        assert_eq!(Priority::default(), Priority::Normal);
        assert_eq!(Notification::default().context.priority, Priority::Normal);
        let p: Priority = serde_json::from_str("3").unwrap();
        assert_eq!(p, Priority::Critical);
        let p: Priority = serde_json::from_str("\"HIGH\"").unwrap();
        assert_eq!(p, Priority::High);
        assert!(serde_json::from_str::<Priority>("\"urgent\"").is_err());
    }

    #[test]
    fn notifications_round_trip_through_json() {
        let mut n = Notification::new("disk full", "95% used");
        n.content.fields.insert("host", "db-1");
        n.context.priority = Priority::High;
        n.context.timestamp = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1500);
        n.providers = vec!["slack".into()];
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["context"]["priority"], "high");
        assert_eq!(json["context"]["timestamp"], "1970-01-01T00:00:01.500Z");
        assert!(json["content"].get("image_url").is_none());
        let back: Notification = serde_json::from_value(json).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn each_notification_has_an_id_that_clones_and_json_keep() {
        let a = Notification::new("a", "b");
        let b = Notification::new("a", "b");
        assert!(a.context.id.starts_with("ntf_"), "{}", a.context.id);
        assert_eq!(a.context.id.len(), 36);
        assert!(a.context.id[4..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.context.id, b.context.id, "two notifications, two ids");
        assert_ne!(a, b);
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| Context::new_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(a.clone().context.id, a.context.id, "a resend keeps its id");
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["context"]["id"], a.context.id.as_str());
        let back: Notification = serde_json::from_value(json).unwrap();
        assert_eq!(back.context.id, a.context.id);
    }

    #[test]
    fn a_line_written_without_an_id_reads_back_with_a_fresh_one() {
        let old = r#"{"content":{"title":"t","message":"m"},"context":{"timestamp":"2024-01-02T03:04:05Z","source":"s","environment":"e","priority":"high"}}"#;
        let a: Notification = serde_json::from_str(old).unwrap();
        let b: Notification = serde_json::from_str(old).unwrap();
        assert!(a.context.id.starts_with("ntf_"));
        assert_ne!(a.context.id, b.context.id);
        assert_eq!(a.context.priority, Priority::High);
        // Once written again, the id it got is kept.
        let again: Notification =
            serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(again.context.id, a.context.id);
    }

    #[test]
    fn truncation_marks_the_cut_and_respects_characters_and_bytes() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(100);
        let cut = truncate(&long, 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with("… [truncated]"));
        let cut = truncate_bytes(&long, 41);
        assert!(cut.len() <= 41, "{}", cut.len());
        assert!(cut.ends_with("… [truncated]"));
        assert_eq!(truncate("abcdef", 3), "abc");
    }
}
