//! piko-obs in an axum service: request metrics and server spans named after axum's
//! route templates, W3C trace context in (from the caller's `traceparent`) and out (on
//! the service's own outgoing request), `tracing` events and `#[instrument]` spans, and
//! the probe server with `/metrics` on its own port.
//!
//! ```sh
//! cargo run -p piko-obs --features axum --example axum
//! curl 127.0.0.1:8080/checkout
//! curl 127.0.0.1:9090/metrics
//! ```
//!
//! `APP_PORT` (default 8080) and `HEALTH_PORT` (default 9090) choose the ports (0 picks
//! one); `OTEL_EXPORTER_OTLP_ENDPOINT` sends the spans to a collector. It stops on
//! SIGTERM or Ctrl-C.

use std::process::ExitCode;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use piko_obs::RunMode;
use piko_obs::metrics::http::HttpMetricsLayer;
use piko_obs::otlp::{TraceLayer, traced};

fn port(name: &str, default: u16) -> Result<u16, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a port number")),
    }
}

fn main() -> ExitCode {
    let (app_port, health_port) = match (port("APP_PORT", 8080), port("HEALTH_PORT", 9090)) {
        (Ok(a), Ok(h)) => (a, h),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("axum example: {e}");
            return ExitCode::from(2);
        }
    };
    let guard = match piko_obs::builder()
        .with_run_mode(RunMode::Prod)
        .with_service_name("shop")
        .with_health_probe_port(health_port)
        .init()
    {
        Ok(g) => g,
        Err(e) => {
            eprintln!("axum example: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let served = runtime.block_on(serve(app_port));
    drop(runtime);
    if let Err(e) = served {
        eprintln!("axum example: {e}");
    }
    match guard.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum example: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The service's own outgoing HTTP client, and where it calls itself.
#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    base: String,
}

async fn serve(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    // reqwest is built without a TLS provider of its own: the application picks one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, "Application listening");
    let upstream = Upstream {
        client: reqwest::Client::builder().build()?,
        base: format!("http://{addr}"),
    };
    // `layer` runs after routing, so both layers see axum's matched route template.
    let app = Router::new()
        .route("/orders/{id}", get(order))
        .route("/checkout", get(checkout))
        .with_state(upstream)
        .layer(HttpMetricsLayer::new())
        .layer(TraceLayer::new());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}

/// `GET /orders/{id}`: a span of its own inside the request's server span.
#[tracing::instrument(skip_all, fields(order.id = id))]
async fn order(Path(id): Path<u64>) -> String {
    tracing::info!("Order read");
    format!("order {id}\n")
}

/// `GET /checkout`: calls `/orders/7` with the trace context, so the call's server span
/// is a child of this request's.
#[tracing::instrument(skip_all)]
async fn checkout(State(up): State<Upstream>) -> (axum::http::StatusCode, String) {
    let url = format!("{}/orders/7", up.base);
    match traced(up.client.get(url)).send().await {
        Ok(answer) => {
            tracing::info!(
                piko.level = "notice",
                status = answer.status().as_u16(),
                "Checkout done"
            );
            (axum::http::StatusCode::OK, "checked out\n".into())
        }
        Err(e) => {
            tracing::error!(error = %e, "Checkout failed");
            (
                axum::http::StatusCode::BAD_GATEWAY,
                "upstream unreachable\n".into(),
            )
        }
    }
}
