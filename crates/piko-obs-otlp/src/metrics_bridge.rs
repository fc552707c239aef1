//! Metrics recorded with the `metrics` crate, exported through an OpenTelemetry meter:
//! a `metrics::Recorder` that the facade fans out to beside the Prometheus one.
//!
//! The Prometheus names (`/metrics`) become OpenTelemetry names over OTLP
//! ([`otel_name`], [`otel_attribute`]): the HTTP metrics take their semantic-convention
//! names, units and attribute keys, and every other name loses its unit and `_total`
//! suffixes, the unit going into the instrument's unit, so that a collector's Prometheus
//! exporter, adding the suffixes back, arrives at the name `/metrics` shows. Histograms
//! carry the buckets the program declared for them: through the pipeline's views
//! ([`crate::Pipeline::start_with_buckets`], what the facade does), or as the
//! instrument's advice ([`OtelRecorder::with_buckets`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

/// Records `metrics` counters, gauges and histograms as OpenTelemetry instruments named
/// by [`otel_name`] (with the description given by `describe_*` before first use, and
/// the unit from the name's suffix, else from `describe_*`); labels become attributes
/// keyed by [`otel_attribute`]. A histogram declared with buckets
/// ([`OtelRecorder::with_buckets`]) goes out with them, instead of the SDK's default
/// buckets (`[0, 5, 10, 25, ...]`, made for milliseconds). A counter's `absolute` adds the difference from the
/// last value; a gauge keeps its value per label set, so `increment` and `decrement`
/// work.
pub struct OtelRecorder {
    meter: Meter,
    /// Declared buckets, by Prometheus name.
    buckets: HashMap<String, Vec<f64>>,
    described: Mutex<HashMap<String, (Option<Unit>, SharedString)>>,
    counters: Mutex<HashMap<Key, Arc<OtelCounter>>>,
    gauges: Mutex<HashMap<Key, Arc<OtelGauge>>>,
    histograms: Mutex<HashMap<Key, Arc<OtelHistogram>>>,
    instruments: Mutex<Instruments>,
}

#[derive(Default)]
struct Instruments {
    counters: HashMap<String, opentelemetry::metrics::Counter<u64>>,
    gauges: HashMap<String, opentelemetry::metrics::Gauge<f64>>,
    histograms: HashMap<String, opentelemetry::metrics::Histogram<f64>>,
}

impl std::fmt::Debug for OtelRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelRecorder").finish_non_exhaustive()
    }
}

struct OtelCounter {
    counter: opentelemetry::metrics::Counter<u64>,
    attrs: Vec<KeyValue>,
    last: AtomicU64,
}

impl metrics::CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.last.fetch_add(value, Ordering::Relaxed);
        self.counter.add(value, &self.attrs);
    }
    fn absolute(&self, value: u64) {
        let before = self.last.fetch_max(value, Ordering::Relaxed);
        if value > before {
            self.counter.add(value - before, &self.attrs);
        }
    }
}

struct OtelGauge {
    gauge: opentelemetry::metrics::Gauge<f64>,
    attrs: Vec<KeyValue>,
    bits: AtomicU64,
}

impl OtelGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let mut cur = self.bits.load(Ordering::Relaxed);
        loop {
            let next = f(f64::from_bits(cur));
            match self.bits.compare_exchange_weak(
                cur,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.gauge.record(next, &self.attrs);
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

impl metrics::GaugeFn for OtelGauge {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

struct OtelHistogram {
    histogram: opentelemetry::metrics::Histogram<f64>,
    attrs: Vec<KeyValue>,
}

impl metrics::HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.histogram.record(value, &self.attrs);
    }
}

fn attrs(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|l| {
            let name = otel_attribute(l.key());
            // The convention's status code is an integer.
            match (name.as_str(), l.value().parse::<i64>()) {
                ("http.response.status_code", Ok(code)) => KeyValue::new(name, code),
                _ => KeyValue::new(name, l.value().to_string()),
            }
        })
        .collect()
}

/// What kind of instrument a name is for: only a counter's `_total` is a suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstrumentKind {
    /// A counter (a monotonic sum).
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram.
    Histogram,
}

/// Metrics that have a name, a unit and attribute keys in the OpenTelemetry HTTP
/// semantic conventions: (Prometheus name, OpenTelemetry name, unit).
pub const CONVENTION_METRICS: [(&str, &str, &str); 2] = [
    (
        "http_server_request_duration_seconds",
        "http.server.request.duration",
        "s",
    ),
    (
        "http_server_active_requests",
        "http.server.active_requests",
        "{request}",
    ),
];

/// Label names that are semantic-convention attribute keys, with their dots:
/// (Prometheus label, OpenTelemetry attribute).
pub const CONVENTION_ATTRIBUTES: [(&str, &str); 7] = [
    ("http_request_method", "http.request.method"),
    ("http_route", "http.route"),
    ("http_response_status_code", "http.response.status_code"),
    ("url_scheme", "url.scheme"),
    ("error_type", "error.type"),
    ("server_address", "server.address"),
    ("server_port", "server.port"),
];

/// Unit suffixes of Prometheus names, with the OpenTelemetry (UCUM) unit they stand for.
const UNIT_SUFFIXES: [(&str, &str); 2] = [("_seconds", "s"), ("_bytes", "By")];

/// The OpenTelemetry name and unit of the metric `/metrics` shows as `name`:
///
/// - the HTTP metrics of the semantic conventions take the convention's name and unit
///   ([`CONVENTION_METRICS`]: `http_server_request_duration_seconds` is
///   `http.server.request.duration` in `s`);
/// - any other name keeps its words and loses its suffixes: a counter's `_total`, then a
///   unit suffix, `_seconds` (unit `s`) or `_bytes` (unit `By`)
///   (`payment_duration_seconds` is `payment_duration` in `s`,
///   `process_cpu_seconds_total` is `process_cpu` in `s`, `jobs_total` is `jobs`).
///
/// A collector's Prometheus exporter adds the unit and `_total` suffixes back, so it
/// shows the name `/metrics` shows (and never `_seconds_seconds`). The unit is `None`
/// when the name carries none.
pub fn otel_name(name: &str, kind: InstrumentKind) -> (String, Option<&'static str>) {
    if let Some((_, otel, unit)) = CONVENTION_METRICS.iter().find(|(p, _, _)| *p == name) {
        return ((*otel).to_string(), Some(*unit));
    }
    let mut base = name;
    if kind == InstrumentKind::Counter {
        base = base
            .strip_suffix("_total")
            .filter(|b| !b.is_empty())
            .unwrap_or(base);
    }
    for (suffix, unit) in UNIT_SUFFIXES {
        if let Some(b) = base.strip_suffix(suffix).filter(|b| !b.is_empty()) {
            return (b.to_string(), Some(unit));
        }
    }
    (base.to_string(), None)
}

/// The OpenTelemetry attribute key of the label `/metrics` shows as `label`: the
/// semantic-convention key for those in [`CONVENTION_ATTRIBUTES`]
/// (`http_request_method` is `http.request.method`), the label itself otherwise.
pub fn otel_attribute(label: &str) -> String {
    CONVENTION_ATTRIBUTES
        .iter()
        .find(|(p, _)| *p == label)
        .map_or_else(|| label.to_string(), |(_, o)| (*o).to_string())
}

fn unit_text(unit: Unit) -> &'static str {
    match unit {
        Unit::Count => "1",
        Unit::Percent => "%",
        Unit::Seconds => "s",
        Unit::Milliseconds => "ms",
        Unit::Microseconds => "us",
        Unit::Nanoseconds => "ns",
        Unit::Tebibytes => "TiBy",
        Unit::Gibibytes => "GiBy",
        Unit::Mebibytes => "MiBy",
        Unit::Kibibytes => "KiBy",
        Unit::Bytes => "By",
        Unit::TerabitsPerSecond => "Tbit/s",
        Unit::GigabitsPerSecond => "Gbit/s",
        Unit::MegabitsPerSecond => "Mbit/s",
        Unit::KilobitsPerSecond => "kbit/s",
        Unit::BitsPerSecond => "bit/s",
        Unit::CountPerSecond => "1/s",
    }
}

impl OtelRecorder {
    /// A recorder creating its instruments on `meter`.
    pub fn new(meter: Meter) -> OtelRecorder {
        OtelRecorder {
            meter,
            buckets: HashMap::new(),
            described: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
            gauges: Mutex::new(HashMap::new()),
            histograms: Mutex::new(HashMap::new()),
            instruments: Mutex::new(Instruments::default()),
        }
    }

    /// Histogram buckets (upper bounds, in the metric's unit), by the metric's
    /// Prometheus name, as declared for `/metrics`: the histogram goes out over OTLP with
    /// them. Buckets that are empty, not finite or not increasing are left out (the
    /// facade checks them at `init()`).
    #[must_use]
    pub fn with_buckets<N: Into<String>>(
        mut self,
        buckets: impl IntoIterator<Item = (N, Vec<f64>)>,
    ) -> OtelRecorder {
        for (name, b) in buckets {
            let ok = !b.is_empty()
                && b.iter().all(|x| x.is_finite())
                && b.windows(2).all(|w| w[0] < w[1]);
            if ok {
                self.buckets.insert(name.into(), b);
            }
        }
        self
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.described
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.as_str().to_string(), (unit, description));
    }

    fn description(&self, name: &str) -> (Option<&'static str>, String) {
        match self
            .described
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            Some((unit, d)) => (unit.map(unit_text), d.to_string()),
            None => (None, String::new()),
        }
    }
}

macro_rules! instrument {
    ($self:ident, $map:ident, $name:expr, $kind:expr, $builder:ident $(, |$b:ident| $advice:expr)?) => {{
        let name = $name.to_string();
        let (described_unit, description) = $self.description(&name);
        let mut instruments = $self.instruments.lock().unwrap_or_else(|p| p.into_inner());
        instruments
            .$map
            .entry(name.clone())
            .or_insert_with(|| {
                let (otel, unit) = otel_name(&name, $kind);
                let mut b = $self.meter.$builder(otel).with_description(description);
                if let Some(u) = unit.or(described_unit) {
                    b = b.with_unit(u);
                }
                $(
                    let $b = b;
                    let b = $advice;
                )?
                b.build()
            })
            .clone()
    }};
}

/// The three `describe_*` methods of [`Recorder`], each handing the description to the
/// type's own `describe` (the kind does not change what a meter needs).
macro_rules! describe_through_self {
    () => {
        fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
            self.describe(key, unit, description);
        }
        fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
            self.describe(key, unit, description);
        }
        fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
            self.describe(key, unit, description);
        }
    };
}

impl Recorder for OtelRecorder {
    describe_through_self!();

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let handle = map
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(OtelCounter {
                    counter: instrument!(
                        self,
                        counters,
                        key.name(),
                        InstrumentKind::Counter,
                        u64_counter
                    ),
                    attrs: attrs(key),
                    last: AtomicU64::new(0),
                })
            })
            .clone();
        Counter::from_arc(handle)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut map = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        let handle = map
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(OtelGauge {
                    gauge: instrument!(self, gauges, key.name(), InstrumentKind::Gauge, f64_gauge),
                    attrs: attrs(key),
                    bits: AtomicU64::new(0f64.to_bits()),
                })
            })
            .clone();
        Gauge::from_arc(handle)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut map = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let handle = map
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(OtelHistogram {
                    histogram: instrument!(
                        self,
                        histograms,
                        key.name(),
                        InstrumentKind::Histogram,
                        f64_histogram,
                        |b| match self.buckets.get(key.name()) {
                            Some(bounds) => b.with_boundaries(bounds.clone()),
                            None => b,
                        }
                    ),
                    attrs: attrs(key),
                })
            })
            .clone();
        Histogram::from_arc(handle)
    }
}

/// A [`Recorder`] that stands for the [`OtelRecorder`] of the pipeline running now.
///
/// A process installs one `metrics` recorder for its whole life, while a service may
/// stop its OTLP pipeline and start another (a test suite does, once per test): the
/// recorder installed holds this slot, and each start puts its own [`OtelRecorder`]
/// in it. Each series registered goes to the recorder in the slot at that moment;
/// with none (no pipeline running), to nowhere. Descriptions are kept and given to
/// every recorder put in later. Cheap to clone: clones share the slot.
#[derive(Clone, Default)]
pub struct OtelRecorderSlot {
    inner: Arc<SlotInner>,
}

/// A metric's name, unit and description, as `describe_*` gave them.
type Description = (KeyName, Option<Unit>, SharedString);

#[derive(Default)]
struct SlotInner {
    current: arc_swap::ArcSwapOption<OtelRecorder>,
    /// Descriptions by metric name (each name once), for the recorders put in later.
    described: Mutex<HashMap<String, Description>>,
}

impl std::fmt::Debug for OtelRecorderSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelRecorderSlot")
            .field("filled", &self.inner.current.load().is_some())
            .finish_non_exhaustive()
    }
}

impl OtelRecorderSlot {
    /// An empty slot.
    pub fn new() -> OtelRecorderSlot {
        OtelRecorderSlot::default()
    }

    /// Puts `recorder` in the slot (given the descriptions so far), or empties it.
    /// Series registered before keep the recorder they were registered with.
    pub fn set(&self, recorder: Option<OtelRecorder>) {
        // Held until the recorder is in: a description given meanwhile waits, then
        // reaches the new recorder.
        let described = self
            .inner
            .described
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &recorder {
            for (key, unit, description) in described.values() {
                r.describe(key.clone(), *unit, description.clone());
            }
        }
        self.inner.current.store(recorder.map(Arc::new));
    }

    /// Whether a recorder is in the slot.
    pub fn is_filled(&self) -> bool {
        self.inner.current.load().is_some()
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let mut described = self
            .inner
            .described
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        described.insert(
            key.as_str().to_string(),
            (key.clone(), unit, description.clone()),
        );
        // Under the lock `set` holds: the recorder in the slot now gets it.
        if let Some(r) = self.inner.current.load().as_deref() {
            r.describe(key, unit, description);
        }
    }
}

impl Recorder for OtelRecorderSlot {
    describe_through_self!();

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        match self.inner.current.load().as_deref() {
            Some(r) => r.register_counter(key, metadata),
            None => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        match self.inner.current.load().as_deref() {
            Some(r) => r.register_gauge(key, metadata),
            None => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        match self.inner.current.load().as_deref() {
            Some(r) => r.register_histogram(key, metadata),
            None => Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_the_conventions_or_lose_their_suffixes() {
        use InstrumentKind::{Counter, Gauge, Histogram};
        let cases = [
            (
                "http_server_request_duration_seconds",
                Histogram,
                "http.server.request.duration",
                Some("s"),
            ),
            (
                "http_server_active_requests",
                Gauge,
                "http.server.active_requests",
                Some("{request}"),
            ),
            (
                "payment_duration_seconds",
                Histogram,
                "payment_duration",
                Some("s"),
            ),
            (
                "process_cpu_seconds_total",
                Counter,
                "process_cpu",
                Some("s"),
            ),
            ("upload_size_bytes", Histogram, "upload_size", Some("By")),
            ("sent_bytes_total", Counter, "sent", Some("By")),
            ("jobs_total", Counter, "jobs", None),
            ("jobs_total", Gauge, "jobs_total", None),
            ("queue_depth", Gauge, "queue_depth", None),
            ("_total", Counter, "_total", None),
            ("_seconds", Histogram, "_seconds", None),
        ];
        for (name, kind, otel, unit) in cases {
            assert_eq!(otel_name(name, kind), (otel.to_string(), unit), "{name}");
        }
        assert_eq!(otel_attribute("http_route"), "http.route");
        assert_eq!(otel_attribute("error_type"), "error.type");
        assert_eq!(otel_attribute("tenant"), "tenant");
    }

    #[test]
    fn buckets_that_cannot_work_are_left_out() {
        let meter = opentelemetry::global::meter("test");
        let r = OtelRecorder::new(meter).with_buckets([
            ("a_seconds", vec![0.1, 1.0]),
            ("b_seconds", vec![]),
            ("c_seconds", vec![1.0, 0.5]),
            ("d_seconds", vec![f64::NAN]),
        ]);
        assert_eq!(r.buckets.len(), 1);
        assert_eq!(r.buckets["a_seconds"], vec![0.1, 1.0]);
    }
}
