//! The `Notifier` port: what a notification provider implements.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::model::Notification;

/// What a provider can do. Informational for callers, and used by the service: text
/// longer than `max_message_length` is cut to fit, with a visible marker, before the
/// provider sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// The longest message the platform takes, in characters (0: no limit).
    pub max_message_length: usize,
    /// Whether it renders rich text (markdown, cards).
    pub rich_text: bool,
    /// Whether it shows images.
    pub images: bool,
    /// Whether `send_bulk` sends several notifications in one request.
    pub bulk: bool,
}

impl Capabilities {
    /// Capabilities with a message limit (0: none) and nothing else.
    pub fn with_max_message_length(max_message_length: usize) -> Capabilities {
        Capabilities {
            max_message_length,
            ..Capabilities::default()
        }
    }
    /// Sets rich text.
    pub fn rich_text(mut self, on: bool) -> Capabilities {
        self.rich_text = on;
        self
    }
    /// Sets images.
    pub fn images(mut self, on: bool) -> Capabilities {
        self.images = on;
        self
    }
    /// Sets bulk.
    pub fn bulk(mut self, on: bool) -> Capabilities {
        self.bulk = on;
        self
    }
}

/// Why a send failed. Its text never holds a secret (webhook URLs, tokens, routing
/// keys): providers build it from the status and the error kind only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The platform answered with a status that is not a success.
    #[error("{provider} returned status {status}{}", .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// The provider kind (`slack`, `webhook`, ...).
        provider: &'static str,
        /// The HTTP status.
        status: u16,
        /// `Retry-After`, when the answer had one (429 and 503 honour it).
        retry_after: Option<Duration>,
        /// A short excerpt of the answer, when it helps (never request data).
        detail: Option<String>,
    },
    /// The request did not complete: connection refused or reset, DNS, TLS.
    #[error("{provider}: request failed: {source}")]
    Transport {
        /// The provider kind.
        provider: &'static str,
        /// The cause (with any URL removed).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer within the time allowed.
    #[error("{provider}: no answer within {}", humanize(*.after))]
    Timeout {
        /// The provider kind, or `service` when the service's own bound fired.
        provider: &'static str,
        /// The time allowed.
        after: Duration,
    },
    /// The provider panicked; the panic was caught.
    #[error("provider panicked: {0}")]
    Panicked(String),
    /// The circuit breaker of this provider is open after repeated failures.
    #[error("circuit breaker open after repeated failures; next trial in {}", humanize(*.0))]
    CircuitOpen(Duration),
    /// The notification cannot be sent by this provider as it is (not retried).
    #[error("{0}")]
    Rejected(String),
    /// Any other failure (retried).
    #[error("{0}")]
    Other(String),
}

fn humanize(d: Duration) -> String {
    if d.as_secs() >= 1 && d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl SendError {
    /// Whether sending again may work: network failures, timeouts, 5xx and 429 are
    /// retried; every other 4xx (408 included: the platform answered, and a status is
    /// classified by its class alone) and rejections are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Status { status, .. } => *status >= 500 || *status == 429,
            SendError::Transport { .. }
            | SendError::Timeout { .. }
            | SendError::CircuitOpen(_)
            | SendError::Other(_) => true,
            SendError::Panicked(_) | SendError::Rejected(_) => false,
        }
    }

    /// The wait the platform asked for (`Retry-After` on 429 and 503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Status {
                status: 429 | 503,
                retry_after,
                ..
            } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Parses a `Retry-After` value: whole seconds, or an HTTP date (then the time from
/// `now` to it) in any of the three forms RFC 9110 §5.6.7 makes recipients accept:
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37
/// GMT`) and asctime (`Sun Nov  6 08:49:37 1994`). Zero, past dates and unreadable values
/// count as absent; values are capped at [`MAX_RETRY_AFTER`], seconds too many for a
/// `u64` included.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        // Fuzzing found that seconds past u64::MAX read as absent: they are a long wait.
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => MAX_RETRY_AFTER,
        Err(_) => http_date(value, now)?.duration_since(now).ok()?,
    };
    (!wait.is_zero()).then(|| wait.min(MAX_RETRY_AFTER))
}

/// An HTTP date in one of its three forms. Fuzzing found that the RFC 850 and asctime
/// forms, which recipients must accept, read as absent.
fn http_date(value: &str, now: SystemTime) -> Option<SystemTime> {
    use chrono::{Datelike as _, NaiveDateTime};
    if let Ok(t) = chrono::DateTime::parse_from_rfc2822(value) {
        return Some(t.into());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(value, "%a %b %e %H:%M:%S %Y") {
        return Some(t.and_utc().into());
    }
    // RFC 850: a two-digit year more than 50 years ahead of `now` is in the past century.
    let (weekday, rest) = value.split_once(", ")?;
    let (date, time) = rest.split_once(' ')?;
    let (day_month, yy) = date.rsplit_once('-')?;
    if yy.len() != 2 || !yy.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let this_year = chrono::DateTime::<chrono::Utc>::from(now).year();
    let mut year = this_year - this_year.rem_euclid(100) + yy.parse::<i32>().ok()?;
    if year > this_year + 50 {
        year -= 100;
    }
    let text = format!("{weekday}, {day_month}-{year} {time}");
    NaiveDateTime::parse_from_str(&text, "%A, %d-%b-%Y %H:%M:%S GMT")
        .ok()
        .map(|t| t.and_utc().into())
}

/// A notification provider: Slack, a webhook, a pager, or your own.
///
/// Contract: `send` delivers one notification or says why not; it must finish in
/// bounded time (the service also bounds it) and may be called concurrently.
/// `send_bulk` defaults to one `send` after another; `close` releases resources and is
/// called once at shutdown. Errors must not contain secrets.
///
/// ```
/// use piko_obs_notify::{Capabilities, Notification, Notifier, SendError};
///
/// struct Pager;
///
/// impl Notifier for Pager {
///     async fn send(&self, n: &Notification) -> Result<(), SendError> {
///         if n.content.title.is_empty() {
///             return Err(SendError::Rejected("a page needs a title".into()));
///         }
///         Ok(())
///     }
///     fn capabilities(&self) -> Capabilities {
///         Capabilities::with_max_message_length(160)
///     }
/// }
/// ```
pub trait Notifier: Send + Sync + 'static {
    /// Delivers one notification.
    fn send(
        &self,
        notification: &Notification,
    ) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Delivers several; the default sends them one after another and reports each
    /// result, in order.
    fn send_bulk(
        &self,
        notifications: &[Notification],
    ) -> impl Future<Output = Vec<Result<(), SendError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(notifications.len());
            for n in notifications {
                out.push(self.send(n).await);
            }
            out
        }
    }

    /// What the platform can do (default: no limits, plain text).
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Releases resources at shutdown (default: nothing).
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Notifier`], to keep providers of different types together.
pub(crate) trait DynNotifier: Send + Sync + 'static {
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), SendError>>;
    fn send_bulk<'a>(&'a self, n: &'a [Notification]) -> BoxFuture<'a, Vec<Result<(), SendError>>>;
    fn capabilities(&self) -> Capabilities;
    fn close(&self) -> BoxFuture<'_, ()>;
}

impl<N: Notifier> DynNotifier for N {
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(Notifier::send(self, n))
    }
    fn send_bulk<'a>(&'a self, n: &'a [Notification]) -> BoxFuture<'a, Vec<Result<(), SendError>>> {
        Box::pin(Notifier::send_bulk(self, n))
    }
    fn capabilities(&self) -> Capabilities {
        Notifier::capabilities(self)
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(Notifier::close(self))
    }
}

/// A provider that accepts everything and sends nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopNotifier;

impl Notifier for NoopNotifier {
    async fn send(&self, _: &Notification) -> Result<(), SendError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_caps_them() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 2 ", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        // 2023-11-14T22:13:20Z is the epoch second 1_700_000_000.
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now),
            None
        );
        for obsolete in [
            "Tuesday, 14-Nov-23 22:13:50 GMT",
            "Tue Nov 14 22:13:50 2023",
        ] {
            assert_eq!(
                parse_retry_after(obsolete, now),
                Some(Duration::from_secs(30)),
                "{obsolete}"
            );
        }
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn errors_are_classified_for_retries() {
        let status = |s, ra| SendError::Status {
            provider: "webhook",
            status: s,
            retry_after: ra,
            detail: None,
        };
        assert!(status(500, None).is_retryable());
        assert!(status(429, None).is_retryable());
        assert!(!status(400, None).is_retryable());
        assert!(!status(404, None).is_retryable());
        assert!(!status(408, None).is_retryable(), "a 4xx other than 429");
        assert!(!status(499, None).is_retryable());
        assert!(status(503, None).is_retryable());
        let d = Some(Duration::from_secs(2));
        assert_eq!(status(429, d).retry_after(), d);
        assert_eq!(status(503, d).retry_after(), d);
        assert_eq!(status(500, d).retry_after(), None);
        assert!(!SendError::Panicked("x".into()).is_retryable());
        assert_eq!(status(429, None).to_string(), "webhook returned status 429");
        assert_eq!(
            SendError::Timeout {
                provider: "slack",
                after: Duration::from_millis(1500)
            }
            .to_string(),
            "slack: no answer within 1500ms"
        );
    }
}
