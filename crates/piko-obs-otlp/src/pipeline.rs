//! The export pipeline: tracer, meter and logger providers with OTLP exporters built
//! from resolved [`Settings`], and span and log-record processors whose queues are
//! bounded and whose drops are counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{
    LogBatch, LogExporter, LogProcessor, SdkLogRecord, SdkLoggerProvider,
};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};

use crate::config::{
    AttributeLimits, BatchSettings, Compression, HistogramAggregation, JaegerRemote, ParentRoot,
    Propagator, Protocol, Sampling, Settings, SignalSettings, SpanLimits, Temporality,
};
use crate::fanout::Exporters;

/// The longest wait taken as given: a longer one (up to `Duration::MAX`) is a century,
/// as `Instant` cannot add more.
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

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
    /// A span or log-record export thread could not start.
    #[error("OTLP export thread: {0}")]
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

// ---------------------------------------------------------------------------------------
// The bounded export queue shared by spans and log records

/// The most items in one export, by default.
const BATCH: usize = 512;
/// The longest an item waits in a partial batch, by default.
#[cfg(test)]
const DELAY: Duration = Duration::from_secs(1);
/// How long `force_flush` waits for the export thread.
const FLUSH_BOUND: Duration = Duration::from_secs(30);

/// The counters of an [`ExportQueue`]: every item pushed is, in the end, exported,
/// dropped or failed (or still queued).
#[derive(Default, Debug)]
struct Counters {
    /// Items pushed (spans ended, log records emitted).
    pushed: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    /// Items in the channel, not yet taken by the export thread: the thread is woken
    /// when this reaches a full batch, not for every item. Signed: the thread may take
    /// an item before its push is counted, so it can dip below zero for a moment.
    queued: AtomicIsize,
}

/// What an export thread does with a batch, and at shutdown.
trait Export<T>: Send + 'static {
    /// Exports `batch` and leaves it empty.
    fn export(&mut self, batch: &mut Vec<T>) -> OTelSdkResult;
    /// Shuts the exporter down.
    fn shutdown(&mut self, timeout: Duration) -> OTelSdkResult;
}

enum Control {
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(SyncSender<OTelSdkResult>, Duration),
}

/// A bounded queue in front of a thread exporting batches of up to a set number of
/// items (512 by default) every set delay (5 s for spans and 1 s for log records by
/// default), or sooner when a batch is
/// full. Pushing never waits: an item that
/// does not fit, or comes after shutdown, is dropped and counted. The thread sleeps
/// until a batch is full, the delay is up, or it is asked to flush or shut down, so
/// pushing an item costs no system call.
struct ExportQueue<T> {
    items: SyncSender<T>,
    /// The most items in one export.
    batch: usize,
    control: Mutex<std::sync::mpsc::Sender<Control>>,
    counters: Arc<Counters>,
    /// The export thread, to wake (`unpark`).
    exporter: std::thread::Thread,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl<T> std::fmt::Debug for ExportQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportQueue")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<T> Drop for ExportQueue<T> {
    /// The channel closes with the queue: the thread is woken to export what is left
    /// and end, instead of finding out at its next deadline.
    fn drop(&mut self) {
        // The sender is closed first (`drop` runs before the fields are dropped), so
        // the woken thread finds the channel closed.
        let (closed, _) = std::sync::mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.items, closed));
        self.exporter.unpark();
    }
}

impl<T: Send + 'static> ExportQueue<T> {
    /// A queue of `batch.max_queue_size` items, exported by a thread named `name`
    /// through `sink` in batches of up to `batch.max_export_batch_size`, every
    /// `batch.schedule_delay` at most.
    fn start(
        name: &str,
        batch: BatchSettings,
        sink: impl Export<T>,
    ) -> std::io::Result<ExportQueue<T>> {
        let capacity = batch.max_queue_size.max(1);
        let (size, delay) = (
            batch.max_export_batch_size.clamp(1, capacity),
            batch.schedule_delay,
        );
        let (items, items_rx) = std::sync::mpsc::sync_channel(capacity);
        let (control, control_rx) = std::sync::mpsc::channel();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || export_loop(&items_rx, &control_rx, sink, &c, capacity, size, delay))?;
        Ok(ExportQueue {
            items,
            batch: size,
            control: Mutex::new(control),
            counters,
            exporter: thread.thread().clone(),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Counts `item` and queues it, or drops it (counted) when the queue is full or
    /// shut down. Never waits; wakes the export thread only when a batch is full.
    fn push(&self, item: T) {
        let c = &*self.counters;
        c.pushed.fetch_add(1, Ordering::Relaxed);
        match self.items.try_send(item) {
            Ok(()) => {
                if c.queued.fetch_add(1, Ordering::AcqRel) + 1 == self.batch as isize {
                    self.exporter.unpark();
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn ask(
        &self,
        control: Control,
        done: &Receiver<OTelSdkResult>,
        timeout: Duration,
    ) -> OTelSdkResult {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(control)
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        self.exporter.unpark();
        done.recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))?
    }

    /// Exports what is queued; waits for it at most [`FLUSH_BOUND`].
    fn flush(&self) -> OTelSdkResult {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.ask(Control::Flush(tx), &rx, FLUSH_BOUND)
    }

    /// Exports what is queued, shuts the exporter down and ends the thread; waits for it
    /// at most `timeout` (a thread still busy then finishes in the background).
    fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let r = self.ask(Control::Shutdown(tx, timeout), &rx, timeout);
        if r.is_ok()
            && let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
        {
            // It answered as its last step: the join is immediate.
            let _ = t.join();
        }
        r
    }
}

/// `defaults` with a queue of `capacity` items.
fn queue_of(defaults: BatchSettings, capacity: usize) -> BatchSettings {
    BatchSettings {
        max_queue_size: capacity,
        max_export_batch_size: BATCH.min(capacity.max(1)),
        ..defaults
    }
}

/// Exports `batch` (if not empty) through `sink`, counting its items as exported or
/// failed.
fn export_batch<T>(sink: &mut impl Export<T>, batch: &mut Vec<T>, c: &Counters) -> OTelSdkResult {
    if batch.is_empty() {
        return Ok(());
    }
    let n = batch.len() as u64;
    let result = sink.export(batch);
    batch.clear();
    match &result {
        Ok(()) => c.exported.fetch_add(n, Ordering::Relaxed),
        Err(_) => c.failed.fetch_add(n, Ordering::Relaxed),
    };
    result
}

/// Moves up to `max` queued items into `batch`; whether the channel is closed.
fn take<T>(items: &Receiver<T>, batch: &mut Vec<T>, max: usize, c: &Counters) -> bool {
    let mut taken = 0;
    let mut closed = false;
    while taken < max {
        match items.try_recv() {
            Ok(item) => {
                batch.push(item);
                taken += 1;
            }
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => {
                closed = true;
                break;
            }
        }
    }
    c.queued.fetch_sub(taken as isize, Ordering::AcqRel);
    closed
}

fn export_loop<T, S: Export<T>>(
    items: &Receiver<T>,
    control: &Receiver<Control>,
    mut sink: S,
    c: &Counters,
    capacity: usize,
    size: usize,
    delay: Duration,
) {
    let delay = delay.min(LONGEST_WAIT);
    let mut batch = Vec::with_capacity(size);
    let mut next = Instant::now() + delay;
    loop {
        let room = size - batch.len();
        let closed = take(items, &mut batch, room, c);
        if closed {
            let _ = export_batch(&mut sink, &mut batch, c);
            return;
        }
        if batch.len() >= size || Instant::now() >= next {
            let _ = export_batch(&mut sink, &mut batch, c);
            next = Instant::now() + delay;
        }
        match control.try_recv() {
            Ok(Control::Flush(done)) => {
                // Bounded: at most what the queue holds (plus a partial batch).
                take(items, &mut batch, capacity, c);
                let r = export_batch(&mut sink, &mut batch, c);
                let _ = done.send(r);
                continue;
            }
            Ok(Control::Shutdown(done, timeout)) => {
                take(items, &mut batch, capacity, c);
                let r = export_batch(&mut sink, &mut batch, c);
                let r = r.and(sink.shutdown(timeout));
                let _ = done.send(r);
                return;
            }
            Err(_) => {}
        }
        // A full batch is already waiting: no sleep. Otherwise sleep until the deadline;
        // `push` (a batch's worth queued), `flush`, `shutdown` and the queue's drop wake
        // the thread sooner, and a wake that comes before the sleep ends it at once.
        let queued = usize::try_from(c.queued.load(Ordering::Acquire)).unwrap_or(0);
        if queued + batch.len() < size {
            std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Spans

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

fn span_stats(c: &Counters) -> SpanStats {
    SpanStats {
        ended: c.pushed.load(Ordering::Relaxed),
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
        span_stats(&self.0)
    }
}

struct SpanSink<E> {
    exporter: Arc<Mutex<E>>,
    /// The longest string attribute value sent, in bytes.
    value_length: Option<usize>,
}

impl<E: SpanExporter + 'static> Export<SpanData> for SpanSink<E> {
    fn export(&mut self, batch: &mut Vec<SpanData>) -> OTelSdkResult {
        let mut spans = std::mem::take(batch);
        if let Some(max) = self.value_length {
            // On the export thread: ending a span costs nothing more for the limit.
            for span in &mut spans {
                limit_span(span, max);
            }
        }
        let exporter = self.exporter.lock().unwrap_or_else(|p| p.into_inner());
        futures_executor::block_on(exporter.export(spans))
    }

    fn shutdown(&mut self, timeout: Duration) -> OTelSdkResult {
        self.exporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shutdown_with_timeout(timeout)
    }
}

/// A batch span processor with a bounded queue: spans that do not fit are dropped and
/// counted, never waited for; a thread exports batches of up to 512 spans every 5
/// seconds by default (or sooner when a batch is full).
#[derive(Debug)]
pub struct BoundedSpanProcessor<E: SpanExporter + 'static> {
    queue: ExportQueue<SpanData>,
    exporter: Arc<Mutex<E>>,
}

impl<E: SpanExporter + 'static> BoundedSpanProcessor<E> {
    /// A processor exporting through `exporter`, with room for `capacity` spans.
    pub fn new(exporter: E, capacity: usize) -> std::io::Result<BoundedSpanProcessor<E>> {
        BoundedSpanProcessor::with_batch(exporter, queue_of(BatchSettings::spans(), capacity))
    }

    /// A processor exporting through `exporter`, its queue and batches as `batch` says.
    pub fn with_batch(
        exporter: E,
        batch: BatchSettings,
    ) -> std::io::Result<BoundedSpanProcessor<E>> {
        BoundedSpanProcessor::with_limits(exporter, batch, None)
    }

    /// [`BoundedSpanProcessor::with_batch`], cutting string attribute values (of spans,
    /// their events and their links) longer than `value_length` bytes on a UTF-8
    /// character boundary, on the export thread.
    pub fn with_limits(
        exporter: E,
        batch: BatchSettings,
        value_length: Option<usize>,
    ) -> std::io::Result<BoundedSpanProcessor<E>> {
        let exporter = Arc::new(Mutex::new(exporter));
        let sink = SpanSink {
            exporter: exporter.clone(),
            value_length,
        };
        let queue = ExportQueue::start("piko-obs-spans", batch, sink)?;
        Ok(BoundedSpanProcessor { queue, exporter })
    }

    /// The counters.
    pub fn stats(&self) -> SpanStats {
        span_stats(&self.queue.counters)
    }

    /// A handle reading the counters later.
    pub fn stats_handle(&self) -> SpanStatsHandle {
        SpanStatsHandle(self.queue.counters.clone())
    }
}

impl<E: SpanExporter + 'static> SpanProcessor for BoundedSpanProcessor<E> {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.queue.push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.queue.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.queue.shutdown(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.exporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_resource(resource);
    }
}

// ---------------------------------------------------------------------------------------
// Log records

/// Counters of the log-record pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogStats {
    /// Log records handed to the processor.
    pub emitted: u64,
    /// Log records the collector accepted.
    pub exported: u64,
    /// Log records that did not fit in the queue (or came after shutdown).
    pub dropped: u64,
    /// Log records in exports that failed.
    pub failed: u64,
}

fn log_stats(c: &Counters) -> LogStats {
    LogStats {
        emitted: c.pushed.load(Ordering::Relaxed),
        exported: c.exported.load(Ordering::Relaxed),
        dropped: c.dropped.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
    }
}

/// Reads a [`BoundedLogProcessor`]'s counters after the processor has moved into its
/// provider.
#[derive(Debug, Clone)]
pub struct LogStatsHandle(Arc<Counters>);

impl LogStatsHandle {
    /// The counters.
    pub fn stats(&self) -> LogStats {
        log_stats(&self.0)
    }
}

/// A queued log record, in the queue's slot itself: a box would be freed on the export
/// thread, and with glibc's allocator that costs the logging thread a contended lock
/// on its next allocation (`cargo xtask bench otlp`). A slot is about
/// [`LOG_ITEM_BYTES`] bytes.
type LogItem = (SdkLogRecord, InstrumentationScope);

struct LogSink<E> {
    exporter: Arc<Mutex<E>>,
    limits: AttributeLimits,
    /// Makes the blank records a record past the limits is copied into (the SDK's
    /// records cannot lose attributes in place); a provider with no processor.
    blank: opentelemetry_sdk::logs::SdkLogger,
}

impl<E: LogExporter + 'static> Export<LogItem> for LogSink<E> {
    fn export(&mut self, batch: &mut Vec<LogItem>) -> OTelSdkResult {
        // On the export thread: emitting a record costs nothing more for the limits
        // (the default count, 128, applies too).
        for (record, _) in batch.iter_mut() {
            if let Some(limited) = limit_log_record(record, self.limits, &self.blank) {
                *record = limited;
            }
        }
        let result = {
            let records: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                batch.iter().map(|b| (&b.0, &b.1)).collect();
            let exporter = self.exporter.lock().unwrap_or_else(|p| p.into_inner());
            futures_executor::block_on(exporter.export(LogBatch::new(&records)))
        };
        batch.clear();
        result
    }

    fn shutdown(&mut self, timeout: Duration) -> OTelSdkResult {
        self.exporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shutdown_with_timeout(timeout)
    }
}

/// A batch log-record processor with a bounded queue, in place of the SDK's
/// `BatchLogProcessor` (which drops and loses records without a count): `emit` never
/// waits, a record that does not fit is dropped and counted; a thread exports batches
/// of up to 512 records every second (or sooner when a batch is full), counting them
/// as exported or failed.
#[derive(Debug)]
pub struct BoundedLogProcessor<E: LogExporter + 'static> {
    queue: ExportQueue<LogItem>,
    exporter: Arc<Mutex<E>>,
}

impl<E: LogExporter + 'static> BoundedLogProcessor<E> {
    /// A processor exporting through `exporter`, with room for `capacity` records.
    pub fn new(exporter: E, capacity: usize) -> std::io::Result<BoundedLogProcessor<E>> {
        BoundedLogProcessor::with_batch(exporter, queue_of(BatchSettings::default(), capacity))
    }

    /// A processor exporting through `exporter`, its queue and batches as `batch` says.
    pub fn with_batch(
        exporter: E,
        batch: BatchSettings,
    ) -> std::io::Result<BoundedLogProcessor<E>> {
        BoundedLogProcessor::with_limits(exporter, batch, AttributeLimits::default())
    }

    /// [`BoundedLogProcessor::with_batch`], keeping at most `limits.count` attributes of
    /// a record (the first ones) and cutting string values longer than
    /// `limits.value_length` bytes on a UTF-8 character boundary, on the export thread.
    pub fn with_limits(
        exporter: E,
        batch: BatchSettings,
        limits: AttributeLimits,
    ) -> std::io::Result<BoundedLogProcessor<E>> {
        use opentelemetry::logs::LoggerProvider as _;
        let exporter = Arc::new(Mutex::new(exporter));
        let sink = LogSink {
            exporter: exporter.clone(),
            limits,
            blank: SdkLoggerProvider::builder().build().logger("piko-obs"),
        };
        let queue = ExportQueue::start("piko-obs-logs", batch, sink)?;
        Ok(BoundedLogProcessor { queue, exporter })
    }

    /// The counters.
    pub fn stats(&self) -> LogStats {
        log_stats(&self.queue.counters)
    }

    /// A handle reading the counters later.
    pub fn stats_handle(&self) -> LogStatsHandle {
        LogStatsHandle(self.queue.counters.clone())
    }
}

impl<E: LogExporter + 'static> LogProcessor for BoundedLogProcessor<E> {
    fn emit(&self, record: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        self.queue.push((record.clone(), instrumentation.clone()));
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.queue.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.queue.shutdown(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.exporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_resource(resource);
    }
}

// ---------------------------------------------------------------------------------------
// Attribute limits

/// `text` cut to at most `max` bytes on a UTF-8 character boundary, when it is longer.
fn cut(text: &str, max: usize) -> Option<&str> {
    if text.len() <= max {
        return None;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(&text[..end])
}

/// Cuts a string value, or each string of an array, to `max` bytes.
fn limit_value(value: &mut opentelemetry::Value, max: usize) {
    use opentelemetry::{Array, StringValue, Value};
    match value {
        Value::String(s) => {
            if let Some(short) = cut(s.as_str(), max) {
                *s = StringValue::from(short.to_string());
            }
        }
        Value::Array(Array::String(list)) => {
            for s in list {
                if let Some(short) = cut(s.as_str(), max) {
                    *s = StringValue::from(short.to_string());
                }
            }
        }
        _ => {}
    }
}

/// Cuts the string attribute values of a span, its events and its links to `max`
/// bytes.
fn limit_span(span: &mut SpanData, max: usize) {
    let events = span.events.events.iter_mut().map(|e| &mut e.attributes);
    let links = span.links.links.iter_mut().map(|l| &mut l.attributes);
    for attributes in std::iter::once(&mut span.attributes)
        .chain(events)
        .chain(links)
    {
        for kv in attributes {
            limit_value(&mut kv.value, max);
        }
    }
}

/// Cuts the strings of a log attribute's value (at any depth) to `max` bytes; whether
/// it changed anything.
fn limit_any(value: &mut opentelemetry::logs::AnyValue, max: usize) -> bool {
    use opentelemetry::logs::AnyValue;
    match value {
        AnyValue::String(s) => match cut(s.as_str(), max) {
            Some(short) => {
                *s = opentelemetry::StringValue::from(short.to_string());
                true
            }
            None => false,
        },
        AnyValue::ListAny(list) => list.iter_mut().fold(false, |c, v| limit_any(v, max) | c),
        AnyValue::Map(map) => map.values_mut().fold(false, |c, v| limit_any(v, max) | c),
        _ => false,
    }
}

/// Whether a log attribute's value has a string longer than `max` bytes.
fn too_long(value: &opentelemetry::logs::AnyValue, max: usize) -> bool {
    use opentelemetry::logs::AnyValue;
    match value {
        AnyValue::String(s) => s.as_str().len() > max,
        AnyValue::ListAny(list) => list.iter().any(|v| too_long(v, max)),
        AnyValue::Map(map) => map.values().any(|v| too_long(v, max)),
        _ => false,
    }
}

/// A copy of `record` within `limits` (its first `count` attributes, strings cut to the
/// value length), made from a blank record of `blank`; `None` when it is within them.
fn limit_log_record(
    record: &SdkLogRecord,
    limits: AttributeLimits,
    blank: &opentelemetry_sdk::logs::SdkLogger,
) -> Option<SdkLogRecord> {
    use opentelemetry::logs::{LogRecord as _, Logger as _};
    let count = record.attributes_iter().count();
    let long = limits
        .value_length
        .is_some_and(|max| record.attributes_iter().any(|(_, v)| too_long(v, max)));
    if count <= limits.count && !long {
        return None;
    }
    let mut r = blank.create_log_record();
    if let Some(name) = record.event_name() {
        r.set_event_name(name);
    }
    if let Some(target) = record.target() {
        r.set_target(target.clone());
    }
    if let Some(t) = record.timestamp() {
        r.set_timestamp(t);
    }
    if let Some(t) = record.observed_timestamp() {
        r.set_observed_timestamp(t);
    }
    if let Some(tc) = record.trace_context() {
        r.set_trace_context(tc.trace_id, tc.span_id, tc.trace_flags);
    }
    if let Some(text) = record.severity_text() {
        r.set_severity_text(text);
    }
    if let Some(n) = record.severity_number() {
        r.set_severity_number(n);
    }
    if let Some(body) = record.body() {
        r.set_body(body.clone());
    }
    for (key, value) in record.attributes_iter().take(limits.count) {
        let mut value = value.clone();
        if let Some(max) = limits.value_length {
            limit_any(&mut value, max);
        }
        r.add_attribute(key.clone(), value);
    }
    Some(r)
}

// ---------------------------------------------------------------------------------------
// The pipeline

/// The three providers, and the span and log-record counters.
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
    /// The log-record processor's counters.
    pub logs: LogStatsHandle,
}

/// The span queue's capacity.
pub const SPAN_QUEUE: usize = 2048;

/// The size of one slot of the log-record queue, in bytes.
pub const LOG_ITEM_BYTES: usize = std::mem::size_of::<LogItem>();

/// The log-record queue's capacity.
pub const LOG_QUEUE: usize = 2048;

fn sampler(settings: &Settings) -> Result<Sampler, StartError> {
    let root = |r: &ParentRoot| match r {
        ParentRoot::AlwaysOn => Ok(Sampler::AlwaysOn),
        ParentRoot::AlwaysOff => Ok(Sampler::AlwaysOff),
        ParentRoot::Ratio(x) => Ok(Sampler::TraceIdRatioBased(*x)),
        ParentRoot::JaegerRemote(j) => jaeger_remote(settings, j),
    };
    Ok(match &settings.sampling {
        Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::AlwaysOff => Sampler::AlwaysOff,
        Sampling::Ratio(x) => Sampler::TraceIdRatioBased(*x),
        Sampling::ParentBased(r) => Sampler::ParentBased(Box::new(root(r)?)),
        Sampling::JaegerRemote(j) => jaeger_remote(settings, j)?,
    })
}

/// The SDK's Jaeger remote sampler, polling `j.endpoint` for the service's strategy on
/// the tokio runtime the pipeline starts on, over https with the traces' TLS settings.
fn jaeger_remote(settings: &Settings, j: &JaegerRemote) -> Result<Sampler, StartError> {
    let refused = |reason: String| StartError::Exporter {
        signal: "traces",
        reason: format!("Jaeger remote sampler: {reason}"),
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(refused(
            "no tokio runtime to poll the sampling endpoint on; start the pipeline inside one"
                .into(),
        ));
    }
    // No redirects, bounded waits: a strategy fetch that hangs holds nothing up (the
    // sampler keeps its last strategy), but must not pile up connections.
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(&settings.traces)?)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(settings.traces.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StartError::Tls(e.without_url().to_string()))?;
    let service = settings
        .resource
        .get("service.name")
        .cloned()
        .unwrap_or_else(|| "unknown_service".into());
    Sampler::jaeger_remote(
        opentelemetry_sdk::runtime::Tokio,
        client,
        Sampler::TraceIdRatioBased(j.initial_sampling_rate),
        service,
    )
    .with_endpoint(j.endpoint.clone())
    .with_update_interval(j.polling_interval)
    .build()
    .map_err(|e| refused(e.to_string()))
}

/// The SDK's span limits for `limits` (the value length is applied by the span
/// processor, as the SDK has none).
fn span_limits(limits: &SpanLimits) -> opentelemetry_sdk::trace::SpanLimits {
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    opentelemetry_sdk::trace::SpanLimits {
        max_attributes_per_span: n(limits.attributes.count),
        max_events_per_span: n(limits.events),
        max_links_per_span: n(limits.links),
        max_attributes_per_event: n(limits.event_attributes),
        max_attributes_per_link: n(limits.link_attributes),
    }
}

fn temporality(t: Temporality) -> opentelemetry_sdk::metrics::Temporality {
    match t {
        Temporality::Cumulative => opentelemetry_sdk::metrics::Temporality::Cumulative,
        Temporality::Delta => opentelemetry_sdk::metrics::Temporality::Delta,
        Temporality::LowMemory => opentelemetry_sdk::metrics::Temporality::LowMemory,
    }
}

/// One view for every histogram: a histogram of `buckets` (its Prometheus name, as the
/// `metrics` macros record it, and its bounds) goes out under its convention name with
/// those buckets; any other histogram with `default` (nothing for explicit buckets: the
/// SDK's defaults, or the instrument's advice). One view, so that no histogram matches
/// two and goes out twice.
fn histogram_view(
    buckets: &[(String, Vec<f64>)],
    default: HistogramAggregation,
) -> impl Fn(&opentelemetry_sdk::metrics::Instrument) -> Option<opentelemetry_sdk::metrics::Stream>
+ Send
+ Sync
+ 'static {
    use opentelemetry_sdk::metrics::{Aggregation, InstrumentKind, Stream};
    let declared: HashMap<String, Vec<f64>> = buckets
        .iter()
        .map(|(name, bounds)| {
            let (otel, _) =
                crate::otel_name(name, crate::metrics_bridge::InstrumentKind::Histogram);
            (otel.to_string(), bounds.clone())
        })
        .collect();
    move |i: &opentelemetry_sdk::metrics::Instrument| {
        let aggregation = match declared.get(i.name()) {
            Some(bounds) => Aggregation::ExplicitBucketHistogram {
                boundaries: bounds.clone(),
                record_min_max: true,
            },
            None if i.kind() == InstrumentKind::Histogram
                && default == HistogramAggregation::Base2Exponential =>
            {
                // The specification's defaults for the exponential histogram.
                Aggregation::Base2ExponentialHistogram {
                    max_size: 160,
                    max_scale: 20,
                    record_min_max: true,
                }
            }
            None => return None,
        };
        Stream::builder().with_aggregation(aggregation).build().ok()
    }
}

/// The propagator `propagators` name, composed in order (none: one that carries
/// nothing).
pub fn text_map_propagator(
    propagators: &[Propagator],
) -> opentelemetry::propagation::TextMapCompositePropagator {
    let list: Vec<Box<dyn opentelemetry::propagation::TextMapPropagator + Send + Sync>> =
        propagators
            .iter()
            .map(
                |p| -> Box<dyn opentelemetry::propagation::TextMapPropagator + Send + Sync> {
                    match p {
                        Propagator::TraceContext => {
                            Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new())
                        }
                        Propagator::Baggage => {
                            Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new())
                        }
                        Propagator::XRay => {
                            Box::new(opentelemetry_aws::trace::XrayPropagator::new())
                        }
                        Propagator::B3 => Box::new(crate::B3Propagator::single_header()),
                        Propagator::B3Multi => Box::new(crate::B3Propagator::multiple_headers()),
                        Propagator::Jaeger => Box::new(crate::JaegerPropagator::new()),
                        Propagator::OtTrace => Box::new(crate::OtTracePropagator::new()),
                    }
                },
            )
            .collect();
    opentelemetry::propagation::TextMapCompositePropagator::new(list)
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

/// How the exporters reach the collector, set up once for the three signals: the TLS
/// configuration for gRPC (the system's roots looked up once), or one HTTP client.
enum Transport {
    /// gRPC, with TLS for an `https` endpoint.
    Grpc(Option<tonic::transport::ClientTlsConfig>),
    /// HTTP/protobuf, through one client the three exporters share.
    Http(reqwest::blocking::Client),
}

impl Transport {
    fn new(settings: &SignalSettings) -> Result<Transport, StartError> {
        let https = settings.url.starts_with("https://");
        Ok(match settings.protocol {
            Protocol::Grpc if https => Transport::Grpc(Some(tonic_tls(settings)?)),
            Protocol::Grpc => Transport::Grpc(None),
            Protocol::HttpProtobuf | Protocol::HttpJson => Transport::Http(http_client(settings)?),
        })
    }
}

fn tonic_tls(settings: &SignalSettings) -> Result<tonic::transport::ClientTlsConfig, StartError> {
    // tonic refuses to start when asked for the system's roots and the system has none
    // (a distroless image): they are asked for only when there are some, so a CA file
    // alone is enough there, as it is over HTTP.
    let mut tls = tonic::transport::ClientTlsConfig::new();
    let pem = &settings.pem;
    if !rustls_native_certs::load_native_certs().certs.is_empty() {
        tls = tls.with_native_roots();
    } else if pem.ca.is_none() {
        return Err(StartError::Tls(
            "this system has no trusted root certificates; give the collector's CA with \
             OtlpConfig.tls.ca_file or OTEL_EXPORTER_OTLP_CERTIFICATE"
                .into(),
        ));
    }
    if let Some(ca) = &pem.ca {
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(ca));
    }
    if let Some((cert, key)) = &pem.identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    Ok(tls)
}

/// The bound on connecting to the collector over HTTP (the export's own bound when that
/// is shorter), as the Sentry and provider clients have.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn http_client(settings: &SignalSettings) -> Result<reqwest::blocking::Client, StartError> {
    // No redirects: a redirect would carry the headers (vendor API keys such as
    // `x-honeycomb-team` or `dd-api-key`, which reqwest does not strip) to another host,
    // or from https to http. An unreachable collector costs at most the connect bound.
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls_config(settings)?)
        .connect_timeout(settings.timeout.min(CONNECT_TIMEOUT))
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StartError::Tls(e.without_url().to_string()))
}

/// The TLS settings of `settings`: the system's roots, its CA and its client identity.
fn tls_config(settings: &SignalSettings) -> Result<rustls::ClientConfig, StartError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let pem = &settings.pem;
    let ca_name = || {
        settings
            .tls
            .ca_file
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    };
    if let Some(ca) = &pem.ca {
        for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
            let cert = cert.map_err(|e| StartError::Tls(format!("{}: {e}", ca_name())))?;
            roots
                .add(cert)
                .map_err(|e| StartError::Tls(format!("{}: {e}", ca_name())))?;
        }
    }
    let builder = builder.with_root_certificates(roots);
    let config = match &pem.identity {
        Some((cert, key)) => {
            let certs = rustls_pemfile::certs(&mut cert.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StartError::Tls(format!("client certificate: {e}")))?;
            // Checked when the settings resolved; a parse error could quote the key.
            let key = rustls_pemfile::private_key(&mut key.as_slice())
                .ok()
                .flatten()
                .ok_or_else(|| StartError::Tls("the client key holds no private key".into()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| StartError::Tls(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// The headers as gRPC metadata; one tonic refuses (a `-bin` name, which gRPC keeps
/// for binary values) is an error, not dropped.
fn metadata(settings: &SignalSettings) -> Result<tonic::metadata::MetadataMap, StartError> {
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

/// The resolved headers, put on every HTTP export last, over any the exporter took from
/// the environment itself (it applies `OTEL_EXPORTER_OTLP_*HEADERS` after the headers
/// it is given): so code wins per header name, as the settings resolved. `Debug` shows
/// the names only.
///
/// It also sends the body as the settings say: the exporter reads
/// `OTEL_EXPORTER_OTLP_*COMPRESSION` itself and has no setting for "none", so with
/// compression off in code and `gzip` in the variable it hands over a gzip body, which
/// is sent inflated (`uncompressed`).
struct HeadersLast {
    client: reqwest::blocking::Client,
    headers: http::HeaderMap,
    /// Compression is off: a gzip body from the exporter is sent inflated.
    uncompressed: bool,
}

impl std::fmt::Debug for HeadersLast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadersLast")
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl opentelemetry_http::HttpClient for HeadersLast {
    fn send_bytes<'a, 'b>(
        &'a self,
        mut request: http::Request<opentelemetry_http::Bytes>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<
                        http::Response<opentelemetry_http::Bytes>,
                        opentelemetry_http::HttpError,
                    >,
                > + Send
                + 'b,
        >,
    >
    where
        'a: 'b,
        Self: 'b,
    {
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        if self.uncompressed
            && request
                .headers()
                .get(http::header::CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
        {
            use std::io::Read as _;
            let mut body = Vec::new();
            // The exporter's own gzip output: it inflates; if not, it is sent as it is.
            if flate2::read::GzDecoder::new(request.body().as_ref())
                .read_to_end(&mut body)
                .is_ok()
            {
                request.headers_mut().remove(http::header::CONTENT_ENCODING);
                *request.body_mut() = opentelemetry_http::Bytes::from(body);
            }
        }
        opentelemetry_http::HttpClient::send_bytes(&self.client, request)
    }
}

/// The resolved headers as an HTTP header map (checked when the settings resolved).
fn header_map(settings: &SignalSettings) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in &settings.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            map.insert(name, value);
        }
    }
    map
}

/// Puts the resolved metadata on every gRPC export last, over what the exporter took
/// from the environment itself: code wins per header name.
fn metadata_last(
    metadata: tonic::metadata::MetadataMap,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut request: tonic::Request<()>| {
        for entry in metadata.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = entry {
                request.metadata_mut().insert(k.clone(), v.clone());
            }
        }
        Ok(request)
    }
}

macro_rules! exporter {
    ($signal_settings:expr, $timeout:expr, $builder:expr, $signal:literal) => {{
        let s: &SignalSettings = $signal_settings;
        let exporter_err = |e: opentelemetry_otlp::ExporterBuildError| StartError::Exporter {
            signal: $signal,
            reason: e.to_string(),
        };
        let timeout: Duration = $timeout;
        match Transport::new(s)? {
            Transport::Grpc(tls) => {
                let metadata = metadata(s)?;
                let mut b = $builder
                    .with_tonic()
                    .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                    .with_endpoint(s.url.clone())
                    .with_timeout(timeout)
                    .with_interceptor(metadata_last(metadata));
                if let Some(tls) = tls {
                    b = b.with_tls_config(tls);
                }
                if s.compression == Compression::Gzip {
                    b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                }
                b.build().map_err(exporter_err)?
            }
            Transport::Http(client) => {
                let headers: HashMap<String, String> = s.headers.clone().into_iter().collect();
                let protocol = match s.protocol {
                    Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
                    _ => opentelemetry_otlp::Protocol::HttpBinary,
                };
                let mut b = $builder
                    .with_http()
                    .with_protocol(protocol)
                    .with_endpoint(s.url.clone())
                    .with_timeout(timeout)
                    .with_headers(headers)
                    .with_http_client(HeadersLast {
                        client,
                        headers: header_map(s),
                        uncompressed: s.compression == Compression::None,
                    });
                if s.compression == Compression::Gzip {
                    b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                }
                b.build().map_err(exporter_err)?
            }
        }
    }};
}

/// The exporters one signal's settings list ([`Exporters`]): OTLP, built as
/// [`exporter!`] does, when the signal goes over OTLP; `$console` when its
/// `OTEL_<SIGNAL>_EXPORTER` lists `console`.
macro_rules! exporters {
    ($signal_settings:expr, $timeout:expr, $builder:expr, $console:expr, $signal:literal) => {{
        let s: &SignalSettings = $signal_settings;
        let otlp = if s.enabled {
            Some(exporter!(s, $timeout, $builder, $signal))
        } else {
            None
        };
        Exporters::new(otlp, s.console.then(|| $console))
    }};
}

impl Pipeline {
    /// Builds the exporters and the providers. Call it inside a tokio runtime (the gRPC
    /// exporters run their connections on it); it must outlive [`Pipeline::shutdown`].
    pub fn start(settings: &Settings) -> Result<Pipeline, StartError> {
        Pipeline::start_with_buckets(settings, &[])
    }

    /// [`Pipeline::start`], with a view for each histogram of `buckets` (its Prometheus
    /// name, as the `metrics` macros record it, and its bucket bounds in its unit): over
    /// OTLP it goes out, under its convention name ([`crate::otel_name`]), with these
    /// buckets instead of the SDK's default ones (`[0, 5, 10, ... 10000]`, which would
    /// put every request in seconds in the first bucket).
    pub fn start_with_buckets(
        settings: &Settings,
        buckets: &[(String, Vec<f64>)],
    ) -> Result<Pipeline, StartError> {
        let resource = resource(settings);
        let mut tracer_provider = SdkTracerProvider::builder()
            .with_sampler(sampler(settings)?)
            .with_span_limits(span_limits(&settings.span_limits))
            .with_resource(resource.clone());
        // A signal turned off (`OTEL_<SIGNAL>_EXPORTER=none`) has a provider with no
        // exporter: what is recorded goes nowhere, and nothing is counted as dropped.
        let mut span_stats = SpanStatsHandle(Arc::new(Counters::default()));
        // A signal listed as `console` has the console exporter, behind the same
        // bounded processor (or periodic reader) as OTLP, beside it when both are listed.
        if settings.traces.enabled || settings.traces.console {
            let exporters = exporters!(
                &settings.traces,
                settings
                    .traces
                    .timeout
                    .min(settings.span_batch.export_timeout),
                opentelemetry_otlp::SpanExporter::builder(),
                opentelemetry_stdout::SpanExporter::default(),
                "traces"
            );
            let processor = BoundedSpanProcessor::with_limits(
                exporters,
                settings.span_batch,
                settings.span_limits.attributes.value_length,
            )
            .map_err(StartError::Thread)?;
            span_stats = processor.stats_handle();
            tracer_provider = tracer_provider.with_span_processor(processor);
        }
        let mut meter_provider = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_view(histogram_view(
                buckets,
                settings.metric.histogram_aggregation,
            ));
        if settings.metrics.enabled || settings.metrics.console {
            let exporters = exporters!(
                &settings.metrics,
                settings.metrics.timeout.min(settings.metric_export_timeout),
                opentelemetry_otlp::MetricExporter::builder()
                    .with_temporality(temporality(settings.metric.temporality)),
                opentelemetry_stdout::MetricExporter::builder()
                    .with_temporality(temporality(settings.metric.temporality))
                    .build(),
                "metrics"
            );
            let reader = PeriodicReader::builder(exporters)
                .with_interval(settings.metric_interval)
                .build();
            meter_provider = meter_provider.with_reader(reader);
        }
        let mut logger_provider = SdkLoggerProvider::builder().with_resource(resource);
        let mut log_stats = LogStatsHandle(Arc::new(Counters::default()));
        if settings.logs.enabled || settings.logs.console {
            let exporters = exporters!(
                &settings.logs,
                settings.logs.timeout.min(settings.log_batch.export_timeout),
                opentelemetry_otlp::LogExporter::builder(),
                opentelemetry_stdout::LogExporter::default(),
                "logs"
            );
            let processor = BoundedLogProcessor::with_limits(
                exporters,
                settings.log_batch,
                settings.log_record_limits,
            )
            .map_err(StartError::Thread)?;
            log_stats = processor.stats_handle();
            logger_provider = logger_provider.with_log_processor(processor);
        }
        Ok(Pipeline {
            tracer_provider: tracer_provider.build(),
            meter_provider: meter_provider.build(),
            logger_provider: logger_provider.build(),
            spans: span_stats,
            logs: log_stats,
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
        let deadline = Instant::now() + timeout.min(LONGEST_WAIT);
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
        let ok = metadata(&settings(&[("authorization", "Bearer s3cret")]).traces).unwrap();
        assert_eq!(ok.get("authorization").unwrap(), "Bearer s3cret");
        for (name, value) in [("x-token-bin", "s3cret"), ("grpc-x-bin", "s3cret")] {
            let err = metadata(&settings(&[(name, value)]).traces).unwrap_err();
            let text = err.to_string();
            assert!(matches!(&err, StartError::GrpcHeader { name: n, .. } if n == name));
            assert!(
                text.contains(name) && text.contains("http/protobuf"),
                "{text}"
            );
            assert!(!text.contains("s3cr"), "{text}");
        }
    }

    /// Values are cut to at most the limit in bytes, never inside a character.
    #[test]
    fn values_are_cut_on_a_character_boundary() {
        assert_eq!(cut("héllo", 2), Some("h"), "é is two bytes: not split");
        assert_eq!(cut("héllo", 3), Some("hé"));
        assert_eq!(cut("héllo", 6), None, "six bytes fit");
        assert_eq!(cut("日本", 2), Some(""));
        assert_eq!(cut("", 0), None);
        let mut v = opentelemetry::Value::from("abcdef");
        limit_value(&mut v, 4);
        assert_eq!(v.as_str(), "abcd");
        let mut any = opentelemetry::logs::AnyValue::ListAny(Box::new(vec![
            opentelemetry::logs::AnyValue::from("ünïcode"),
            opentelemetry::logs::AnyValue::from(7),
        ]));
        assert!(too_long(&any, 5));
        assert!(limit_any(&mut any, 5));
        assert!(!too_long(&any, 5));
        assert_eq!(
            any,
            opentelemetry::logs::AnyValue::ListAny(Box::new(vec![
                opentelemetry::logs::AnyValue::from("ünï"),
                opentelemetry::logs::AnyValue::from(7),
            ]))
        );
    }

    /// Reports each batch's size on a channel.
    struct Report(SyncSender<usize>);

    impl Export<u32> for Report {
        fn export(&mut self, batch: &mut Vec<u32>) -> OTelSdkResult {
            let _ = self.0.send(batch.len());
            batch.clear();
            Ok(())
        }
        fn shutdown(&mut self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    fn queue() -> (ExportQueue<u32>, Receiver<usize>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let batch = BatchSettings {
            max_queue_size: 4 * BATCH,
            ..BatchSettings::default()
        };
        let q = ExportQueue::start("test-export", batch, Report(tx)).expect("thread");
        (q, rx)
    }

    /// The thread sleeps through single pushes, but a full batch, a flush and the
    /// queue's drop each wake it at once, well before the one-second deadline.
    #[test]
    fn the_export_thread_wakes_for_a_full_batch_a_flush_and_the_drop() {
        let soon = DELAY / 2;
        let (q, rx) = queue();
        for i in 0..BATCH as u32 {
            q.push(i);
        }
        assert_eq!(rx.recv_timeout(soon), Ok(BATCH), "a full batch");

        q.push(1);
        q.push(2);
        q.flush().expect("flush");
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(2), "flushed");

        q.push(3);
        let counters = q.counters.clone();
        drop(q);
        assert_eq!(rx.recv_timeout(soon), Ok(1), "exported when dropped");
        // The batch is reported from inside the export, and counted just after it.
        let counted = Instant::now() + soon;
        while counters.exported.load(Ordering::Relaxed) < BATCH as u64 + 3
            && Instant::now() < counted
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(counters.exported.load(Ordering::Relaxed), BATCH as u64 + 3);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    }

    /// The batch size and the delay come from the settings (`OTEL_BSP_*`,
    /// `OTEL_BLRP_*`): full batches of 3 go at once, the rest at the 200 ms deadline,
    /// well before the default second.
    #[test]
    fn the_batch_size_and_delay_are_the_settings() {
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let batch = BatchSettings {
            schedule_delay: Duration::from_millis(200),
            max_queue_size: 16,
            max_export_batch_size: 3,
            ..BatchSettings::default()
        };
        let q = ExportQueue::start("test-export", batch, Report(tx)).expect("thread");
        let start = Instant::now();
        for i in 0..7 {
            q.push(i);
        }
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < 7 {
            match rx.recv_timeout(DELAY) {
                Ok(n) => sizes.push(n),
                Err(e) => panic!("{e:?} after {sizes:?}"),
            }
        }
        assert!(sizes.iter().all(|n| *n <= 3), "{sizes:?}");
        assert!(start.elapsed() < DELAY, "{:?}", start.elapsed());
        drop(q);
    }

    /// A few items and nothing else: exported at the deadline, not item by item.
    #[test]
    fn a_partial_batch_waits_for_the_deadline() {
        let (q, rx) = queue();
        let start = Instant::now();
        for i in 0..5 {
            q.push(i);
        }
        assert_eq!(rx.recv_timeout(DELAY * 3), Ok(5), "one batch of five");
        assert!(start.elapsed() >= DELAY / 2, "{:?}", start.elapsed());
        drop(q);
    }
}
