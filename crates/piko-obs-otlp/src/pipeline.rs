//! The export pipeline: tracer, meter and logger providers with OTLP exporters built
//! from resolved [`Settings`], and a span processor whose queue is bounded and whose
//! drops are counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};

use crate::config::{Compression, ParentRoot, Protocol, Sampling, Settings};

/// The pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A TLS file could not be read or used.
    #[error("OTLP TLS: {0}")]
    Tls(String),
    /// An exporter could not be built (the message names the signal).
    #[error("OTLP {signal} exporter: {reason}")]
    Exporter {
        /// `traces`, `metrics` or `logs`.
        signal: &'static str,
        /// Why.
        reason: String,
    },
    /// The span export thread could not start.
    #[error("OTLP span export thread: {0}")]
    Thread(std::io::Error),
    /// A header cannot be sent as gRPC metadata (its value is never shown).
    #[error(
        "OTLP header {name:?} cannot be sent over gRPC: {reason}; rename it, or use the http/protobuf protocol"
    )]
    GrpcHeader {
        /// The header's name.
        name: String,
        /// Why.
        reason: &'static str,
    },
}

/// Counters of the span pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SpanStats {
    /// Spans handed to the processor.
    pub ended: u64,
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans that did not fit in the queue.
    pub dropped: u64,
    /// Spans in exports that failed.
    pub failed: u64,
}

#[derive(Default, Debug)]
struct Counters {
    ended: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

enum Control {
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(SyncSender<OTelSdkResult>),
}

/// A batch span processor with a bounded queue: spans that do not fit are dropped and
/// counted, never waited for; a thread exports batches of up to 512 spans every
/// second (or sooner when a batch is full).
#[derive(Debug)]
pub struct BoundedSpanProcessor<E: SpanExporter + 'static> {
    spans: SyncSender<SpanData>,
    control: Mutex<std::sync::mpsc::Sender<Control>>,
    exporter: Arc<Mutex<E>>,
    counters: Arc<Counters>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

const BATCH: usize = 512;
const DELAY: Duration = Duration::from_secs(1);

impl<E: SpanExporter + 'static> BoundedSpanProcessor<E> {
    /// A processor exporting through `exporter`, with room for `capacity` spans.
    pub fn new(exporter: E, capacity: usize) -> std::io::Result<BoundedSpanProcessor<E>> {
        let (spans, span_rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        let (control, control_rx) = std::sync::mpsc::channel();
        let exporter = Arc::new(Mutex::new(exporter));
        let counters = Arc::new(Counters::default());
        let (e, c) = (exporter.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("piko-obs-spans".into())
            .spawn(move || export_loop(&span_rx, &control_rx, &e, &c))?;
        Ok(BoundedSpanProcessor {
            spans,
            control: Mutex::new(control),
            exporter,
            counters,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The counters.
    pub fn stats(&self) -> SpanStats {
        stats(&self.counters)
    }

    /// A handle reading the counters later.
    pub fn stats_handle(&self) -> SpanStatsHandle {
        SpanStatsHandle(self.counters.clone())
    }

    fn ask(
        &self,
        make: impl FnOnce(SyncSender<OTelSdkResult>) -> Control,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(make(tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        rx.recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))?
    }
}

fn stats(c: &Counters) -> SpanStats {
    SpanStats {
        ended: c.ended.load(Ordering::Relaxed),
        exported: c.exported.load(Ordering::Relaxed),
        dropped: c.dropped.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
    }
}

/// Reads a [`BoundedSpanProcessor`]'s counters after the processor has moved into its
/// provider.
#[derive(Debug, Clone)]
pub struct SpanStatsHandle(Arc<Counters>);

impl SpanStatsHandle {
    /// The counters.
    pub fn stats(&self) -> SpanStats {
        stats(&self.0)
    }
}

fn export_batch<E: SpanExporter>(
    exporter: &Mutex<E>,
    batch: &mut Vec<SpanData>,
    c: &Counters,
) -> OTelSdkResult {
    if batch.is_empty() {
        return Ok(());
    }
    let n = batch.len() as u64;
    let spans = std::mem::take(batch);
    let exporter = exporter.lock().unwrap_or_else(|p| p.into_inner());
    let result = futures_executor::block_on(exporter.export(spans));
    match &result {
        Ok(()) => c.exported.fetch_add(n, Ordering::Relaxed),
        Err(_) => c.failed.fetch_add(n, Ordering::Relaxed),
    };
    result
}

fn export_loop<E: SpanExporter>(
    spans: &Receiver<SpanData>,
    control: &Receiver<Control>,
    exporter: &Mutex<E>,
    c: &Counters,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut next = Instant::now() + DELAY;
    loop {
        // Wake at least every 50 ms, for flush and shutdown requests.
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        match spans.recv_timeout(wait) {
            Ok(span) => batch.push(span),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = export_batch(exporter, &mut batch, c);
                return;
            }
        }
        if batch.len() >= BATCH || Instant::now() >= next {
            let _ = export_batch(exporter, &mut batch, c);
            next = Instant::now() + DELAY;
        }
        match control.try_recv() {
            Ok(Control::Flush(done)) => {
                batch.extend(spans.try_iter());
                let r = export_batch(exporter, &mut batch, c);
                let _ = done.send(r);
            }
            Ok(Control::Shutdown(done)) => {
                batch.extend(spans.try_iter());
                let r = export_batch(exporter, &mut batch, c);
                let r = r.and(
                    exporter
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .shutdown(),
                );
                let _ = done.send(r);
                return;
            }
            Err(_) => {}
        }
    }
}

impl<E: SpanExporter + 'static> SpanProcessor for BoundedSpanProcessor<E> {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.counters.ended.fetch_add(1, Ordering::Relaxed);
        match self.spans.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Control::Flush, Duration::from_secs(30))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let r = self.ask(Control::Shutdown, timeout);
        if r.is_ok()
            && let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
        {
            let _ = t.join();
        }
        r
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.exporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_resource(resource);
    }
}

/// The three providers, and the span counters.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Traces.
    pub tracer_provider: SdkTracerProvider,
    /// Metrics.
    pub meter_provider: SdkMeterProvider,
    /// Logs.
    pub logger_provider: SdkLoggerProvider,
    /// The span processor's counters.
    pub spans: SpanStatsHandle,
}

/// The span queue's capacity.
pub const SPAN_QUEUE: usize = 2048;

fn sampler(s: Sampling) -> Sampler {
    let root = |r: ParentRoot| match r {
        ParentRoot::AlwaysOn => Sampler::AlwaysOn,
        ParentRoot::AlwaysOff => Sampler::AlwaysOff,
        ParentRoot::Ratio(x) => Sampler::TraceIdRatioBased(x),
    };
    match s {
        Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::AlwaysOff => Sampler::AlwaysOff,
        Sampling::Ratio(x) => Sampler::TraceIdRatioBased(x),
        Sampling::ParentBased(r) => Sampler::ParentBased(Box::new(root(r))),
    }
}

fn resource(settings: &Settings) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_attributes(
            settings
                .resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

fn tonic_tls(settings: &Settings) -> Result<tonic::transport::ClientTlsConfig, StartError> {
    let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| StartError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    if let Some(ca) = &settings.tls.ca_file {
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&settings.tls.client_cert, &settings.tls.client_key) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read(cert)?,
            read(key)?,
        ));
    }
    Ok(tls)
}

fn http_client(settings: &Settings) -> Result<reqwest::blocking::Client, StartError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = &settings.tls.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| StartError::Tls(format!("cannot read {}: {e}", ca.display())))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
            roots
                .add(cert)
                .map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
        }
    }
    let builder = builder.with_root_certificates(roots);
    let config = match (&settings.tls.client_cert, &settings.tls.client_key) {
        (Some(cert), Some(key)) => {
            let certs_pem = std::fs::read(cert)
                .map_err(|e| StartError::Tls(format!("cannot read {}: {e}", cert.display())))?;
            let key_pem = std::fs::read(key)
                .map_err(|e| StartError::Tls(format!("cannot read {}: {e}", key.display())))?;
            let certs = rustls_pemfile::certs(&mut certs_pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StartError::Tls(format!("{}: {e}", cert.display())))?;
            let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
                .map_err(|e| StartError::Tls(format!("{}: {e}", key.display())))?
                .ok_or_else(|| StartError::Tls(format!("{}: no private key", key.display())))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| StartError::Tls(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(settings.timeout)
        .build()
        .map_err(|e| StartError::Tls(e.without_url().to_string()))
}

/// The headers as gRPC metadata; one tonic refuses (a `-bin` name, which gRPC keeps
/// for binary values) is an error, not dropped.
fn metadata(settings: &Settings) -> Result<tonic::metadata::MetadataMap, StartError> {
    let mut m = tonic::metadata::MetadataMap::new();
    for (k, v) in &settings.headers {
        let refused = |reason| StartError::GrpcHeader {
            name: k.clone(),
            reason,
        };
        let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).map_err(|_| {
            refused("names ending in -bin are for binary metadata, which is not supported")
        })?;
        let value = tonic::metadata::MetadataValue::try_from(v.as_str())
            .map_err(|_| refused("its value is not a valid header value"))?;
        m.insert(key, value);
    }
    Ok(m)
}

macro_rules! exporter {
    ($settings:expr, $builder:expr, $signal:literal) => {{
        let s: &Settings = $settings;
        let exporter_err = |e: opentelemetry_otlp::ExporterBuildError| StartError::Exporter {
            signal: $signal,
            reason: e.to_string(),
        };
        match s.protocol {
            Protocol::Grpc => {
                let mut b = $builder
                    .with_tonic()
                    .with_endpoint(s.signal_url($signal))
                    .with_timeout(s.timeout)
                    .with_metadata(metadata(s)?);
                if s.endpoint.starts_with("https://") {
                    b = b.with_tls_config(tonic_tls(s)?);
                }
                if s.compression == Compression::Gzip {
                    b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                }
                b.build().map_err(exporter_err)?
            }
            Protocol::HttpProtobuf => {
                let headers: HashMap<String, String> = s.headers.clone().into_iter().collect();
                let mut b = $builder
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(s.signal_url($signal))
                    .with_timeout(s.timeout)
                    .with_headers(headers)
                    .with_http_client(http_client(s)?);
                if s.compression == Compression::Gzip {
                    b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                }
                b.build().map_err(exporter_err)?
            }
        }
    }};
}

impl Pipeline {
    /// Builds the exporters and the providers. Call it inside a tokio runtime (the gRPC
    /// exporters run their connections on it); it must outlive [`Pipeline::shutdown`].
    pub fn start(settings: &Settings) -> Result<Pipeline, StartError> {
        let resource = resource(settings);
        let spans = exporter!(
            settings,
            opentelemetry_otlp::SpanExporter::builder(),
            "traces"
        );
        let processor = BoundedSpanProcessor::new(spans, SPAN_QUEUE).map_err(StartError::Thread)?;
        let span_stats = processor.stats_handle();
        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler(settings.sampling))
            .with_resource(resource.clone())
            .build();
        let metrics = exporter!(
            settings,
            opentelemetry_otlp::MetricExporter::builder(),
            "metrics"
        );
        let reader = PeriodicReader::builder(metrics)
            .with_interval(settings.metric_interval)
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource.clone())
            .build();
        let logs = exporter!(settings, opentelemetry_otlp::LogExporter::builder(), "logs");
        let logger_provider = SdkLoggerProvider::builder()
            .with_batch_exporter(logs)
            .with_resource(resource)
            .build();
        Ok(Pipeline {
            tracer_provider,
            meter_provider,
            logger_provider,
            spans: span_stats,
        })
    }

    /// Flushes and shuts the three providers down at the same time, each on a thread of
    /// its own, and returns within `timeout` (plus a few milliseconds): the failures, by
    /// signal. A provider still busy at the bound is reported and left to finish in the
    /// background, within its export timeout.
    pub fn shutdown(&self, timeout: Duration) -> Vec<(&'static str, String)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = self.tracer_provider.clone();
        let m = self.meter_provider.clone();
        let l = self.logger_provider.clone();
        type Job = Box<dyn FnOnce() -> OTelSdkResult + Send>;
        let jobs: [(&'static str, Job); 3] = [
            ("traces", Box::new(move || t.shutdown_with_timeout(timeout))),
            (
                "metrics",
                Box::new(move || m.shutdown_with_timeout(timeout)),
            ),
            ("logs", Box::new(move || l.shutdown_with_timeout(timeout))),
        ];
        let mut waiting: Vec<&'static str> = Vec::new();
        for (signal, job) in jobs {
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("piko-obs-otlp-{signal}-shutdown"))
                .spawn(move || {
                    let _ = tx.send((signal, job()));
                });
            if spawned.is_ok() {
                waiting.push(signal);
            }
        }
        let mut failures = Vec::new();
        let deadline = Instant::now() + timeout;
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left + Duration::from_millis(20)) {
                Ok((signal, result)) => {
                    waiting.retain(|s| *s != signal);
                    if let Err(e) = result {
                        failures.push((signal, e.to_string()));
                    }
                }
                Err(_) => break,
            }
        }
        for signal in waiting {
            failures.push((signal, format!("not shut down after {timeout:?}")));
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OtlpConfig;

    fn settings(headers: &[(&str, &str)]) -> Settings {
        let mut config = OtlpConfig::new();
        config.endpoint = Some("http://127.0.0.1:4317".into());
        config.headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config.resolve(|_| None, "test").expect("valid settings")
    }

    #[test]
    fn headers_grpc_cannot_carry_are_refused_by_name_without_their_value() {
        let ok = metadata(&settings(&[("authorization", "Bearer s3cret")])).unwrap();
        assert_eq!(ok.get("authorization").unwrap(), "Bearer s3cret");
        for (name, value) in [("x-token-bin", "s3cret"), ("grpc-x-bin", "s3cret")] {
            let err = metadata(&settings(&[(name, value)])).unwrap_err();
            let text = err.to_string();
            assert!(matches!(&err, StartError::GrpcHeader { name: n, .. } if n == name));
            assert!(
                text.contains(name) && text.contains("http/protobuf"),
                "{text}"
            );
            assert!(!text.contains("s3cr"), "{text}");
        }
    }
}
