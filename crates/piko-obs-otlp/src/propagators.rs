//! The header formats of `OTEL_PROPAGATORS` that OpenTelemetry's Rust crates do not
//! carry for this version: B3 (`b3`, `b3multi`), Jaeger (`jaeger`) and OT Trace
//! (`ottrace`), each an [`opentelemetry::propagation::TextMapPropagator`].
//!
//! What they share: reading hexadecimal ids (the 64-bit forms left-padded to 128 bits),
//! the debug mark B3 and Jaeger carry on, percent-encoding, and adding baggage items
//! to the context's baggage.

mod b3;
mod jaeger;
mod ottrace;

pub use b3::{B3Encoding, B3Propagator};
pub use jaeger::JaegerPropagator;
pub use ottrace::OtTracePropagator;

use opentelemetry::Context;
use opentelemetry::baggage::{Baggage, BaggageExt as _};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use piko_obs_lifecycle::settings::percent_encode;

/// `1` to `max_digits` hexadecimal digits (either case) as a number; `None` for
/// anything else (no sign, no spaces, no `0x`).
fn hex_number(text: &str, max_digits: usize) -> Option<u128> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(text, 16).ok()
}

/// A trace id of exactly 16 or 32 hexadecimal digits, the 16-digit (64-bit) form
/// left-padded with zeros; `None` when malformed or all zeros.
fn trace_id_16_or_32(text: &str) -> Option<TraceId> {
    if text.len() != 16 && text.len() != 32 {
        return None;
    }
    hex_number(text, 32)
        .filter(|&n| n != 0)
        .map(|n| TraceId::from_bytes(n.to_be_bytes()))
}

/// A span id of exactly 16 hexadecimal digits; `None` when malformed or all zeros.
fn span_id_16(text: &str) -> Option<SpanId> {
    if text.len() != 16 {
        return None;
    }
    span_id_up_to_16(text)
}

/// A span id of 1 to 16 hexadecimal digits, left-padded; `None` when malformed or all
/// zeros.
fn span_id_up_to_16(text: &str) -> Option<SpanId> {
    let n = u64::try_from(hex_number(text, 16)?).ok()?;
    (n != 0).then(|| SpanId::from_bytes(n.to_be_bytes()))
}

/// A remote span context with no trace state.
fn remote(trace_id: TraceId, span_id: SpanId, sampled: bool) -> SpanContext {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    SpanContext::new(trace_id, span_id, flags, true, TraceState::default())
}

/// The mark of a trace its caller asked to be recorded whatever the sampling (B3's
/// `d` and `X-B3-Flags: 1`, Jaeger's flag `0x02`). It is kept in the context, so the
/// spans started from that context and the requests they make carry it on, as B3 and
/// Jaeger require; OpenTelemetry's trace flags have no bit for it.
#[derive(Debug, Clone, Copy)]
struct DebugMark;

/// `cx` with `span`, marked as debug when `debug` is set.
fn continue_trace(cx: &Context, span: SpanContext, debug: bool) -> Context {
    let cx = cx.with_remote_span_context(span);
    if debug { cx.with_value(DebugMark) } else { cx }
}

/// Whether the context carries a caller's debug mark.
fn is_debug(cx: &Context) -> bool {
    cx.get::<DebugMark>().is_some()
}

/// `cx` with the `items` (key, value) added to its baggage; items beyond the baggage's
/// limits (64 pairs, 8192 bytes) are left out.
fn add_baggage(cx: &Context, items: Vec<(String, String)>) -> Context {
    if items.is_empty() {
        return cx.clone();
    }
    let mut baggage = Baggage::new();
    for (key, (value, metadata)) in cx.baggage() {
        baggage.insert_with_metadata(key.clone(), value.clone(), metadata.clone());
    }
    for (key, value) in items {
        baggage.insert(key, value);
    }
    cx.with_baggage(baggage)
}

/// The baggage items of the headers named `{prefix}{key}` (the prefix in any case, the
/// key lower-cased), each value through `decode` (items it refuses are left out).
fn baggage_items(
    extractor: &dyn opentelemetry::propagation::Extractor,
    prefix: &str,
    decode: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut items = Vec::new();
    for name in extractor.keys() {
        let Some(head) = name.get(..prefix.len()) else {
            continue;
        };
        let key = &name[prefix.len()..];
        if !head.eq_ignore_ascii_case(prefix) || key.is_empty() || !is_token(key) {
            continue;
        }
        if let Some(value) = extractor.get(name).and_then(&decode) {
            items.push((key.to_ascii_lowercase(), value));
        }
    }
    items
}

/// Whether `text` is an HTTP token (RFC 9110), so `{prefix}{text}` is a header name.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `text` with each `%XX` decoded and `+` read as a space (as the Jaeger clients
/// encode); `None` for a bad escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    crate::config::percent_decode(&text.replace('+', " "))
}

/// A carrier holding `pairs`, the names lower-cased as HTTP/2 sends them (for tests).
#[cfg(test)]
fn headers(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_read_strictly() {
        assert_eq!(
            trace_id_16_or_32("00f067aa0ba902b7").unwrap().to_string(),
            "000000000000000000f067aa0ba902b7",
            "a 64-bit id is left-padded"
        );
        assert_eq!(
            trace_id_16_or_32("4BF92F3577B34DA6A3CE929D0E0E4736")
                .unwrap()
                .to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "",
            "00f067aa0ba902b",
            "+0f067aa0ba902b7",
            "0x0f067aa0ba902b",
            "0000000000000000",
            "00f067aa0ba902b700",
            "4bf92f3577b34da6a3ce929d0e0e473g",
        ] {
            assert!(trace_id_16_or_32(bad).is_none(), "{bad:?}");
        }
        assert!(span_id_16("00f067aa0ba902b7").is_some());
        assert!(span_id_16("f067aa0ba902b7").is_none(), "16 digits");
        assert_eq!(
            span_id_up_to_16("f067aa0ba902b7").unwrap().to_string(),
            "00f067aa0ba902b7"
        );
        assert!(span_id_up_to_16("0").is_none(), "zero");
        assert!(span_id_up_to_16("00f067aa0ba902b7a").is_none(), "17 digits");
    }

    #[test]
    fn percent_encoding_round_trips() {
        for text in ["acme", "a b/c=d;e%f+g", "é✓", ""] {
            assert_eq!(percent_decode(&percent_encode(text)).as_deref(), Some(text));
        }
        assert_eq!(percent_decode("a+b%3a").as_deref(), Some("a b:"));
        for bad in ["%", "%4", "%zz", "%+1", "%ff"] {
            assert!(percent_decode(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn baggage_is_added_to_what_the_context_has() {
        let cx = Context::new().with_baggage([opentelemetry::KeyValue::new("tenant", "acme")]);
        let cx = add_baggage(&cx, vec![("region".into(), "eu".into())]);
        assert_eq!(cx.baggage().get("tenant").unwrap().as_str(), "acme");
        assert_eq!(cx.baggage().get("region").unwrap().as_str(), "eu");
    }
}
