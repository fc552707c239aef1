//! A `metrics` recorder layer that keeps the number of series bounded and refuses
//! names Prometheus cannot take.
//!
//! [`SeriesGuardLayer`] is a [`metrics_util::layers::Layer`]: it wraps any recorder.
//! Each new series (a metric name with one set of label values) is checked once, when
//! it is first registered:
//!
//! - a metric or label name that is not a valid Prometheus name is refused;
//! - past the cap on label sets for its metric name, a new series is refused;
//! - past the cap on metric names ([`DEFAULT_METRIC_NAME_LIMIT`]), a series of a new
//!   name is refused (a name built from data, such as `user_42_total`, would otherwise
//!   grow the registry and the guard's own tables without end).
//!
//! A refused series gets a no-op handle, so the caller carries on, and is counted in
//! `piko_obs_metrics_series_refused_total{metric, reason}` (`reason` is
//! `invalid_name`, `cardinality_limit` or `metric_name_limit`). That counter is bounded
//! too: the first [`REFUSED_NAME_LIMIT`] refused metric names get a `metric` value of
//! their own, the later ones are counted together under `metric="_other"`. The optional
//! hook hears of the first refusal of each of those `metric` values for each reason, so
//! the facade can log it. Series already known take
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

/// The default cap on metric names (of each kind: counters, gauges, histograms).
pub const DEFAULT_METRIC_NAME_LIMIT: usize = 2000;

/// Refused metric names that get a `metric` value of their own in
/// `piko_obs_metrics_series_refused_total`; later ones are counted under [`OTHER`].
pub const REFUSED_NAME_LIMIT: usize = 100;

/// The `metric` value under which refusals past [`REFUSED_NAME_LIMIT`] names are counted.
pub const OTHER: &str = "_other";

/// Why a series was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The metric name or a label name is not a valid Prometheus name.
    InvalidName,
    /// The metric already has as many label sets as its cap allows.
    CardinalityLimit,
    /// As many metric names are known as the cap allows, and this one is new.
    MetricNameLimit,
}

impl RefusalReason {
    /// The `reason` label value: `invalid_name` or `cardinality_limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::InvalidName => "invalid_name",
            RefusalReason::CardinalityLimit => "cardinality_limit",
            RefusalReason::MetricNameLimit => "metric_name_limit",
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
    /// for [`RefusalReason::CardinalityLimit`] and [`RefusalReason::MetricNameLimit`].
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
            RefusalReason::MetricNameLimit => write!(
                f,
                "metric {:?} is not recorded: the cap of {} metric names is reached (build names from fixed text and put values in labels, or raise the cap)",
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
    name_limit: usize,
    limits: HashMap<String, usize>,
    hook: Option<Hook>,
}

impl std::fmt::Debug for SeriesGuardLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesGuardLayer")
            .field("default_limit", &self.default_limit)
            .field("name_limit", &self.name_limit)
            .field("limits", &self.limits)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Default for SeriesGuardLayer {
    fn default() -> Self {
        SeriesGuardLayer {
            default_limit: DEFAULT_CARDINALITY_LIMIT,
            name_limit: DEFAULT_METRIC_NAME_LIMIT,
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

    /// The cap on metric names of each kind (at least 1; default
    /// [`DEFAULT_METRIC_NAME_LIMIT`]).
    pub fn with_metric_name_limit(mut self, limit: usize) -> Result<Self, crate::MetricsError> {
        if limit == 0 {
            return Err(crate::MetricsError::CardinalityLimit { metric: None });
        }
        self.name_limit = limit;
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
            name_limit: self.name_limit,
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

/// What the guard keeps of new series; every table is bounded: `per_metric` by the cap
/// on names, `refused` by [`REFUSED_NAME_LIMIT`], and `told` by both.
#[derive(Default)]
struct NewSeries {
    /// Label sets admitted per metric name.
    per_metric: HashMap<(Kind, String), usize>,
    /// The refused metric names with a `metric` value of their own.
    refused: HashSet<String>,
    /// The (`metric` value, reason) pairs the hook was told of.
    told: HashSet<(String, RefusalReason)>,
}

impl NewSeries {
    /// The `metric` value a refusal of `name` is counted under.
    fn refused_label(&mut self, name: &str) -> String {
        if self.refused.contains(name) {
            return name.to_string();
        }
        if self.refused.len() < REFUSED_NAME_LIMIT {
            self.refused.insert(name.to_string());
            return name.to_string();
        }
        OTHER.to_string()
    }
}

/// The recorder [`SeriesGuardLayer`] builds: checks new series, then hands everything
/// to the recorder inside.
pub struct SeriesGuard<R> {
    inner: R,
    id: u64,
    known: [RwLock<KnownSet>; SHARDS],
    new_series: Mutex<NewSeries>,
    default_limit: usize,
    name_limit: usize,
    limits: HashMap<String, usize>,
    hook: Option<Hook>,
}

impl<R> std::fmt::Debug for SeriesGuard<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesGuard")
            .field("default_limit", &self.default_limit)
            .field("name_limit", &self.name_limit)
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
                    let names = new.per_metric.len();
                    match new.per_metric.get_mut(&(kind, name.to_string())) {
                        Some(count) if *count >= limit => {
                            Some((RefusalReason::CardinalityLimit, limit.to_string()))
                        }
                        Some(count) => {
                            *count += 1;
                            None
                        }
                        None if names >= self.name_limit => {
                            Some((RefusalReason::MetricNameLimit, self.name_limit.to_string()))
                        }
                        None => {
                            new.per_metric.insert((kind, name.to_string()), 1);
                            None
                        }
                    }
                }
            };
            match refusal {
                None => {
                    shard.write().unwrap_or_else(|p| p.into_inner()).insert(id);
                    true
                }
                Some((reason, detail)) => {
                    let label = new.refused_label(name);
                    if new.told.insert((label.clone(), reason)) {
                        told = Some(Refusal {
                            metric: name.to_string(),
                            reason,
                            detail,
                        });
                    }
                    self.count_refusal(label, reason);
                    false
                }
            }
        };
        if let (Some(refusal), Some(hook)) = (told, &self.hook) {
            hook(&refusal);
        }
        admitted
    }

    fn count_refusal(&self, metric: String, reason: RefusalReason) {
        let key = Key::from_parts(
            SERIES_REFUSED,
            vec![
                Label::new("metric", metric),
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
        let (recorder, metrics) = crate::MetricsBuilder::new()
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

    /// Metric names built from data: past the cap on names, series of new names are
    /// refused (those already known still record), and the refusals' own counter keeps
    /// at most `REFUSED_NAME_LIMIT` `metric` values plus `_other`; the guard's tables
    /// stay within those bounds.
    #[test]
    fn metric_names_and_refused_names_are_bounded() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let layer = SeriesGuardLayer::new()
            .with_metric_name_limit(5)
            .unwrap()
            .on_refused(move |r| t.lock().unwrap().push(r.clone()));
        let (guard, metrics) = guarded(layer);
        metrics::with_local_recorder(&guard, || {
            for user in 0..300 {
                metrics::counter!(format!("user_{user}_total")).increment(1);
                // Invalid names too, each new.
                metrics::counter!(format!("user.{user}.total")).increment(1);
            }
            metrics::counter!("user_0_total").increment(1);
        });
        let text = metrics.render();
        let admitted = text
            .lines()
            .filter(|l| l.starts_with("user_") && !l.starts_with('#'))
            .count();
        assert_eq!(admitted, 5, "{text}");
        assert!(text.contains("user_0_total 2"), "{text}");
        let refused: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("piko_obs_metrics_series_refused_total{"))
            .collect();
        // 100 names with a value of their own, and `_other` for each reason.
        assert_eq!(refused.len(), REFUSED_NAME_LIMIT + 2, "{refused:#?}");
        let other = |reason: &str| {
            refused
                .iter()
                .find(|l| l.contains("metric=\"_other\"") && l.contains(reason))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        // 595 refusals in all (295 past the name cap, 300 invalid names), 100 named.
        let total: u64 = refused
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(total, 595, "{refused:#?}");
        assert!(other("metric_name_limit").is_some() && other("invalid_name").is_some());
        let new = guard.new_series.lock().unwrap();
        assert_eq!(new.per_metric.len(), 5);
        assert_eq!(new.refused.len(), REFUSED_NAME_LIMIT);
        assert_eq!(new.told.len(), REFUSED_NAME_LIMIT + 2);
        assert_eq!(told.lock().unwrap().len(), REFUSED_NAME_LIMIT + 2);
        drop(new);
        let told = told.lock().unwrap();
        let first = told
            .iter()
            .find(|r| r.reason == RefusalReason::MetricNameLimit)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(first.contains("\"user_5_total\""), "{first}");
        assert!(first.contains("cap of 5 metric names"), "{first}");
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
        assert!(SeriesGuardLayer::new().with_metric_name_limit(0).is_err());
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
