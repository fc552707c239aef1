//! Metrics recorded with the `metrics` crate, exported through an OpenTelemetry meter:
//! a `metrics::Recorder` that the facade fans out to beside the Prometheus one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

/// Records `metrics` counters, gauges and histograms as OpenTelemetry instruments of
/// the same name (with the description and unit given by `describe_*` before first
/// use); labels become attributes. A counter's `absolute` adds the difference from the
/// last value; a gauge keeps its value per label set, so `increment` and `decrement`
/// work.
pub struct OtelRecorder {
    meter: Meter,
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
        .map(|l| KeyValue::new(l.key().to_string(), l.value().to_string()))
        .collect()
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
            described: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
            gauges: Mutex::new(HashMap::new()),
            histograms: Mutex::new(HashMap::new()),
            instruments: Mutex::new(Instruments::default()),
        }
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
    ($self:ident, $map:ident, $name:expr, $builder:ident) => {{
        let name = $name.to_string();
        let (unit, description) = $self.description(&name);
        let mut instruments = $self.instruments.lock().unwrap_or_else(|p| p.into_inner());
        instruments
            .$map
            .entry(name.clone())
            .or_insert_with(|| {
                let mut b = $self.meter.$builder(name).with_description(description);
                if let Some(u) = unit {
                    b = b.with_unit(u);
                }
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
                    counter: instrument!(self, counters, key.name(), u64_counter),
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
                    gauge: instrument!(self, gauges, key.name(), f64_gauge),
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
                    histogram: instrument!(self, histograms, key.name(), f64_histogram),
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
