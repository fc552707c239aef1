//! HTTP server request metrics after the OpenTelemetry HTTP semantic conventions, as a
//! tower `Layer` (axum, hyper, tonic) and as a warp filter wrapper.
//!
//! - `http_server_request_duration_seconds` (histogram, the convention's buckets),
//!   labels `http_request_method`, `http_route` (a route template, never the raw path,
//!   so the number of series stays bounded) and `http_response_status_code`;
//! - `http_server_active_requests` (gauge), labels `http_request_method`, `http_route`.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::HTTP_SERVER_REQUEST_DURATION;

/// The in-flight requests gauge's name.
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";

/// Records one finished request.
pub fn record_request(method: &http::Method, route: &str, status: u16, elapsed: Duration) {
    metrics::histogram!(
        HTTP_SERVER_REQUEST_DURATION,
        "http_request_method" => method.as_str().to_owned(),
        "http_route" => route.to_owned(),
        "http_response_status_code" => status.to_string()
    )
    .record(elapsed.as_secs_f64());
}

/// Counts a request in flight until dropped.
#[derive(Debug)]
pub struct InFlight {
    gauge: metrics::Gauge,
}

impl InFlight {
    /// Counts a request to `route` in.
    pub fn enter(method: &http::Method, route: &str) -> InFlight {
        let gauge = metrics::gauge!(
            HTTP_SERVER_ACTIVE_REQUESTS,
            "http_request_method" => method.as_str().to_owned(),
            "http_route" => route.to_owned()
        );
        gauge.increment(1.0);
        InFlight { gauge }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

type RouteFn =
    dyn Fn(&http::Method, &http::Uri, &http::Extensions) -> Cow<'static, str> + Send + Sync;

/// A tower `Layer` that records request metrics. The route template comes from a
/// function of the request (for example axum's `MatchedPath` extension); without one,
/// every request is labelled `http_route="other"`, so cardinality stays bounded.
#[derive(Clone)]
pub struct HttpMetricsLayer {
    route: Arc<RouteFn>,
}

impl std::fmt::Debug for HttpMetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetricsLayer").finish_non_exhaustive()
    }
}

impl Default for HttpMetricsLayer {
    fn default() -> Self {
        HttpMetricsLayer {
            route: Arc::new(|_, _, _| Cow::Borrowed("other")),
        }
    }
}

impl HttpMetricsLayer {
    /// A layer labelling every request `http_route="other"`.
    pub fn new() -> Self {
        HttpMetricsLayer::default()
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
        }
    }
}

impl<S> tower_layer::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;
    fn layer(&self, inner: S) -> HttpMetrics<S> {
        HttpMetrics {
            inner,
            route: self.route.clone(),
        }
    }
}

/// The service [`HttpMetricsLayer`] wraps around another.
#[derive(Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    route: Arc<RouteFn>,
}

impl<S> std::fmt::Debug for HttpMetrics<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

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
        let method = req.method().clone();
        let route = (self.route)(req.method(), req.uri(), req.extensions());
        let in_flight = InFlight::enter(&method, &route);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            // An error that never became a response counts as 500.
            let status = result.as_ref().map_or(500, |r| r.status().as_u16());
            record_request(&method, &route, status, started.elapsed());
            drop(in_flight);
            result
        })
    }
}

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
    warp::method()
        .map(move |m: http::Method| (InFlight::enter(&m, route), m, Instant::now()))
        .and(filter)
        .map(
            move |(in_flight, m, started): (InFlight, http::Method, Instant), reply: T| {
                let response = reply.into_response();
                record_request(&m, route, response.status().as_u16(), started.elapsed());
                drop(in_flight);
                response
            },
        )
}
