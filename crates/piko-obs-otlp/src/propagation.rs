//! Trace context and baggage across HTTP headers, through the globally installed
//! propagator: W3C `traceparent`, `tracestate` and `baggage` by default, or the formats
//! `OTEL_PROPAGATORS` lists (B3, Jaeger, X-Ray, OT Trace).

use opentelemetry::propagation::{Extractor, Injector};

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // The first value of each header only.
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The context an incoming request carries (its `traceparent`, `tracestate` and
/// `baggage` headers by default; the headers of each format the global propagator
/// reads), through the global propagator; the current context's values where the
/// headers say nothing.
pub fn extract_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)))
}

/// Writes the context's `traceparent`, `tracestate` and `baggage` (by default; the
/// headers of each format the global propagator writes) into the headers of an
/// outgoing request (`reqwest::RequestBuilder::headers`, hyper, ...).
pub fn inject_context(cx: &opentelemetry::Context, headers: &mut http::HeaderMap) {
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(cx, &mut HeadersMut(headers))
    });
}

/// Adds the current context's `traceparent`, `tracestate` and `baggage` headers to an
/// outgoing reqwest request, so the service called continues the trace.
///
/// ```no_run
/// # async fn call() -> Result<(), reqwest::Error> {
/// let client = reqwest::Client::builder().build()?;
/// let answer = piko_obs_otlp::traced(client.get("http://127.0.0.1:8081/stock"))
///     .send()
///     .await?;
/// # Ok(()) }
/// ```
pub fn traced(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    traced_with(&opentelemetry::Context::current(), request)
}

/// [`traced`] with an explicit context (the one a request's span runs in, say).
pub fn traced_with(
    cx: &opentelemetry::Context,
    request: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    let mut headers = http::HeaderMap::new();
    inject_context(cx, &mut headers);
    request.headers(headers)
}

#[cfg(feature = "warp")]
/// A warp filter extracting the trace context of the request (`traceparent`,
/// `tracestate`, `baggage`), to start the request's span from, for example with
/// [`crate::run_in_span_from`].
pub fn warp_trace_context()
-> impl warp::Filter<Extract = (opentelemetry::Context,), Error = std::convert::Infallible> + Clone
{
    use warp::Filter as _;
    warp::header::headers_cloned().map(|h: http::HeaderMap| extract_context(&h))
}

#[cfg(feature = "tower")]
/// A tower layer that runs each request in a server span, a child of the trace context
/// the request carries (W3C `traceparent`, `tracestate`, `baggage`), after the HTTP
/// semantic conventions:
///
/// - the route template comes from axum's `MatchedPath` (with the `axum` feature, and
///   the layer added with `Router::layer` or `route_layer`, which run after routing), or
///   is given once for the service ([`TraceLayer::for_route`]);
/// - the span is named `{METHOD} {route}`, or `{METHOD}` when no route is known (`HTTP`
///   for a method outside the standard ten), and `http.route` is the template, never the
///   raw path;
/// - attributes `http.request.method` (`_OTHER` and `http.request.method_original` for
///   others), `url.path`, `url.scheme`, `http.response.status_code`, and `error.type` on
///   a 5xx answer (the code) or a service error;
/// - status ERROR for a 5xx answer or a service error; a 4xx leaves it unset, as the
///   conventions say for a server.
///
/// The span is current while the inner service handles the request, so its lines, its
/// `run_in_span`s and its outgoing requests ([`traced`]) continue the trace.
#[derive(Debug, Clone, Default)]
pub struct TraceLayer {
    route: Option<&'static str>,
    scheme: Option<&'static str>,
}

#[cfg(feature = "tower")]
impl TraceLayer {
    /// Spans named after the route axum matched (with the `axum` feature), else the
    /// method alone.
    pub fn new() -> TraceLayer {
        TraceLayer::default()
    }

    /// Spans of the service serving the route template `route` (`/orders/{id}`).
    pub fn for_route(route: &'static str) -> TraceLayer {
        TraceLayer {
            route: Some(route),
            scheme: None,
        }
    }

    /// `url.scheme` when the request URI has none (`"https"` behind TLS); `http`
    /// otherwise.
    pub fn with_scheme(mut self, scheme: &'static str) -> TraceLayer {
        self.scheme = Some(scheme);
        self
    }
}

#[cfg(feature = "tower")]
impl<S> tower_layer::Layer<S> for TraceLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Traced<S> {
        Traced {
            inner,
            layer: self.clone(),
        }
    }
}

#[cfg(feature = "tower")]
/// The service [`TraceLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    layer: TraceLayer,
}

#[cfg(feature = "tower")]
/// The methods the HTTP conventions name; any other is `_OTHER`.
const KNOWN_METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "QUERY",
];

/// The route template axum matched, if any.
#[cfg(all(feature = "tower", feature = "axum"))]
fn matched_path(extensions: &http::Extensions) -> Option<std::borrow::Cow<'static, str>> {
    extensions
        .get::<axum::extract::MatchedPath>()
        .map(|m| std::borrow::Cow::Owned(m.as_str().to_owned()))
}

/// Without the `axum` feature there is no matched path to read.
#[cfg(all(feature = "tower", not(feature = "axum")))]
fn matched_path(_: &http::Extensions) -> Option<std::borrow::Cow<'static, str>> {
    None
}

#[cfg(feature = "tower")]
/// The server span's name and attributes for `req`, by the HTTP conventions.
fn server_span<B>(
    layer: &TraceLayer,
    req: &http::Request<B>,
) -> (String, Vec<opentelemetry::KeyValue>) {
    use opentelemetry::KeyValue;
    let method = req.method().as_str();
    let known = KNOWN_METHODS.contains(&method);
    let route = layer
        .route
        .map(std::borrow::Cow::Borrowed)
        .or_else(|| matched_path(req.extensions()));
    let scheme = match req.uri().scheme_str() {
        Some(s @ ("http" | "https")) => s.to_string(),
        _ => layer.scheme.unwrap_or("http").to_string(),
    };
    let name = match (&route, known) {
        (Some(r), true) => format!("{method} {r}"),
        (Some(r), false) => format!("HTTP {r}"),
        (None, true) => method.to_string(),
        (None, false) => "HTTP".to_string(),
    };
    let mut attributes = vec![
        KeyValue::new(
            "http.request.method",
            if known { method } else { "_OTHER" }.to_string(),
        ),
        KeyValue::new("url.path", req.uri().path().to_string()),
        KeyValue::new("url.scheme", scheme),
    ];
    if !known {
        attributes.push(KeyValue::new(
            "http.request.method_original",
            method.to_string(),
        ));
    }
    if let Some(r) = route {
        attributes.push(KeyValue::new("http.route", r.into_owned()));
    }
    (name, attributes)
}

#[cfg(feature = "tower")]
impl<S, B, RB> tower_service::Service<http::Request<B>> for Traced<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<RB>, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt as _};
        let parent = extract_context(req.headers());
        let (name, attributes) = server_span(&self.layer, &req);
        let cx = crate::span::start_kind(&parent, name.into(), attributes, SpanKind::Server);
        let fut = {
            let _in = cx.clone().attach();
            self.inner.call(req)
        };
        Box::pin(async move {
            let result = fut.with_context(cx.clone()).await;
            let span = cx.span();
            match &result {
                Ok(r) => {
                    let code = r.status().as_u16();
                    span.set_attribute(opentelemetry::KeyValue::new(
                        "http.response.status_code",
                        i64::from(code),
                    ));
                    if code >= 500 {
                        span.set_attribute(opentelemetry::KeyValue::new(
                            "error.type",
                            code.to_string(),
                        ));
                        span.set_status(Status::error(""));
                    }
                }
                Err(_) => {
                    let error = std::any::type_name::<S::Error>();
                    span.set_attribute(opentelemetry::KeyValue::new(
                        "error.type",
                        error.split('<').next().unwrap_or(error).to_string(),
                    ));
                    span.set_status(Status::error("the service failed"));
                }
            }
            span.end();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;

    /// The facade's propagators; every test here sets the same, as they share the
    /// process's globals.
    fn set_propagators() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry::propagation::TextMapCompositePropagator::new(vec![
                Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
                Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
            ]),
        );
    }

    #[test]
    fn trace_context_round_trips_through_headers() {
        set_propagators();
        let mut incoming = http::HeaderMap::new();
        incoming.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = extract_context(&incoming);
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_remote() && sc.is_sampled());
        let mut outgoing = http::HeaderMap::new();
        inject_context(&cx, &mut outgoing);
        assert_eq!(
            outgoing["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[derive(Clone)]
    struct Echo;

    impl tower_service::Service<http::Request<()>> for Echo {
        type Response = http::Response<String>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<http::Response<String>, std::convert::Infallible>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            // Answers with the trace and span ids, the trace state and the baggage
            // current while it handles the request.
            use opentelemetry::baggage::BaggageExt as _;
            let cx = opentelemetry::Context::current();
            let sc = cx.span().span_context().clone();
            std::future::ready(Ok(http::Response::new(format!(
                "{} {} {} {}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_state().header(),
                cx.baggage()
                    .get("tenant")
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            ))))
        }
    }

    #[test]
    fn the_tower_layer_runs_requests_in_a_child_of_their_trace_context() {
        use tower_layer::Layer as _;
        use tower_service::Service as _;
        set_propagators();
        opentelemetry::global::set_tracer_provider(
            opentelemetry_sdk::trace::SdkTracerProvider::builder().build(),
        );
        let mut svc = TraceLayer::for_route("/").layer(Echo);
        let req = http::Request::get("/")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("tracestate", "vendor=abc")
            .header("baggage", "tenant=acme")
            .body(())
            .unwrap();
        let answer = futures_executor::block_on(svc.call(req))
            .unwrap()
            .into_body();
        let parts: Vec<&str> = answer.split(' ').collect();
        let [trace, span, state, tenant] = parts[..] else {
            panic!("{answer}")
        };
        assert_eq!(
            trace, "4bf92f3577b34da6a3ce929d0e0e4736",
            "the caller's trace"
        );
        assert_ne!(span, "00f067aa0ba902b7", "a span of its own");
        assert_ne!(span, "0000000000000000");
        assert_eq!(state, "vendor=abc", "the trace state goes on to the child");
        assert_eq!(tenant, "acme", "the baggage is current in the service");
    }
}
