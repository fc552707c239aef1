//! What a notification says to an alert manager (Prometheus Alertmanager): the names
//! of the [`provider_options`](crate::Notification::provider_options) that give an
//! alert its identity and its state, and the stable key of a forwarded error group.
//!
//! A provider that knows nothing of alerts ignores these options; the alertmanager
//! provider of `piko-obs-notify-providers` reads them.
//!
//! ```
//! use piko_obs_notify::{Notification, alert};
//! let mut n = Notification::new("Disk almost full", "/var at 93%");
//! n.content.fields.insert("volume", "/var");
//! n.content.fields.insert("used", "93%");
//! // `volume` becomes a label (part of the alert's identity), `used` an annotation.
//! n.provider_options.insert(alert::LABELS, "volume");
//! n.provider_options.insert(alert::ALERTNAME, "DiskAlmostFull");
//! assert_eq!(alert::group_key("db down", "src/db.rs", 42).len(), 16);
//! ```

use std::time::SystemTime;

/// The option naming the alert (its `alertname` label); without it, the title.
pub const ALERTNAME: &str = "alertname";

/// The option listing, comma-separated, the fields that are labels (part of the alert's
/// identity) rather than annotations. Keep variable text (counts, times, messages) out
/// of labels: a label that changes makes a new alert.
pub const LABELS: &str = "alert_labels";

/// The option with the alert's state: [`FIRING`] (the default) or [`RESOLVED`].
pub const STATUS: &str = "alert_status";

/// [`STATUS`]: the condition holds.
pub const FIRING: &str = "firing";

/// [`STATUS`]: the condition is over; the alert ends at [`ENDS_AT`] (or when sent).
pub const RESOLVED: &str = "resolved";

/// The option with the time a resolved alert ended (RFC 3339).
pub const ENDS_AT: &str = "alert_ends_at";

/// The option with how long, in whole seconds from the time it is sent, a firing alert
/// holds unless it is sent again (its `endsAt`); without it, the provider's default.
pub const LEASE_SECS: &str = "alert_lease_secs";

/// The option with a link back to what raised the alert (its `generatorURL`).
pub const GENERATOR_URL: &str = "generator_url";

/// The `alertname` of the alerts of forwarded ERROR logs (the error forwarder of
/// `piko-obs-error-alerts`).
pub const FORWARDED_ALERTNAME: &str = "ApplicationError";

/// The field (a label, through [`LABELS`]) holding the key of a forwarded error group.
pub const GROUP_KEY_FIELD: &str = "error_group";

/// `t` as RFC 3339 text in UTC, with the precision needed: the form [`ENDS_AT`] takes,
/// and the one a notification's JSON gives its times in.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
/// assert_eq!(piko_obs_notify::alert::time_text(t), "1970-01-01T00:00:01.500Z");
/// ```
pub fn time_text(t: SystemTime) -> String {
    crate::model::rfc3339::text(t)
}

/// The key of an error group: 16 hex digits of the FNV-1a 64-bit hash of the message,
/// the file and the line, each followed by the byte `0xff` (as Prometheus hashes a
/// label set). It depends on nothing else, so every replica of a service computes the
/// same key for the same message at the same call site, and an alert manager merges
/// the alerts of all replicas into one group.
pub fn group_key(message: &str, file: &str, line: u32) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let line = line.to_string();
    for part in [message.as_bytes(), file.as_bytes(), line.as_bytes()] {
        for &b in part.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_key_is_fnv1a_over_the_parts_and_stable() {
        // Always 16 hex digits, even for empty parts.
        assert_eq!(group_key("", "", 0).len(), 16);
        let a = group_key("db down", "src/db.rs", 42);
        assert_eq!(a, group_key("db down", "src/db.rs", 42));
        assert_ne!(a, group_key("db down", "src/db.rs", 43));
        assert_ne!(a, group_key("db down", "src/db2.rs", 42));
        assert_ne!(a, group_key("db up", "src/db.rs", 42));
        // The separator keeps "ab"+"c" apart from "a"+"bc".
        assert_ne!(group_key("ab", "c", 1), group_key("a", "bc", 1));
        // A value computed once by hand from the definition, fixed here so that a
        // change of the hash (which would split groups across versions) is seen.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in b"m\xffa.rs\xff7\xff" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        assert_eq!(group_key("m", "a.rs", 7), format!("{h:016x}"));
    }
}
