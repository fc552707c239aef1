//! [`HttpTransport`]: Sentry's `Transport` port over the workspace's rustls reqwest
//! client, with a bounded queue, timeouts, rate-limit handling and a flush that returns
//! at its bound.
//!
//! Sentry's own transports join their worker thread on drop without a bound, so a Sentry
//! that accepts connections and never answers can hang a process's exit; this one never
//! waits past the timeout it is given.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sentry_core::types::Dsn;
use sentry_core::{Envelope, Transport};
use tokio::sync::mpsc;

use crate::config::{SentryConfig, SentryConfigError};
use crate::ratelimit::RateLimits;

/// The longest wait taken as given: a longer one (up to `Duration::MAX`) is a century,
/// as `Instant` cannot add more.
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What the transport did with the envelopes it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Envelopes accepted into the queue.
    pub queued: u64,
    /// Envelopes Sentry accepted (2xx).
    pub sent: u64,
    /// Envelopes that failed: a network error, a timeout or an error status.
    pub failed: u64,
    /// Envelopes not sent because Sentry asked the client to back off: the answer
    /// 429, or a rate limit on every category of the envelope's items, or the pause
    /// after a 5xx with `Retry-After` (see [`crate::ratelimit`]).
    pub rate_limited: u64,
    /// Envelopes dropped because the queue was full or the transport was shut down.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    rate_limited: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Pending {
    count: Mutex<u64>,
    idle: Condvar,
}

impl Pending {
    fn add(&self) {
        if let Ok(mut n) = self.count.lock() {
            *n += 1;
        }
    }
    fn done(&self) {
        if let Ok(mut n) = self.count.lock() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.idle.notify_all();
            }
        }
    }
    fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout.min(LONGEST_WAIT);
        let Ok(mut n) = self.count.lock() else {
            return false;
        };
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.idle.wait_timeout(n, left) {
                Ok((guard, _)) => n = guard,
                Err(_) => return false,
            }
        }
        true
    }
}

/// A failure the transport reports through its error hook: never the DSN, never the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// What went wrong.
    pub reason: String,
}

/// Hears of each envelope the transport could not send.
pub type ErrorHook = Arc<dyn Fn(&TransportError) + Send + Sync>;

struct Shared {
    counters: Counters,
    pending: Pending,
    /// `None` once shut down.
    sender: Mutex<Option<mpsc::Sender<Envelope>>>,
}

/// Sends envelopes to the DSN's envelope endpoint from one task on a tokio runtime.
/// `send_envelope` never blocks: past the queue's capacity an envelope is dropped and
/// counted. Create it with [`HttpTransport::start`]; it is also a `TransportFactory`
/// (through `Arc`), so it goes straight into `ClientOptions::transport`.
pub struct HttpTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

const USER_AGENT: &str = concat!("piko-obs-sentry/", env!("CARGO_PKG_VERSION"));

fn tls_config() -> Result<rustls::ClientConfig, SentryConfigError> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map(|b| b.with_no_client_auth())
        .map_err(|e| SentryConfigError {
            field: "transport",
            problem: format!("cannot set up TLS: {e}"),
        })
}

impl HttpTransport {
    /// Starts the sending task on `handle`. `on_error` hears of each failed envelope
    /// (the facade logs it, rate-limited).
    pub fn start(
        config: &SentryConfig,
        handle: &tokio::runtime::Handle,
        on_error: Option<ErrorHook>,
    ) -> Result<Arc<HttpTransport>, SentryConfigError> {
        let dsn = config.dsn()?;
        config.validate()?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config()?)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| SentryConfigError {
                field: "transport",
                problem: format!("cannot build the HTTP client: {}", e.without_url()),
            })?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            pending: Pending::default(),
            sender: Mutex::new(Some(tx)),
        });
        handle.spawn(run(
            rx,
            client,
            dsn,
            shared.clone(),
            on_error.unwrap_or_else(|| Arc::new(|_| {})),
        ));
        Ok(Arc::new(HttpTransport { shared }))
    }

    /// The counters.
    pub fn stats(&self) -> TransportStats {
        let c = &self.shared.counters;
        TransportStats {
            queued: c.queued.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

impl Transport for HttpTransport {
    fn send_envelope(&self, envelope: Envelope) {
        let s = &self.shared;
        let Ok(guard) = s.sender.lock() else {
            s.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(tx) = guard.as_ref() else {
            s.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        s.pending.add();
        match tx.try_send(envelope) {
            Ok(()) => {
                s.counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                s.pending.done();
                s.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.shared.pending.wait_idle(timeout)
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        let drained = self.flush(timeout);
        // Dropping the sender ends the task once the queue is empty; nothing waits for it.
        if let Ok(mut s) = self.shared.sender.lock() {
            s.take();
        }
        drained
    }
}

async fn run(
    mut rx: mpsc::Receiver<Envelope>,
    client: reqwest::Client,
    dsn: Dsn,
    shared: Arc<Shared>,
    on_error: ErrorHook,
) {
    let url = dsn.envelope_api_url().to_string();
    let auth = dsn.to_auth(Some(USER_AGENT)).to_string();
    let mut limits = RateLimits::default();
    while let Some(envelope) = rx.recv().await {
        let c = &shared.counters;
        // Items of a limited category are taken out; an envelope left empty is not sent.
        let Some(envelope) = limits.filter(Instant::now(), envelope) else {
            c.rate_limited.fetch_add(1, Ordering::Relaxed);
            shared.pending.done();
            continue;
        };
        let mut body = Vec::new();
        if let Err(e) = envelope.to_writer(&mut body) {
            c.failed.fetch_add(1, Ordering::Relaxed);
            on_error(&TransportError {
                reason: format!("cannot encode an envelope: {e}"),
            });
            shared.pending.done();
            continue;
        }
        let result = client
            .post(&url)
            .header("X-Sentry-Auth", &auth)
            .header("Content-Type", "application/x-sentry-envelope")
            .body(body)
            .send()
            .await;
        if let Ok(resp) = &result {
            let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
            limits.update(
                Instant::now(),
                resp.status().as_u16(),
                header("x-sentry-rate-limits"),
                header("retry-after"),
            );
        }
        match result {
            Ok(resp) if resp.status().is_success() => {
                c.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(resp) => {
                let status = resp.status();
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    c.rate_limited.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                }
                on_error(&TransportError {
                    reason: format!("Sentry answered {status}"),
                });
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                on_error(&TransportError {
                    reason: format!("sending an envelope {kind}: {}", e.without_url()),
                });
            }
        }
        shared.pending.done();
    }
}
