//! Trace context across real HTTP on loopback, in every format `OTEL_PROPAGATORS`
//! names: a reqwest call made with `traced_with` carries `traceparent`, `tracestate`
//! and `baggage`; a warp server reads all three with `warp_trace_context()` and runs
//! its handler in a span of the caller's trace with `run_in_span_from`. The same with
//! AWS X-Ray's `X-Amzn-Trace-Id` (`xray`), and with B3 (`b3`, `b3multi`), Jaeger
//! (`jaeger`) and OT Trace (`ottrace`), in and out. Every test installs the same
//! propagators (B3 single and multi, Jaeger, OT Trace, X-Ray, then trace context, then
//! baggage), as they share the process's global one.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use piko_obs_logger::Hub;
use warp::Filter as _;

/// The propagators `OTEL_PROPAGATORS=b3,b3multi,jaeger,ottrace,xray,tracecontext,baggage`
/// names, as `init()` installs them.
fn install_propagators() {
    use piko_obs_otlp::Propagator;
    opentelemetry::global::set_text_map_propagator(piko_obs_otlp::text_map_propagator(&[
        Propagator::B3,
        Propagator::B3Multi,
        Propagator::Jaeger,
        Propagator::OtTrace,
        Propagator::XRay,
        Propagator::TraceContext,
        Propagator::Baggage,
    ]));
}

/// The propagators, a tracer provider, a runtime for the server, and its logger.
fn set_up() -> (tokio::runtime::Runtime, piko_obs_logger::Logger) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    install_propagators();
    opentelemetry::global::set_tracer_provider(
        opentelemetry_sdk::trace::SdkTracerProvider::builder().build(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    (rt, Hub::default().get_logger("server"))
}

/// Serves `route` on a free loopback port, on `rt`.
fn serve<F>(rt: &tokio::runtime::Runtime, route: F) -> std::net::SocketAddr
where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(warp::serve(route).incoming(listener).run());
    addr
}

/// A client whose every request is bounded.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Sends `request` and reads the answer's body.
fn text(rt: &tokio::runtime::Runtime, request: reqwest::RequestBuilder) -> String {
    rt.block_on(async { request.send().await.unwrap().text().await.unwrap() })
}

#[test]
fn trace_context_and_baggage_cross_a_real_request_both_ways() {
    let (rt, log) = set_up();
    // The server: what it read, and the span its handler ran in.
    let route = warp::path("stock")
        .and(piko_obs_otlp::warp_trace_context())
        .then(move |parent: Context| {
            let log = log.clone();
            async move {
                let read = format!(
                    "{} {} {} {}",
                    parent.span().span_context().trace_id(),
                    parent.span().span_context().span_id(),
                    parent.span().span_context().trace_state().header(),
                    parent
                        .baggage()
                        .get("tenant")
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                );
                let inside = piko_obs_otlp::run_in_span_from(
                    &parent,
                    &log,
                    "GET /stock",
                    vec![],
                    |_| async {
                        let sc = Context::current().span().span_context().clone();
                        Ok::<_, std::io::Error>(format!("{} {}", sc.trace_id(), sc.span_id()))
                    },
                )
                .await
                .unwrap();
                format!("{read} | {inside}")
            }
        });
    let addr = serve(&rt, route);

    // The caller: a remote parent with a trace state, and baggage.
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let state = TraceState::from_key_value([("vendor", "abc")]).unwrap();
    let parent = SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, true, state);
    let cx = Context::current()
        .with_remote_span_context(parent)
        .with_baggage([KeyValue::new("tenant", "acme")]);
    let client = client();
    let answer = text(
        &rt,
        piko_obs_otlp::traced_with(&cx, client.get(format!("http://{addr}/stock"))),
    );
    let (read, inside) = answer.split_once(" | ").expect(&answer);
    assert_eq!(
        read, "4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7 vendor=abc acme",
        "traceparent, tracestate and baggage all arrived and were read"
    );
    let (inner_trace, inner_span) = inside.split_once(' ').unwrap();
    assert_eq!(
        inner_trace, "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's trace"
    );
    assert_ne!(inner_span, "00f067aa0ba902b7", "a span of its own");
}

/// AWS X-Ray: a caller's `X-Amzn-Trace-Id` header, sent in a real request, is read by
/// the server, whose span continues that trace; the header the server would send on
/// names its own span as the parent; and a reqwest call made with `traced_with`
/// carries the header out.
#[test]
fn xray_trace_headers_cross_a_real_request_both_ways() {
    let (rt, log) = set_up();
    // The server answers: the header it got, the parent it read, its own span, and the
    // X-Ray header it would send on from inside that span.
    let route = warp::path("xray")
        .and(warp::header::optional::<String>("x-amzn-trace-id"))
        .and(piko_obs_otlp::warp_trace_context())
        .then(move |got: Option<String>, parent: Context| {
            let log = log.clone();
            async move {
                let sc = parent.span().span_context().clone();
                let read = format!("{} {} {}", sc.trace_id(), sc.span_id(), sc.is_sampled());
                let inside = piko_obs_otlp::run_in_span_from(
                    &parent,
                    &log,
                    "GET /xray",
                    vec![],
                    |_| async {
                        let cx = Context::current();
                        let mut out = warp::http::HeaderMap::new();
                        piko_obs_otlp::inject_context(&cx, &mut out);
                        let span = cx.span().span_context().span_id();
                        let header = out
                            .get("x-amzn-trace-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        Ok::<_, std::io::Error>(format!("{span} {header}"))
                    },
                )
                .await
                .unwrap();
                format!("{} | {read} | {inside}", got.unwrap_or_default())
            }
        });
    let addr = serve(&rt, route);
    let client = client();
    let url = format!("http://{addr}/xray");

    // In: an X-Ray header alone, as an AWS load balancer or Lambda sends it.
    let answer = text(
        &rt,
        client.get(&url).header(
            "X-Amzn-Trace-Id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        ),
    );
    let parts: Vec<&str> = answer.split(" | ").collect();
    let [_, read, inside] = parts[..] else {
        panic!("{answer}")
    };
    assert_eq!(
        read, "5759e988bd862e3fe1be46a994272793 53995c3f42cd8ad8 true",
        "the X-Ray header was read"
    );
    let (own_span, header) = inside.split_once(' ').expect(inside);
    assert_ne!(own_span, "53995c3f42cd8ad8", "a span of its own");
    assert_eq!(
        header,
        format!("Root=1-5759e988-bd862e3fe1be46a994272793;Parent={own_span};Sampled=1"),
        "the trace goes on with the server's span as the parent"
    );

    // Out: a caller's context, carried by `traced_with`.
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let cx = Context::current().with_remote_span_context(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ));
    let answer = text(&rt, piko_obs_otlp::traced_with(&cx, client.get(&url)));
    let (sent, _) = answer.split_once(" | ").expect(&answer);
    assert_eq!(
        sent, "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1",
        "the request carried the X-Ray header"
    );
}

/// The headers of B3, Jaeger and OT Trace in `headers`, by lower-case name.
fn format_headers(headers: &warp::http::HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name == "b3"
                || ["x-b3-", "uber", "ot-"]
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
        })
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                value.to_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

/// Serves `/formats`, answering in JSON: `got`, the B3, Jaeger and OT Trace headers
/// of the request; `parent`, the trace id, span id and sampled flag the propagators
/// read; `inside`, the trace and span ids of the span the handler runs in (started
/// with `run_in_span_from` from what was read) and `sends`, the B3, Jaeger and OT
/// Trace headers a request made from inside that span carries.
fn formats_server(rt: &tokio::runtime::Runtime, log: piko_obs_logger::Logger) -> String {
    let route = warp::path("formats")
        .and(warp::header::headers_cloned())
        .and(piko_obs_otlp::warp_trace_context())
        .then(move |got: warp::http::HeaderMap, parent: Context| {
            let log = log.clone();
            async move {
                let sc = parent.span().span_context().clone();
                let inside = piko_obs_otlp::run_in_span_from(
                    &parent,
                    &log,
                    "GET /formats",
                    vec![],
                    |_| async {
                        let cx = Context::current();
                        let mut out = warp::http::HeaderMap::new();
                        piko_obs_otlp::inject_context(&cx, &mut out);
                        let sc = cx.span().span_context().clone();
                        Ok::<_, std::io::Error>(serde_json::json!({
                            "trace": sc.trace_id().to_string(),
                            "span": sc.span_id().to_string(),
                            "sends": format_headers(&out),
                        }))
                    },
                )
                .await
                .unwrap();
                warp::reply::json(&serde_json::json!({
                    "got": format_headers(&got),
                    "parent": [
                        sc.trace_id().to_string(),
                        sc.span_id().to_string(),
                        sc.is_sampled().to_string(),
                    ],
                    "inside": inside,
                }))
            }
        });
    format!("http://{}/formats", serve(rt, route))
}

/// The answer of the `/formats` server to `request`.
fn formats_answer(
    rt: &tokio::runtime::Runtime,
    request: reqwest::RequestBuilder,
) -> serde_json::Value {
    serde_json::from_str(&text(rt, request)).unwrap()
}

/// A request made with `traced_with` carries the caller's trace in every format
/// installed, with the baggage in Jaeger's and OT Trace's own headers.
#[test]
fn b3_jaeger_and_ottrace_headers_go_out_on_a_real_request() {
    let (rt, log) = set_up();
    let url = formats_server(&rt, log);
    let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let cx = Context::current()
        .with_remote_span_context(SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ))
        .with_baggage([KeyValue::new("tenant", "acme corp")]);
    let answer = formats_answer(&rt, piko_obs_otlp::traced_with(&cx, client().get(&url)));
    assert_eq!(
        answer["got"],
        serde_json::json!({
            "b3": "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "x-b3-traceid": "4bf92f3577b34da6a3ce929d0e0e4736",
            "x-b3-spanid": "00f067aa0ba902b7",
            "x-b3-sampled": "1",
            "uber-trace-id": "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1",
            "uberctx-tenant": "acme%20corp",
            "ot-tracer-traceid": "a3ce929d0e0e4736",
            "ot-tracer-spanid": "00f067aa0ba902b7",
            "ot-tracer-sampled": "true",
            "ot-baggage-tenant": "acme corp",
        }),
        "each format's headers, the OT Trace id in its 64 bits"
    );
}

/// What the server read from `headers` (trace id, span id, sampled), and the headers
/// it sends on from inside its own span, where `{trace}` and `{span}` stand for its
/// trace and span ids.
struct Case {
    name: &'static str,
    headers: &'static [(&'static str, &'static str)],
    parent: [&'static str; 3],
    sends: &'static [(&'static str, &'static str)],
}

/// A request carrying B3 (single header, 128- or 64-bit, debug; or the multiple
/// headers), Jaeger (percent-encoded, with baggage) or OT Trace headers alone
/// continues that trace: the server reads the caller's span as the parent, its own
/// span has the caller's trace id and an id of its own, and the requests it makes
/// carry the trace on in every format, with the debug mark and the baggage.
#[test]
fn b3_jaeger_and_ottrace_headers_continue_the_trace_on_a_real_request() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PADDED: &str = "0000000000000000a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";
    let cases = [
        Case {
            name: "b3",
            headers: &[(
                "b3",
                "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-53995c3f42cd8ad8",
            )],
            parent: [TRACE, SPAN, "true"],
            sends: &[
                ("b3", "{trace}-{span}-1"),
                ("x-b3-sampled", "1"),
                ("uber-trace-id", "{trace}:{span}:0:1"),
                ("ot-tracer-sampled", "true"),
            ],
        },
        Case {
            name: "b3, 64-bit trace id, debug",
            headers: &[("b3", "a3ce929d0e0e4736-00f067aa0ba902b7-d")],
            parent: [PADDED, SPAN, "true"],
            sends: &[
                ("b3", "{trace}-{span}-d"),
                ("x-b3-flags", "1"),
                ("uber-trace-id", "{trace}:{span}:0:3"),
            ],
        },
        Case {
            name: "b3multi",
            headers: &[
                ("X-B3-TraceId", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("X-B3-SpanId", "00f067aa0ba902b7"),
                ("X-B3-ParentSpanId", "53995c3f42cd8ad8"),
                ("X-B3-Sampled", "0"),
            ],
            parent: [TRACE, SPAN, "false"],
            sends: &[
                ("x-b3-traceid", "{trace}"),
                ("x-b3-spanid", "{span}"),
                ("x-b3-sampled", "0"),
                ("b3", "{trace}-{span}-0"),
                ("ot-tracer-sampled", "false"),
            ],
        },
        Case {
            name: "jaeger",
            headers: &[
                (
                    "uber-trace-id",
                    "4bf92f3577b34da6a3ce929d0e0e4736%3A00f067aa0ba902b7%3A0%3A1",
                ),
                ("uberctx-tenant", "acme%20corp"),
            ],
            parent: [TRACE, SPAN, "true"],
            sends: &[
                ("uber-trace-id", "{trace}:{span}:0:1"),
                ("uberctx-tenant", "acme%20corp"),
                ("ot-baggage-tenant", "acme corp"),
                ("b3", "{trace}-{span}-1"),
            ],
        },
        Case {
            name: "ottrace",
            headers: &[
                ("ot-tracer-traceid", "a3ce929d0e0e4736"),
                ("ot-tracer-spanid", "00f067aa0ba902b7"),
                ("ot-tracer-sampled", "true"),
                ("ot-baggage-tenant", "acme"),
            ],
            parent: [PADDED, SPAN, "true"],
            sends: &[
                ("ot-tracer-traceid", "a3ce929d0e0e4736"),
                ("ot-tracer-spanid", "{span}"),
                ("ot-tracer-sampled", "true"),
                ("ot-baggage-tenant", "acme"),
                ("uberctx-tenant", "acme"),
                ("b3", "{trace}-{span}-1"),
            ],
        },
    ];
    let (rt, log) = set_up();
    let url = formats_server(&rt, log);
    let client = client();
    for case in cases {
        let mut request = client.get(&url);
        for (name, value) in case.headers {
            request = request.header(*name, *value);
        }
        let answer = formats_answer(&rt, request);
        let name = case.name;
        assert_eq!(answer["parent"], serde_json::json!(case.parent), "{name}");
        let inside = &answer["inside"];
        let (trace, span) = (
            inside["trace"].as_str().unwrap(),
            inside["span"].as_str().unwrap(),
        );
        assert_eq!(trace, case.parent[0], "{name}: the caller's trace");
        assert_ne!(span, SPAN, "{name}: a span of its own");
        for (header, value) in case.sends {
            let value = value.replace("{trace}", trace).replace("{span}", span);
            assert_eq!(
                inside["sends"][*header], value,
                "{name}: {header} in {inside}"
            );
        }
        if !name.contains("debug") {
            assert!(
                inside["sends"].get("x-b3-flags").is_none(),
                "{name}: no debug mark: {inside}"
            );
        }
    }
}
