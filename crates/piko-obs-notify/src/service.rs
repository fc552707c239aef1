//! The notification service: named providers, a default, sends with retries, multicast
//! and bulk, the fluent builder, and the start of its dispatcher. The top of the
//! crate: it depends on the registry, the dispatcher and the dead-letter port, and
//! nothing below depends on it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::dead_letter::{DeadLetter, DeadLetterStore};
use crate::defaults::Defaults;
use crate::dispatcher::{Dispatcher, DispatcherConfig, EnqueueError, Enqueued};
use crate::model::{Notification, Priority};
use crate::notifier::{Capabilities, Notifier, SendError};
use crate::policy::{BreakerPolicy, RetryPolicy};
use crate::registry::{NoProvider, ProviderStats, RegisterError, Registry, UnknownProvider};

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

impl From<NoProvider> for DeliveryError {
    fn from(e: NoProvider) -> DeliveryError {
        DeliveryError::NoProvider(e.0)
    }
}

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
            registry: Arc::new(Registry::new(
                self.breaker,
                self.send_timeout.unwrap_or(DEFAULT_SEND_TIMEOUT),
            )),
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
        self.registry.register(name.into(), notifier)
    }

    /// Makes `name` the default provider.
    pub fn set_default(&self, name: &str) -> Result<(), UnknownProvider> {
        self.registry.set_default(name)
    }

    /// The default provider's name.
    pub fn default_provider(&self) -> Option<String> {
        self.registry.default_name().map(|d| d.to_string())
    }

    /// The registered names, sorted.
    pub fn providers(&self) -> Vec<String> {
        self.registry.names()
    }

    /// Whether `name` is registered.
    pub fn has_provider(&self, name: &str) -> bool {
        self.registry.entry(name).is_some()
    }

    /// A provider's capabilities.
    pub fn capabilities(&self, name: &str) -> Option<Capabilities> {
        self.registry.capabilities(name)
    }

    /// Counters per provider, in registration order.
    pub fn provider_stats(&self) -> Vec<ProviderStats> {
        self.registry.stats()
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
        self.registry.close().await
    }

    /// A builder for one notification.
    pub fn notification(&self) -> NotificationBuilder {
        NotificationBuilder {
            service: self.clone(),
            n: Notification::default(),
        }
    }
}

impl Dispatcher {
    /// Starts the workers on `runtime`, delivering through `service`'s providers with
    /// its retry policy, dead-lettering into `store` from a writer thread. Attach it
    /// to the service with [`NotificationService::attach_dispatcher`] so `enqueue`
    /// reaches it.
    ///
    /// (Defined with the service, the one module that knows both: the dispatcher
    /// itself depends only on the registry the service shares with it.)
    pub fn start(
        runtime: &tokio::runtime::Handle,
        service: &NotificationService,
        store: Arc<dyn DeadLetterStore>,
        config: DispatcherConfig,
    ) -> io::Result<Dispatcher> {
        Dispatcher::launch(
            runtime,
            service.registry.clone(),
            service.retry,
            service.defaults.clone(),
            store,
            config,
        )
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
