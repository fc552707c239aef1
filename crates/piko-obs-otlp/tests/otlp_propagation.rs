//! W3C trace context and baggage across real HTTP on loopback: a reqwest call made
//! with `traced_with` carries `traceparent`, `tracestate` and `baggage`; a warp server
//! reads all three with `warp_trace_context()` and runs its handler in a span of the
//! caller's trace with `run_in_span_from`. The same with AWS X-Ray's
//! `X-Amzn-Trace-Id` (`OTEL_PROPAGATORS=xray`), in and out. Every test installs the
//! same propagators (X-Ray, then trace context, then baggage), as they share the
//! process's global one.

use std::time::Duration;

use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use piko_obs_logger::Hub;
use warp::Filter as _;

/// The propagators `OTEL_PROPAGATORS=xray,tracecontext,baggage` names, as `init()`
/// installs them.
fn install_propagators() {
    use piko_obs_otlp::Propagator;
    opentelemetry::global::set_text_map_propagator(piko_obs_otlp::text_map_propagator(&[
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
