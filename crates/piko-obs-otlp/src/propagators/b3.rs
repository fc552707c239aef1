//! B3, Zipkin's trace headers (`OTEL_PROPAGATORS=b3` and `b3multi`).

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};

use super::{continue_trace, is_debug, remote, span_id_16, trace_id_16_or_32};

const SINGLE: &str = "b3";
const TRACE_ID: &str = "x-b3-traceid";
const SPAN_ID: &str = "x-b3-spanid";
const PARENT_SPAN_ID: &str = "x-b3-parentspanid";
const SAMPLED: &str = "x-b3-sampled";
const FLAGS: &str = "x-b3-flags";

/// How [`B3Propagator`] writes the trace into an outgoing request; it reads both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3Encoding {
    /// One header, `b3: {TraceId}-{SpanId}-{SamplingState}` (`OTEL_PROPAGATORS=b3`).
    SingleHeader,
    /// `X-B3-TraceId`, `X-B3-SpanId` and `X-B3-Sampled`, or `X-B3-Flags: 1` for a
    /// debug trace (`OTEL_PROPAGATORS=b3multi`).
    MultipleHeaders,
}

/// B3, the trace headers of Zipkin, as the
/// [B3 specification](https://github.com/openzipkin/b3-propagation) and the
/// OpenTelemetry specification's "B3 Requirements"
/// (`specification/context/api-propagators.md`) describe them.
///
/// Reading, the single header first and, when it is missing or malformed, the
/// multiple headers:
///
/// - `b3: {TraceId}-{SpanId}`, optionally followed by `-{SamplingState}` and then
///   `-{ParentSpanId}`: a trace id of 32 or 16 hexadecimal digits (a 64-bit id is
///   left-padded with zeros to 128 bits), a span id of 16, a sampling state of `1`
///   (sampled), `0` (not sampled) or `d` (debug, which means sampled), a parent span id
///   of 16 (checked, then not used: the caller's span id is the parent).
/// - `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-ParentSpanId` (the same forms),
///   `X-B3-Sampled` (`1` or `true`, `0` or `false`) and `X-B3-Flags` (`1`: debug,
///   sampled whatever `X-B3-Sampled` says; another value is no flag).
/// - With no sampling state the caller deferred the decision; OpenTelemetry has no
///   such state, so the trace is read as not sampled.
/// - A sampling state alone (`b3: 0`) carries no ids: there is no parent to continue,
///   so the context is returned as it came (OpenTelemetry's samplers follow only a
///   parent with ids).
/// - Anything malformed (a bad id, an all-zero id, an unknown sampling state, extra
///   parts) is ignored: the context is returned as it came.
///
/// Writing: the trace id in 32 digits, the span id, and the sampling state, in the
/// encoding chosen ([`B3Encoding`]); `d` (or `X-B3-Flags: 1`) when the trace was
/// read as debug, so the mark goes on to the next service. The parent span id is never
/// written, as the OpenTelemetry specification requires. Nothing is written for a
/// context without a valid span.
///
/// ```
/// use opentelemetry::propagation::TextMapPropagator as _;
/// use opentelemetry::trace::TraceContextExt as _;
/// use piko_obs_otlp::B3Propagator;
/// use std::collections::HashMap;
///
/// let incoming = HashMap::from([(
///     "b3".to_string(),
///     "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1".to_string(),
/// )]);
/// let cx = B3Propagator::multiple_headers().extract(&incoming);
/// let caller = cx.span().span_context().clone();
/// assert_eq!(caller.trace_id().to_string(), "80f198ee56343ba864fe8b2a57d3eff7");
/// assert!(caller.is_sampled());
///
/// let mut outgoing = HashMap::new();
/// B3Propagator::multiple_headers().inject_context(&cx, &mut outgoing);
/// assert_eq!(outgoing["x-b3-spanid"], "e457b5a2e4d86bd1");
/// assert_eq!(outgoing["x-b3-sampled"], "1");
/// ```
#[derive(Debug)]
pub struct B3Propagator {
    encoding: B3Encoding,
    fields: Vec<String>,
}

impl B3Propagator {
    /// Writes the single `b3` header (`OTEL_PROPAGATORS=b3`, and the specification's
    /// default).
    pub fn single_header() -> B3Propagator {
        B3Propagator::with_encoding(B3Encoding::SingleHeader)
    }

    /// Writes the `X-B3-*` headers (`OTEL_PROPAGATORS=b3multi`).
    pub fn multiple_headers() -> B3Propagator {
        B3Propagator::with_encoding(B3Encoding::MultipleHeaders)
    }

    /// Writes in `encoding`.
    pub fn with_encoding(encoding: B3Encoding) -> B3Propagator {
        let fields: &[&str] = match encoding {
            B3Encoding::SingleHeader => &[SINGLE],
            B3Encoding::MultipleHeaders => &[TRACE_ID, SPAN_ID, SAMPLED, FLAGS],
        };
        B3Propagator {
            encoding,
            fields: fields.iter().map(|f| (*f).to_string()).collect(),
        }
    }

    /// The encoding it writes.
    pub fn encoding(&self) -> B3Encoding {
        self.encoding
    }
}

impl Default for B3Propagator {
    /// The single header.
    fn default() -> B3Propagator {
        B3Propagator::single_header()
    }
}

/// The span context and debug mark of `b3: {TraceId}-{SpanId}[-{state}[-{parent}]]`.
fn single(value: &str) -> Option<(SpanContext, bool)> {
    let mut parts = value.trim().split('-');
    let trace_id = trace_id_16_or_32(parts.next()?)?;
    let span_id = span_id_16(parts.next()?)?;
    let (sampled, debug) = match parts.next() {
        None => (false, false),
        Some("1") => (true, false),
        Some("0") => (false, false),
        Some("d") => (true, true),
        Some(_) => return None,
    };
    if let Some(parent) = parts.next() {
        span_id_16(parent)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some((remote(trace_id, span_id, sampled), debug))
}

/// The span context and debug mark of the `X-B3-*` headers.
fn multiple(extractor: &dyn Extractor) -> Option<(SpanContext, bool)> {
    let get = |name| extractor.get(name).map(str::trim);
    let trace_id = trace_id_16_or_32(get(TRACE_ID)?)?;
    let span_id = span_id_16(get(SPAN_ID)?)?;
    if let Some(parent) = get(PARENT_SPAN_ID) {
        span_id_16(parent)?;
    }
    let sampled = match get(SAMPLED) {
        None => false,
        Some(s) if s == "1" || s.eq_ignore_ascii_case("true") => true,
        Some(s) if s == "0" || s.eq_ignore_ascii_case("false") => false,
        Some(_) => return None,
    };
    let debug = get(FLAGS) == Some("1");
    Some((remote(trace_id, span_id, sampled || debug), debug))
}

impl TextMapPropagator for B3Propagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        let debug = is_debug(cx);
        let state = if debug {
            "d"
        } else if sc.is_sampled() {
            "1"
        } else {
            "0"
        };
        match self.encoding {
            B3Encoding::SingleHeader => injector.set(
                SINGLE,
                format!("{}-{}-{state}", sc.trace_id(), sc.span_id()),
            ),
            B3Encoding::MultipleHeaders => {
                injector.set(TRACE_ID, sc.trace_id().to_string());
                injector.set(SPAN_ID, sc.span_id().to_string());
                if debug {
                    // Debug means sampled: B3 says not to send both.
                    injector.set(FLAGS, "1".to_string());
                } else {
                    injector.set(SAMPLED, state.to_string());
                }
            }
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match extractor
            .get(SINGLE)
            .and_then(single)
            .or_else(|| multiple(extractor))
        {
            Some((span, debug)) => continue_trace(cx, span, debug),
            None => cx.clone(),
        }
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

    const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const SPAN: &str = "e457b5a2e4d86bd1";

    /// What B3 reads from `pairs`: trace id, span id, sampled, debug; `None` when the
    /// context came back without a span.
    fn read(pairs: &[(&str, &str)]) -> Option<(String, String, bool, bool)> {
        let cx = B3Propagator::single_header().extract(&headers(pairs));
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| {
            assert!(sc.is_remote());
            (
                sc.trace_id().to_string(),
                sc.span_id().to_string(),
                sc.is_sampled(),
                is_debug(&cx),
            )
        })
    }

    fn ids(sampled: bool, debug: bool) -> Option<(String, String, bool, bool)> {
        Some((TRACE.into(), SPAN.into(), sampled, debug))
    }

    #[test]
    fn the_single_header_in_each_form() {
        let b3 = |v: &str| read(&[("b3", v)]);
        assert_eq!(
            b3(&format!("{TRACE}-{SPAN}")),
            ids(false, false),
            "deferred"
        );
        assert_eq!(b3(&format!("{TRACE}-{SPAN}-1")), ids(true, false));
        assert_eq!(b3(&format!("{TRACE}-{SPAN}-0")), ids(false, false));
        assert_eq!(b3(&format!("{TRACE}-{SPAN}-d")), ids(true, true));
        assert_eq!(
            b3(&format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90")),
            ids(true, false),
            "with the parent span id"
        );
        assert_eq!(
            b3(&format!("a3ce929d0e0e4736-{SPAN}-1")),
            Some((
                "0000000000000000a3ce929d0e0e4736".into(),
                SPAN.into(),
                true,
                false
            )),
            "a 64-bit trace id, left-padded"
        );
    }

    #[test]
    fn a_sampling_state_alone_carries_no_ids() {
        for state in ["0", "1", "d"] {
            assert_eq!(read(&[("b3", state)]), None, "{state}");
        }
    }

    #[test]
    fn malformed_single_headers_are_ignored() {
        for bad in [
            "",
            "-",
            TRACE,
            &format!("{TRACE}-"),
            &format!("{TRACE}-{SPAN}-2"),
            &format!("{TRACE}-{SPAN}-true"),
            &format!("{TRACE}-{SPAN}-1-"),
            &format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b9"),
            &format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90-x"),
            &format!("00000000000000000000000000000000-{SPAN}-1"),
            &format!("{TRACE}-0000000000000000-1"),
            &format!("{TRACE}a-{SPAN}-1"),
            &format!("{TRACE}-{SPAN}a-1"),
            &format!("{TRACE} {SPAN} 1"),
        ] {
            assert_eq!(read(&[("b3", bad)]), None, "{bad:?}");
        }
    }

    #[test]
    fn the_multiple_headers_in_each_form() {
        let multi = |more: &[(&str, &str)]| {
            let mut pairs = vec![("X-B3-TraceId", TRACE), ("X-B3-SpanId", SPAN)];
            pairs.extend_from_slice(more);
            read(&pairs)
        };
        assert_eq!(multi(&[]), ids(false, false), "deferred");
        assert_eq!(multi(&[("X-B3-Sampled", "1")]), ids(true, false));
        assert_eq!(multi(&[("X-B3-Sampled", "true")]), ids(true, false));
        assert_eq!(multi(&[("X-B3-Sampled", "0")]), ids(false, false));
        assert_eq!(multi(&[("X-B3-Flags", "1")]), ids(true, true));
        assert_eq!(
            multi(&[("X-B3-Flags", "1"), ("X-B3-Sampled", "0")]),
            ids(true, true),
            "debug means sampled"
        );
        assert_eq!(
            multi(&[("X-B3-Flags", "0"), ("X-B3-Sampled", "1")]),
            ids(true, false),
            "another flag value is no debug"
        );
        assert_eq!(
            multi(&[
                ("X-B3-ParentSpanId", "05e3ac9a4f6e3b90"),
                ("X-B3-Sampled", "1")
            ]),
            ids(true, false)
        );
        assert_eq!(multi(&[("X-B3-Sampled", "yes")]), None);
        assert_eq!(multi(&[("X-B3-ParentSpanId", "05e3")]), None);
        assert_eq!(read(&[("X-B3-TraceId", TRACE)]), None, "no span id");
        assert_eq!(read(&[("X-B3-SpanId", SPAN)]), None, "no trace id");
        assert_eq!(
            read(&[("X-B3-TraceId", "a3ce929d0e0e4736"), ("X-B3-SpanId", SPAN)]).map(|r| r.0),
            Some("0000000000000000a3ce929d0e0e4736".into())
        );
    }

    #[test]
    fn the_single_header_wins_and_a_bad_one_falls_back() {
        let other = "4bf92f3577b34da6a3ce929d0e0e4736";
        let multi = [("X-B3-TraceId", other), ("X-B3-SpanId", SPAN)];
        let single = format!("{TRACE}-{SPAN}-1");
        let mut both = multi.to_vec();
        both.push(("b3", &single));
        assert_eq!(read(&both).unwrap().0, TRACE);
        let mut bad = multi.to_vec();
        bad.push(("b3", "0"));
        assert_eq!(read(&bad).unwrap().0, other);
    }

    #[test]
    fn a_bad_header_leaves_the_context_as_it_came() {
        let cx = Context::new().with_value(42_u32);
        let cx = B3Propagator::single_header()
            .extract_with_context(&cx, &headers(&[("b3", "nonsense")]));
        assert_eq!(cx.get::<u32>(), Some(&42));
        assert!(!cx.has_active_span());
    }

    /// What each encoding writes for the context `b3` reads.
    fn written(b3: &str, encoding: B3Encoding) -> HashMap<String, String> {
        let cx = B3Propagator::single_header().extract(&headers(&[("b3", b3)]));
        let mut out = HashMap::new();
        B3Propagator::with_encoding(encoding).inject_context(&cx, &mut out);
        out
    }

    #[test]
    fn each_encoding_writes_its_headers() {
        assert_eq!(
            written(
                &format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90"),
                B3Encoding::SingleHeader
            ),
            headers(&[("b3", &format!("{TRACE}-{SPAN}-1"))]),
            "no parent span id"
        );
        assert_eq!(
            written(&format!("{TRACE}-{SPAN}-d"), B3Encoding::SingleHeader),
            headers(&[("b3", &format!("{TRACE}-{SPAN}-d"))]),
            "the debug mark goes on"
        );
        assert_eq!(
            written(&format!("{TRACE}-{SPAN}"), B3Encoding::SingleHeader),
            headers(&[("b3", &format!("{TRACE}-{SPAN}-0"))])
        );
        assert_eq!(
            written(&format!("{TRACE}-{SPAN}-1"), B3Encoding::MultipleHeaders),
            headers(&[
                ("X-B3-TraceId", TRACE),
                ("X-B3-SpanId", SPAN),
                ("X-B3-Sampled", "1")
            ])
        );
        assert_eq!(
            written(&format!("{TRACE}-{SPAN}-d"), B3Encoding::MultipleHeaders),
            headers(&[
                ("X-B3-TraceId", TRACE),
                ("X-B3-SpanId", SPAN),
                ("X-B3-Flags", "1")
            ]),
            "debug without X-B3-Sampled"
        );
        assert_eq!(
            written(
                &format!("a3ce929d0e0e4736-{SPAN}-0"),
                B3Encoding::SingleHeader
            ),
            headers(&[("b3", &format!("0000000000000000a3ce929d0e0e4736-{SPAN}-0"))]),
            "always 32 digits"
        );
        assert!(written("0", B3Encoding::SingleHeader).is_empty(), "no span");
    }

    #[test]
    fn fields_are_the_headers_written() {
        let names = |p: B3Propagator| p.fields().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(names(B3Propagator::default()), ["b3"]);
        assert_eq!(
            names(B3Propagator::multiple_headers()),
            ["x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags"]
        );
    }
}
