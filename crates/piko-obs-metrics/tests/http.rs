//! Request metrics through the tower layer and the warp wrapper, rendered by the
//! Prometheus recorder installed for this test binary.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Ready;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use piko_obs_metrics::http::{HttpMetricsLayer, warp_route};
use piko_obs_metrics::{Metrics, PrometheusMetrics};
use tower_layer::Layer;
use tower_service::Service;
use warp::Filter;

fn installed() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let (recorder, metrics) = PrometheusMetrics::builder()
            .with_process_metrics(false)
            .build()
            .unwrap();
        metrics::set_global_recorder(recorder).unwrap();
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
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        let req = hyper::Request::get(format!("/orders/{id}"))
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), tx.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 202);
        driver.abort();
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
