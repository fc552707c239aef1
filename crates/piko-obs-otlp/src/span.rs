//! `run_in_span`: an operation in its own span, with a logger whose lines carry the
//! span's ids.

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use piko_obs_logger::Logger;

use piko_obs_logger::intern::intern;

/// The tracer `run_in_span` starts spans with, when one was given.
static TRACER: ArcSwapOption<SdkTracer> = ArcSwapOption::const_empty();
/// Bumped after each change of [`TRACER`], so that threads know their copy is stale.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of [`TRACER`] and the generation it was taken at, so that
    /// starting a span reads one atomic instead of loading the shared pointer.
    static CACHED: RefCell<(u64, Option<SdkTracer>)> = const { RefCell::new((u64::MAX, None)) };
}

/// Makes `run_in_span` start its spans with `provider`'s `piko-obs` tracer, made once,
/// instead of asking OpenTelemetry's global provider for a boxed tracer on every call.
/// The facade calls it when it installs its provider; `None` goes back to the global one.
/// Each thread keeps a copy of the tracer, taken again after a change; a thread that
/// does not start another span keeps its old copy (and so the provider's shared state,
/// not its exporters, which shutdown closes) until it exits.
pub fn use_tracer_provider(provider: Option<&SdkTracerProvider>) {
    TRACER.store(provider.map(|p| Arc::new(p.tracer("piko-obs"))));
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Starts a span in `parent` with the tracer given to [`use_tracer_provider`] (this
/// thread's copy of it, taken again when stale), or with the global provider's tracer.
pub(crate) fn start(
    parent: &Context,
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
) -> Context {
    start_kind(parent, name, attributes, SpanKind::Internal)
}

/// [`start`], for a span of `kind`.
pub(crate) fn start_kind(
    parent: &Context,
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
    kind: SpanKind,
) -> Context {
    let generation = GENERATION.load(Ordering::Acquire);
    let mut args = Some((name, attributes, kind));
    let started = CACHED
        .try_with(|cell| {
            // A span started while this thread's copy is borrowed (from a span processor,
            // say) falls through to the shared pointer below.
            let mut slot = cell.try_borrow_mut().ok()?;
            if slot.0 != generation {
                *slot = (generation, TRACER.load_full().map(|t| (*t).clone()));
            }
            let tracer = slot.1.as_ref()?;
            let args = args.take()?;
            Some(start_span(tracer, parent, args))
        })
        .ok()
        .flatten();
    if let Some(cx) = started {
        return cx;
    }
    // `args` is still there: it is taken only when the span above was started.
    let args = args.unwrap_or((Cow::Borrowed(""), Vec::new(), SpanKind::Internal));
    match TRACER.load().as_deref() {
        Some(t) => start_span(t, parent, args),
        None => start_span(&opentelemetry::global::tracer("piko-obs"), parent, args),
    }
}

fn start_span<T>(
    tracer: &T,
    parent: &Context,
    (name, attributes, kind): (Cow<'static, str>, Vec<KeyValue>, SpanKind),
) -> Context
where
    T: opentelemetry::trace::Tracer,
    T::Span: Send + Sync + 'static,
{
    let mut builder = tracer.span_builder(name).with_kind(kind);
    if !attributes.is_empty() {
        builder = builder.with_attributes(attributes);
    }
    parent.with_span(builder.start_with_context(tracer, parent))
}

/// An OpenTelemetry attribute, for [`run_in_span`]'s attributes.
pub fn opentelemetry_kv(
    key: impl Into<opentelemetry::Key>,
    value: impl Into<opentelemetry::Value>,
) -> opentelemetry::KeyValue {
    opentelemetry::KeyValue::new(key, value)
}

/// Runs `op` in a new span named `name` (a child of the current span, if any) with
/// `attributes`, through the globally installed tracer.
///
/// - `op` gets `logger` with `trace_id` and `span_id` bound, and each of `attributes`
///   as a field of the same name and type, so every line it writes names the span and
///   carries what the span carries (Piko's fast path dropped the attributes);
/// - the span is current while `op` runs, so log lines exported over OTLP carry its ids;
/// - on `Err`, the error is recorded as an `exception` event, the status is ERROR, and the
///   error is returned unchanged;
/// - on a panic, the span is ended with the panic recorded and status ERROR, and the
///   panic continues.
///
/// The span starts, and `op` is called, when `run_in_span` is called; the future it
/// returns borrows nothing, so it can be awaited later or spawned on another task and
/// the span is still a child of the caller's.
pub fn run_in_span<N, F, Fut, T, E>(
    logger: &Logger,
    name: N,
    attributes: Vec<KeyValue>,
    op: F,
) -> impl Future<Output = Result<T, E>> + use<N, F, Fut, T, E>
where
    N: Into<Cow<'static, str>>,
    F: FnOnce(Logger) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    let (cx, span_logger) =
        Context::map_current(|parent| begin(parent, logger, name.into(), attributes));
    finish(cx, op(span_logger))
}

/// [`run_in_span`] with an explicit parent: the context of an incoming request (from
/// [`crate::warp_trace_context`] or [`crate::extract_context`]), say.
pub fn run_in_span_from<N, F, Fut, T, E>(
    parent: &Context,
    logger: &Logger,
    name: N,
    attributes: Vec<KeyValue>,
    op: F,
) -> impl Future<Output = Result<T, E>> + use<N, F, Fut, T, E>
where
    N: Into<Cow<'static, str>>,
    F: FnOnce(Logger) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    let (cx, span_logger) = begin(parent, logger, name.into(), attributes);
    finish(cx, op(span_logger))
}

/// Starts the span in `parent`, and the logger that names it.
fn begin(
    parent: &Context,
    logger: &Logger,
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
) -> (Context, Logger) {
    // The lines the span's logger writes carry the span's attributes too (a span
    // without attributes costs no extra logger).
    let with_attrs;
    let logger = if attributes.is_empty() {
        logger
    } else {
        with_attrs = with_attributes(logger, &attributes);
        &with_attrs
    };
    let cx = start(parent, name, attributes);
    let span_logger = {
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            logger.with_span_ids(sc.trace_id().to_bytes(), sc.span_id().to_bytes())
        } else {
            logger.clone()
        }
    };
    (cx, span_logger)
}

/// `logger` with each of `attributes` bound as a field of the same name and type (an
/// array as its text). Attribute names are kept for the life of the process, in the
/// bounded set of [`intern`]; past it (more than a thousand distinct names, or a name
/// over 128 bytes), an attribute is bound under `span.attribute` as `name=value`.
fn with_attributes(logger: &Logger, attributes: &[KeyValue]) -> Logger {
    use opentelemetry::Value;
    use piko_obs_logger::attr;
    // Each name looked up once; a value that is not a number or a bool is bound as text.
    let keys: Vec<Option<&'static str>> = attributes
        .iter()
        .map(|kv| intern(kv.key.as_str()))
        .collect();
    let texts: Vec<String> = attributes
        .iter()
        .zip(&keys)
        .map(|(kv, key)| match (key, &kv.value) {
            (Some(_), Value::Bool(_) | Value::I64(_) | Value::F64(_)) => String::new(),
            (Some(_), other) => other.as_str().into_owned(),
            (None, _) => format!("{}={}", kv.key.as_str(), kv.value),
        })
        .collect();
    let attrs: Vec<attr::Attr<'_>> = attributes
        .iter()
        .zip(keys.iter().zip(&texts))
        .map(|(kv, (key, text))| match (key, &kv.value) {
            (Some(key), Value::Bool(b)) => attr::bool(key, *b),
            (Some(key), Value::I64(i)) => attr::int(key, *i),
            (Some(key), Value::F64(f)) => attr::float(key, *f),
            (Some(key), _) => attr::string(key, text),
            (None, _) => attr::string("span.attribute", text),
        })
        .collect();
    logger.with(&attrs)
}

/// Runs `op` with `cx` current, then ends its span with the outcome.
///
/// A panic in `op` unwinds through the poll below, where [`EndOnPanic`] records it and
/// ends the span before the panic goes on, whichever executor catches it (or none).
/// There is no `catch_unwind` and no wrapper future around `op`: a poll is `op`'s own,
/// with the context attached.
async fn finish<Fut, T, E>(cx: Context, op: Fut) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    let mut op = std::pin::pin!(op);
    let outcome = std::future::poll_fn(|task| {
        forget_last_panic();
        let guard = EndOnPanic(&cx);
        let poll = {
            let _current = cx.clone().attach();
            op.as_mut().poll(task)
        };
        std::mem::forget(guard);
        poll
    })
    .await;
    let span = cx.span();
    match outcome {
        Ok(v) => {
            span.end();
            Ok(v)
        }
        Err(e) => {
            span.record_error(&e);
            span.set_status(Status::error(e.to_string()));
            span.end();
            Err(e)
        }
    }
}

thread_local! {
    /// The message of the last panic on this thread, kept by [`note_panic`].
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps the message of a panic for the span it unwinds through, so that the span's
/// `exception` event and status carry it: call it from the panic hook. The facade's
/// `init()` installs a hook that calls it and then the hook that was there before;
/// without it, a panic in `run_in_span` is still recorded and ends the span, with
/// "panic" and no message.
///
/// ```
/// let previous = std::panic::take_hook();
/// std::panic::set_hook(Box::new(move |info| {
///     piko_obs_otlp::note_panic(info);
///     previous(info)
/// }));
/// ```
pub fn note_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a payload that is not text".into());
    let _ = LAST_PANIC.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = Some(msg);
        }
    });
}

/// Forgets the message of an earlier panic on this thread, before a poll: a panic the
/// hook does not see (`resume_unwind`) must not be reported with an older one's.
fn forget_last_panic() {
    let _ = LAST_PANIC.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut()
            && last.is_some()
        {
            *last = None;
        }
    });
}

/// Dropped only while `op` unwinds (it is forgotten after a poll that returns): records
/// the panic as an `exception` event, sets status ERROR and ends the span.
struct EndOnPanic<'a>(&'a Context);

impl Drop for EndOnPanic<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let msg = LAST_PANIC
            .try_with(|last| last.try_borrow().ok().and_then(|m| m.clone()))
            .ok()
            .flatten();
        // A span processor that panics here, during the unwinding, would abort the
        // process: it is caught, and the first panic goes on.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| end_with_panic(self.0, msg)));
    }
}

/// Records a panic (with its message, when the hook kept it) on `cx`'s span, sets status
/// ERROR and ends the span.
fn end_with_panic(cx: &Context, msg: Option<String>) {
    let span = cx.span();
    let mut attributes = vec![KeyValue::new("exception.type", "panic")];
    let status = match msg {
        Some(msg) => {
            let status = format!("panic: {msg}");
            attributes.push(KeyValue::new("exception.message", msg));
            status
        }
        None => "panic".to_string(),
    };
    span.add_event("exception", attributes);
    span.set_status(Status::error(status));
    span.end();
}
