//! The notification service: named providers, a default, sends with retries, multicast
//! and bulk, and the fluent builder.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;

use crate::dispatcher::{DeadLetter, Dispatcher, EnqueueError, Enqueued};
use crate::model::{Notification, Priority, truncate};
use crate::notifier::{Capabilities, DynNotifier, Notifier, SendError};
use crate::policy::{Breaker, BreakerPolicy, RetryPolicy};

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

/// One provider's failure in a delivery.
#[derive(Debug)]
#[non_exhaustive]
pub struct ProviderFailure {
    /// The provider's name.
    pub provider: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: SendError,
}

/// A notification was not delivered to every provider it was for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// It has neither title nor message.
    #[error("notification must have a title or a message")]
    Empty,
    /// It names no provider and there is no default, or names unknown ones.
    #[error("{0}")]
    NoProvider(String),
    /// Some providers failed after their retries (the others delivered it).
    #[error("{}", describe_failures(.failures, .delivered))]
    Failed {
        /// The providers that failed, with their last error.
        failures: Vec<ProviderFailure>,
        /// The providers that delivered it.
        delivered: Vec<String>,
        /// Whether the failed part was written to the dead-letter store.
        dead_lettered: bool,
    },
    /// The delivery task on the service's runtime ended without an outcome: that
    /// runtime shut down, or the task panicked outside a provider.
    #[error("notification delivery was interrupted: {0}")]
    Interrupted(String),
}

fn describe_failures(failures: &[ProviderFailure], delivered: &[String]) -> String {
    let total = failures.len() + delivered.len();
    let list: Vec<String> = failures
        .iter()
        .map(|f| {
            format!(
                "{} after {} attempt(s): {}",
                f.provider, f.attempts, f.error
            )
        })
        .collect();
    format!(
        "notification not delivered to {} of {total} provider(s): {}",
        failures.len(),
        list.join("; ")
    )
}

/// Sends outcome per provider of one attempt.
pub(crate) type AttemptResults = Vec<(String, Result<(), SendError>)>;

/// What [`NotificationService::send_once`] did: one outcome per provider, in the order
/// the notification named them.
#[derive(Debug)]
pub struct SendReport {
    /// Each provider's outcome.
    pub outcomes: Vec<ProviderOutcome>,
}

/// One provider's outcome in a [`SendReport`].
#[derive(Debug)]
pub struct ProviderOutcome {
    /// The provider's name.
    pub provider: String,
    /// Delivered, or why not.
    pub result: Result<(), SendError>,
}

impl SendReport {
    /// Whether every provider took it.
    pub fn all_delivered(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }

    /// The providers that took it.
    pub fn delivered(&self) -> impl Iterator<Item = &str> {
        self.outcomes
            .iter()
            .filter(|o| o.result.is_ok())
            .map(|o| o.provider.as_str())
    }

    /// The providers that did not, with their error.
    pub fn failed(&self) -> impl Iterator<Item = (&str, &SendError)> {
        self.outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().err().map(|e| (o.provider.as_str(), e)))
    }
}

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
    entries: RwLock<Vec<(String, Arc<Entry>)>>,
    /// Shared, so that `enqueue` takes it without allocating.
    default: RwLock<Option<Arc<str>>>,
    breaker: BreakerPolicy,
    send_timeout: Duration,
}

impl Registry {
    fn entry(&self, name: &str) -> Option<Arc<Entry>> {
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
    pub(crate) fn targets(&self, n: &Notification) -> Result<Vec<String>, DeliveryError> {
        if n.providers.is_empty() {
            let default = self.default.read().unwrap_or_else(|p| p.into_inner());
            return match default.as_ref() {
                Some(d) => Ok(vec![d.to_string()]),
                None => Err(DeliveryError::NoProvider(
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
            return Err(DeliveryError::NoProvider(format!(
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

type TraceIdSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

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

/// Values filled into every notification's context when it leaves them empty.
#[derive(Clone, Default)]
pub(crate) struct Defaults {
    source: String,
    environment: String,
    service: String,
    trace_id: Option<TraceIdSource>,
}

impl Defaults {
    /// Fills the context's source, environment and service where they are empty
    /// (for a queued notification, on the worker's or the writer's thread).
    pub(crate) fn fill(&self, n: &mut Notification) {
        let c = &mut n.context;
        for (field, default) in [
            (&mut c.source, &self.source),
            (&mut c.environment, &self.environment),
            (&mut c.service, &self.service),
        ] {
            if field.is_empty() {
                field.clone_from(default);
            }
        }
    }
}

/// Named providers, a default, and the ways to send. Cheap to clone.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use piko_obs_notify::{NoopNotifier, NotificationService, Priority};
/// let service = NotificationService::builder().with_environment("staging").build();
/// service.register("pager", NoopNotifier).unwrap();
/// service
///     .notification()
///     .title("disk almost full")
///     .message("95% used on db-1")
///     .field("host", "db-1")
///     .priority(Priority::High)
///     .send_with_retries()
///     .await
///     .unwrap();
/// # });
/// ```
#[derive(Clone)]
pub struct NotificationService {
    pub(crate) registry: Arc<Registry>,
    pub(crate) defaults: Arc<Defaults>,
    retry: RetryPolicy,
    dispatcher: Arc<OnceLock<Dispatcher>>,
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for NotificationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationService")
            .field("providers", &self.providers())
            .field("default", &self.default_provider())
            .finish_non_exhaustive()
    }
}

/// Configures a [`NotificationService`].
#[derive(Clone, Default)]
#[must_use]
pub struct ServiceBuilder {
    defaults: Defaults,
    retry: RetryPolicy,
    breaker: BreakerPolicy,
    send_timeout: Option<Duration>,
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

/// The service's default bound on one send to one provider.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(15);

impl ServiceBuilder {
    /// The source put on notifications that have none.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.defaults.source = source.into();
        self
    }
    /// The environment put on notifications that have none.
    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.defaults.environment = environment.into();
        self
    }
    /// The service name put on notifications that have none.
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.defaults.service = service.into();
        self
    }
    /// Where the trace id of a notification without one comes from (the facade reads
    /// the current OpenTelemetry span).
    pub fn with_trace_id_source(
        mut self,
        f: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.defaults.trace_id = Some(Arc::new(f));
        self
    }
    /// How sends are retried (by `send_with_retries` and by the dispatcher).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// Each provider's circuit breaker.
    pub fn with_circuit_breaker(mut self, policy: BreakerPolicy) -> Self {
        self.breaker = policy;
        self
    }
    /// The bound on one attempt through one provider (default 15 s; at least 1 ms).
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }
    /// Runs every delivery of `send`, `send_to`, `multicast` and `send_bulk` as a task on
    /// `runtime` (the dispatcher's; the facade sets its own), the caller's future waiting
    /// for it from any executor. Providers' pooled HTTP connections are then always
    /// driven by that runtime: without it, a connection opened from a caller's runtime
    /// that later stops being polled (a `block_on` that returned) stalls the next send
    /// that reuses it until its timeout. A caller that stops waiting does not cancel the
    /// delivery. Without it (the default), deliveries run on the caller's runtime.
    pub fn with_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }
    /// The service, with no provider yet.
    pub fn build(self) -> NotificationService {
        NotificationService {
            registry: Arc::new(Registry {
                entries: RwLock::new(Vec::new()),
                default: RwLock::new(None),
                breaker: self.breaker,
                send_timeout: self.send_timeout.unwrap_or(DEFAULT_SEND_TIMEOUT),
            }),
            defaults: Arc::new(self.defaults),
            retry: self.retry,
            dispatcher: Arc::new(OnceLock::new()),
            runtime: self.runtime,
        }
    }
}

impl Default for NotificationService {
    fn default() -> Self {
        NotificationService::builder().build()
    }
}

impl NotificationService {
    /// A builder with the defaults (see [`RetryPolicy`], [`BreakerPolicy`],
    /// [`DEFAULT_SEND_TIMEOUT`]).
    pub fn builder() -> ServiceBuilder {
        ServiceBuilder::default()
    }

    /// Registers a provider. The first one registered is the default until
    /// [`set_default`](Self::set_default) names another.
    pub fn register(
        &self,
        name: impl Into<String>,
        notifier: impl Notifier,
    ) -> Result<(), RegisterError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(RegisterError::EmptyName);
        }
        let mut entries = self
            .registry
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if entries.iter().any(|(n, _)| *n == name) {
            return Err(RegisterError::Duplicate(name));
        }
        entries.push((
            name.clone(),
            Arc::new(Entry {
                notifier: Arc::new(notifier),
                breaker: Breaker::new(self.registry.breaker),
                delivered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
        ));
        let mut default = self
            .registry
            .default
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if default.is_none() {
            *default = Some(Arc::from(name));
        }
        Ok(())
    }

    /// Makes `name` the default provider.
    pub fn set_default(&self, name: &str) -> Result<(), UnknownProvider> {
        if !self.has_provider(name) {
            return Err(UnknownProvider(name.to_string()));
        }
        *self
            .registry
            .default
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::from(name));
        Ok(())
    }

    /// The default provider's name.
    pub fn default_provider(&self) -> Option<String> {
        self.registry
            .default
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            .map(str::to_string)
    }

    /// The registered names, sorted.
    pub fn providers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .registry
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    /// Whether `name` is registered.
    pub fn has_provider(&self, name: &str) -> bool {
        self.registry.entry(name).is_some()
    }

    /// A provider's capabilities.
    pub fn capabilities(&self, name: &str) -> Option<Capabilities> {
        self.registry.entry(name).map(|e| e.notifier.capabilities())
    }

    /// Counters per provider, in registration order.
    pub fn provider_stats(&self) -> Vec<ProviderStats> {
        self.registry
            .entries
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

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Fills what the caller left empty: the timestamp, the trace id, and the
    /// service's defaults.
    pub(crate) fn prepare(&self, n: &mut Notification) {
        self.stamp(n);
        self.defaults.fill(n);
    }

    /// The part of [`prepare`](Self::prepare) that must run on the caller's thread:
    /// the time, and the trace id of the caller's span. It allocates only for a
    /// trace id.
    fn stamp(&self, n: &mut Notification) {
        let c = &mut n.context;
        if c.timestamp == SystemTime::UNIX_EPOCH {
            c.timestamp = SystemTime::now();
        }
        if c.trace_id.is_empty()
            && let Some(f) = &self.defaults.trace_id
            && let Some(id) = f()
        {
            c.trace_id = id;
        }
    }

    /// Sends now, one attempt per provider: to the notification's providers (or the
    /// default), concurrently, each through its circuit breaker and send timeout, with
    /// no retry and no dead letter. Returns what each provider did (Piko's `Do`); an
    /// error only when nothing could be attempted (empty, no provider, interrupted).
    /// To deliver whatever it takes, [`enqueue`](Self::enqueue) (queued, retried, kept
    /// in the dead-letter store) or [`send_with_retries`](Self::send_with_retries).
    pub async fn send_once(&self, mut n: Notification) -> Result<SendReport, DeliveryError> {
        self.prepare(&mut n);
        self.on_own_runtime(n, |this, n| async move { this.attempt_once(n).await })
            .await
    }

    /// Delivers now, to the notification's providers (or the default), concurrently,
    /// each with the retry policy: against a failing provider it returns only when the
    /// retries are spent (about a minute with the default policy). What still fails is
    /// written to the dispatcher's dead-letter store, when there is one, and reported.
    pub async fn send_with_retries(&self, mut n: Notification) -> Result<(), DeliveryError> {
        self.prepare(&mut n);
        self.on_own_runtime(n, |this, n| async move { this.deliver(n).await })
            .await
    }

    /// Runs `job` on the service's runtime when it has one (the caller may be on
    /// another), else here. `n` is prepared on the caller's thread first: the trace id
    /// comes from the caller's current span, which the runtime's threads do not have.
    async fn on_own_runtime<T, F, Fut>(&self, n: Notification, job: F) -> Result<T, DeliveryError>
    where
        T: Send + 'static,
        F: FnOnce(NotificationService, Notification) -> Fut,
        Fut: Future<Output = Result<T, DeliveryError>> + Send + 'static,
    {
        match &self.runtime {
            Some(rt) => rt
                .spawn(job(self.clone(), n))
                .await
                .unwrap_or_else(|e| Err(DeliveryError::Interrupted(e.to_string()))),
            None => job(self.clone(), n).await,
        }
    }

    /// [`NotificationService::send_once`] on the current executor, `n` already prepared.
    async fn attempt_once(&self, n: Notification) -> Result<SendReport, DeliveryError> {
        if n.is_empty() {
            return Err(DeliveryError::Empty);
        }
        let targets = self.registry.targets(&n)?;
        let outcomes = self.registry.attempt_all(&targets, &n).await;
        Ok(SendReport {
            outcomes: outcomes
                .into_iter()
                .map(|(provider, result)| ProviderOutcome { provider, result })
                .collect(),
        })
    }

    /// [`NotificationService::send_with_retries`] on the current executor, `n` already
    /// prepared.
    async fn deliver(&self, n: Notification) -> Result<(), DeliveryError> {
        if n.is_empty() {
            return Err(DeliveryError::Empty);
        }
        let targets = self.registry.targets(&n)?;
        let first = SystemTime::now();
        let mut pending = targets;
        let mut delivered = Vec::new();
        let mut attempts = 0;
        let mut tries: HashMap<String, u32> = HashMap::new();
        let mut last: HashMap<String, SendError> = HashMap::new();
        loop {
            attempts += 1;
            for p in &pending {
                *tries.entry(p.clone()).or_default() += 1;
            }
            let results = self.registry.attempt_all(&pending, &n).await;
            pending.clear();
            let mut wait_at_least = None;
            for (name, r) in results {
                match r {
                    Ok(()) => {
                        last.remove(&name);
                        delivered.push(name);
                    }
                    Err(e) => {
                        if e.is_retryable() {
                            pending.push(name.clone());
                            wait_at_least = wait_at_least.max(e.retry_after());
                        }
                        last.insert(name, e);
                    }
                }
            }
            if pending.is_empty() || attempts > self.retry.max_retries {
                break;
            }
            tokio::time::sleep(self.retry.delay(attempts, wait_at_least)).await;
        }
        if last.is_empty() {
            return Ok(());
        }
        let mut failures: Vec<ProviderFailure> = last
            .into_iter()
            .map(|(provider, error)| ProviderFailure {
                attempts: tries.get(&provider).copied().unwrap_or(1),
                provider,
                error,
            })
            .collect();
        failures.sort_by(|a, b| a.provider.cmp(&b.provider));
        let dead_lettered = match self.dispatcher.get() {
            Some(d) => d.dead_letter(DeadLetter::new(
                n,
                failures.iter().map(|f| f.provider.clone()).collect(),
                attempts,
                first,
                failures
                    .iter()
                    .map(|f| format!("{}: {}", f.provider, f.error))
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
            None => false,
        };
        Err(DeliveryError::Failed {
            failures,
            delivered,
            dead_lettered,
        })
    }

    /// Delivers now to one named provider, with the retry policy (as
    /// [`send_with_retries`](Self::send_with_retries)).
    pub async fn send_to(&self, provider: &str, mut n: Notification) -> Result<(), DeliveryError> {
        n.providers = vec![provider.to_string()];
        self.send_with_retries(n).await
    }

    /// Delivers now to several providers concurrently; one failing does not stop the
    /// others, and each failure is reported.
    pub async fn multicast(
        &self,
        mut n: Notification,
        providers: &[&str],
    ) -> Result<(), DeliveryError> {
        n.providers = providers.iter().map(|p| p.to_string()).collect();
        self.send_with_retries(n).await
    }

    /// Sends several notifications through one provider (the default when `None`) in
    /// one attempt each, in bulk when the provider supports it; one result per
    /// notification, in order.
    pub async fn send_bulk(
        &self,
        provider: Option<&str>,
        list: Vec<Notification>,
    ) -> Result<Vec<Result<(), SendError>>, UnknownProvider> {
        let mut list = list;
        // On the caller's thread, for the trace id of its current span (see `send_once`).
        for n in &mut list {
            self.prepare(n);
        }
        let Some(rt) = &self.runtime else {
            return self.deliver_bulk(provider, list).await;
        };
        let this = self.clone();
        let provider = provider.map(str::to_string);
        let count = list.len();
        rt.spawn(async move { this.deliver_bulk(provider.as_deref(), list).await })
            .await
            .unwrap_or_else(|e| {
                let why = format!("notification delivery was interrupted: {e}");
                Ok((0..count)
                    .map(|_| Err(SendError::Other(why.clone())))
                    .collect())
            })
    }

    /// [`NotificationService::send_bulk`] on the current executor, the list already
    /// prepared.
    async fn deliver_bulk(
        &self,
        provider: Option<&str>,
        list: Vec<Notification>,
    ) -> Result<Vec<Result<(), SendError>>, UnknownProvider> {
        let name = match provider {
            Some(p) => p.to_string(),
            None => self
                .default_provider()
                .ok_or_else(|| UnknownProvider("(default)".into()))?,
        };
        let entry = self
            .registry
            .entry(&name)
            .ok_or_else(|| UnknownProvider(name.clone()))?;
        Ok(self.registry.attempt_bulk(&entry, &list).await)
    }

    /// Attaches the dispatcher `enqueue` hands notifications to (the facade does this).
    pub fn attach_dispatcher(&self, dispatcher: Dispatcher) -> Result<(), Dispatcher> {
        self.dispatcher.set(dispatcher)
    }

    /// The attached dispatcher.
    pub fn dispatcher(&self) -> Option<&Dispatcher> {
        self.dispatcher.get()
    }

    /// Hands a notification to the dispatcher; returns at once.
    pub fn enqueue(&self, mut n: Notification) -> Result<Enqueued, EnqueueError> {
        if n.is_empty() {
            return Err(EnqueueError::Empty);
        }
        let Some(d) = self.dispatcher.get() else {
            return Err(EnqueueError::NoDispatcher);
        };
        // The defaults are filled in by the worker or the writer that takes it, so
        // that `enqueue` allocates nothing on the caller's thread.
        self.stamp(&mut n);
        d.enqueue(n)
    }

    /// Closes every provider (after the dispatcher has shut down).
    pub async fn close(&self) {
        let entries: Vec<Arc<Entry>> = self
            .registry
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, e)| e.clone())
            .collect();
        for e in entries {
            // A provider panicking in `close` does not stop the others closing.
            let notifier = &*e.notifier;
            let close = AssertUnwindSafe(async move { notifier.close().await }).catch_unwind();
            let _ = tokio::time::timeout(self.registry.send_timeout, close).await;
        }
    }

    /// A builder for one notification.
    pub fn notification(&self) -> NotificationBuilder {
        NotificationBuilder {
            service: self.clone(),
            n: Notification::default(),
        }
    }
}

/// Builds one notification, then `send_once()`s, `enqueue()`s or `send_with_retries()`s it.
#[derive(Debug, Clone)]
#[must_use]
pub struct NotificationBuilder {
    service: NotificationService,
    n: Notification,
}

impl NotificationBuilder {
    /// The headline.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.n.content.title = title.into();
        self
    }
    /// The body.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.n.content.message = message.into();
        self
    }
    /// Adds a field (a name set again replaces its value, in place).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.n.content.fields.insert(name, value);
        self
    }
    /// Adds fields, in order.
    pub fn fields<K: Into<String>, V: Into<String>>(
        mut self,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in fields {
            self.n.content.fields.insert(k, v);
        }
        self
    }
    /// An image, where the platform shows one.
    pub fn image(mut self, url: impl Into<String>) -> Self {
        self.n.content.image_url = url.into();
        self
    }
    /// How urgent (default normal).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.n.context.priority = priority;
        self
    }
    /// The component raising it.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.n.context.source = source.into();
        self
    }
    /// The environment.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.n.context.environment = environment.into();
        self
    }
    /// The service.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.n.context.service = service.into();
        self
    }
    /// The trace id (taken from the current span when not set).
    pub fn trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.n.context.trace_id = trace_id.into();
        self
    }
    /// Sends to this provider only.
    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.n.providers = vec![name.into()];
        self
    }
    /// Sends to these providers, concurrently.
    pub fn to_providers<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.n.providers = names.into_iter().map(Into::into).collect();
        self
    }
    /// An option for providers (for example PagerDuty's `event_action`).
    pub fn provider_option(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.n.provider_options.insert(name, value);
        self
    }
    /// The notification as built so far.
    pub fn build(&self) -> Notification {
        self.n.clone()
    }
    /// Sends now, one attempt per provider, and reports what each did (Piko's `Do`):
    /// see [`NotificationService::send_once`].
    pub async fn send_once(self) -> Result<SendReport, DeliveryError> {
        self.service.send_once(self.n).await
    }
    /// Delivers now, with the retry policy: see
    /// [`NotificationService::send_with_retries`].
    pub async fn send_with_retries(self) -> Result<(), DeliveryError> {
        self.service.send_with_retries(self.n).await
    }
    /// Hands it to the dispatcher (queued, retried, dead-lettered when it cannot be
    /// delivered); returns at once.
    pub fn enqueue(self) -> Result<Enqueued, EnqueueError> {
        self.service.enqueue(self.n)
    }
}
