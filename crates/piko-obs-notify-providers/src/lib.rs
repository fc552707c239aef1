//! Notification providers for piko-obs, each implementing the [`Notifier`] port of
//! `piko-obs-notify`, and the durable dead-letter file.
//!
//! - [`SlackNotifier`] (Block Kit), [`DiscordNotifier`] (embeds, priority colours),
//!   [`PagerDutyNotifier`] (Events API v2: trigger, acknowledge, resolve),
//!   [`TeamsNotifier`] (Workflows Adaptive Card, or the legacy MessageCard),
//!   [`GoogleChatNotifier`] (cardsV2), [`NtfyNotifier`] (token or basic auth, RFC 2047
//!   titles), [`WebhookNotifier`] (JSON, custom headers, Standard Webhooks signing),
//!   [`AlertmanagerNotifier`] (Prometheus Alertmanager API v2, every peer of a cluster),
//!   [`StdoutNotifier`] (human or JSON);
//! - [`HttpClient`]: one rustls client shared by the HTTP providers, with connect and
//!   total timeouts and a cap on answers;
//! - [`FileDeadLetterStore`]: JSON lines, fsync'd, mode 0600;
//! - [`Setup`]: a process's notifications from settings and the environment (providers,
//!   dispatcher, dead-letter store), and the process-wide service ([`setup::global`]).
//!
//! Every provider cuts text to its platform's documented limits with a visible marker,
//! and keeps its URL, token or routing key out of `Debug` and errors.
//!
//! ```
//! use piko_obs_notify::NotificationService;
//! use piko_obs_notify_providers::{HttpClient, WebhookNotifier};
//! let http = HttpClient::new().unwrap();
//! let hook = WebhookNotifier::new(&http, "https://alerts.example.com/hook")
//!     .unwrap()
//!     .with_header("X-Team", "payments")
//!     .unwrap()
//!     .with_signing_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//!     .unwrap();
//! assert!(!format!("{hook:?}").contains("/hook"));
//! let service = NotificationService::default();
//! service.register(piko_obs_notify::provider::WEBHOOK, hook).unwrap();
//! ```
//!
//! Feature flags (all on by default): `slack`, `discord`, `pagerduty`, `teams`,
//! `googlechat`, `ntfy`, `webhook`, `alertmanager`, `stdout`.

#[cfg(feature = "_http")]
mod http;
#[cfg(feature = "_http")]
pub use http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, HttpClient, MAX_ANSWER_BYTES};

mod dead_letter;
#[cfg(feature = "_http")]
mod env;
pub use dead_letter::{DEFAULT_MAX_BYTES, FileDeadLetterStore, default_dead_letter_path};
#[cfg(feature = "_http")]
pub use env::{ENV_PROVIDERS, ENV_VARIABLES, EnvProviderError, Registration, providers_from_env};

#[cfg(feature = "alertmanager")]
mod alertmanager;
#[cfg(feature = "alertmanager")]
pub use alertmanager::{ALERTMANAGER, AlertmanagerNotifier, DEFAULT_LEASE};
#[cfg(all(feature = "_http", feature = "stdout"))]
pub mod setup;
#[cfg(all(feature = "_http", feature = "stdout"))]
pub use setup::{PIKO_NOTIFICATION_DEAD_LETTER_PATH, Setup, SetupError};
mod memory_dead_letter;
pub use memory_dead_letter::{DEFAULT_MEMORY_ENTRIES, MemoryDeadLetterStore};

#[cfg(feature = "discord")]
mod discord;
#[cfg(feature = "discord")]
pub use discord::DiscordNotifier;
#[cfg(feature = "googlechat")]
mod googlechat;
#[cfg(feature = "googlechat")]
pub use googlechat::GoogleChatNotifier;
#[cfg(feature = "ntfy")]
mod ntfy;
#[cfg(feature = "ntfy")]
pub use ntfy::NtfyNotifier;
#[cfg(feature = "pagerduty")]
mod pagerduty;
#[cfg(feature = "pagerduty")]
pub use pagerduty::{EU_EVENTS_URL, EVENTS_URL, PagerDutyNotifier};
#[cfg(feature = "slack")]
mod slack;
#[cfg(feature = "slack")]
pub use slack::SlackNotifier;
#[cfg(feature = "stdout")]
mod stdout;
#[cfg(feature = "stdout")]
pub use stdout::{StdoutFormat, StdoutNotifier};
#[cfg(feature = "teams")]
mod teams;
#[cfg(feature = "teams")]
pub use teams::{TeamsFormat, TeamsNotifier};
#[cfg(feature = "webhook")]
mod webhook;
#[cfg(feature = "webhook")]
pub use webhook::WebhookNotifier;

pub use piko_obs_notify::Notifier;

/// A provider setting that cannot work; names the setting and how to fix it, and never
/// holds the secret itself. The one configuration error of piko-obs, re-exported from
/// [`piko_obs_lifecycle::settings`].
pub use piko_obs_lifecycle::settings::ConfigError;

/// Cutting text and JSON bodies to a platform's limits, with the visible marker of
/// [`piko_obs_notify::truncate`].
#[cfg(feature = "_http")]
#[cfg_attr(
    not(all(feature = "teams", feature = "pagerduty", feature = "googlechat")),
    allow(dead_code)
)]
pub(crate) mod limits {
    use serde_json::Value;

    /// The marker [`piko_obs_notify::truncate`] ends a cut with.
    pub(crate) const MARKER: &str = "… [truncated]";

    /// The name of the entry that stands for the fields left out.
    pub(crate) const FIELDS_MARKER: &str = "… [truncated]";

    /// What a blank field or fact name is sent as where the platform wants one: a
    /// zero-width space, shown as no name.
    pub(crate) const BLANK_NAME: &str = "\u{200b}";

    /// What a blank field value is sent as (every platform wants one): a dash.
    pub(crate) const BLANK_VALUE: &str = "-";

    /// Whether `s` is empty or only whitespace (which the platforms trim away).
    pub(crate) fn blank(s: &str) -> bool {
        s.trim().is_empty()
    }

    /// `s`, or `instead` when it is [`blank`].
    pub(crate) fn or_blank<'a>(s: &'a str, instead: &'a str) -> &'a str {
        if blank(s) { instead } else { s }
    }

    /// The text of the entry that stands for `n` fields left out.
    pub(crate) fn fields_left_out(n: usize) -> String {
        format!("{n} more fields not shown")
    }

    /// The bytes `c` takes inside a JSON string as serde_json writes it.
    fn json_char_len(c: char) -> usize {
        match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        }
    }

    /// The bytes `s` takes inside a JSON string (without the quotes).
    pub(crate) fn json_len(s: &str) -> usize {
        s.chars().map(json_char_len).sum()
    }

    /// The size of `v` written as compact JSON, as the providers send it.
    pub(crate) fn json_size(v: &Value) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0 += b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut c = Count(0);
        match serde_json::to_writer(&mut c, v) {
            Ok(()) => c.0,
            Err(_) => usize::MAX,
        }
    }

    /// `s` cut to at most `max_chars` characters (with [`piko_obs_notify::truncate`])
    /// and to at most `max_json` bytes once written in a JSON string, ending with the
    /// marker when cut (unless `max_json` is too small to hold it).
    pub(crate) fn cut(s: &str, max_chars: usize, max_json: usize) -> String {
        let s = piko_obs_notify::truncate(s, max_chars);
        if json_len(&s) <= max_json {
            return s.into_owned();
        }
        let room = max_json.saturating_sub(json_len(MARKER));
        let mut end = 0;
        let mut used = 0;
        for (i, c) in s.char_indices() {
            used += json_char_len(c);
            if used > room {
                break;
            }
            end = i + c.len_utf8();
        }
        if max_json < json_len(MARKER) {
            return s[..end].to_string();
        }
        format!("{}{MARKER}", &s[..end])
    }

    /// A body of at most `max` bytes of JSON. `render(message, k)` draws the body with
    /// this message and the first `k` of `fields` fields, and, when `k < fields`, an
    /// entry that says how many were left out (with [`FIELDS_MARKER`]). Each piece of
    /// text `render` draws must already be cut to its own limit, so that the body
    /// with no message and no field fits in `max`.
    ///
    /// The message is cut first, by what is too much. When that is not enough, it is
    /// cut to `floor` bytes, fields are left out from the end, as few as possible, and
    /// what room is left goes back to the message. At most `log2(fields) + 6` renders.
    pub(crate) fn fit(
        max: usize,
        message: &str,
        fields: usize,
        floor: usize,
        render: impl Fn(&str, usize) -> Value,
    ) -> Value {
        let body = render(message, fields);
        let size = json_size(&body);
        if size <= max {
            return body;
        }
        let over = size - max;
        let m = json_len(message);
        if m > over {
            let body = render(&cut(message, usize::MAX, m - over), fields);
            if json_size(&body) <= max {
                return body;
            }
        }
        let short = cut(message, usize::MAX, floor.min(m));
        let fits = |k: usize| {
            let b = render(&short, k);
            (json_size(&b) <= max).then_some(b)
        };
        let chosen = match fits(fields) {
            Some(_) => fields,
            None => match fits(0) {
                // Even without fields the short message is too long: no message.
                None => return render("", 0),
                Some(_) => {
                    // The largest k that fits: lo fits, hi does not.
                    let (mut lo, mut hi) = (0, fields);
                    while hi - lo > 1 {
                        let mid = lo + (hi - lo) / 2;
                        if fits(mid).is_some() {
                            lo = mid;
                        } else {
                            hi = mid;
                        }
                    }
                    lo
                }
            },
        };
        let body = render(&short, chosen);
        let spare = max.saturating_sub(json_size(&body));
        if short.is_empty() || spare == 0 || short.len() == message.len() {
            return body;
        }
        // Give the room left back to the message.
        let longer = render(&cut(message, usize::MAX, json_len(&short) + spare), chosen);
        if json_size(&longer) <= max {
            longer
        } else {
            body
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::json;

        #[test]
        fn the_marker_is_the_one_of_the_model() {
            let long = "x".repeat(100);
            let cut = piko_obs_notify::truncate(&long, 20);
            assert!(cut.ends_with(MARKER), "{cut}");
            assert_eq!(FIELDS_MARKER, MARKER);
        }

        #[test]
        fn json_lengths_count_escapes_like_serde_json() {
            for s in [
                "plain",
                "é…\u{1F600}",
                "a\"b\\c\n\r\t\u{8}\u{c}",
                "\u{0}\u{1f}\u{7f}",
            ] {
                let written = serde_json::to_string(s).unwrap();
                assert_eq!(json_len(s), written.len() - 2, "{s:?}");
                assert_eq!(json_size(&json!(s)), written.len());
            }
        }

        #[test]
        fn cuts_respect_characters_and_json_bytes_and_carry_the_marker() {
            assert_eq!(cut("short", 10, 100), "short");
            let s = "\"é".repeat(1000);
            let c = cut(&s, usize::MAX, 500);
            assert!(json_len(&c) <= 500, "{}", json_len(&c));
            assert!(json_len(&c) > 480);
            assert!(c.ends_with(MARKER));
            let c = cut(&s, 100, 10_000);
            assert_eq!(c.chars().count(), 100);
            assert!(c.ends_with(MARKER));
            assert!(json_len(&cut(&s, usize::MAX, 5)) <= 5);
        }

        #[test]
        fn fit_cuts_the_message_then_the_fields_and_stays_within_the_bound() {
            let fields: Vec<String> = (0..500)
                .map(|i| format!("{i}:{}", "v".repeat(90)))
                .collect();
            let render = |m: &str, k: usize| {
                let mut list: Vec<Value> = fields[..k].iter().map(|f| json!(f)).collect();
                if k < fields.len() {
                    list.push(json!({FIELDS_MARKER: fields_left_out(fields.len() - k)}));
                }
                json!({"message": m, "fields": list})
            };
            let message = "m".repeat(30_000);
            // Only the message has to give.
            let b = fit(30_000, &message, 100, 8_000, render);
            let size = json_size(&b);
            assert!(size <= 30_000 && size > 29_900, "{size}");
            // The 100 fields asked for, and the note for the other 400.
            assert_eq!(b["fields"].as_array().unwrap().len(), 101);
            assert_eq!(b["fields"][100][FIELDS_MARKER], fields_left_out(400));
            assert!(b["message"].as_str().unwrap().ends_with(MARKER));
            // Message and fields give; what is left goes back to the message.
            let b = fit(20_000, &message, 500, 8_000, render);
            let size = json_size(&b);
            assert!(size <= 20_000 && size > 19_900, "{size}");
            let list = b["fields"].as_array().unwrap();
            assert!(list.len() < 500);
            assert_eq!(
                list.last().unwrap()[FIELDS_MARKER],
                fields_left_out(500 - (list.len() - 1))
            );
            // Nothing to cut.
            let b = fit(20_000, "hello", 3, 8_000, render);
            assert_eq!(b["message"], "hello");
        }
    }
}

/// The text of a notification's timestamp: RFC 3339 in UTC, to the second.
#[cfg(any(feature = "discord", feature = "pagerduty"))]
pub(crate) fn utc_seconds(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
