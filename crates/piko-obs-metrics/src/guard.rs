//! A `metrics` recorder layer that keeps the number of series bounded and refuses
//! names Prometheus cannot take.
//!
//! [`SeriesGuardLayer`] is a [`metrics_util::layers::Layer`]: it wraps any recorder.
//! Each new series (a metric name with one set of label values) is checked once, when
//! it is first registered:
//!
//! - a metric or label name that is not a valid Prometheus name is refused;
//! - past the cap on label sets for its metric name, a new series is refused.
//!
//! A refused series gets a no-op handle, so the caller carries on, and is counted in
//! `piko_obs_metrics_series_refused_total{metric, reason}` (`reason` is
//! `invalid_name` or `cardinality_limit`). The optional hook hears of the first refusal
//! of each metric for each reason, so the facade can log it. Series already known take
//! the fast path: a per-thread cache of recently seen series, then one read lock on one
//! of 16 shards and a lookup by the key's precomputed hash.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};

use crate::{valid_label_name, valid_metric_name};

/// The counter of refused series.
pub const SERIES_REFUSED: &str = "piko_obs_metrics_series_refused_total";

/// The default cap on label sets per metric name.
pub const DEFAULT_CARDINALITY_LIMIT: usize = 1000;

/// Why a series was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The metric name or a label name is not a valid Prometheus name.
    InvalidName,
    /// The metric already has as many label sets as its cap allows.
    CardinalityLimit,
}

impl RefusalReason {
    /// The `reason` label value: `invalid_name` or `cardinality_limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::InvalidName => "invalid_name",
            RefusalReason::CardinalityLimit => "cardinality_limit",
        }
    }
}

/// The first refused series of a metric for one reason, as told to the hook.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The metric name as the caller gave it.
    pub metric: String,
    /// Why.
    pub reason: RefusalReason,
    /// The invalid name (metric or label) for [`RefusalReason::InvalidName`]; the cap
    /// for [`RefusalReason::CardinalityLimit`].
    pub detail: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason {
            RefusalReason::InvalidName => write!(
                f,
                "metric {:?} is not recorded: {:?} is not a valid Prometheus name (use letters, digits and '_', not starting with a digit)",
                self.metric, self.detail
            ),
            RefusalReason::CardinalityLimit => write!(
                f,
                "metric {:?} reached its cap of {} label sets; new label sets are not recorded (label with bounded values, or raise the cap)",
                self.metric, self.detail
            ),
        }
    }
}

type Hook = Arc<dyn Fn(&Refusal) + Send + Sync>;

/// Builds a [`SeriesGuard`] around a recorder.
#[derive(Clone)]
#[must_use]
pub struct SeriesGuardLayer {
    default_limit: usize,
    limits: HashMap<String, usize>,
    hook: Option<Hook>,
}

impl std::fmt::Debug for SeriesGuardLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesGuardLayer")
            .field("default_limit", &self.default_limit)
            .field("limits", &self.limits)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Default for SeriesGuardLayer {
    fn default() -> Self {
        SeriesGuardLayer {
            default_limit: DEFAULT_CARDINALITY_LIMIT,
            limits: HashMap::new(),
            hook: None,
        }
    }
}

impl SeriesGuardLayer {
    /// A layer with the default cap ([`DEFAULT_CARDINALITY_LIMIT`]) and no hook.
    pub fn new() -> Self {
        SeriesGuardLayer::default()
    }

    /// The cap on label sets for every metric without a cap of its own (at least 1).
    pub fn with_default_limit(mut self, limit: usize) -> Result<Self, crate::MetricsError> {
        if limit == 0 {
            return Err(crate::MetricsError::CardinalityLimit { metric: None });
        }
        self.default_limit = limit;
        Ok(self)
    }

    /// The cap on label sets for one metric (at least 1).
    pub fn with_limit(
        mut self,
        metric: impl Into<String>,
        limit: usize,
    ) -> Result<Self, crate::MetricsError> {
        let metric = metric.into();
        if !valid_metric_name(&metric) {
            return Err(crate::MetricsError::MetricName(metric));
        }
        if limit == 0 {
            return Err(crate::MetricsError::CardinalityLimit {
                metric: Some(metric),
            });
        }
        self.limits.insert(metric, limit);
        Ok(self)
    }

    /// A function told of the first refused series of each metric for each reason.
    pub fn on_refused(mut self, hook: impl Fn(&Refusal) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }
}

impl<R: Recorder> metrics_util::layers::Layer<R> for SeriesGuardLayer {
    type Output = SeriesGuard<R>;

    fn layer(&self, inner: R) -> SeriesGuard<R> {
        SeriesGuard {
            inner,
            id: NEXT_GUARD_ID.fetch_add(1, Ordering::Relaxed),
            known: std::array::from_fn(|_| RwLock::new(HashSet::default())),
            new_series: Mutex::new(NewSeries::default()),
            default_limit: self.default_limit,
            limits: self.limits.clone(),
            hook: self.hook.clone(),
        }
    }
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KnownSet = HashSet<u64, BuildHasherDefault<PreHashed>>;

const SHARDS: usize = 16;

/// Slots in each thread's cache of admitted series.
const CACHE_SLOTS: usize = 64;

thread_local! {
    /// Per thread, direct-mapped: (guard id, series id) of recently admitted series.
    /// Series are never forgotten, so a hit needs no lock.
    static ADMITTED: [Cell<(u64, u64)>; CACHE_SLOTS] =
        const { [const { Cell::new((0, 0)) }; CACHE_SLOTS] };
}

static NEXT_GUARD_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Default)]
struct NewSeries {
    per_metric: HashMap<(Kind, String), usize>,
    told: HashSet<(String, RefusalReason)>,
}

/// The recorder [`SeriesGuardLayer`] builds: checks new series, then hands everything
/// to the recorder inside.
pub struct SeriesGuard<R> {
    inner: R,
    id: u64,
    known: [RwLock<KnownSet>; SHARDS],
    new_series: Mutex<NewSeries>,
    default_limit: usize,
    limits: HashMap<String, usize>,
    hook: Option<Hook>,
}

impl<R> std::fmt::Debug for SeriesGuard<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesGuard")
            .field("default_limit", &self.default_limit)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

static META: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl<R: Recorder> SeriesGuard<R> {
    /// The recorder inside.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Whether the series may be recorded; registers it as known when it may.
    fn admit(&self, kind: Kind, key: &Key) -> bool {
        // The key's hash covers its name and labels; the kind is mixed in so a counter
        // and a gauge of one name are separate series.
        let id = key.get_hash() ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let slot = (id as usize) % CACHE_SLOTS;
        let cached = ADMITTED
            .try_with(|c| c[slot].get() == (self.id, id))
            .unwrap_or(false);
        if cached {
            return true;
        }
        let shard = &self.known[(id as usize / CACHE_SLOTS) % SHARDS];
        let admitted = shard
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
            || self.admit_new(kind, key, id, shard);
        if admitted {
            let _ = ADMITTED.try_with(|c| c[slot].set((self.id, id)));
        }
        admitted
    }

    #[cold]
    fn admit_new(&self, kind: Kind, key: &Key, id: u64, shard: &RwLock<KnownSet>) -> bool {
        let name = key.name();
        let bad_name = if !valid_metric_name(name) {
            Some(name.to_string())
        } else {
            key.labels()
                .find(|l| !valid_label_name(l.key()))
                .map(|l| l.key().to_string())
        };
        let mut told = None;
        let admitted = {
            let mut new = self.new_series.lock().unwrap_or_else(|p| p.into_inner());
            // Another thread may have admitted it meanwhile.
            if shard
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id)
            {
                return true;
            }
            let refusal = match bad_name {
                Some(detail) => Some((RefusalReason::InvalidName, detail)),
                None => {
                    let limit = self.limits.get(name).copied().unwrap_or(self.default_limit);
                    let count = new.per_metric.entry((kind, name.to_string())).or_insert(0);
                    if *count >= limit {
                        Some((RefusalReason::CardinalityLimit, limit.to_string()))
                    } else {
                        *count += 1;
                        None
                    }
                }
            };
            match refusal {
                None => {
                    shard.write().unwrap_or_else(|p| p.into_inner()).insert(id);
                    true
                }
                Some((reason, detail)) => {
                    if new.told.insert((name.to_string(), reason)) {
                        told = Some(Refusal {
                            metric: name.to_string(),
                            reason,
                            detail,
                        });
                    }
                    self.count_refusal(name, reason);
                    false
                }
            }
        };
        if let (Some(refusal), Some(hook)) = (told, &self.hook) {
            hook(&refusal);
        }
        admitted
    }

    fn count_refusal(&self, metric: &str, reason: RefusalReason) {
        let key = Key::from_parts(
            SERIES_REFUSED,
            vec![
                Label::new("metric", metric.to_string()),
                Label::new("reason", reason.as_str()),
            ],
        );
        self.inner.register_counter(&key, &META).increment(1);
    }
}

impl<R: Recorder> Recorder for SeriesGuard<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if self.admit(Kind::Counter, key) {
            self.inner.register_counter(key, metadata)
        } else {
            Counter::noop()
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if self.admit(Kind::Gauge, key) {
            self.inner.register_gauge(key, metadata)
        } else {
            Gauge::noop()
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if self.admit(Kind::Histogram, key) {
            self.inner.register_histogram(key, metadata)
        } else {
            Histogram::noop()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::layers::Layer as _;

    fn guarded(layer: SeriesGuardLayer) -> (SeriesGuard<impl Recorder>, crate::Metrics) {
        let (recorder, metrics) = crate::PrometheusMetrics::builder()
            .with_process_metrics(false)
            .build_unguarded();
        (layer.layer(recorder), metrics)
    }

    #[test]
    fn a_metric_past_its_cap_is_refused_and_counted_once_per_series() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let layer = SeriesGuardLayer::new()
            .with_limit("user_requests_total", 3)
            .unwrap()
            .on_refused(move |r| t.lock().unwrap().push(r.to_string()));
        let (guard, metrics) = guarded(layer);
        metrics::with_local_recorder(&guard, || {
            for user in 0..10 {
                metrics::counter!("user_requests_total", "user" => user.to_string()).increment(1);
            }
            // A known series still records past the cap.
            metrics::counter!("user_requests_total", "user" => "0").increment(1);
            // Other metrics keep the default cap.
            metrics::counter!("other_total", "user" => "42").increment(1);
        });
        let text = metrics.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("user_requests_total{"))
            .count();
        assert_eq!(series, 3, "{text}");
        assert!(text.contains("user_requests_total{user=\"0\"} 2"), "{text}");
        assert!(text.contains("other_total{user=\"42\"} 1"), "{text}");
        assert!(
            text.contains(
                "piko_obs_metrics_series_refused_total{metric=\"user_requests_total\",reason=\"cardinality_limit\"} 7"
            ),
            "{text}"
        );
        let told = told.lock().unwrap();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("cap of 3"), "{told:?}");
    }

    #[test]
    fn invalid_metric_and_label_names_are_refused_with_the_name() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let (guard, metrics) = guarded(SeriesGuardLayer::new().on_refused(move |r| {
            t.lock().unwrap().push(r.clone());
        }));
        metrics::with_local_recorder(&guard, || {
            metrics::counter!("orders.placed").increment(1);
            metrics::counter!("orders.placed").increment(1);
            metrics::gauge!("queue_depth", "queue-name" => "a").set(1.0);
            metrics::histogram!("ok_seconds", "stage" => "x").record(0.1);
        });
        let text = metrics.render();
        assert!(!text.lines().any(|l| l.starts_with("orders")), "{text}");
        assert!(!text.contains("queue_depth{"), "{text}");
        assert!(text.contains("ok_seconds"), "{text}");
        assert!(
            text.contains(
                "piko_obs_metrics_series_refused_total{metric=\"orders.placed\",reason=\"invalid_name\"} 2"
            ),
            "{text}"
        );
        let told = told.lock().unwrap();
        assert_eq!(told.len(), 2, "{told:?}");
        assert_eq!(told[0].detail, "orders.placed");
        assert_eq!(told[1].detail, "queue-name");
        assert!(
            told[1]
                .to_string()
                .contains("\"queue-name\" is not a valid")
        );
    }

    #[test]
    fn caps_are_checked_where_they_are_set() {
        let e = SeriesGuardLayer::new().with_default_limit(0).unwrap_err();
        assert!(e.to_string().contains("cardinality"), "{e}");
        let e = SeriesGuardLayer::new()
            .with_limit("x_total", 0)
            .unwrap_err();
        assert!(e.to_string().contains("\"x_total\""), "{e}");
        assert!(SeriesGuardLayer::new().with_limit("bad name", 5).is_err());
    }

    #[test]
    fn counters_gauges_and_histograms_of_one_name_are_capped_separately() {
        let (guard, metrics) = guarded(SeriesGuardLayer::new().with_default_limit(1).unwrap());
        metrics::with_local_recorder(&guard, || {
            metrics::counter!("a_total", "k" => "1").increment(1);
            metrics::gauge!("b", "k" => "1").set(2.0);
            metrics::gauge!("b", "k" => "2").set(3.0);
        });
        let text = metrics.render();
        assert!(text.contains("a_total{k=\"1\"} 1"), "{text}");
        assert!(text.contains("b{k=\"1\"} 2"), "{text}");
        assert!(!text.contains("b{k=\"2\"}"), "{text}");
    }
}
