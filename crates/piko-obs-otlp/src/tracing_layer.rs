//! `tracing` as a front end of piko-obs: a `tracing_subscriber::Layer` that composes
//! with the application's own registry (next to `fmt`, `EnvFilter`, ...).

use std::borrow::Cow;
use std::cell::RefCell;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _};
use opentelemetry::{Context, ContextGuard, KeyValue, StringValue, Value};
use piko_obs_logger::attr::{self, keys};
use piko_obs_logger::{Hub, Level, TracingBridge};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Targets whose spans never become OpenTelemetry spans: the HTTP, gRPC and runtime
/// crates the exporters themselves run on (a span for each export would be exported in
/// turn), and OpenTelemetry's own.
pub const UNTRACED_TARGETS: [&str; 8] = [
    "h2",
    "hyper",
    "tonic",
    "tower",
    "reqwest",
    "rustls",
    "tokio",
    "opentelemetry",
];

/// A `tracing_subscriber::Layer` that brings `tracing` into piko-obs:
///
/// - every event is a record of the hub, as [`TracingBridge`] writes it (levels mapped,
///   NOTICE and the other Piko levels through a `piko.level` field, fields typed), with
///   the `trace_id` and `span_id` of the span it was recorded in, so it reaches every
///   output, the ERROR forwarding and Sentry;
/// - every span (`#[instrument]`, `info_span!`) whose logger takes its level becomes an
///   OpenTelemetry span of the tracer `run_in_span` uses, a child of its `tracing` parent
///   or, for a root span, of the OpenTelemetry span current when it was created (a
///   `run_in_span`'s); while it is entered it is the current OpenTelemetry context, so
///   `run_in_span`, the OTLP log output and outgoing requests inside it see it. Parent and
///   child stay linked across `.await` and threads, as `tracing` keeps them.
///
/// The fields `otel.name`, `otel.kind` (`server`, `client`, `producer`, `consumer`,
/// `internal`), `otel.status_code` (`error`, `ok`) and `otel.status_description` set the
/// span's name, kind and status; the other fields are its attributes. Spans of
/// [`UNTRACED_TARGETS`] and spans started while telemetry is suppressed (inside an
/// exporter) are left out. Without an installed tracer provider the spans are
/// OpenTelemetry's no-op ones: nothing is exported and lines carry no ids.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt as _;
/// let hub = piko_obs_logger::Hub::default();
/// let subscriber = tracing_subscriber::registry().with(piko_obs_otlp::TracingLayer::new(hub));
/// tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!("checkout", order_id = 7);
///     let _entered = span.enter();
///     tracing::info!(piko.level = "notice", "order placed");
/// });
/// ```
#[derive(Debug)]
pub struct TracingLayer {
    bridge: TracingBridge,
}

impl TracingLayer {
    /// A layer writing to `hub`, with the bridge's defaults (no rate limit, no floors).
    pub fn new(hub: Hub) -> TracingLayer {
        TracingLayer::with_bridge(TracingBridge::new(hub))
    }

    /// A layer whose events go through `bridge` (with its rate limits, floors and
    /// ceilings).
    pub fn with_bridge(bridge: TracingBridge) -> TracingLayer {
        TracingLayer { bridge }
    }

    /// Whether a span from this call site becomes an OpenTelemetry span.
    fn traces(&self, m: &Metadata<'_>) -> bool {
        !UNTRACED_TARGETS.iter().any(|t| {
            m.target()
                .strip_prefix(t)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        }) && self
            .bridge
            .hub()
            .get_logger(m.target())
            .enabled(Level::from_tracing(m.level()))
    }
}

/// The OpenTelemetry span of a `tracing` span, kept in the span's extensions.
struct OtelSpan(Context);

thread_local! {
    /// The contexts attached on this thread by the spans entered on it, innermost last.
    static ATTACHED: RefCell<Vec<(Id, ContextGuard)>> = const { RefCell::new(Vec::new()) };
}

/// The OpenTelemetry context of the nearest span of `span`'s scope that has one.
fn nearest<S>(span: Option<tracing_subscriber::registry::SpanRef<'_, S>>) -> Option<Context>
where
    S: for<'a> LookupSpan<'a>,
{
    span?
        .scope()
        .find_map(|s| s.extensions().get::<OtelSpan>().map(|o| o.0.clone()))
}

impl<S> Layer<S> for TracingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let m = attrs.metadata();
        if !self.traces(m) || Context::is_current_telemetry_suppressed() {
            return;
        }
        let parent = if attrs.is_root() {
            Context::new()
        } else {
            let tracing_parent = match attrs.parent() {
                Some(p) => ctx.span(p),
                None => ctx.lookup_current(),
            };
            nearest(tracing_parent).unwrap_or_else(Context::current)
        };
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        let name = fields.name.take().unwrap_or(Cow::Borrowed(m.name()));
        let cx = crate::span::start_kind(&parent, name, fields.attributes, fields.kind);
        fields.status.apply(&cx);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(OtelSpan(cx));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let extensions = span.extensions();
        let Some(OtelSpan(cx)) = extensions.get::<OtelSpan>() else {
            return;
        };
        let mut fields = SpanFields::default();
        values.record(&mut fields);
        let otel = cx.span();
        if let Some(name) = fields.name.take() {
            otel.update_name(name);
        }
        otel.set_attributes(fields.attributes);
        fields.status.apply(cx);
    }

    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(OtelSpan(cx)) = span
            .extensions()
            .get::<OtelSpan>()
            .map(|o| OtelSpan(o.0.clone()))
        else {
            return;
        };
        let _ = ATTACHED.try_with(|stack| {
            if let Ok(mut stack) = stack.try_borrow_mut() {
                stack.push((id.clone(), cx.attach()));
            }
        });
    }

    fn on_exit(&self, id: &Id, _ctx: LayerContext<'_, S>) {
        // Taken out of the stack first and dropped after: dropping a guard runs no code
        // of ours, but the stack must not be borrowed if it did.
        let guard = ATTACHED
            .try_with(|stack| {
                let mut stack = stack.try_borrow_mut().ok()?;
                let at = stack.iter().rposition(|(entered, _)| entered == id)?;
                Some(stack.remove(at))
            })
            .ok()
            .flatten();
        drop(guard);
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(OtelSpan(cx)) = span.extensions_mut().remove::<OtelSpan>() {
            cx.span().end();
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        if !self.bridge.takes(event.metadata()) {
            return;
        }
        let cx = nearest(ctx.event_span(event)).unwrap_or_else(Context::current);
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            self.bridge.log_event(event, &[]);
            return;
        }
        let (mut trace, mut span_id) = ([0u8; 32], [0u8; 16]);
        let ids = [
            attr::string(
                keys::TRACE_ID,
                attr::hex(&sc.trace_id().to_bytes(), &mut trace),
            ),
            attr::string(
                keys::SPAN_ID,
                attr::hex(&sc.span_id().to_bytes(), &mut span_id),
            ),
        ];
        // The event's own span is current while it is written, so the OTLP log output
        // gives the record that span's ids, also for an event with an explicit parent.
        let _current = cx.clone().attach();
        self.bridge.log_event(event, &ids);
    }
}

/// A span's status, from `otel.status_code` and `otel.status_description`.
#[derive(Default)]
struct StatusFields {
    code: Option<String>,
    description: Option<String>,
}

impl StatusFields {
    fn apply(&self, cx: &Context) {
        match self.code.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("error") => cx
                .span()
                .set_status(Status::error(self.description.clone().unwrap_or_default())),
            Some("ok") => cx.span().set_status(Status::Ok),
            _ => {}
        }
    }
}

/// A span's fields as OpenTelemetry attributes, and the `otel.*` fields that set its
/// name, kind and status.
struct SpanFields {
    name: Option<Cow<'static, str>>,
    kind: SpanKind,
    status: StatusFields,
    attributes: Vec<KeyValue>,
}

impl Default for SpanFields {
    fn default() -> Self {
        SpanFields {
            name: None,
            kind: SpanKind::Internal,
            status: StatusFields::default(),
            attributes: Vec::new(),
        }
    }
}

impl SpanFields {
    fn push(&mut self, field: &Field, value: Value) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "otel.name" => self.name = Some(Cow::Owned(value.to_string())),
            "otel.kind" => {
                self.kind = match value.to_ascii_lowercase().as_str() {
                    "server" => SpanKind::Server,
                    "client" => SpanKind::Client,
                    "producer" => SpanKind::Producer,
                    "consumer" => SpanKind::Consumer,
                    _ => SpanKind::Internal,
                }
            }
            "otel.status_code" => self.status.code = Some(value.to_string()),
            "otel.status_description" => self.status.description = Some(value.to_string()),
            _ => self.push(field, Value::String(StringValue::from(value.to_string()))),
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(
            field,
            i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::I64),
        );
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::from(value.to_string()));
    }
}
