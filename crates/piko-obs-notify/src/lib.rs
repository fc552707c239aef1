//! Notifications for piko-obs: the model, the [`Notifier`] port, the service and the
//! dispatcher. No HTTP here: the providers (Slack, Discord, PagerDuty, Teams, Google
//! Chat, ntfy, webhook, stdout) and the file dead-letter store are in
//! `piko-obs-notify-providers`.
//!
//! - [`Notification`]: [`Content`] (title, message, ordered [`Fields`], image) and
//!   [`Context`] (timestamp, source, environment, service, trace id, [`Priority`],
//!   normal by default);
//! - [`Notifier`]: the port a provider implements (send, bulk, capabilities, close);
//! - [`NotificationService`]: named providers, a deterministic default, and three ways
//!   to send: `send_once` (now, one attempt per provider, a [`SendReport`] of what each
//!   did: Piko's `Do`), `enqueue` (queued, retried, kept in the dead-letter store when
//!   it cannot be delivered: returns at once) and `send_with_retries` (now, waiting
//!   through the retry policy); `multicast` (concurrent, partial failures reported),
//!   `send_bulk`, and the fluent [`NotificationBuilder`];
//! - [`Dispatcher`]: a bounded queue, workers, exponential backoff with jitter,
//!   `Retry-After`, error classification, a circuit breaker per provider, and a
//!   [`DeadLetterStore`] port, so that a notification is delivered or on disk;
//! - [`ErrorForwarder`]: an output of the `piko-obs-logger` hub that turns ERROR logs
//!   into alerts, grouped by message and call site over a window, capped and rate
//!   limited; with the key of each group and, when a group goes quiet, a resolved
//!   alert, so that an alert manager merges replicas and closes the alert;
//! - [`alert`]: the options that make a notification an alert with an identity and
//!   a state (for Prometheus Alertmanager).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use piko_obs_notify::{Notification, NotificationService, Notifier, SendError};
//!
//! struct Console;
//! impl Notifier for Console {
//!     async fn send(&self, n: &Notification) -> Result<(), SendError> {
//!         println!("{}: {}", n.content.title, n.content.message);
//!         Ok(())
//!     }
//! }
//!
//! let service = NotificationService::default();
//! service.register("console", Console).unwrap();
//! let report = service.notification().title("deployed").message("v1.2.3").send_once().await.unwrap();
//! assert!(report.all_delivered());
//! # });
//! ```
//!
//! No feature flags. Needs a tokio runtime for sending and for the dispatcher.

pub mod alert;
mod dispatcher;
mod forward;
mod lifecycle;
mod model;
mod notifier;
mod policy;
pub mod provider;
mod service;
pub mod telemetry;

pub use dispatcher::{
    DeadLetter, DeadLetterBatch, DeadLetterStore, Dispatcher, DispatcherConfig, DispatcherStats,
    EnqueueError, Enqueued, ReplayError, ShutdownReport, unique_id,
};
pub use forward::{
    ALERT_TITLE_SUFFIX, ERROR_FORWARDER_OUTPUT, ErrorForwarder, ErrorForwarderConfig,
    ForwarderConfigError, ForwarderStats, MAX_ALERT_FIELD_CHARS, MAX_ALERT_FIELDS,
    priority_for_level,
};
pub use lifecycle::{Delivery, NotDelivered};
pub use model::{Content, Context, Fields, Notification, Priority, truncate, truncate_bytes};
pub use notifier::{
    Capabilities, MAX_RETRY_AFTER, NoopNotifier, Notifier, SendError, parse_retry_after,
};
pub use policy::{BreakerPolicy, PolicyError, RetryPolicy};
pub use service::{
    DEFAULT_SEND_TIMEOUT, DeliveryError, NotificationBuilder, NotificationService, ProviderFailure,
    ProviderOutcome, ProviderStats, RegisterError, SendReport, ServiceBuilder, UnknownProvider,
};
