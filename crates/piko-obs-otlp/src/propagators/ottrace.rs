//! The OpenTracing basic tracers' `ot-tracer-*` and `ot-baggage-*` headers
//! (`OTEL_PROPAGATORS=ottrace`).

use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};

use super::{add_baggage, baggage_items, is_token, remote, span_id_16, trace_id_16_or_32};

const TRACE_ID: &str = "ot-tracer-traceid";
const SPAN_ID: &str = "ot-tracer-spanid";
const SAMPLED: &str = "ot-tracer-sampled";
const BAGGAGE_PREFIX: &str = "ot-baggage-";

/// OT Trace, the headers of OpenTracing's basic tracers (Lightstep), which have no
/// formal specification: the reference is
/// [basictracer-python's text propagator](https://github.com/opentracing/basictracer-python/blob/master/basictracer/text_propagator.py),
/// read as OpenTelemetry's Go, Java and Python OT Trace propagators read it.
///
/// - `ot-tracer-traceid`: 16 hexadecimal digits (64 bits, left-padded with zeros to
///   128) or 32;
/// - `ot-tracer-spanid`: 16 hexadecimal digits;
/// - `ot-tracer-sampled`: `true` or `false` (any case), or `1` or `0` as some SDKs
///   write it; missing: not sampled;
/// - `ot-baggage-{key}: {value}`: one baggage item per header, the value as it is;
///   the keys are lower-cased, as HTTP header names are not case-sensitive.
///
/// Headers that are missing or malformed (a bad or zero id, another sampled value)
/// are ignored: the context is returned as it came, with the baggage items.
///
/// Writing: the trace id's low 64 bits in 16 digits (the basic tracers' ids are 64
/// bits; OpenTelemetry's other OT Trace propagators write the same), the span id,
/// `ot-tracer-sampled: true` or `false`, and each baggage item whose key is a header
/// name token and whose value a header value as `ot-baggage-{key}`.
///
/// ```
/// use opentelemetry::baggage::BaggageExt as _;
/// use opentelemetry::propagation::TextMapPropagator as _;
/// use opentelemetry::trace::TraceContextExt as _;
/// use piko_obs_otlp::OtTracePropagator;
/// use std::collections::HashMap;
///
/// let incoming = HashMap::from([
///     ("ot-tracer-traceid".to_string(), "a3ce929d0e0e4736".to_string()),
///     ("ot-tracer-spanid".to_string(), "00f067aa0ba902b7".to_string()),
///     ("ot-tracer-sampled".to_string(), "true".to_string()),
///     ("ot-baggage-tenant".to_string(), "acme".to_string()),
/// ]);
/// let cx = OtTracePropagator::new().extract(&incoming);
/// let caller = cx.span().span_context().clone();
/// assert_eq!(caller.trace_id().to_string(), "0000000000000000a3ce929d0e0e4736");
/// assert!(caller.is_sampled());
/// assert_eq!(cx.baggage().get("tenant").unwrap().as_str(), "acme");
///
/// let mut outgoing = HashMap::new();
/// OtTracePropagator::new().inject_context(&cx, &mut outgoing);
/// assert_eq!(outgoing["ot-tracer-traceid"], "a3ce929d0e0e4736");
/// assert_eq!(outgoing["ot-tracer-sampled"], "true");
/// assert_eq!(outgoing["ot-baggage-tenant"], "acme");
/// ```
#[derive(Debug)]
pub struct OtTracePropagator {
    fields: [String; 3],
}

impl OtTracePropagator {
    /// The propagator.
    pub fn new() -> OtTracePropagator {
        OtTracePropagator {
            fields: [TRACE_ID, SPAN_ID, SAMPLED].map(str::to_string),
        }
    }
}

impl Default for OtTracePropagator {
    fn default() -> OtTracePropagator {
        OtTracePropagator::new()
    }
}

/// The span context of the `ot-tracer-*` headers.
fn trace_headers(extractor: &dyn Extractor) -> Option<SpanContext> {
    let get = |name| extractor.get(name).map(str::trim);
    let trace_id = trace_id_16_or_32(get(TRACE_ID)?)?;
    let span_id = span_id_16(get(SPAN_ID)?)?;
    let sampled = match get(SAMPLED) {
        None => false,
        Some(s) if s == "1" || s.eq_ignore_ascii_case("true") => true,
        Some(s) if s == "0" || s.eq_ignore_ascii_case("false") => false,
        Some(_) => return None,
    };
    Some(remote(trace_id, span_id, sampled))
}

/// Whether `value` can be sent as a header's value as it is: visible ASCII and
/// spaces, not starting or ending with a space.
fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

impl TextMapPropagator for OtTracePropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            let trace_id = sc.trace_id().to_string();
            injector.set(TRACE_ID, trace_id[16..].to_string());
            injector.set(SPAN_ID, sc.span_id().to_string());
            injector.set(SAMPLED, sc.is_sampled().to_string());
        }
        for (key, (value, _)) in cx.baggage() {
            if is_token(key.as_str()) && is_header_value(value.as_str()) {
                injector.set(
                    &format!("{BAGGAGE_PREFIX}{}", key.as_str()),
                    value.as_str().to_string(),
                );
            }
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let cx = match trace_headers(extractor) {
            Some(span) => cx.with_remote_span_context(span),
            None => cx.clone(),
        };
        add_baggage(
            &cx,
            baggage_items(extractor, BAGGAGE_PREFIX, |v| Some(v.to_string())),
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

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    /// Trace id, span id and sampled of the context the headers give.
    fn read(trace: &str, span: &str, sampled: Option<&str>) -> Option<(String, String, bool)> {
        let mut pairs = vec![(TRACE_ID, trace), (SPAN_ID, span)];
        pairs.extend(sampled.map(|s| (SAMPLED, s)));
        let cx = OtTracePropagator::new().extract(&headers(&pairs));
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| {
            assert!(sc.is_remote());
            (
                sc.trace_id().to_string(),
                sc.span_id().to_string(),
                sc.is_sampled(),
            )
        })
    }

    #[test]
    fn the_trace_headers_in_each_form() {
        let full = |s| Some((TRACE.to_string(), SPAN.to_string(), s));
        assert_eq!(read(TRACE, SPAN, Some("true")), full(true));
        assert_eq!(read(TRACE, SPAN, Some("True")), full(true));
        assert_eq!(read(TRACE, SPAN, Some("1")), full(true));
        assert_eq!(read(TRACE, SPAN, Some("false")), full(false));
        assert_eq!(read(TRACE, SPAN, Some("0")), full(false));
        assert_eq!(read(TRACE, SPAN, None), full(false));
        assert_eq!(
            read("a3ce929d0e0e4736", SPAN, Some("true")),
            Some(("0000000000000000a3ce929d0e0e4736".into(), SPAN.into(), true)),
            "a 64-bit trace id, left-padded"
        );
    }

    #[test]
    fn malformed_trace_headers_are_ignored() {
        for (trace, span, sampled) in [
            (TRACE, SPAN, Some("yes")),
            (TRACE, "f067aa0ba902b7", None),
            ("a3ce929d0e0e473", SPAN, None),
            ("0000000000000000", SPAN, None),
            (TRACE, "0000000000000000", None),
            (TRACE, "", None),
            ("", SPAN, None),
            (&format!("{TRACE}00"), SPAN, None),
            ("g3ce929d0e0e4736", SPAN, None),
        ] {
            assert_eq!(
                read(trace, span, sampled),
                None,
                "{trace} {span} {sampled:?}"
            );
        }
        let cx = OtTracePropagator::new().extract(&headers(&[(TRACE_ID, TRACE)]));
        assert!(!cx.has_active_span(), "no span id");
    }

    #[test]
    fn baggage_items_come_in_and_go_out() {
        let cx = Context::new().with_baggage([opentelemetry::KeyValue::new("kept", "yes")]);
        let cx = OtTracePropagator::new().extract_with_context(
            &cx,
            &headers(&[
                (TRACE_ID, TRACE),
                (SPAN_ID, SPAN),
                ("ot-baggage-Tenant", "acme corp%20"),
                ("OT-Baggage-region", "eu"),
                ("ot-baggage-", "no key"),
            ]),
        );
        let b = cx.baggage();
        assert_eq!(
            b.get("tenant").unwrap().as_str(),
            "acme corp%20",
            "as it is"
        );
        assert_eq!(b.get("region").unwrap().as_str(), "eu");
        assert_eq!(b.get("kept").unwrap().as_str(), "yes");
        assert_eq!(b.len(), 3);

        let mut out = HashMap::new();
        OtTracePropagator::new().inject_context(&cx, &mut out);
        assert_eq!(
            out,
            headers(&[
                (TRACE_ID, "a3ce929d0e0e4736"),
                (SPAN_ID, SPAN),
                (SAMPLED, "false"),
                ("ot-baggage-tenant", "acme corp%20"),
                ("ot-baggage-region", "eu"),
                ("ot-baggage-kept", "yes"),
            ]),
            "the trace id's low 64 bits"
        );
        let cx = Context::new().with_baggage([opentelemetry::KeyValue::new("line", "a\nb")]);
        let mut out = HashMap::new();
        OtTracePropagator::new().inject_context(&cx, &mut out);
        assert!(
            out.is_empty(),
            "no span, and a value that is no header value"
        );
        assert_eq!(
            OtTracePropagator::new().fields().collect::<Vec<_>>(),
            [TRACE_ID, SPAN_ID, SAMPLED]
        );
    }
}
