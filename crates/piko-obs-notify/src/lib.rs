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
//! - [`alert`]: the options that make a notification an alert with an identity and
//!   a state (for Prometheus Alertmanager).
//!
//! ERROR logs forwarded as alerts are an output of the log hub, in the adapter crate
//! `piko-obs-error-alerts`: this crate does not depend on the logger.
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
//!
//! # Layout
//!
//! The modules depend one way, each only on those listed before it:
//!
//! 1. `model` (the notification, [`truncate`]), `policy` ([`RetryPolicy`], the
//!    circuit breaker), [`provider`] (names): no other module;
//! 2. `notifier`: the [`Notifier`] port, and [`alert`]: the alert options, on the
//!    model;
//! 3. `defaults`: what a service fills into a context left empty;
//!    `dead_letter`: the [`DeadLetterStore`] port and its [`DeadLetter`] entry;
//! 4. `registry`: the named providers, the default, one attempt through a provider
//!    (breaker, limit, time bound, panics caught), shared by the service and the
//!    dispatcher;
//! 5. `writer`: the dead-letter writer thread and what it is handed;
//! 6. `dispatcher`: the queue, the workers, retries, shutdown and replay, over the
//!    registry and the writer;
//! 7. `service`: [`NotificationService`] and its builders, over the registry and the
//!    dispatcher; [`Dispatcher::start`], which takes a service, is defined here;
//! 8. `lifecycle` ([`Delivery`], the delivery as a part of the shutdown stack) and
//!    [`telemetry`] (the counters as `metrics` series), over the service.

pub mod alert;
mod dead_letter;
mod defaults;
mod dispatcher;
mod lifecycle;
mod model;
mod notifier;
mod policy;
pub mod provider;
mod registry;
mod service;
pub mod telemetry;
mod writer;

pub use dead_letter::{DeadLetter, DeadLetterBatch, DeadLetterStore, unique_id};
pub use dispatcher::{
    Dispatcher, DispatcherConfig, DispatcherStats, EnqueueError, Enqueued, ReplayError,
    ShutdownReport,
};
pub use lifecycle::{Delivery, NotDelivered};
pub use model::{Content, Context, Fields, Notification, Priority, truncate, truncate_bytes};
pub use notifier::{
    Capabilities, MAX_RETRY_AFTER, NoopNotifier, Notifier, SendError, parse_retry_after,
};
pub use policy::{BreakerPolicy, PolicyError, RetryPolicy};
pub use registry::{ProviderStats, RegisterError, UnknownProvider};
pub use service::{
    DEFAULT_SEND_TIMEOUT, DeliveryError, NotificationBuilder, NotificationService, ProviderFailure,
    ProviderOutcome, SendReport, ServiceBuilder,
};

#[cfg(test)]
mod layout {
    /// The layers of the crate documentation's "Layout", lowest first.
    const LAYERS: [&[&str]; 8] = [
        &["model", "policy", "provider"],
        &["notifier", "alert"],
        &["defaults", "dead_letter"],
        &["registry"],
        &["writer"],
        &["dispatcher"],
        &["service"],
        &["lifecycle", "telemetry"],
    ];

    fn layer(module: &str) -> usize {
        LAYERS
            .iter()
            .position(|l| l.contains(&module))
            .unwrap_or_else(|| panic!("module {module} is in no layer of the layout"))
    }

    /// Every `crate::<module>` a module's code names (comments and doc comments left
    /// out) is a module of a lower layer, so the modules cannot import each other in
    /// a circle.
    #[test]
    fn each_module_names_only_modules_below_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut checked = 0;
        for file in std::fs::read_dir(&src).unwrap() {
            let path = file.unwrap().path();
            let module = path.file_stem().unwrap().to_str().unwrap().to_string();
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                assert!(
                    !name.is_empty(),
                    "{module}: a grouped `crate::{{..}}` import"
                );
                if name != module {
                    assert!(
                        layer(&name) < layer(&module),
                        "{module} names crate::{name}, which is not below it"
                    );
                }
            }
            checked += 1;
        }
        assert_eq!(checked, LAYERS.iter().map(|l| l.len()).sum::<usize>());
    }
}
