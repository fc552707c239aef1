//! The `tracing` bridge of the process-wide log hub ([`piko_obs_logger::global`]): the
//! layer for an application's own subscriber, or a registry installed as the global one.

use std::sync::OnceLock;
use std::time::Duration;

use piko_obs_logger::global::hub;
use piko_obs_logger::{Directives, LOG_LEVEL, Level, PIKO_LOG_LEVEL, TracingBridge};

use crate::TracingLayer;

/// The layer that brings `tracing` events and spans into the process-wide hub (and, with
/// OTLP on, spans into OpenTelemetry), for an application that installs its own
/// `tracing` subscriber: add it to the registry beside `fmt`, `EnvFilter` and the rest.
/// `init()` sees the application's subscriber and leaves it in place.
///
/// The OpenTelemetry SDK reports its own failures (a collector that refuses exports,
/// say) through `tracing`: the layer keeps their events at `OTEL_LOG_LEVEL` (default
/// WARN; `none` keeps none) and above, ERROR written as WARN (not application errors
/// for Sentry and alerts), at most one line a call site every 30 s. A `LOG_LEVEL` or
/// `PIKO_LOG_LEVEL` directive that names one of their targets (`opentelemetry_sdk=debug`)
/// wins over `OTEL_LOG_LEVEL`. The outputs' own levels apply as to any line.
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
    let bridge = TracingBridge::new(hub().clone())
        .with_rate_limit(SDK_TARGETS, Duration::from_secs(30))
        .with_target_ceiling(SDK_TARGETS, Level::WARN);
    TracingLayer::with_bridge(match sdk_floor(|k| std::env::var(k).ok()) {
        Some(floor) => bridge.with_target_floor(SDK_TARGETS, floor),
        None => bridge,
    })
}

/// What the targets of the OpenTelemetry crates start with (`opentelemetry`,
/// `opentelemetry_sdk`, `opentelemetry-otlp`, `opentelemetry-http`).
const SDK_TARGETS: &str = "opentelemetry";

/// The level below which the SDK's own events are dropped: `OTEL_LOG_LEVEL` (`none`
/// drops them all; a bad value, which `init()` reports, counts as the default, WARN),
/// or no floor when a `LOG_LEVEL` or `PIKO_LOG_LEVEL` directive names one of their
/// targets (`opentelemetry_sdk=debug`): the outputs' own levels govern them then.
fn sdk_floor(env: impl Fn(&str) -> Option<String>) -> Option<Level> {
    let named = [LOG_LEVEL, PIKO_LOG_LEVEL].iter().any(|var| {
        env(var)
            .and_then(|text| text.parse::<Directives>().ok())
            .is_some_and(|d| d.names_starting_with(SDK_TARGETS))
    });
    if named {
        return None;
    }
    match crate::sdk_log_level(&env) {
        Ok(Some(level)) => Some(level),
        Ok(None) => Some(Level::new(i32::MAX)),
        Err(_) => Some(Level::WARN),
    }
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

    /// Says on `log` where events go when the application's subscriber was there first:
    /// at INFO when it has piko-obs's layer, at NOTICE when it has not; nothing when the
    /// bridge is installed.
    pub fn report(self, log: &piko_obs_logger::Logger) {
        match self {
            TracingRoute::Installed => {}
            TracingRoute::ApplicationLayer => log.info(self.describe(), &[]),
            TracingRoute::ApplicationSubscriber => log.notice(self.describe(), &[]),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_reported_at_its_level_or_not_at_all() {
        use piko_obs_logger::{FlushError, Hub, Output, Record};
        use std::sync::{Arc, Mutex};
        /// The level and message of every record.
        #[derive(Default)]
        struct Lines(Mutex<Vec<(Level, String)>>);
        impl Output for Lines {
            fn write(&self, r: &Record<'_>) {
                self.0
                    .lock()
                    .unwrap()
                    .push((r.level(), r.msg().to_string()));
            }
            fn flush(&self, _: std::time::Duration) -> Result<(), FlushError> {
                Ok(())
            }
        }
        let hub = Hub::builder().build();
        let lines = Arc::new(Lines::default());
        hub.add_output("lines", Level::DEBUG, lines.clone())
            .unwrap();
        let log = hub.get_logger("piko-obs/logger");
        for route in [
            TracingRoute::Installed,
            TracingRoute::ApplicationLayer,
            TracingRoute::ApplicationSubscriber,
        ] {
            route.report(&log);
        }
        let said = lines.0.lock().unwrap().clone();
        assert_eq!(
            said,
            [
                (
                    Level::INFO,
                    TracingRoute::ApplicationLayer.describe().into()
                ),
                (
                    Level::NOTICE,
                    TracingRoute::ApplicationSubscriber.describe().into()
                ),
            ]
        );
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn otel_log_level_sets_the_sdk_floor_unless_a_directive_names_its_targets() {
        assert_eq!(sdk_floor(env(&[])), Some(Level::WARN));
        assert_eq!(
            sdk_floor(env(&[("OTEL_LOG_LEVEL", "error")])),
            Some(Level::ERROR)
        );
        assert_eq!(
            sdk_floor(env(&[("OTEL_LOG_LEVEL", "None")])),
            Some(Level::new(i32::MAX))
        );
        // A bad value is init()'s error; the bridge keeps the default.
        assert_eq!(
            sdk_floor(env(&[("OTEL_LOG_LEVEL", "loud")])),
            Some(Level::WARN)
        );
        // A level without a directive for the SDK's targets leaves OTEL_LOG_LEVEL in force.
        assert_eq!(
            sdk_floor(env(&[
                ("OTEL_LOG_LEVEL", "warn"),
                ("PIKO_LOG_LEVEL", "debug")
            ])),
            Some(Level::WARN)
        );
        for var in [LOG_LEVEL, PIKO_LOG_LEVEL] {
            let pairs: &'static [(&'static str, &'static str)] = match var {
                LOG_LEVEL => &[
                    ("OTEL_LOG_LEVEL", "none"),
                    ("LOG_LEVEL", "info,opentelemetry_sdk=debug"),
                ],
                _ => &[
                    ("OTEL_LOG_LEVEL", "none"),
                    ("PIKO_LOG_LEVEL", "opentelemetry-otlp=warn"),
                ],
            };
            assert_eq!(sdk_floor(env(pairs)), None, "{var}");
        }
    }
}
