//! The records of one message at one call site within a window ([`Group`]), the
//! window's groups ([`Pending`]), and the alerts made of them: the firing alert of a
//! group and the resolved one that follows it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use piko_obs_logger::{Level, REDACTED, Record, Value};
use piko_obs_notify::{Context, Notification, Priority, alert, truncate};

/// What follows the level name in an alert's title (`ERROR: Application Error`), as in
/// Piko.
pub const ALERT_TITLE_SUFFIX: &str = ": Application Error";

/// The fields the forwarder sets itself. A record field with one of these names is
/// shown as `attr.<name>` instead, so it cannot hide the forwarder's value.
pub(crate) const RESERVED_FIELDS: [&str; 8] = [
    "occurrences",
    alert::GROUP_KEY_FIELD,
    "first_seen",
    "last_seen",
    "source",
    "logger",
    "dropped_groups",
    "rate_limited_groups",
];

/// At most this many of a record's fields are kept in its group.
pub const MAX_ALERT_FIELDS: usize = 64;

/// A field's text is cut to this many characters (with a visible marker).
pub const MAX_ALERT_FIELD_CHARS: usize = 1024;

/// The priority of an alert for a record at `level`: ERROR and above critical, WARN and
/// above high, INFO and above normal, anything lower low.
///
/// ```
/// use piko_obs_logger::Level;
/// use piko_obs_error_alerts::priority_for_level;
/// use piko_obs_notify::Priority;
/// assert_eq!(priority_for_level(Level::ERROR), Priority::Critical);
/// assert_eq!(priority_for_level(Level::NOTICE), Priority::Normal);
/// ```
pub fn priority_for_level(level: Level) -> Priority {
    if level >= Level::ERROR {
        Priority::Critical
    } else if level >= Level::WARN {
        Priority::High
    } else if level >= Level::INFO {
        Priority::Normal
    } else {
        Priority::Low
    }
}

/// The records of one message at one call site within a window.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) hash: u64,
    pub(crate) msg: String,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
    pub(crate) level: Level,
    pub(crate) logger: String,
    /// The first record's fields as text, secret values masked.
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) trace_id: Option<String>,
    pub(crate) first_seen: SystemTime,
    pub(crate) last_seen: SystemTime,
    pub(crate) count: u64,
}

impl Group {
    pub(crate) fn is(&self, hash: u64, msg: &str, file: &str, line: u32) -> bool {
        self.hash == hash && self.line == line && self.file == file && self.msg == msg
    }

    /// A group from its first record. Runs outside the forwarder's lock: rendering
    /// calls `Display` implementations, which may log.
    pub(crate) fn from_record(r: &Record<'_>, hash: u64) -> Group {
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut trace_id = None;
        for a in r.bound().chain(r.attrs().iter().copied()) {
            let key = a.key();
            let value = a.value();
            let text = if r.is_secret(key) {
                REDACTED.to_string()
            } else {
                let t = render(value);
                if key == piko_obs_logger::keys::TRACE_ID
                    && !matches!(value, Value::Null)
                    && !t.is_empty()
                {
                    trace_id = Some(t.clone());
                }
                t
            };
            let name = if RESERVED_FIELDS.contains(&key) {
                format!("attr.{key}")
            } else {
                key.to_string()
            };
            // A key given twice (bound, then the record's own) keeps its place and takes
            // the later value.
            if let Some(slot) = fields.iter_mut().find(|(n, _)| *n == name) {
                slot.1 = text;
            } else if fields.len() < MAX_ALERT_FIELDS {
                fields.push((name, text));
            }
        }
        let src = r.source();
        Group {
            hash,
            msg: r.msg().to_string(),
            file: src.file,
            line: src.line,
            level: r.level(),
            logger: r.logger().to_string(),
            fields,
            trace_id,
            first_seen: r.time(),
            last_seen: r.time(),
            count: 1,
        }
    }

    pub(crate) fn into_notification(
        self,
        dropped: u64,
        rate_limited: u64,
        lease: Option<Duration>,
    ) -> Notification {
        let key = alert::group_key(&self.msg, self.file, self.line);
        let mut n = Notification::new(format!("{}{ALERT_TITLE_SUFFIX}", self.level), self.msg);
        let f = &mut n.content.fields;
        f.insert("occurrences", self.count.to_string());
        f.insert("first_seen", alert::time_text(self.first_seen));
        f.insert("last_seen", alert::time_text(self.last_seen));
        f.insert("source", format!("{}:{}", self.file, self.line));
        f.insert("logger", self.logger);
        let o = &mut n.provider_options;
        // PagerDuty: one incident per error group, shared by the replicas.
        o.insert("dedup_key", key.as_str());
        f.insert(alert::GROUP_KEY_FIELD, key);
        o.insert(alert::ALERTNAME, alert::FORWARDED_ALERTNAME);
        o.insert(alert::LABELS, alert::GROUP_KEY_FIELD);
        o.insert(alert::STATUS, alert::FIRING);
        if let Some(lease) = lease {
            o.insert(alert::LEASE_SECS, lease.as_secs().max(1).to_string());
        }
        for (k, v) in self.fields {
            f.insert(k, v);
        }
        if dropped > 0 {
            f.insert("dropped_groups", dropped.to_string());
        }
        if rate_limited > 0 {
            f.insert("rate_limited_groups", rate_limited.to_string());
        }
        n.context.priority = priority_for_level(self.level);
        n.context.source = "logger".into();
        n.context.timestamp = self.first_seen;
        if let Some(t) = self.trace_id {
            n.context.trace_id = t;
        }
        n
    }
}

/// A value as alert text: errors as their chain joined with `: `, times in RFC 3339,
/// durations as `1.5ms`, serde values as JSON; cut to [`MAX_ALERT_FIELD_CHARS`].
pub(crate) fn render(v: Value<'_>) -> String {
    let text = match v {
        Value::Str(s) => s.to_string(),
        Value::Strings(l) => l.iter().collect::<Vec<_>>().join(","),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Time(t) => alert::time_text(t),
        Value::Duration(d) => format!("{d:?}"),
        Value::Error(e) => piko_obs_logger::attr::error_chain(e).join(": "),
        Value::ErrorChain(c) => c.join(": "),
        Value::Display(d) => d.to_string(),
        Value::Any(a) => serde_json::to_string(a).unwrap_or_else(|e| format!("<unencodable: {e}>")),
        Value::Null => "null".to_string(),
        _ => String::new(),
    };
    match truncate(&text, MAX_ALERT_FIELD_CHARS) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cut) => cut,
    }
}

/// The groups of the current window.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) groups: Vec<Group>,
    /// Group hash -> index in `groups` (a colliding group is found by a scan).
    pub(crate) index: HashMap<u64, usize>,
    /// Hashes of the groups dropped at the cap in this window (at most `max_groups`;
    /// past that, every dropped record counts as a group).
    pub(crate) dropped_keys: HashSet<u64>,
    /// Groups dropped and not yet reported in an alert.
    pub(crate) dropped: u64,
    /// When the first record of the window arrived.
    pub(crate) window_start: Option<Instant>,
    pub(crate) closed: bool,
}

impl Pending {
    pub(crate) fn find_mut(
        &mut self,
        hash: u64,
        msg: &str,
        file: &str,
        line: u32,
    ) -> Option<&mut Group> {
        let i = match self.index.get(&hash) {
            Some(&i)
                if self
                    .groups
                    .get(i)
                    .is_some_and(|g| g.is(hash, msg, file, line)) =>
            {
                i
            }
            Some(_) => self
                .groups
                .iter()
                .position(|g| g.is(hash, msg, file, line))?,
            None => return None,
        };
        self.groups.get_mut(i)
    }

    pub(crate) fn insert(&mut self, g: Group) {
        self.index.entry(g.hash).or_insert(self.groups.len());
        self.groups.push(g);
    }

    /// Counts a record whose group does not fit; returns whether the group is new.
    pub(crate) fn drop_group(&mut self, hash: u64, max: usize) -> bool {
        let new = if self.dropped_keys.len() < max {
            self.dropped_keys.insert(hash)
        } else {
            !self.dropped_keys.contains(&hash)
        };
        if new {
            self.dropped += 1;
        }
        new
    }

    pub(crate) fn take(&mut self) -> (Vec<Group>, u64) {
        self.index.clear();
        self.dropped_keys.clear();
        self.window_start = None;
        (
            std::mem::take(&mut self.groups),
            std::mem::take(&mut self.dropped),
        )
    }
}

/// The alert that says `firing` is over: the same identity (labels), the title
/// prefixed with `RESOLVED: `, [`alert::STATUS`] resolved and [`alert::ENDS_AT`] now,
/// and a new id (it is a notification of its own, not a resend).
pub(crate) fn resolved(mut n: Notification) -> Notification {
    n.content.title = format!("RESOLVED: {}", n.content.title);
    n.context.id = Context::new_id();
    let o = &mut n.provider_options;
    o.insert(alert::STATUS, alert::RESOLVED);
    o.insert(alert::ENDS_AT, alert::time_text(SystemTime::now()));
    // PagerDuty: resolve the group's incident rather than open another.
    o.insert("event_action", "resolve");
    n
}
