//! The `tracing` bridge of the process-wide log hub ([`piko_obs_logger::global`]): the
//! layer for an application's own subscriber, or a registry installed as the global one.

use std::sync::OnceLock;
use std::time::Duration;

use piko_obs_logger::global::hub;
use piko_obs_logger::{Level, TracingBridge};

use crate::TracingLayer;

/// The layer that brings `tracing` events and spans into the process-wide hub (and, with
/// OTLP on, spans into OpenTelemetry), for an application that installs its own
/// `tracing` subscriber: add it to the registry beside `fmt`, `EnvFilter` and the rest.
/// `init()` sees the application's subscriber and leaves it in place.
///
/// The OpenTelemetry SDK reports its own failures (a collector that refuses exports,
/// say) through `tracing`: the layer keeps their WARN and ERROR events only, written as
/// WARN (not application errors for Sentry and alerts), at most one line a call site
/// every 30 s.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt as _;
/// let subscriber = tracing_subscriber::registry().with(piko_obs_otlp::tracing_layer());
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(order_id = 7, "order placed");
/// });
/// ```
pub fn tracing_layer() -> TracingLayer {
    LAYER_GIVEN.store(true, std::sync::atomic::Ordering::Relaxed);
    layer()
}

/// The layer of [`tracing_layer`], without noting that the application took it.
fn layer() -> TracingLayer {
    TracingLayer::with_bridge(
        TracingBridge::new(hub().clone())
            .with_rate_limit("opentelemetry", Duration::from_secs(30))
            .with_target_floor("opentelemetry", Level::WARN)
            .with_target_ceiling("opentelemetry", Level::WARN),
    )
}

/// Whether [`tracing_layer`] was called: the application's subscriber then has it.
static LAYER_GIVEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where `tracing` events and spans go, as [`install_tracing_bridge`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TracingRoute {
    /// A registry with [`tracing_layer`] is now the global subscriber.
    Installed,
    /// The application's own subscriber was there first; it has [`tracing_layer`].
    ApplicationLayer,
    /// The application's own subscriber was there first, without [`tracing_layer`]:
    /// `tracing` events and spans do not reach piko-obs.
    ApplicationSubscriber,
}

impl TracingRoute {
    /// What it means, in words, for `init()`'s own line.
    pub fn describe(self) -> &'static str {
        match self {
            TracingRoute::Installed => "piko-obs installed the global tracing subscriber",
            TracingRoute::ApplicationLayer => {
                "the application's tracing subscriber has piko-obs's layer"
            }
            TracingRoute::ApplicationSubscriber => {
                "the application's tracing subscriber was installed first and has no piko-obs layer: add piko_obs::logger::tracing_layer() to it to bring tracing events and spans into piko-obs"
            }
        }
    }
}

static TRACING_BRIDGE: OnceLock<()> = OnceLock::new();

/// Serialises the bridge's installation, so concurrent start-ups install it once.
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Makes a registry with [`tracing_layer`] the global `tracing` subscriber, unless the
/// application installed one first; never fails. Idempotent.
pub fn install_tracing_bridge() -> TracingRoute {
    use tracing_subscriber::layer::SubscriberExt as _;
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if TRACING_BRIDGE.get().is_some() {
        return TracingRoute::Installed;
    }
    let dispatch = tracing_core::Dispatch::new(tracing_subscriber::registry().with(layer()));
    if tracing_core::dispatcher::set_global_default(dispatch).is_err() {
        return if LAYER_GIVEN.load(std::sync::atomic::Ordering::Relaxed) {
            TracingRoute::ApplicationLayer
        } else {
            TracingRoute::ApplicationSubscriber
        };
    }
    let _ = TRACING_BRIDGE.set(());
    TracingRoute::Installed
}
