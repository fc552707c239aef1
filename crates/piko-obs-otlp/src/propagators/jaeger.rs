//! Jaeger's `uber-trace-id` and `uberctx-*` headers (`OTEL_PROPAGATORS=jaeger`).

use std::borrow::Cow;

use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceId};

use super::{
    add_baggage, baggage_items, continue_trace, hex_number, is_debug, is_token, percent_decode,
    percent_encode, remote, span_id_up_to_16,
};

const HEADER: &str = "uber-trace-id";
const BAGGAGE_PREFIX: &str = "uberctx-";
const SAMPLED: u8 = 0x01;
const DEBUG: u8 = 0x02;

/// Jaeger's trace header and baggage, as the
/// [Jaeger client documentation](https://www.jaegertracing.io/docs/1.52/client-libraries/#propagation-format)
/// describes them.
///
/// `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}`:
///
/// - the trace id in 1 to 32 hexadecimal digits and the span id in 1 to 16, shorter
///   ones left-padded with zeros (a 64-bit trace id becomes 128 bits); zero is no id;
/// - the parent span id (deprecated by Jaeger) in 1 to 16 digits, `0` included:
///   checked, then not used, the caller's span id being the parent;
/// - the flags, one byte in one or two hexadecimal digits: `0x01` sampled, `0x02`
///   debug (which means sampled); the others are ignored;
/// - the whole value may be percent-encoded (`…%3A…`), as some clients send it.
///
/// Baggage: one header per item, `uberctx-{key}: {value}`, the value percent-encoded
/// (`+` read as a space); the keys are lower-cased, as HTTP header names are not
/// case-sensitive. Items are added to the context's baggage within its limits.
///
/// A malformed header (a part missing or extra, a bad or zero id, bad flags, a bad
/// escape) is ignored: the context is returned as it came, with the baggage items
/// that are well formed.
///
/// Writing: `{trace-id in 32 digits}:{span-id}:0:{flags}`, flags `1` or `0`, or `3`
/// when the trace was read as debug (from Jaeger or B3), and each baggage item whose
/// key is a header name token as `uberctx-{key}` with its value percent-encoded.
///
/// ```
/// use opentelemetry::baggage::BaggageExt as _;
/// use opentelemetry::propagation::TextMapPropagator as _;
/// use opentelemetry::trace::TraceContextExt as _;
/// use piko_obs_otlp::JaegerPropagator;
/// use std::collections::HashMap;
///
/// let incoming = HashMap::from([
///     ("uber-trace-id".to_string(), "a3ce929d0e0e4736:f067aa0ba902b7:0:1".to_string()),
///     ("uberctx-tenant".to_string(), "acme%20corp".to_string()),
/// ]);
/// let cx = JaegerPropagator::new().extract(&incoming);
/// let caller = cx.span().span_context().clone();
/// assert_eq!(caller.trace_id().to_string(), "0000000000000000a3ce929d0e0e4736");
/// assert_eq!(caller.span_id().to_string(), "00f067aa0ba902b7");
/// assert_eq!(cx.baggage().get("tenant").unwrap().as_str(), "acme corp");
///
/// let mut outgoing = HashMap::new();
/// JaegerPropagator::new().inject_context(&cx, &mut outgoing);
/// assert_eq!(
///     outgoing["uber-trace-id"],
///     "0000000000000000a3ce929d0e0e4736:00f067aa0ba902b7:0:1"
/// );
/// assert_eq!(outgoing["uberctx-tenant"], "acme%20corp");
/// ```
#[derive(Debug)]
pub struct JaegerPropagator {
    fields: [String; 1],
}

impl JaegerPropagator {
    /// The propagator.
    pub fn new() -> JaegerPropagator {
        JaegerPropagator {
            fields: [HEADER.to_string()],
        }
    }
}

impl Default for JaegerPropagator {
    fn default() -> JaegerPropagator {
        JaegerPropagator::new()
    }
}

/// The span context and debug mark of an `uber-trace-id` value.
fn trace_header(value: &str) -> Option<(SpanContext, bool)> {
    let value = if value.contains('%') {
        Cow::Owned(percent_decode(value)?)
    } else {
        Cow::Borrowed(value)
    };
    let mut parts = value.trim().split(':');
    let trace_id = hex_number(parts.next()?, 32).filter(|&n| n != 0)?;
    let span_id = span_id_up_to_16(parts.next()?)?;
    hex_number(parts.next()?, 16)?;
    let flags = u8::try_from(hex_number(parts.next()?, 2)?).ok()?;
    if parts.next().is_some() {
        return None;
    }
    let debug = flags & DEBUG != 0;
    let sampled = flags & SAMPLED != 0 || debug;
    Some((
        remote(
            TraceId::from_bytes(trace_id.to_be_bytes()),
            span_id,
            sampled,
        ),
        debug,
    ))
}

impl TextMapPropagator for JaegerPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            let flags = if is_debug(cx) {
                DEBUG | SAMPLED
            } else if sc.is_sampled() {
                SAMPLED
            } else {
                0
            };
            injector.set(
                HEADER,
                format!("{}:{}:0:{flags:x}", sc.trace_id(), sc.span_id()),
            );
        }
        for (key, (value, _)) in cx.baggage() {
            if is_token(key.as_str()) {
                injector.set(
                    &format!("{BAGGAGE_PREFIX}{}", key.as_str()),
                    percent_encode(value.as_str()),
                );
            }
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let cx = match extractor.get(HEADER).and_then(trace_header) {
            Some((span, debug)) => continue_trace(cx, span, debug),
            None => cx.clone(),
        };
        add_baggage(
            &cx,
            baggage_items(extractor, BAGGAGE_PREFIX, percent_decode),
        )
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagators::headers;
    use std::collections::HashMap;

    /// Trace id, span id, sampled and debug of the context `value` gives.
    fn read(value: &str) -> Option<(String, String, bool, bool)> {
        let cx = JaegerPropagator::new().extract(&headers(&[(HEADER, value)]));
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| {
            (
                sc.trace_id().to_string(),
                sc.span_id().to_string(),
                sc.is_sampled(),
                is_debug(&cx),
            )
        })
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn the_trace_header_in_each_form() {
        let full = |s: bool, d: bool| Some((TRACE.to_string(), SPAN.to_string(), s, d));
        assert_eq!(read(&format!("{TRACE}:{SPAN}:0:1")), full(true, false));
        assert_eq!(read(&format!("{TRACE}:{SPAN}:0:0")), full(false, false));
        assert_eq!(read(&format!("{TRACE}:{SPAN}:0:01")), full(true, false));
        assert_eq!(read(&format!("{TRACE}:{SPAN}:0:2")), full(true, true));
        assert_eq!(read(&format!("{TRACE}:{SPAN}:0:3")), full(true, true));
        assert_eq!(
            read(&format!("{TRACE}:{SPAN}:0:8")),
            full(false, false),
            "firehose alone is not sampled"
        );
        assert_eq!(
            read(&format!("{TRACE}:{SPAN}:53995c3f42cd8ad8:1")),
            full(true, false),
            "with a parent"
        );
        assert_eq!(
            read(&format!("{TRACE}%3A{SPAN}%3a0%3A1")),
            full(true, false),
            "percent-encoded"
        );
        assert_eq!(
            read("a3ce929d0e0e4736:f067aa0ba902b7:0:1"),
            Some((
                "0000000000000000a3ce929d0e0e4736".into(),
                SPAN.into(),
                true,
                false
            )),
            "short ids, left-padded"
        );
        assert_eq!(
            read("1:1:0:1").unwrap().0,
            "00000000000000000000000000000001"
        );
    }

    #[test]
    fn malformed_trace_headers_are_ignored() {
        for bad in [
            String::new(),
            ":::".into(),
            format!("{TRACE}:{SPAN}:0"),
            format!("{TRACE}:{SPAN}:0:1:0"),
            format!("0:{SPAN}:0:1"),
            format!("{TRACE}:0:0:1"),
            format!("{TRACE}:{SPAN}::1"),
            format!("{TRACE}:{SPAN}:0:"),
            format!("{TRACE}:{SPAN}:0:100"),
            format!("{TRACE}:{SPAN}:0:x"),
            format!("{TRACE}0:{SPAN}:0:1"),
            format!("{TRACE}:{SPAN}0:0:1"),
            format!("{TRACE}:{SPAN}:0%3"),
            format!("{TRACE}%3A{SPAN}%3A0%3A1%ZZ"),
            format!("{TRACE}-{SPAN}-0-1"),
        ] {
            assert_eq!(read(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn baggage_items_come_in_and_go_out() {
        let cx = Context::new().with_baggage([opentelemetry::KeyValue::new("kept", "yes")]);
        let cx = JaegerPropagator::new().extract_with_context(
            &cx,
            &headers(&[
                ("uberctx-Tenant", "acme+corp%2Feu"),
                ("UBERCTX-region", "eu"),
                ("uberctx-", "no key"),
                ("uberctx-bad", "%zz"),
                ("uber-trace-id", "nonsense"),
            ]),
        );
        let b = cx.baggage();
        assert_eq!(b.get("tenant").unwrap().as_str(), "acme corp/eu");
        assert_eq!(b.get("region").unwrap().as_str(), "eu");
        assert_eq!(
            b.get("kept").unwrap().as_str(),
            "yes",
            "added to what was there"
        );
        assert_eq!(b.len(), 3, "the bad items are left out");
        assert!(!cx.has_active_span(), "a bad trace header is ignored");

        let mut out = HashMap::new();
        JaegerPropagator::new().inject_context(&cx, &mut out);
        assert_eq!(out["uberctx-tenant"], "acme%20corp%2Feu");
        assert_eq!(out["uberctx-region"], "eu");
        assert!(!out.contains_key(HEADER), "no span, no trace header");
    }

    #[test]
    fn the_trace_header_written() {
        let written = |value: &str| {
            let cx = JaegerPropagator::new().extract(&headers(&[(HEADER, value)]));
            let mut out = HashMap::new();
            JaegerPropagator::new().inject_context(&cx, &mut out);
            out.remove(HEADER)
        };
        assert_eq!(
            written("a3ce929d0e0e4736:f067aa0ba902b7:53995c3f42cd8ad8:1").as_deref(),
            Some("0000000000000000a3ce929d0e0e4736:00f067aa0ba902b7:0:1")
        );
        assert_eq!(
            written(&format!("{TRACE}:{SPAN}:0:0")),
            Some(format!("{TRACE}:{SPAN}:0:0"))
        );
        assert_eq!(
            written(&format!("{TRACE}:{SPAN}:0:2")),
            Some(format!("{TRACE}:{SPAN}:0:3")),
            "debug goes on, sampled"
        );
        assert_eq!(
            JaegerPropagator::new().fields().collect::<Vec<_>>(),
            ["uber-trace-id"]
        );
    }
}
