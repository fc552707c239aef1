//! HTTP server request metrics after the OpenTelemetry HTTP semantic conventions, as a
//! tower `Layer` (axum, hyper, tonic) and as a warp filter wrapper.
//!
//! - `http_server_request_duration_seconds` (histogram, the convention's buckets),
//!   labels `http_request_method`, `http_route` (a route template, never the raw path,
//!   so the number of series stays bounded), `http_response_status_code` (when a
//!   response was sent), `url_scheme`, and `error_type` on a failure (the status code of
//!   a 5xx answer, or the error's type when the service returned no response);
//! - `http_server_active_requests` (gauge), labels `http_request_method`, `http_route`,
//!   `url_scheme`.
//!
//! Methods outside the standard ten (RFC 9110's, PATCH, QUERY) are labelled `_OTHER`, as the convention says.
//! With the `axum` feature, [`HttpMetricsLayer::new`] takes the route template from
//! axum's `MatchedPath`; a request no route matched is labelled [`UNMATCHED_ROUTE`].
//! [`warp_route`] resolves its metric handles on first use of each method and status
//! and keeps them, so a request costs no registry lookup: install the recorder (the
//! facade's `init()` does) before serving.

// Helpers shared by the warp filter and the tower layer; with one of them off, some serve
// only the other.
#![cfg_attr(
    not(all(feature = "warp", feature = "tower")),
    allow(dead_code, unused_imports)
)]

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::HTTP_SERVER_REQUEST_DURATION;

/// The in-flight requests gauge's name.
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";

/// The methods labelled by name (RFC 9110's, PATCH and QUERY, as the conventions list
/// them, and as the server spans name them); any other is labelled `_OTHER`, so a
/// client cannot create series by inventing methods.
const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "QUERY",
];
const OTHER_METHOD: usize = METHODS.len();

fn method_index(method: &http::Method) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(OTHER_METHOD)
}

fn method_label(index: usize) -> &'static str {
    METHODS.get(index).copied().unwrap_or("_OTHER")
}

/// The status code as a label value, from a table built once (no allocation per
/// request).
fn status_label(status: u16) -> &'static str {
    static TABLE: std::sync::LazyLock<Box<[&'static str]>> = std::sync::LazyLock::new(|| {
        (100..1000u16)
            .map(|s| &*Box::leak(s.to_string().into_boxed_str()))
            .collect()
    });
    match status {
        100..=999 => TABLE[usize::from(status - 100)],
        _ => "_OTHER",
    }
}

/// The route label of a request no route template matched.
pub const UNMATCHED_ROUTE: &str = "other";

/// What a request ended with: an answer's status code, or an error without one (named
/// by its type, for `error_type`).
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Status(u16),
    Failed(&'static str),
}

fn duration_histogram(
    method: usize,
    route: metrics::SharedString,
    scheme: &'static str,
    outcome: Outcome,
) -> metrics::Histogram {
    match outcome {
        Outcome::Status(status @ 500..) => metrics::histogram!(
            HTTP_SERVER_REQUEST_DURATION,
            "http_request_method" => method_label(method),
            "http_route" => route,
            "http_response_status_code" => status_label(status),
            "url_scheme" => scheme,
            "error_type" => status_label(status)
        ),
        Outcome::Status(status) => metrics::histogram!(
            HTTP_SERVER_REQUEST_DURATION,
            "http_request_method" => method_label(method),
            "http_route" => route,
            "http_response_status_code" => status_label(status),
            "url_scheme" => scheme
        ),
        Outcome::Failed(error) => metrics::histogram!(
            HTTP_SERVER_REQUEST_DURATION,
            "http_request_method" => method_label(method),
            "http_route" => route,
            "url_scheme" => scheme,
            "error_type" => error
        ),
    }
}

fn active_gauge(
    method: usize,
    route: metrics::SharedString,
    scheme: &'static str,
) -> metrics::Gauge {
    metrics::gauge!(
        HTTP_SERVER_ACTIVE_REQUESTS,
        "http_request_method" => method_label(method),
        "http_route" => route,
        "url_scheme" => scheme
    )
}

/// The request's scheme for `url_scheme`: its URI's, when it has one (a proxy's
/// absolute form), else `default`.
fn scheme_of(uri: &http::Uri, default: &'static str) -> &'static str {
    match uri.scheme_str() {
        Some("https") => "https",
        Some("http") => "http",
        _ => default,
    }
}

/// The `error_type` of a service error: its type's path without generic arguments
/// (`std::io::error::Error`), one value per error type of the program, so bounded.
fn error_type_of<E>() -> &'static str {
    let name = std::any::type_name::<E>();
    name.split('<').next().unwrap_or(name)
}

/// Describes the request metrics (their HELP lines and the duration's unit) to the
/// installed recorder; [`crate::Metrics::describe`] calls it.
pub fn describe() {
    metrics::describe_histogram!(
        HTTP_SERVER_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Duration of HTTP server requests, per method, route template and status code."
    );
    metrics::describe_gauge!(
        HTTP_SERVER_ACTIVE_REQUESTS,
        "HTTP server requests in flight, per method and route template."
    );
}

/// Records one finished request, served over plain HTTP.
pub fn record_request(method: &http::Method, route: &str, status: u16, elapsed: Duration) {
    duration_histogram(
        method_index(method),
        route.to_owned().into(),
        "http",
        Outcome::Status(status),
    )
    .record(elapsed.as_secs_f64());
}

/// Counts a request in flight until dropped.
#[derive(Debug)]
pub struct InFlight {
    gauge: metrics::Gauge,
}

impl InFlight {
    /// Counts a request to `route` in, served over plain HTTP.
    pub fn enter(method: &http::Method, route: &str) -> InFlight {
        InFlight::with_gauge(active_gauge(
            method_index(method),
            route.to_owned().into(),
            "http",
        ))
    }

    fn with_gauge(gauge: metrics::Gauge) -> InFlight {
        gauge.increment(1.0);
        InFlight { gauge }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// How many status codes per method [`RouteHandles`] keeps handles for; requests with
/// other codes take the registry lookup.
const STATUS_SLOTS: usize = 8;

/// The handles of one route template, resolved on first use of each method and status
/// and kept, so a request costs no registry lookup and no allocation. Lock-free reads;
/// the handles come from the recorder installed at first use.
struct RouteHandles {
    route: &'static str,
    methods: [MethodHandles; OTHER_METHOD + 1],
}

#[derive(Default)]
struct MethodHandles {
    active: OnceLock<metrics::Gauge>,
    durations: [OnceLock<(u16, metrics::Histogram)>; STATUS_SLOTS],
}

impl RouteHandles {
    fn new(route: &'static str) -> RouteHandles {
        RouteHandles {
            route,
            methods: Default::default(),
        }
    }

    /// The route as a label value; a `'static` template needs no allocation.
    fn label(&self) -> metrics::SharedString {
        metrics::SharedString::const_str(self.route)
    }

    fn enter(&self, method: usize) -> InFlight {
        let gauge = self.methods[method]
            .active
            .get_or_init(|| active_gauge(method, self.label(), "http"));
        InFlight::with_gauge(gauge.clone())
    }

    fn record(&self, method: usize, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let histogram =
            || duration_histogram(method, self.label(), "http", Outcome::Status(status));
        for slot in &self.methods[method].durations {
            let (code, kept) = slot.get_or_init(|| (status, histogram()));
            if *code == status {
                kept.record(seconds);
                return;
            }
        }
        histogram().record(seconds);
    }
}

#[cfg(feature = "tower")]
type RouteFn =
    dyn Fn(&http::Method, &http::Uri, &http::Extensions) -> Cow<'static, str> + Send + Sync;

#[cfg(feature = "tower")]
/// A tower `Layer` that records request metrics. The route template comes from axum's
/// `MatchedPath` (with the `axum` feature, and the layer added with `Router::layer` or
/// `route_layer`, which run after routing), or from a function of the request
/// ([`HttpMetricsLayer::with_route`]); a request without one is labelled
/// `http_route="other"` ([`UNMATCHED_ROUTE`]), so cardinality stays bounded.
/// `url_scheme` is the request URI's scheme when it has one, else `http`
/// ([`HttpMetricsLayer::with_scheme`] for a server behind TLS).
#[derive(Clone)]
pub struct HttpMetricsLayer {
    route: Arc<RouteFn>,
    scheme: &'static str,
}

#[cfg(feature = "tower")]
impl std::fmt::Debug for HttpMetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetricsLayer").finish_non_exhaustive()
    }
}

#[cfg(feature = "tower")]
impl Default for HttpMetricsLayer {
    fn default() -> Self {
        HttpMetricsLayer {
            route: Arc::new(|_, _, extensions| matched_path(extensions)),
            scheme: "http",
        }
    }
}

/// The route template axum matched, or [`UNMATCHED_ROUTE`].
#[cfg(all(feature = "tower", feature = "axum"))]
pub fn matched_path(extensions: &http::Extensions) -> Cow<'static, str> {
    extensions
        .get::<axum::extract::MatchedPath>()
        .map_or(Cow::Borrowed(UNMATCHED_ROUTE), |m| {
            Cow::Owned(m.as_str().to_owned())
        })
}

/// [`UNMATCHED_ROUTE`]: without the `axum` feature there is no matched path to read.
#[cfg(all(feature = "tower", not(feature = "axum")))]
pub fn matched_path(_: &http::Extensions) -> Cow<'static, str> {
    Cow::Borrowed(UNMATCHED_ROUTE)
}

#[cfg(feature = "tower")]
impl HttpMetricsLayer {
    /// A layer labelling each request with the route template axum matched (with the
    /// `axum` feature), else `http_route="other"`.
    pub fn new() -> Self {
        HttpMetricsLayer::default()
    }

    /// The same layer, labelling `url_scheme` with `scheme` (`"https"` for a server
    /// behind TLS) when the request URI has none.
    pub fn with_scheme(mut self, scheme: &'static str) -> Self {
        self.scheme = scheme;
        self
    }

    /// A layer whose route label is `route(method, uri, extensions)`; it must return a
    /// template (`/orders/{id}`), not the raw path.
    pub fn with_route(
        route: impl Fn(&http::Method, &http::Uri, &http::Extensions) -> Cow<'static, str>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        HttpMetricsLayer {
            route: Arc::new(route),
            scheme: "http",
        }
    }
}

#[cfg(feature = "tower")]
impl<S> tower_layer::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;
    fn layer(&self, inner: S) -> HttpMetrics<S> {
        HttpMetrics {
            inner,
            route: self.route.clone(),
            scheme: self.scheme,
        }
    }
}

#[cfg(feature = "tower")]
/// The service [`HttpMetricsLayer`] wraps around another.
#[derive(Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    route: Arc<RouteFn>,
    scheme: &'static str,
}

#[cfg(feature = "tower")]
impl<S> std::fmt::Debug for HttpMetrics<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "tower")]
impl<S, B, RB> tower_service::Service<http::Request<B>> for HttpMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = method_index(req.method());
        let route = (self.route)(req.method(), req.uri(), req.extensions());
        let route: metrics::SharedString = route.into();
        let scheme = scheme_of(req.uri(), self.scheme);
        let in_flight = InFlight::with_gauge(active_gauge(method, route.clone(), scheme));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let outcome = match &result {
                Ok(r) => Outcome::Status(r.status().as_u16()),
                Err(_) => Outcome::Failed(error_type_of::<S::Error>()),
            };
            duration_histogram(method, route, scheme, outcome)
                .record(started.elapsed().as_secs_f64());
            drop(in_flight);
            result
        })
    }
}

#[cfg(feature = "warp")]
/// Wraps a warp filter so that its requests are recorded under the route template
/// `route` (`"/orders/{id}"`).
///
/// ```
/// use warp::Filter;
/// let orders = warp::path!("orders" / u64).map(|id: u64| format!("order {id}"));
/// let routes = piko_obs_metrics::http::warp_route("/orders/{id}", orders);
/// # let _ = routes;
/// ```
pub fn warp_route<F, T>(
    route: &'static str,
    filter: F,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection>
+ Clone
+ Send
+ Sync
+ 'static
where
    F: warp::Filter<Extract = (T,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
    T: warp::Reply,
{
    use warp::Filter as _;
    let handles = Arc::new(RouteHandles::new(route));
    let entering = handles.clone();
    warp::method()
        .map(move |m: http::Method| {
            let method = method_index(&m);
            (entering.enter(method), method, Instant::now())
        })
        .and(filter)
        .map(
            move |(in_flight, method, started): (InFlight, usize, Instant), reply: T| {
                let response = reply.into_response();
                handles.record(method, response.status().as_u16(), started.elapsed());
                drop(in_flight);
                response
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_handles_keep_every_status_and_label_unknown_methods_other() {
        let (recorder, metrics) = crate::MetricsBuilder::new()
            .with_process_metrics(false)
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            let handles = RouteHandles::new("/items/{id}");
            let purge = method_index(&http::Method::from_bytes(b"PURGE").unwrap());
            assert_eq!(method_label(purge), "_OTHER");
            let query = method_index(&http::Method::from_bytes(b"QUERY").unwrap());
            assert_eq!(method_label(query), "QUERY", "the conventions name QUERY");
            // More statuses than slots: the ones past the slots take the lookup.
            for status in 200..212u16 {
                for _ in 0..2 {
                    let _in = handles.enter(0);
                    handles.record(0, status, Duration::from_millis(3));
                }
            }
            handles.record(purge, 404, Duration::from_millis(1));
        });
        let text = metrics.render();
        for status in 200..212u16 {
            let needle = format!(
                "http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_route=\"/items/{{id}}\",http_response_status_code=\"{status}\",url_scheme=\"http\"}} 2"
            );
            assert!(text.contains(&needle), "{needle} in\n{text}");
        }
        assert!(
            text.contains("http_request_method=\"_OTHER\",http_route=\"/items/{id}\",http_response_status_code=\"404\",url_scheme=\"http\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("http_server_active_requests{http_request_method=\"GET\",http_route=\"/items/{id}\",url_scheme=\"http\"} 0"),
            "{text}"
        );
        assert_eq!(status_label(599), "599");
        assert_eq!(status_label(42), "_OTHER");
    }
}
