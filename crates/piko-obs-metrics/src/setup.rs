//! The `metrics` recorder of a process: [`RecorderSetup`] holds the settings given in
//! code and checks them into a [`MetricsBuilder`]; [`install`] makes its recorder the
//! process's `metrics` recorder, once per process, and [`installed`] and [`render`] reach
//! it, and [`start`] also starts the recorder's upkeep as a part of the program's stack.
//! Only the composing program calls [`install`] and [`start`].

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use piko_obs_lifecycle::Unwind;

use crate::{Metrics, MetricsBuilder, MetricsError, Upkeep, guard};

/// The recorder's settings given in code, checked by [`builder`](Self::builder).
///
/// ```
/// use piko_obs_metrics::setup::{RecorderSetting, RecorderSetup};
/// let setup = RecorderSetup::default()
///     .with_global_label("environment", "staging")
///     .with_buckets("payment_duration_seconds", &[0.1, 0.5, 1.0]);
/// assert!(setup.builder().is_ok());
/// let e = RecorderSetup::default().with_cardinality_limit(0).builder().unwrap_err();
/// assert_eq!(e.setting, RecorderSetting::CardinalityLimit);
/// ```
#[derive(Debug, Clone)]
pub struct RecorderSetup {
    enabled: bool,
    labels: Vec<(String, String)>,
    cardinality: Option<usize>,
    cardinality_for: Vec<(String, usize)>,
    buckets: Vec<(String, Vec<f64>)>,
}

impl Default for RecorderSetup {
    fn default() -> Self {
        Self {
            enabled: true,
            labels: Vec::new(),
            cardinality: None,
            cardinality_for: Vec::new(),
            buckets: Vec::new(),
        }
    }
}

impl RecorderSetup {
    /// Whether the recorder is installed at all (default on).
    pub fn with_enabled(self, on: bool) -> Self {
        Self {
            enabled: on,
            ..self
        }
    }
    /// [`MetricsBuilder::with_global_label`].
    pub fn with_global_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }
    /// [`MetricsBuilder::with_cardinality_limit`].
    pub fn with_cardinality_limit(self, limit: usize) -> Self {
        Self {
            cardinality: Some(limit),
            ..self
        }
    }
    /// [`MetricsBuilder::with_cardinality_limit_for`].
    pub fn with_cardinality_limit_for(mut self, metric: impl Into<String>, limit: usize) -> Self {
        self.cardinality_for.push((metric.into(), limit));
        self
    }
    /// [`MetricsBuilder::with_buckets`].
    pub fn with_buckets(mut self, metric: impl Into<String>, buckets: &[f64]) -> Self {
        self.buckets.push((metric.into(), buckets.to_vec()));
        self
    }
    /// Whether the recorder is installed at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether [`start`] has anything to do: the recorder is on, no render of the
    /// application's own replaces it (`custom_render`), and its series go somewhere (the
    /// probe port `served` them, or they are `exported`, over OTLP for example).
    pub fn wanted(&self, served: bool, custom_render: bool, exported: bool) -> bool {
        self.enabled && !custom_render && (served || exported)
    }

    /// The builder of these settings, each checked: an error names the setting.
    pub fn builder(&self) -> Result<MetricsBuilder, RecorderSetupError> {
        let setting = |setting| move |source| RecorderSetupError { setting, source };
        let mut builder = MetricsBuilder::new();
        for (name, value) in &self.labels {
            builder = builder
                .with_global_label(name, value)
                .map_err(setting(RecorderSetting::GlobalLabel))?;
        }
        if let Some(limit) = self.cardinality {
            builder = builder
                .with_cardinality_limit(limit)
                .map_err(setting(RecorderSetting::CardinalityLimit))?;
        }
        for (metric, limit) in &self.cardinality_for {
            builder = builder
                .with_cardinality_limit_for(metric, *limit)
                .map_err(setting(RecorderSetting::CardinalityLimitFor))?;
        }
        for (metric, buckets) in &self.buckets {
            builder = builder
                .with_buckets(metric, buckets)
                .map_err(setting(RecorderSetting::Buckets))?;
        }
        Ok(builder)
    }
}

/// A setting of [`RecorderSetup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecorderSetting {
    /// [`RecorderSetup::with_global_label`].
    GlobalLabel,
    /// [`RecorderSetup::with_cardinality_limit`].
    CardinalityLimit,
    /// [`RecorderSetup::with_cardinality_limit_for`].
    CardinalityLimitFor,
    /// [`RecorderSetup::with_buckets`].
    Buckets,
}

/// A setting of [`RecorderSetup`] that cannot work.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{setting:?}: {source}")]
pub struct RecorderSetupError {
    /// The setting.
    pub setting: RecorderSetting,
    /// What is wrong with it.
    pub source: MetricsError,
}

/// Why [`install`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The exporter refused the buckets.
    #[error("buckets: {0}")]
    Buckets(MetricsError),
    /// Another `metrics` recorder is installed.
    #[error("another `metrics` recorder is already installed")]
    RecorderInstalled,
    /// The upkeep thread of [`start`] could not start.
    #[error("cannot start the metrics upkeep: {0}")]
    Upkeep(std::io::Error),
}

/// The series every part of the program describes and records, as the composing program
/// lists them: [`start`] runs each describer once, when it installs the recorder, and
/// adds each collector to it (run before each render).
#[derive(Debug, Clone, Copy, Default)]
pub struct Telemetry<'a> {
    /// Describes a part's series (`describe_metrics` of its `telemetry` module).
    pub describe: &'a [fn()],
    /// Records a part's counters as series (`record_metrics`).
    pub collect: &'a [fn()],
}

/// How often the upkeep of [`start`] runs (histogram upkeep, so memory stays bounded).
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// [`install`]s `builder`'s recorder (the first time, with the refused series counted
/// and described, and `telemetry`'s describers and collectors), then starts its
/// [`Upkeep`] every [`UPKEEP_EVERY`] and pushes it on `parts`. Returns the installed
/// metrics, and true when this call installed them.
///
/// ```
/// use std::time::Duration;
/// use piko_obs_lifecycle::Unwind;
/// use piko_obs_metrics::{MetricsBuilder, setup::{self, Telemetry}};
///
/// fn describe() {
///     metrics::describe_counter!("orders_total", "Orders placed.");
/// }
/// let parts = Unwind::new(Duration::from_secs(1));
/// let telemetry = Telemetry { describe: &[describe], collect: &[] };
/// let (installed, fresh) = setup::start(MetricsBuilder::new(), telemetry, &parts).unwrap();
/// metrics::counter!("orders_total").increment(1);
/// assert!(fresh && installed.render().contains("orders_total 1"));
/// ```
pub fn start(
    builder: MetricsBuilder,
    telemetry: Telemetry<'_>,
    parts: &Unwind,
) -> Result<(&'static Metrics, bool), InstallError> {
    let (installed, fresh) = install(builder, |metrics| {
        metrics::describe_counter!(
            guard::SERIES_REFUSED,
            "Metric series not recorded, per metric (the first 100 names, then _other) and reason (invalid_name, cardinality_limit, metric_name_limit)."
        );
        telemetry.describe.iter().for_each(|describe| describe());
        for collect in telemetry.collect {
            metrics.add_collector(*collect);
        }
    })?;
    let upkeep = Upkeep::start(installed.clone(), UPKEEP_EVERY).map_err(InstallError::Upkeep)?;
    parts.push(upkeep);
    Ok((installed, fresh))
}

static INSTALLED: OnceLock<Metrics> = OnceLock::new();

/// Builds `builder`'s recorder and installs it as the process's `metrics` recorder, the
/// first time, then calls `installed_now` with it (to describe series and add
/// collectors); later calls return the installed metrics. True when this call
/// installed it.
pub fn install(
    builder: MetricsBuilder,
    installed_now: impl FnOnce(&Metrics),
) -> Result<(&'static Metrics, bool), InstallError> {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = INSTALLED.get() {
        return Ok((m, false));
    }
    // Only buckets the exporter refuses fail here (the builder checked them already).
    let (recorder, metrics) = builder.build().map_err(InstallError::Buckets)?;
    metrics::set_global_recorder(recorder).map_err(|_| InstallError::RecorderInstalled)?;
    metrics.describe();
    installed_now(&metrics);
    Ok((INSTALLED.get_or_init(|| metrics), true))
}

/// The installed metrics, if [`install`] installed them.
pub fn installed() -> Option<&'static Metrics> {
    INSTALLED.get()
}

/// The Prometheus text of the installed metrics.
pub fn render() -> Option<String> {
    INSTALLED.get().map(Metrics::render)
}
