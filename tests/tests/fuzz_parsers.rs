//! Fuzzing by property tests (proptest, stable toolchain) of the text parsers: level
//! text and directives, the OTLP settings from the standard variables, the B3, Jaeger
//! and OT Trace headers, the Sentry settings and DSN, `Retry-After`, and the health
//! server's bind address and paths.
//!
//! Each property runs `PIKO_FUZZ_CASES` cases (default 256, so `cargo test` stays fast;
//! the long runs recorded in `docs/reliability.md` use more). Failures are not persisted
//! to files: every failure found is kept below as an explicit regression `#[test]`.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use piko_obs::health::{HealthService, ServerBuilder, ServerError};
use piko_obs_logger::{Directives, Level, parse_level};
use piko_obs_notify::{MAX_RETRY_AFTER, parse_retry_after};
use piko_obs_otlp::{ENV_VARIABLES, OtlpConfig, ParentRoot, Sampling};
use piko_obs_sentry::SentryConfig;
use piko_obs_sentry::config::{
    ENV_DEBUG, ENV_DSN, ENV_ENVIRONMENT, ENV_RELEASE, ENV_SAMPLE_RATE, ENV_TRACES_SAMPLE_RATE,
};
use piko_obs_tests::fuzz::fuzz;
use proptest::prelude::*;

// ----------------------------------------------------------------------------------------
// The runner.

/// Any text: every Unicode scalar value, control characters included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Text made of pieces near the grammar under test, mixed with arbitrary characters.
fn pieces(vocabulary: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(vocabulary).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
        1 => "[0-9]{1,12}",
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|p| p.concat())
}

/// Arbitrary text, or text near the grammar.
fn text_for(vocabulary: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![any_text(48), pieces(vocabulary, 12)]
}

// ----------------------------------------------------------------------------------------
// Levels and directives.

const LEVEL_WORDS: &[&str] = &[
    "trace",
    "internal",
    "debug",
    "info",
    "notice",
    "warn",
    "warning",
    "error",
    "TRACE",
    "Info",
    "WARN",
    "ErRoR",
    "+",
    "-",
    " ",
    "\t",
    "\n",
    "=",
    ",",
    "/",
    ":",
    ".",
    "myapp",
    "myapp/db",
    "0",
    "-6",
    "2147483647",
    "-2147483648",
    "99999999999",
];

#[test]
fn fuzz_level_text_never_panics() {
    fuzz("level_text_never_panics", text_for(LEVEL_WORDS), |text| {
        match parse_level(&text) {
            Ok(level) => {
                // What parses is a level whose own name parses back to it.
                prop_assert_eq!(parse_level(&level.to_string()), Ok(level));
            }
            Err(e) => {
                // The error names the value given and lists what is accepted.
                let msg = e.to_string();
                prop_assert!(msg.contains(&format!("{text:?}")), "{}", msg);
                prop_assert!(msg.contains(Level::ACCEPTED), "{}", msg);
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_level_printed_name_parses_back() {
    let spaces = prop::sample::select(&["", " ", "\t", "\n "][..]);
    fuzz(
        "level_printed_name_parses_back",
        (any::<i32>(), any::<bool>(), spaces.clone(), spaces),
        |(value, lower, before, after)| {
            let level = Level::new(value);
            let name = level.to_string();
            let name = if lower { name.to_lowercase() } else { name };
            let text = format!("{before}{name}{after}");
            prop_assert_eq!(parse_level(&text), Ok(level), "{:?}", text);
            prop_assert_eq!(parse_level(&value.to_string()), Ok(level));
            Ok(())
        },
    );
}

#[test]
fn fuzz_directives_never_panic() {
    fuzz("directives_never_panic", text_for(LEVEL_WORDS), |text| {
        match Directives::parse(&text) {
            Ok(d) => {
                // Parsed directives print as text that parses to the same directives.
                let printed = d.to_string();
                prop_assert_eq!(Directives::parse(&printed), Ok(d), "{:?}", printed);
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("bad log level directive"), "{}", msg);
            }
        }
        Ok(())
    });
}

/// A logger name: segments joined by `/`, `:` or `.`.
fn logger_name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_-]{0,6}([/:.][a-z0-9_-]{1,6}){0,3}"
}

#[test]
fn fuzz_directives_from_valid_parts_parse() {
    let level = prop_oneof![
        prop::sample::select(&Level::ALL[..]),
        any::<i32>().prop_map(Level::new)
    ];
    let form = prop::sample::select(&["name", "lower", "value"][..]);
    let level_text = (level, form).prop_map(|(l, form)| {
        let text = match form {
            "name" => l.to_string(),
            "lower" => l.to_string().to_lowercase(),
            _ => l.value().to_string(),
        };
        (l, text)
    });
    let pad = prop::sample::select(&["", " ", "  ", "\t"][..]);
    fuzz(
        "directives_from_valid_parts_parse",
        (
            prop::option::of(level_text.clone()),
            prop::collection::vec((logger_name(), level_text), 0..6),
            pad,
        ),
        |(default, rules, pad)| {
            let mut items = Vec::new();
            let mut expected = Directives::new(Level::INFO);
            if let Some((l, text)) = &default {
                items.push(format!("{pad}{text}{pad}"));
                expected = Directives::new(*l);
            }
            for (name, (l, text)) in &rules {
                items.push(format!("{pad}{name}{pad}={pad}{text}{pad}"));
                expected = expected.with_rule(name.clone(), *l);
            }
            let text = items.join(",");
            let d = Directives::parse(&text);
            prop_assert_eq!(&d, &Ok(expected.clone()), "{:?}", text);
            let d = d.unwrap_or_default();
            for (name, _) in &rules {
                prop_assert_eq!(d.level_for(name), expected.level_for(name));
            }
            Ok(())
        },
    );
}

// ----------------------------------------------------------------------------------------
// OTLP settings.

const OTLP_WORDS: &[&str] = &[
    "http://",
    "https://",
    "grpc://",
    "localhost",
    "collector",
    ":4317",
    ":65536",
    "[::1]",
    "/",
    "?",
    "#",
    "@",
    "%0A",
    "%0d",
    "%zz",
    "%",
    "%E2%82",
    "=",
    ",",
    " ",
    "\r",
    "\n",
    "authorization",
    "Bearer",
    "x-bin",
    "always_on",
    "traceidratio",
    "parentbased_traceidratio",
    "jaeger_remote",
    "parentbased_jaeger_remote",
    "endpoint",
    "pollingIntervalMs",
    "initialSamplingRate",
    "0.5",
    "1e309",
    "NaN",
    "-0",
    "inf",
    "true",
    "gzip",
    "http/protobuf",
    "service.name",
];

/// The variables fuzzed (certificate paths are left out: they only name files).
const OTLP_FUZZED: [&str; 12] = [
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_INSECURE",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_METRIC_EXPORT_INTERVAL",
];

fn env_of(vars: HashMap<&'static str, String>) -> impl Fn(&str) -> Option<String> {
    move |k| vars.get(k).cloned()
}

#[test]
fn fuzz_otlp_settings_never_panic_and_errors_name_the_variable() {
    let values = prop::collection::vec(prop::option::of(text_for(OTLP_WORDS)), 12);
    fuzz(
        "otlp_settings_never_panic",
        (values, "[A-Za-z0-9]{20}"),
        |(values, token)| {
            let mut vars: HashMap<&'static str, String> = OTLP_FUZZED
                .iter()
                .zip(values)
                .filter_map(|(k, v)| Some((*k, v?)))
                .collect();
            // A secret header next to the fuzzed ones: it must never be echoed.
            let headers = vars
                .remove("OTEL_EXPORTER_OTLP_HEADERS")
                .unwrap_or_default();
            vars.insert(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("authorization=Bearer%20{token},{headers}"),
            );
            match OtlpConfig::new().resolve(env_of(vars.clone()), "svc") {
                Err(e) => {
                    prop_assert!(
                        ENV_VARIABLES.contains(&e.setting.as_str())
                            && vars.contains_key(e.setting.as_str()),
                        "the error names {:?}, not a variable that is set: {}",
                        e.setting,
                        e
                    );
                    let msg = e.to_string();
                    prop_assert!(msg.starts_with(&format!("{}: ", e.setting)), "{}", msg);
                    prop_assert!(!msg.contains(&token), "header value echoed: {}", msg);
                }
                Ok(s) => {
                    prop_assert!(
                        s.general.url.starts_with("http://")
                            || s.general.url.starts_with("https://"),
                        "{}",
                        s.general.url
                    );
                    prop_assert!(!s.general.timeout.is_zero() && !s.metric_interval.is_zero());
                    for (k, v) in &s.general.headers {
                        prop_assert_eq!(k, &k.to_ascii_lowercase());
                        prop_assert!(
                            !v.contains(['\r', '\n', '\0']),
                            "header {:?} has a line break: {:?}",
                            k,
                            v
                        );
                    }
                    if !headers.to_ascii_lowercase().contains("authorization") {
                        prop_assert_eq!(
                            s.general.headers.get("authorization"),
                            Some(&format!("Bearer {token}"))
                        );
                    }
                    let ratio = match s.sampling {
                        Sampling::Ratio(r) | Sampling::ParentBased(ParentRoot::Ratio(r)) => r,
                        _ => 1.0,
                    };
                    prop_assert!((0.0..=1.0).contains(&ratio), "{}", ratio);
                    prop_assert!(s.resource.contains_key("service.name"));
                }
            }
            Ok(())
        },
    );
}

/// `text` with every byte but the unreserved ones %-encoded, in either case of hex.
fn percent_encode(text: &str, upper: bool) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ if upper => format!("%{b:02X}"),
            _ => format!("%{b:02x}"),
        })
        .collect()
}

#[test]
fn fuzz_otlp_resource_attributes_decode_exactly() {
    let pairs = prop::collection::btree_map("[a-z][a-z0-9._]{0,8}", any_text(16), 1..5);
    fuzz(
        "otlp_resource_attributes_decode_exactly",
        (pairs, any::<bool>()),
        |(pairs, upper)| {
            let text = pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", percent_encode(v, upper)))
                .collect::<Vec<_>>()
                .join(",");
            let vars = HashMap::from([("OTEL_RESOURCE_ATTRIBUTES", text.clone())]);
            let s = OtlpConfig::new().resolve(env_of(vars), "svc");
            prop_assert!(s.is_ok(), "{:?}: {:?}", text, s);
            let resource = s.map(|s| s.resource).unwrap_or_default();
            for (k, v) in &pairs {
                prop_assert_eq!(resource.get(k), Some(v), "{:?}", text);
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_otlp_bad_percent_escape_is_refused() {
    let bad = prop_oneof![
        prop::sample::select(&["", "+a", "+F", "-1", "g0", "0g", " 1", "1 ", "0x", "\u{e9}"][..])
            .prop_map(String::from),
        "[^0-9a-fA-F%][^%]|[0-9a-fA-F][^0-9a-fA-F%]",
    ];
    let var = prop::sample::select(&["OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_HEADERS"][..]);
    fuzz(
        "otlp_bad_percent_escape_is_refused",
        ("[a-z]{0,4}", bad, var),
        |(before, bad, var)| {
            // At the end of the text, so that the escape has no more characters to use.
            let vars = HashMap::from([(var, format!("k={before}%{bad}"))]);
            let s = OtlpConfig::new().resolve(env_of(vars), "svc");
            prop_assert!(s.is_err(), "accepted %{:?}: {:?}", bad, s);
            if let Err(e) = s {
                prop_assert_eq!(e.setting, var);
            }
            Ok(())
        },
    );
}

/// A line break inside a header value, raw or %-encoded.
fn header_value_with_break() -> impl Strategy<Value = (String, bool)> {
    let brk = prop::sample::select(
        &[
            ("\r", true),
            ("\n", true),
            ("\r\n", true),
            ("\n\t", true),
            ("%0A", false),
            ("%0d", false),
            ("%0D%0A", false),
            ("%0a%20", false),
            ("\0", true),
            ("%00", false),
        ][..],
    );
    ("[!-+--~]{1,8}", brk, "[!-+--~]{1,8}", "[ a-zA-Z:]{0,6}").prop_map(
        |(before, (brk, raw), after, injected)| (format!("{before}{brk}{injected}{after}"), raw),
    )
}

#[test]
fn fuzz_otlp_header_with_line_break_is_refused() {
    fuzz(
        "otlp_header_with_line_break_is_refused",
        (
            "[a-z][a-z0-9-]{0,10}",
            header_value_with_break(),
            "([a-z]{1,5}=[a-z0-9]{1,5},){0,2}",
        ),
        |(name, (value, raw), others)| {
            // From the variable (the value is %-decoded there).
            let vars = HashMap::from([(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("{others}{name}={value}"),
            )]);
            let e = OtlpConfig::new().resolve(env_of(vars), "svc");
            prop_assert!(e.is_err(), "accepted {:?}: {:?}", value, e);
            if let Err(e) = e {
                prop_assert_eq!(e.setting, "OTEL_EXPORTER_OTLP_HEADERS");
            }
            // From code (no decoding: only raw breaks are breaks).
            if raw {
                let mut c = OtlpConfig::new();
                c.headers = vec![(name.clone(), value.clone())];
                let e = c.resolve(|_| None, "svc");
                prop_assert!(e.is_err(), "accepted {:?}: {:?}", value, e);
                if let Err(e) = e {
                    prop_assert_eq!(e.setting, "OtlpConfig.headers");
                }
            }
            Ok(())
        },
    );
}

// ----------------------------------------------------------------------------------------
// Trace headers: B3, Jaeger and OT Trace.

const TRACE_HEADER_NAMES: &[&str] = &[
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "uber-trace-id",
    "uberctx-tenant",
    "ot-tracer-traceid",
    "ot-tracer-spanid",
    "ot-tracer-sampled",
    "ot-baggage-tenant",
];

const TRACE_HEADER_WORDS: &[&str] = &[
    "4bf92f3577b34da6",
    "a3ce929d0e0e4736",
    "00f067aa0ba902b7",
    "0000000000000000",
    "ffffffffffffffff",
    "F067AA",
    "-",
    ":",
    "%3A",
    "%3a",
    "%",
    "%zz",
    "+",
    "d",
    "0",
    "1",
    "3",
    "true",
    "False",
    " ",
    "é",
];

/// Ids, flags and sampling states, of the lengths the formats take and not.
const TRACE_HEADER_TOKENS: &[&str] = &[
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "a3ce929d0e0e4736",
    "00f067aa0ba902b7",
    "0",
    "1",
    "d",
    "3",
];

/// A value for the header `name`: mostly tokens joined by the separator of the
/// header's format (one token for the headers that hold one), else arbitrary text.
fn trace_header_value(name: &'static str) -> BoxedStrategy<String> {
    let shaped = (
        prop::collection::vec(prop::sample::select(TRACE_HEADER_TOKENS), 1..5),
        any::<bool>(),
    )
        .prop_map(move |(tokens, encoded)| match name {
            "b3" => tokens.join("-"),
            "uber-trace-id" => tokens.join(if encoded { "%3A" } else { ":" }),
            _ => tokens[0].to_string(),
        });
    prop_oneof![1 => text_for(TRACE_HEADER_WORDS), 3 => shaped].boxed()
}

/// A carrier holding each header of the formats or not.
fn trace_headers() -> impl Strategy<Value = HashMap<String, String>> {
    let values: Vec<_> = TRACE_HEADER_NAMES
        .iter()
        .map(|&name| prop::option::weighted(0.5, trace_header_value(name)))
        .collect();
    values.prop_map(|values| {
        TRACE_HEADER_NAMES
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some(((*name).to_string(), value?)))
            .collect()
    })
}

/// A value of the context that extraction must keep.
#[derive(Debug, PartialEq)]
struct Kept(u8);

#[test]
fn fuzz_trace_headers_never_panic_and_round_trip() {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt as _;
    let propagators: [(&str, Box<dyn TextMapPropagator>); 4] = [
        ("b3", Box::new(piko_obs_otlp::B3Propagator::single_header())),
        (
            "b3multi",
            Box::new(piko_obs_otlp::B3Propagator::multiple_headers()),
        ),
        ("jaeger", Box::new(piko_obs_otlp::JaegerPropagator::new())),
        ("ottrace", Box::new(piko_obs_otlp::OtTracePropagator::new())),
    ];
    fuzz(
        "trace_headers_never_panic_and_round_trip",
        trace_headers(),
        |carrier| {
            let before = opentelemetry::Context::new().with_value(Kept(7));
            for (name, p) in &propagators {
                let cx = p.extract_with_context(&before, &carrier);
                prop_assert_eq!(cx.get::<Kept>(), Some(&Kept(7)), "{}", name);
                if !cx.has_active_span() {
                    continue;
                }
                // What was read is a valid remote span, and written and read again
                // it is the same span (OT Trace keeps the trace id's low 64 bits).
                let sc = cx.span().span_context().clone();
                prop_assert!(sc.is_valid() && sc.is_remote(), "{}: {:?}", name, sc);
                let mut out = HashMap::new();
                p.inject_context(&cx, &mut out);
                let again = p.extract(&out);
                let sc2 = again.span().span_context().clone();
                prop_assert_eq!(sc2.span_id(), sc.span_id(), "{}: {:?}", name, out);
                prop_assert_eq!(sc2.is_sampled(), sc.is_sampled(), "{}: {:?}", name, out);
                let keep = if *name == "ottrace" { 8 } else { 0 };
                prop_assert_eq!(
                    &sc2.trace_id().to_bytes()[keep..],
                    &sc.trace_id().to_bytes()[keep..],
                    "{}: {:?}",
                    name,
                    out
                );
            }
            Ok(())
        },
    );
}

// ----------------------------------------------------------------------------------------
// Sentry settings.

const SENTRY_WORDS: &[&str] = &[
    "https://",
    "http://",
    "ftp://",
    "@",
    "/",
    ":",
    "o1.ingest.example.com",
    "0",
    "1",
    "0.5",
    "1.5",
    "-0",
    "NaN",
    "inf",
    "1e-50",
    "true",
    "yes",
    "off",
    "maybe",
    " ",
    "\n",
];

/// Every message a bad DSN can give: fixed text, so nothing of the DSN is in it.
fn dsn_messages() -> Vec<String> {
    [
        "no valid url provided",
        "no valid scheme",
        "username is empty",
        "empty path",
        "invalid project id",
    ]
    .map(|why| {
        format!(
            "sentry dsn: not a valid DSN ({why}); expected \
             https://<public key>@<host>/<project id>, as shown in the Sentry project's \
             Client Keys page"
        )
    })
    .into()
}

#[test]
fn fuzz_sentry_from_lookup_never_panics() {
    let vars = [
        ENV_DSN,
        ENV_ENVIRONMENT,
        ENV_RELEASE,
        ENV_SAMPLE_RATE,
        ENV_TRACES_SAMPLE_RATE,
        ENV_DEBUG,
    ];
    let values = prop::collection::vec(prop::option::of(text_for(SENTRY_WORDS)), 6);
    fuzz("sentry_from_lookup_never_panics", values, |values| {
        let map: HashMap<&'static str, String> = vars
            .iter()
            .zip(values)
            .filter_map(|(k, v)| Some((*k, v?)))
            .collect();
        match SentryConfig::from_lookup(env_of(map.clone())) {
            Ok(Some(c)) => prop_assert!(c.validate().is_ok()),
            Ok(None) => prop_assert!(map.get(ENV_DSN).is_none_or(|d| d.trim().is_empty())),
            Err(e) => {
                prop_assert!(
                    e.field == "dsn" || map.contains_key(e.field),
                    "the error names {:?}: {}",
                    e.field,
                    e
                );
                // A bad DSN gives fixed text only: the DSN is never repeated. Another
                // variable's error repeats its own value, which may hold the DSN's text.
                let dsn = map.get(ENV_DSN).map(|d| d.trim()).unwrap_or_default();
                if e.field == "dsn" {
                    prop_assert!(dsn_messages().contains(&e.to_string()), "{}", e);
                } else if dsn.len() >= 8 && !map[e.field].contains(dsn) {
                    prop_assert!(!e.to_string().contains(dsn), "DSN echoed: {}", e);
                }
            }
        }
        Ok(())
    });
}

/// A DSN `scheme://key@host/project` with the key random and the other parts right or
/// broken, and sometimes one more character somewhere.
fn dsn_with_key() -> impl Strategy<Value = (String, String)> {
    let scheme =
        prop::sample::select(&["https://", "http://", "ftp://", "", "https:/", "https//"][..]);
    let at = prop::sample::select(&["@", "", "@@", ":@", ":secret@"][..]);
    let host = prop::sample::select(
        &[
            "o1.ingest.example.com",
            "",
            "exa mple.com",
            "[::1",
            "h:99999",
            "127.0.0.1:9000",
            "%zz",
        ][..],
    );
    let project =
        prop::sample::select(&["/1", "/", "", "/abc", "/-1", "/1/2", "/api/1", "/1?x=2"][..]);
    (
        "[a-f0-9]{32}",
        scheme,
        at,
        host,
        project,
        prop::option::of((any::<prop::sample::Index>(), any::<char>())),
    )
        .prop_map(|(key, scheme, at, host, project, extra)| {
            let mut dsn = format!("{scheme}{key}{at}{host}{project}");
            if let Some((i, c)) = extra {
                let boundaries: Vec<usize> = dsn
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([dsn.len()])
                    .collect();
                dsn.insert(boundaries[i.index(boundaries.len())], c);
            }
            (dsn, key)
        })
}

#[test]
fn fuzz_sentry_dsn_errors_never_show_the_key() {
    fuzz(
        "sentry_dsn_errors_never_show_the_key",
        dsn_with_key(),
        |(dsn, key)| {
            if let Err(e) = SentryConfig::new(dsn.clone()).validate() {
                prop_assert_eq!(e.field, "dsn");
                prop_assert!(!e.to_string().contains(&key), "key echoed: {}", e);
                prop_assert!(!format!("{e:?}").contains(&key), "key echoed: {:?}", e);
            }
            let env = env_of(HashMap::from([(ENV_DSN, dsn.clone())]));
            if let Err(e) = SentryConfig::from_lookup(env) {
                prop_assert!(!e.to_string().contains(&key), "key echoed: {}", e);
            }
            let debug = format!("{:?}", SentryConfig::new(dsn));
            prop_assert!(!debug.contains(&key), "key in Debug: {}", debug);
            Ok(())
        },
    );
}

// ----------------------------------------------------------------------------------------
// Retry-After.

const RETRY_WORDS: &[&str] = &[
    "Tue, ",
    "14 Nov 2023 ",
    "22:13:50 ",
    "GMT",
    "+0000",
    "Tuesday, ",
    "14-Nov-23 ",
    "Tue Nov 14 22:13:50 2023",
    "Nov",
    "  ",
    "-",
    "+",
    "0",
    "18446744073709551616",
    "9999999999999999999999",
];

/// A time in 1970..2100 with nanoseconds.
fn a_time() -> impl Strategy<Value = SystemTime> {
    (0u64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(s, n)| UNIX_EPOCH + Duration::new(s, n))
}

#[test]
fn fuzz_retry_after_never_panics() {
    fuzz(
        "retry_after_never_panics",
        (text_for(RETRY_WORDS), a_time()),
        |(text, now)| {
            if let Some(wait) = parse_retry_after(&text, now) {
                prop_assert!(!wait.is_zero() && wait <= MAX_RETRY_AFTER, "{:?}", wait);
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_retry_after_seconds_are_that_wait() {
    let pad = prop::sample::select(&["", " ", "\t", "  \t"][..]);
    fuzz(
        "retry_after_seconds_are_that_wait",
        (any::<u32>(), "0{0,3}", pad.clone(), pad, a_time()),
        |(secs, zeros, before, after, now)| {
            let text = format!("{before}{zeros}{secs}{after}");
            let expected =
                (secs > 0).then(|| Duration::from_secs(u64::from(secs)).min(MAX_RETRY_AFTER));
            prop_assert_eq!(parse_retry_after(&text, now), expected, "{:?}", text);
            Ok(())
        },
    );
}

#[test]
fn fuzz_retry_after_huge_seconds_are_capped() {
    fuzz(
        "retry_after_huge_seconds_are_capped",
        ("[1-9][0-9]{0,40}", a_time()),
        |(digits, now)| {
            prop_assert_eq!(
                parse_retry_after(&digits, now),
                Some(MAX_RETRY_AFTER.min(Duration::from_secs(digits.parse().unwrap_or(u64::MAX)))),
                "{:?}",
                digits
            );
            Ok(())
        },
    );
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const LONG_DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (year, month 1..=12, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), written here so the test does not share the parser's library.
fn civil(days: i64) -> (i64, usize, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as usize, day)
}

/// `t` (whole seconds since the epoch) in the three HTTP-date forms of RFC 9110 §5.6.7:
/// IMF-fixdate, RFC 850 and asctime.
fn http_dates(t: u64) -> [String; 3] {
    let days = (t / 86_400) as i64;
    let (h, m, s) = (t % 86_400 / 3600, t % 3600 / 60, t % 60);
    let (year, month, day) = civil(days);
    let wd = days.rem_euclid(7) as usize;
    let mon = MONTHS[month - 1];
    [
        format!(
            "{}, {day:02} {mon} {year} {h:02}:{m:02}:{s:02} GMT",
            DAYS[wd]
        ),
        format!(
            "{}, {day:02}-{mon}-{:02} {h:02}:{m:02}:{s:02} GMT",
            LONG_DAYS[wd],
            year % 100
        ),
        format!("{} {mon} {day:>2} {h:02}:{m:02}:{s:02} {year}", DAYS[wd]),
    ]
}

#[test]
fn fuzz_retry_after_http_dates_round_trip() {
    fuzz(
        "retry_after_http_dates_round_trip",
        (
            60u64 * 86_400 * 365..4_000_000_000,
            0u32..1_000_000_000,
            -400i64..400,
            0usize..3,
        ),
        |(now_secs, nanos, delta, form)| {
            let now = UNIX_EPOCH + Duration::new(now_secs, nanos);
            let at = now_secs.saturating_add_signed(delta);
            let text = http_dates(at)[form].clone();
            let at = UNIX_EPOCH + Duration::from_secs(at);
            let expected = at
                .duration_since(now)
                .ok()
                .filter(|d| !d.is_zero())
                .map(|d| d.min(MAX_RETRY_AFTER));
            prop_assert_eq!(parse_retry_after(&text, now), expected, "{:?}", text);
            Ok(())
        },
    );
}

// ----------------------------------------------------------------------------------------
// The health server's bind address and paths.

const BIND_WORDS: &[&str] = &[
    "127.0.0.1",
    "127.",
    "0",
    "1",
    ".",
    "::1",
    "::",
    ":",
    "[",
    "]",
    "%lo",
    "localhost",
    ":80",
    " ",
    "\n",
    "0x7f",
    "ffff",
    "::ffff:127.0.0.1",
];

/// Loopback addresses in their many spellings, padded, and sometimes with a port or a
/// zone that makes them invalid.
fn loopback_text() -> impl Strategy<Value = String> {
    let ip = prop_oneof![
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| format!("127.{a}.{b}.{c}")),
        Just("::1".to_string()),
        Just("0:0:0:0:0:0:0:1".to_string()),
        Just("0000::0001".to_string()),
        Just("[::1]".to_string()),
        "127\\.0{1,3}\\.0\\.0?1",
    ];
    let pad = prop::sample::select(&["", " ", "\t", "\n", "\u{a0}"][..]);
    let tail = prop::sample::select(&["", "", "", ":0", ":80", "%lo", "/8", "."][..]);
    (pad.clone(), ip, tail, pad).prop_map(|(a, ip, t, b)| format!("{a}{ip}{t}{b}"))
}

#[test]
fn fuzz_health_bind_address_starts_or_names_the_field() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let service = HealthService::new("fuzz", Duration::from_secs(1)).unwrap();
    let path = prop_oneof![
        3 => Just("/live".to_string()),
        1 => prop_oneof![any_text(12), "/[a-z/ ]{0,6}".prop_map(String::from)],
    ];
    let counts: [Cell<u32>; 4] = Default::default();
    let count = |i: usize| counts[i].set(counts[i].get() + 1);
    fuzz(
        "health_bind_address",
        (prop_oneof![text_for(BIND_WORDS), loopback_text(),], path),
        |(addr, live)| {
            // Loopback only: a parsed address elsewhere is not bound.
            if let Ok(ip) = addr.trim().parse::<IpAddr>()
                && !ip.is_loopback()
            {
                count(0);
                return Ok(());
            }
            let _enter = rt.enter();
            let started = ServerBuilder::new(service.clone())
                .with_bind_address(addr.clone())
                .with_port(0)
                .with_live_path(live.clone())
                .start();
            match started {
                Ok(server) => {
                    count(1);
                    prop_assert!(server.local_addr().ip().is_loopback());
                    prop_assert!(live.starts_with('/'));
                    rt.block_on(server.shutdown(Duration::from_secs(1)));
                }
                Err(ServerError::BadBindAddress(given)) => {
                    count(2);
                    prop_assert_eq!(&given, &addr);
                    prop_assert!(addr.trim().parse::<IpAddr>().is_err());
                }
                Err(ServerError::BadPath { what, path, .. }) => {
                    count(3);
                    prop_assert_eq!(what, "live");
                    prop_assert_eq!(&path, &live);
                }
                Err(e @ (ServerError::Bind { .. } | ServerError::PortInUse { .. })) => {
                    prop_assert!(e.to_string().contains("address"), "{}", e);
                }
                Err(e) => prop_assert!(false, "unexpected error: {}", e),
            }
            Ok(())
        },
    );
    let [skipped, started, bad_address, bad_path] = counts.map(Cell::into_inner);
    eprintln!(
        "fuzz health_bind_address: {started} started, {bad_address} bad addresses, \
         {bad_path} bad paths, {skipped} not loopback (skipped)"
    );
}

// ----------------------------------------------------------------------------------------
// Regressions: failures the properties found, kept as plain tests.

/// `level_printed_name_parses_back`: levels other than the seven print with an offset
/// (`DEBUG+3` is -1) and did not parse back, so neither did directives printed with them.
#[test]
fn regression_offset_level_names_parse_back() {
    assert_eq!(parse_level("DEBUG+3"), Ok(Level::new(-1)));
    assert_eq!(parse_level("ERROR+2147483639"), Ok(Level::new(i32::MAX)));
    assert_eq!(parse_level(" info-1 "), Ok(Level::new(-1)));
    assert!(parse_level("ERROR+2147483640").is_err(), "past i32::MAX");
    let d = Directives::parse("_=WARN+1").unwrap();
    assert_eq!(d.level_for("_"), Level::new(5));
    assert_eq!(Directives::parse(&d.to_string()), Ok(d));
}

/// `retry_after_huge_seconds_are_capped`: seconds past `u64::MAX` read as no
/// `Retry-After` at all instead of a long wait.
#[test]
fn regression_retry_after_seconds_past_u64_are_capped() {
    for text in ["18500000000000000000", "100000000000000000000"] {
        assert_eq!(
            parse_retry_after(text, UNIX_EPOCH),
            Some(MAX_RETRY_AFTER),
            "{text}"
        );
    }
}

/// `retry_after_http_dates_round_trip`: the RFC 850 and asctime forms of an HTTP date,
/// which RFC 9110 makes recipients accept, read as no `Retry-After`.
#[test]
fn regression_retry_after_obsolete_date_forms() {
    let now = UNIX_EPOCH + Duration::from_secs(1_892_160_000);
    assert_eq!(
        parse_retry_after("Monday, 17-Dec-29 00:00:01 GMT", now),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        parse_retry_after("Mon Dec 17 00:00:01 2029", now),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        parse_retry_after("Mon, 17 Dec 2029 00:00:01 GMT", now),
        Some(Duration::from_secs(1))
    );
}

/// `otlp_bad_percent_escape_is_refused`: `%+a` was read as the escape of a line feed
/// (`u8::from_str_radix` takes a sign), in resource attributes and headers alike.
#[test]
fn regression_otlp_percent_escape_with_a_sign_is_refused() {
    for var in ["OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_HEADERS"] {
        for text in ["k=%+a", "k=x%+F", "k=%+0"] {
            let vars = HashMap::from([(var, text.to_string())]);
            let e = OtlpConfig::new().resolve(env_of(vars), "svc").unwrap_err();
            assert_eq!(e.setting, var, "{text}");
            assert!(e.reason.contains("bad %-escape"), "{e}");
        }
    }
    let vars = HashMap::from([("OTEL_RESOURCE_ATTRIBUTES", "k=%0a%C3%A9".to_string())]);
    let s = OtlpConfig::new().resolve(env_of(vars), "svc").unwrap();
    assert_eq!(s.resource["k"], "\né");
}
