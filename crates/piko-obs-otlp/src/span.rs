//! `run_in_span`: an operation in its own span, with a logger whose lines carry the
//! span's ids.

use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use opentelemetry::trace::{FutureExt as _, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use piko_obs_logger::{Logger, attr};

/// Runs `op` in a new span named `name` (a child of the current span, if any) with
/// `attributes`, through the globally installed tracer.
///
/// - `op` gets `logger` with `trace_id` and `span_id` bound, so every line it writes
///   names the span (whatever its attributes; Piko's fast path dropped them);
/// - the span is current while `op` runs, so log lines exported over OTLP carry its ids;
/// - on `Err`, the error is recorded as an `exception` event, the status is ERROR, and the
///   error is returned unchanged;
/// - on a panic, the span is ended with the panic recorded and status ERROR, and the
///   panic continues.
pub async fn run_in_span<F, Fut, T, E>(
    logger: &Logger,
    name: impl Into<Cow<'static, str>>,
    attributes: Vec<KeyValue>,
    op: F,
) -> Result<T, E>
where
    F: FnOnce(Logger) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    run_in_span_from(&Context::current(), logger, name, attributes, op).await
}

/// [`run_in_span`] with an explicit parent: the context of an incoming request (from
/// [`crate::warp_trace_context`] or [`crate::extract_context`]), say.
pub async fn run_in_span_from<F, Fut, T, E>(
    parent: &Context,
    logger: &Logger,
    name: impl Into<Cow<'static, str>>,
    attributes: Vec<KeyValue>,
    op: F,
) -> Result<T, E>
where
    F: FnOnce(Logger) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    let parent = parent.clone();
    let tracer = opentelemetry::global::tracer("piko-obs");
    let span = tracer
        .span_builder(name)
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent);
    let cx = parent.with_span(span);
    let sc = cx.span().span_context().clone();
    let span_logger = if sc.is_valid() {
        let (trace_id, span_id) = (sc.trace_id().to_string(), sc.span_id().to_string());
        logger.with(&[
            attr::string("trace_id", &trace_id),
            attr::string("span_id", &span_id),
        ])
    } else {
        logger.clone()
    };
    let outcome = AssertUnwindSafe(op(span_logger).with_context(cx.clone()))
        .catch_unwind()
        .await;
    let span = cx.span();
    match outcome {
        Ok(Ok(v)) => {
            span.end();
            Ok(v)
        }
        Ok(Err(e)) => {
            span.record_error(&e);
            span.set_status(Status::error(e.to_string()));
            span.end();
            Err(e)
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            span.add_event(
                "exception",
                vec![
                    KeyValue::new("exception.type", "panic"),
                    KeyValue::new("exception.message", msg.clone()),
                ],
            );
            span.set_status(Status::error(format!("panic: {msg}")));
            span.end();
            std::panic::resume_unwind(panic)
        }
    }
}
