//! Sentry's rate limits, as its SDK guide sets them out
//! (<https://develop.sentry.dev/sdk/rate-limiting/>): `X-Sentry-Rate-Limits` on any
//! answer, 2xx included, limits the data categories it names (all of them when it names
//! none), and then `Retry-After` is ignored; a 429 without it limits every category for
//! its `Retry-After` (60 s when absent). Items of a limited category are taken out of an
//! envelope; the rest is sent.
//!
//! A 5xx is a failure, not a rate limit: its `Retry-After` pauses sending for at most
//! [`SERVER_ERROR_PAUSE`], so that a proxy answering `503` with `Retry-After: 7200`
//! does not mute every event for hours. No wait is ever longer than the server asked
//! for, and none longer than [`LONGEST_LIMIT`].

use std::time::{Duration, Instant};

use sentry_core::Envelope;
use sentry_core::protocol::{EnvelopeItem, ItemContainer};

/// The longest a limit is kept, whatever the server says.
pub const LONGEST_LIMIT: Duration = Duration::from_secs(3600);
/// The longest pause a 5xx's `Retry-After` causes.
pub const SERVER_ERROR_PAUSE: Duration = Duration::from_secs(60);
/// The limit a 429 without `Retry-After` or `X-Sentry-Rate-Limits` sets.
const DEFAULT_LIMIT: Duration = Duration::from_secs(60);

/// The data categories an envelope item can fall in (Relay's names); a limit on any
/// other category is ignored, so the table never grows.
const CATEGORIES: [&str; 9] = [
    "default",
    "error",
    "transaction",
    "session",
    "attachment",
    "monitor",
    "log_item",
    "trace_metric",
    "internal",
];

/// The data category of an envelope item: an event with an exception is an `error`,
/// one without is `default`.
fn category(item: &EnvelopeItem) -> Option<&'static str> {
    Some(match item {
        EnvelopeItem::Event(e) if e.exception.is_empty() => "default",
        EnvelopeItem::Event(_) => "error",
        EnvelopeItem::Transaction(_) => "transaction",
        EnvelopeItem::SessionUpdate(_) | EnvelopeItem::SessionAggregates(_) => "session",
        EnvelopeItem::Attachment(_) => "attachment",
        EnvelopeItem::MonitorCheckIn(_) => "monitor",
        EnvelopeItem::ItemContainer(ItemContainer::Logs(_)) => "log_item",
        EnvelopeItem::ItemContainer(ItemContainer::Metrics(_)) => "trace_metric",
        EnvelopeItem::ClientReport(_) => "internal",
        _ => return None,
    })
}

/// The limits in force: one for every category, and one per category.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    all: Option<Instant>,
    by_category: [Option<Instant>; CATEGORIES.len()],
}

/// Seconds as Sentry writes them (an integer or a decimal), capped at `cap`.
fn seconds(text: &str, cap: Duration) -> Option<Duration> {
    let s: f64 = text.trim().parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(cap.as_secs_f64())))
}

/// Keeps the later of two ends: when two limits cover a category, the longer wins.
fn extend(slot: &mut Option<Instant>, until: Instant) {
    if slot.is_none_or(|t| t < until) {
        *slot = Some(until);
    }
}

impl RateLimits {
    /// Takes in the limits of an answer with `status` and these two headers (their
    /// text, when present), received at `now`. True when the answer set a limit.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        status: u16,
        rate_limits: Option<&str>,
        retry_after: Option<&str>,
    ) -> bool {
        if let Some(header) = rate_limits {
            let mut any = false;
            for quota in header.split(',') {
                let mut parts = quota.split(':');
                let Some(wait) = parts.next().and_then(|s| seconds(s, LONGEST_LIMIT)) else {
                    continue;
                };
                let until = now + wait;
                let categories = parts.next().unwrap_or("").trim();
                if categories.is_empty() {
                    extend(&mut self.all, until);
                    any = true;
                    continue;
                }
                for name in categories.split(';').map(str::trim) {
                    if let Some(i) = CATEGORIES.iter().position(|c| *c == name) {
                        extend(&mut self.by_category[i], until);
                        any = true;
                    }
                }
            }
            return any;
        }
        let wait = match status {
            429 => retry_after
                .and_then(|r| seconds(r, LONGEST_LIMIT))
                .unwrap_or(DEFAULT_LIMIT),
            500..=599 => match retry_after.and_then(|r| seconds(r, SERVER_ERROR_PAUSE)) {
                Some(w) => w,
                None => return false,
            },
            _ => return false,
        };
        extend(&mut self.all, now + wait);
        true
    }

    /// Whether items of `category` (`None`: of no known category) are held back at
    /// `now`.
    fn limited(&self, now: Instant, category: Option<&str>) -> bool {
        if self.all.is_some_and(|t| now < t) {
            return true;
        }
        category
            .and_then(|c| CATEGORIES.iter().position(|k| *k == c))
            .and_then(|i| self.by_category[i])
            .is_some_and(|t| now < t)
    }

    /// The envelope without the items held back at `now`; `None` when none is left.
    pub(crate) fn filter(&self, now: Instant, envelope: Envelope) -> Option<Envelope> {
        if self.all.is_some_and(|t| now < t) {
            return None;
        }
        if self.by_category.iter().all(|t| t.is_none_or(|t| now >= t)) {
            return Some(envelope);
        }
        envelope.filter(|item: &EnvelopeItem| !self.limited(now, category(item)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentry_core::protocol::{Event, Exception, Level};

    fn event(error: bool) -> Envelope {
        let mut e = Event {
            level: Level::Error,
            ..Default::default()
        };
        if error {
            e.exception.values.push(Exception {
                ty: "E".into(),
                ..Default::default()
            });
        }
        Envelope::from(e)
    }

    #[test]
    fn the_header_limits_the_categories_it_names_on_any_status() {
        let now = Instant::now();
        let mut l = RateLimits::default();
        assert!(l.update(now, 200, Some("60:error:organization"), None));
        assert!(l.filter(now, event(true)).is_none(), "errors are held");
        assert!(
            l.filter(now, event(false)).is_some(),
            "other events are not"
        );
        assert!(
            l.filter(now + Duration::from_secs(61), event(true))
                .is_some()
        );
        // The header wins over Retry-After, and spaces are ignored.
        let mut l = RateLimits::default();
        l.update(
            now,
            429,
            Some("60:transaction:key, 2700:default;error;security:organization"),
            Some("5"),
        );
        assert!(
            l.filter(now + Duration::from_secs(600), event(false))
                .is_none()
        );
        assert!(
            l.filter(now + Duration::from_secs(2701), event(true))
                .is_some()
        );
        // No category: every category.
        let mut l = RateLimits::default();
        l.update(now, 429, Some("30::organization"), None);
        assert!(l.limited(now, None) && l.limited(now, Some("session")));
        assert!(!l.limited(now + Duration::from_secs(31), None));
    }

    #[test]
    fn the_longer_of_two_limits_wins_and_none_passes_the_longest() {
        let now = Instant::now();
        let mut l = RateLimits::default();
        l.update(now, 200, Some("120:error:key"), None);
        l.update(now, 200, Some("10:error:key"), None);
        assert!(l.limited(now + Duration::from_secs(100), Some("error")));
        l.update(now, 200, Some("99999999:error:key, 1e300::key"), None);
        assert!(!l.limited(now + LONGEST_LIMIT + Duration::from_secs(1), Some("error")));
        // Unknown categories and bad numbers are ignored.
        let mut l = RateLimits::default();
        assert!(!l.update(
            now,
            200,
            Some("60:unknown:key, x:error:key, -5:error"),
            None
        ));
        assert!(!l.limited(now, Some("error")));
    }

    #[test]
    fn a_429_limits_everything_for_its_retry_after_or_a_minute() {
        let now = Instant::now();
        let mut l = RateLimits::default();
        assert!(l.update(now, 429, None, Some("30")));
        assert!(l.limited(now + Duration::from_secs(29), Some("error")));
        assert!(!l.limited(now + Duration::from_secs(31), Some("error")));
        let mut l = RateLimits::default();
        assert!(l.update(now, 429, None, None));
        assert!(l.limited(now + Duration::from_secs(59), None));
        assert!(!l.limited(now + Duration::from_secs(61), None));
    }

    #[test]
    fn a_5xx_pauses_for_at_most_a_minute_and_only_when_it_asks() {
        let now = Instant::now();
        let mut l = RateLimits::default();
        assert!(!l.update(now, 503, None, None), "no Retry-After: no pause");
        assert!(!l.limited(now, Some("error")));
        assert!(l.update(now, 503, None, Some("7200")));
        assert!(l.limited(now + Duration::from_secs(59), Some("error")));
        assert!(
            !l.limited(
                now + SERVER_ERROR_PAUSE + Duration::from_secs(1),
                Some("error")
            ),
            "a 503's Retry-After of two hours mutes a minute at most"
        );
        let mut l = RateLimits::default();
        l.update(now, 502, None, Some("2"));
        assert!(
            !l.limited(now + Duration::from_secs(3), None),
            "what it asked"
        );
        // A 4xx other than 429 sets nothing.
        assert!(!l.update(now, 400, None, Some("60")));
    }
}
