//! The registry: the named providers, each with its circuit breaker and counters, the
//! default provider, and one attempt through a provider (breaker, text cut to the
//! provider's limit, time bound, panics caught). Shared by the service and the
//! dispatcher; depends on the model, the port and the policies only.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::FutureExt as _;

use crate::model::{Notification, truncate};
use crate::notifier::{Capabilities, DynNotifier, Notifier, SendError};
use crate::policy::{Breaker, BreakerPolicy};

/// A provider could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name is empty.
    #[error("notification provider name cannot be empty")]
    EmptyName,
    /// The name is taken.
    #[error("notification provider {0:?} is already registered; choose another name")]
    Duplicate(String),
}

/// No provider of that name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no notification provider named {0:?} is registered")]
pub struct UnknownProvider(pub String);

/// A notification's providers could not be found: it names none and there is no
/// default, or it names some that are not registered. The text says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NoProvider(pub(crate) String);

/// Sends outcome per provider of one attempt.
pub(crate) type AttemptResults = Vec<(String, Result<(), SendError>)>;

/// One registered provider.
pub(crate) struct Entry {
    notifier: Arc<dyn DynNotifier>,
    breaker: Breaker,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl Entry {
    /// Counts the outcomes of attempts.
    fn count(&self, results: &[Result<(), SendError>]) {
        let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
        self.delivered.fetch_add(ok, Ordering::Relaxed);
        self.failed
            .fetch_add(results.len() as u64 - ok, Ordering::Relaxed);
    }
}

/// Whether `n`'s message is longer than the provider's limit.
fn too_long(caps: &Capabilities, n: &Notification) -> bool {
    caps.max_message_length > 0 && n.content.message.chars().count() > caps.max_message_length
}

/// `n`, its message cut to the provider's limit (with the visible marker) when it is
/// longer.
fn fit<'a>(caps: &Capabilities, n: &'a Notification) -> Cow<'a, Notification> {
    if !too_long(caps, n) {
        return Cow::Borrowed(n);
    }
    let mut c = n.clone();
    c.content.message = truncate(&n.content.message, caps.max_message_length).into_owned();
    Cow::Owned(c)
}

/// Per-provider counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderStats {
    /// The provider's name.
    pub provider: String,
    /// Notifications it delivered.
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
}

/// The providers, shared by the service and its dispatcher.
pub(crate) struct Registry {
    /// In registration order.
    entries: RwLock<Vec<(String, Arc<Entry>)>>,
    /// Shared, so that `enqueue` takes it without allocating.
    default: RwLock<Option<Arc<str>>>,
    breaker: BreakerPolicy,
    send_timeout: Duration,
}

impl Registry {
    /// An empty registry whose providers get `breaker` and `send_timeout`.
    pub(crate) fn new(breaker: BreakerPolicy, send_timeout: Duration) -> Registry {
        Registry {
            entries: RwLock::new(Vec::new()),
            default: RwLock::new(None),
            breaker,
            send_timeout,
        }
    }

    /// Registers a provider; the first one registered becomes the default.
    pub(crate) fn register(
        &self,
        name: String,
        notifier: impl Notifier,
    ) -> Result<(), RegisterError> {
        if name.trim().is_empty() {
            return Err(RegisterError::EmptyName);
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.iter().any(|(n, _)| *n == name) {
            return Err(RegisterError::Duplicate(name));
        }
        entries.push((
            name.clone(),
            Arc::new(Entry {
                notifier: Arc::new(notifier),
                breaker: Breaker::new(self.breaker),
                delivered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
        ));
        let mut default = self.default.write().unwrap_or_else(|p| p.into_inner());
        if default.is_none() {
            *default = Some(Arc::from(name));
        }
        Ok(())
    }

    /// Makes `name` the default provider.
    pub(crate) fn set_default(&self, name: &str) -> Result<(), UnknownProvider> {
        if self.entry(name).is_none() {
            return Err(UnknownProvider(name.to_string()));
        }
        *self.default.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::from(name));
        Ok(())
    }

    /// The registered names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    /// Counters per provider, in registration order.
    pub(crate) fn stats(&self) -> Vec<ProviderStats> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, e)| ProviderStats {
                provider: n.clone(),
                delivered: e.delivered.load(Ordering::Relaxed),
                failed_attempts: e.failed.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// A provider's capabilities.
    pub(crate) fn capabilities(&self, name: &str) -> Option<Capabilities> {
        self.entry(name).map(|e| e.notifier.capabilities())
    }

    /// Closes every provider, each within the send timeout; a provider panicking in
    /// `close` does not stop the others closing.
    pub(crate) async fn close(&self) {
        let entries: Vec<Arc<Entry>> = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, e)| e.clone())
            .collect();
        for e in entries {
            let notifier = &*e.notifier;
            let close = AssertUnwindSafe(async move { notifier.close().await }).catch_unwind();
            let _ = tokio::time::timeout(self.send_timeout, close).await;
        }
    }

    /// The provider registered as `name`.
    pub(crate) fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
    }

    /// The default provider's name, shared (no allocation).
    pub(crate) fn default_name(&self) -> Option<Arc<str>> {
        self.default
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The provider names a notification goes to.
    pub(crate) fn targets(&self, n: &Notification) -> Result<Vec<String>, NoProvider> {
        if n.providers.is_empty() {
            let default = self.default.read().unwrap_or_else(|p| p.into_inner());
            return match default.as_ref() {
                Some(d) => Ok(vec![d.to_string()]),
                None => Err(NoProvider(
                    "no notification provider is registered; register one or name one with `provider`"
                        .into(),
                )),
            };
        }
        let unknown: Vec<&str> = n
            .providers
            .iter()
            .filter(|p| self.entry(p).is_none())
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(NoProvider(format!(
                "no notification provider named {} is registered",
                unknown
                    .iter()
                    .map(|u| format!("{u:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(unique(&n.providers))
    }

    /// Whether every one of `names` is registered (allocates nothing).
    pub(crate) fn knows_all(&self, names: &[String]) -> bool {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        names.iter().all(|p| entries.iter().any(|(n, _)| n == p))
    }

    /// One attempt through one provider: circuit breaker, text cut to the provider's
    /// limit, the service's time bound, panics caught.
    pub(crate) async fn attempt(&self, name: &str, n: &Notification) -> Result<(), SendError> {
        let Some(entry) = self.entry(name) else {
            return Err(SendError::Rejected(format!(
                "no notification provider named {name:?} is registered"
            )));
        };
        // The permit records the outcome below; if this future is dropped before
        // (a caller's timeout, a worker aborted at shutdown), its drop releases the
        // half-open trial, so the circuit cannot stay shut for good.
        let permit = match entry.breaker.admit() {
            Ok(permit) => permit,
            Err(wait) => {
                entry.failed.fetch_add(1, Ordering::Relaxed);
                return Err(SendError::CircuitOpen(wait));
            }
        };
        // Everything the provider's code runs is inside the guard: `capabilities`, and
        // the call that makes the future (a hand-written `fn send(..) -> impl Future`
        // runs code before its first poll), not only the polls.
        let notifier = &*entry.notifier;
        let send = AssertUnwindSafe(async move {
            let n = fit(&notifier.capabilities(), n);
            notifier.send(&n).await
        })
        .catch_unwind();
        let result = match tokio::time::timeout(self.send_timeout, send).await {
            Ok(Ok(r)) => r,
            Ok(Err(panic)) => Err(SendError::Panicked(panic_text(&*panic))),
            Err(_) => Err(SendError::Timeout {
                provider: "service",
                after: self.send_timeout,
            }),
        };
        // The circuit is about the platform being reachable: a refusal of this
        // notification (a 4xx, a rejection) or a panic of the provider's own code says
        // nothing against the platform, and must not shut out the alerts that follow.
        permit.record(!matches!(&result, Err(e) if e.is_retryable()));
        entry.count(std::slice::from_ref(&result));
        result
    }

    /// One bulk attempt of `list` through the provider `entry`, with what
    /// [`attempt`](Self::attempt) does for one: the circuit breaker (one trial for the
    /// whole list), text cut to the provider's limit, a time bound (the service's,
    /// once per notification), panics caught, the counters; one result per
    /// notification, in order, whatever the provider returned.
    pub(crate) async fn attempt_bulk(
        &self,
        entry: &Entry,
        list: &[Notification],
    ) -> Vec<Result<(), SendError>> {
        // Nothing to send: the provider is not called, and the circuit neither takes
        // a trial nor hears of a success.
        if list.is_empty() {
            return Vec::new();
        }
        let permit = match entry.breaker.admit() {
            Ok(permit) => permit,
            Err(wait) => {
                entry.failed.fetch_add(list.len() as u64, Ordering::Relaxed);
                return list
                    .iter()
                    .map(|_| Err(SendError::CircuitOpen(wait)))
                    .collect();
            }
        };
        let notifier = &*entry.notifier;
        let bulk = AssertUnwindSafe(async move {
            let caps = notifier.capabilities();
            // Copied only when one of them is to be cut.
            if list.iter().any(|n| too_long(&caps, n)) {
                let fitted: Vec<Notification> =
                    list.iter().map(|n| fit(&caps, n).into_owned()).collect();
                notifier.send_bulk(&fitted).await
            } else {
                notifier.send_bulk(list).await
            }
        })
        .catch_unwind();
        // Saturating: a send timeout of `Duration::MAX` times the notifications is still
        // the longest bound, not a panic.
        let timeout = self
            .send_timeout
            .saturating_mul(u32::try_from(list.len()).unwrap_or(u32::MAX));
        let all_failed = |e: &dyn Fn() -> SendError| list.iter().map(|_| Err(e())).collect();
        let results = match tokio::time::timeout(timeout, bulk).await {
            // Results that cannot be matched to the notifications: none is trusted.
            Ok(Ok(results)) if results.len() != list.len() => {
                let why = format!(
                    "the provider returned {} results for {} notifications",
                    results.len(),
                    list.len()
                );
                all_failed(&|| SendError::Other(why.clone()))
            }
            Ok(Ok(results)) => results,
            Ok(Err(panic)) => {
                let why = panic_text(&*panic);
                all_failed(&|| SendError::Panicked(why.clone()))
            }
            Err(_) => all_failed(&|| SendError::Timeout {
                provider: "service",
                after: timeout,
            }),
        };
        permit.record(
            !results
                .iter()
                .any(|r| matches!(r, Err(e) if e.is_retryable())),
        );
        entry.count(&results);
        results
    }

    /// One attempt to each of `targets`, concurrently.
    pub(crate) async fn attempt_all(&self, targets: &[String], n: &Notification) -> AttemptResults {
        let runs = targets
            .iter()
            .map(|t| async move { (t.clone(), self.attempt(t, n).await) });
        futures_util::future::join_all(runs).await
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// `names` without repeats, in their order.
pub(crate) fn unique(names: &[String]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::with_capacity(names.len());
    for p in names {
        if !seen.contains(p) {
            seen.push(p.clone());
        }
    }
    seen
}
