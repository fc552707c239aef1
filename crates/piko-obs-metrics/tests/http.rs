//! Request metrics through the tower layer and the warp wrapper, rendered by the
//! Prometheus recorder installed for this test binary: the layer alone, the layer in
//! front of a real hyper 1 server on loopback, and the warp wrapper in a real warp
//! server.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::{Future, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use piko_obs_metrics::HTTP_DURATION_BUCKETS;
use piko_obs_metrics::http::{HttpMetricsLayer, warp_route};
use piko_obs_metrics::{Metrics, MetricsBuilder};
use piko_obs_testkit::http_request;
use tower_layer::Layer;
use tower_service::Service;
use warp::Filter;

fn installed() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let (recorder, metrics) = MetricsBuilder::new()
            .with_process_metrics(false)
            .build()
            .unwrap();
        metrics::set_global_recorder(recorder).unwrap();
        metrics.describe();
        metrics
    })
}

fn line_value(text: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[derive(Clone)]
struct Answer(u16);

impl Service<http::Request<()>> for Answer {
    type Response = http::Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<()>, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        let mut r = http::Response::new(());
        *r.status_mut() = http::StatusCode::from_u16(self.0).unwrap();
        std::future::ready(Ok(r))
    }
}

#[tokio::test]
async fn the_tower_layer_records_method_route_and_status() {
    let metrics = installed();
    let layer = HttpMetricsLayer::with_route(|_, uri, _| {
        if uri.path().starts_with("/users/") {
            Cow::Borrowed("/users/{id}")
        } else {
            Cow::Borrowed("other")
        }
    });
    let mut svc = layer.layer(Answer(201));
    for id in 0..5 {
        let req = http::Request::post(format!("/users/{id}"))
            .body(())
            .unwrap();
        assert_eq!(svc.call(req).await.unwrap().status(), 201);
    }
    let text = metrics.render();
    let count = line_value(
        &text,
        &[
            "http_server_request_duration_seconds_count{",
            "http_request_method=\"POST\"",
            "http_route=\"/users/{id}\"",
            "http_response_status_code=\"201\"",
        ],
    );
    assert_eq!(count, Some(5.0), "{text}");
    assert!(!text.contains("/users/3"), "raw paths never become labels");
    let active = line_value(
        &text,
        &["http_server_active_requests{", "http_route=\"/users/{id}\""],
    );
    assert_eq!(active, Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warp_wrapper_records_real_requests() {
    let metrics = installed();
    let orders = warp::path!("orders" / u64).map(|id: u64| {
        warp::reply::with_status(format!("order {id}"), warp::http::StatusCode::ACCEPTED)
    });
    let routes = warp_route("/orders/{id}", orders);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(warp::serve(routes).incoming(listener).run());
    for id in 0..3 {
        let resp = http_request(addr, "GET", &format!("/orders/{id}"))
            .await
            .unwrap();
        assert_eq!(resp.status, 202);
    }
    let text = metrics.render();
    let count = line_value(
        &text,
        &[
            "http_server_request_duration_seconds_count{",
            "http_request_method=\"GET\"",
            "http_route=\"/orders/{id}\"",
            "http_response_status_code=\"202\"",
        ],
    );
    assert_eq!(count, Some(3.0), "{text}");
    let bucket = line_value(
        &text,
        &[
            "http_server_request_duration_seconds_bucket{",
            "http_route=\"/orders/{id}\"",
            "le=\"10\"",
        ],
    );
    assert_eq!(bucket, Some(3.0), "{text}");
    server.abort();
}

/// The application behind the layer in the hyper test: answers by path, `/hyper/slow`
/// once released, and fails `/hyper/error` without a response.
#[derive(Clone)]
struct App {
    release: Arc<tokio::sync::Notify>,
}

type AppFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Full<Bytes>>, std::io::Error>> + Send>>;

impl Service<http::Request<Incoming>> for App {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = AppFuture;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<Incoming>) -> AppFuture {
        let path = req.uri().path().to_string();
        let release = self.release.clone();
        Box::pin(async move {
            let status = match path.as_str() {
                "/hyper" => 200,
                p if p.starts_with("/hyper/items/") => 200,
                "/hyper/boom" => 500,
                "/hyper/slow" => {
                    // Bounded: a failing test cannot hang here.
                    let _ = tokio::time::timeout(Duration::from_secs(10), release.notified()).await;
                    200
                }
                "/hyper/error" => return Err(std::io::Error::other("the handler failed")),
                _ => 404,
            };
            let mut r = http::Response::new(Full::new(Bytes::from(path)));
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok(r)
        })
    }
}

/// Serves `layer` around [`App`] with a hyper 1 server on a free loopback port.
fn serve(
    layer: HttpMetricsLayer,
    app: App,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(layer.layer(app.clone()));
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// `method path` over a fresh connection: the status, or the error when the server
/// closed the connection without answering.
async fn send(addr: SocketAddr, method: &str, path: &str) -> Result<u16, hyper::Error> {
    http_request(addr, method, path).await.map(|r| r.status)
}

fn count(text: &str, method: &str, route: &str, status: &str) -> Option<f64> {
    line_value(
        text,
        &[
            "http_server_request_duration_seconds_count{",
            &format!("http_request_method=\"{method}\""),
            &format!("http_route=\"{route}\""),
            &format!("http_response_status_code=\"{status}\""),
        ],
    )
}

fn active(text: &str, method: &str, route: &str) -> Option<f64> {
    line_value(
        text,
        &[
            "http_server_active_requests{",
            &format!("http_request_method=\"{method}\""),
            &format!("http_route=\"{route}\","),
            "url_scheme=\"http\"}",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_in_a_hyper_server_records_real_requests() {
    let metrics = installed();
    let layer = HttpMetricsLayer::with_route(|_, uri, _| match uri.path() {
        "/hyper" => Cow::Borrowed("/hyper"),
        p if p.starts_with("/hyper/items/") => Cow::Borrowed("/hyper/items/{id}"),
        "/hyper/boom" => Cow::Borrowed("/hyper/boom"),
        "/hyper/slow" => Cow::Borrowed("/hyper/slow"),
        "/hyper/error" => Cow::Borrowed("/hyper/error"),
        // No template: every other path is one series.
        _ => Cow::Borrowed("other"),
    });
    let app = App {
        release: Arc::new(tokio::sync::Notify::new()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve(layer, app.clone(), listener);
    // The layer without a route function, on a second server.
    let plain_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = plain_listener.local_addr().unwrap();
    let plain = serve(HttpMetricsLayer::new(), app.clone(), plain_listener);

    for _ in 0..2 {
        assert_eq!(send(addr, "GET", "/hyper").await.unwrap(), 200);
    }
    for id in [1, 22, 333] {
        assert_eq!(
            send(addr, "GET", &format!("/hyper/items/{id}"))
                .await
                .unwrap(),
            200
        );
    }
    assert_eq!(send(addr, "GET", "/hyper/nowhere").await.unwrap(), 404);
    assert_eq!(send(addr, "GET", "/hyper/missing/9").await.unwrap(), 404);
    assert_eq!(send(addr, "GET", "/hyper/boom").await.unwrap(), 500);
    assert!(
        send(addr, "GET", "/hyper/error").await.is_err(),
        "a service error closes the connection without an answer"
    );
    assert_eq!(
        send(plain_addr, "DELETE", "/hyper/items/7").await.unwrap(),
        200
    );

    // A request in flight shows in the gauge until it ends.
    let slow = tokio::spawn(send(addr, "GET", "/hyper/slow"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = active(&metrics.render(), "GET", "/hyper/slow");
        if seen == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, Some(1.0), "the slow request is in flight");
    app.release.notify_one();
    assert_eq!(slow.await.unwrap().unwrap(), 200);

    let text = metrics.render();
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("# HELP http_server_request_duration_seconds "),
        "{text}"
    );
    assert!(
        text.contains("# HELP http_server_active_requests "),
        "{text}"
    );
    assert_eq!(count(&text, "GET", "/hyper", "200"), Some(2.0), "{text}");
    assert_eq!(
        count(&text, "GET", "/hyper/items/{id}", "200"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(count(&text, "GET", "other", "404"), Some(2.0), "{text}");
    assert_eq!(
        count(&text, "GET", "/hyper/boom", "500"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        line_value(
            &text,
            &[
                "http_server_request_duration_seconds_count{",
                "http_route=\"/hyper/boom\"",
                "error_type=\"500\"",
            ],
        ),
        Some(1.0),
        "a 5xx answer is an error named by its code: {text}"
    );
    // An error that never became a response has no status code (none was sent), and is
    // named by the error's type, as the HTTP conventions say.
    let failed = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("http_route=\"/hyper/error\"")
        })
        .unwrap_or_else(|| panic!("no series for the service error: {text}"));
    assert!(failed.ends_with(" 1"), "{failed}");
    assert!(!failed.contains("http_response_status_code"), "{failed}");
    assert!(failed.contains("error_type=\""), "{failed}");
    assert_eq!(
        count(&text, "GET", "/hyper/slow", "200"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(count(&text, "DELETE", "other", "200"), Some(1.0), "{text}");
    for raw in [
        "/hyper/items/1",
        "/hyper/nowhere",
        "/hyper/missing",
        "/hyper/items/7",
    ] {
        assert!(
            !text.contains(&format!("\"{raw}")),
            "raw path {raw} became a label:\n{text}"
        );
    }
    // The route's buckets are the convention's, cumulative, ending at the count.
    let buckets: Vec<(String, f64)> = text
        .lines()
        .filter(|l| {
            l.starts_with("http_server_request_duration_seconds_bucket{")
                && l.contains("http_route=\"/hyper/items/{id}\"")
        })
        .map(|l| {
            let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            (
                le.to_string(),
                l.rsplit(' ').next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let mut want: Vec<String> = HTTP_DURATION_BUCKETS
        .iter()
        .map(|b| b.to_string())
        .collect();
    want.push("+Inf".into());
    assert_eq!(
        buckets.iter().map(|(le, _)| le.clone()).collect::<Vec<_>>(),
        want,
        "{text}"
    );
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().unwrap().1, 3.0);
    for route in [
        "/hyper",
        "/hyper/items/{id}",
        "other",
        "/hyper/boom",
        "/hyper/error",
        "/hyper/slow",
    ] {
        assert_eq!(active(&text, "GET", route), Some(0.0), "{route}: {text}");
    }
    server.abort();
    plain.abort();
}
