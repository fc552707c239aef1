//! An OTLP receiver on loopback, built on the official protobuf definitions
//! (`opentelemetry-proto`): a tonic gRPC server for the trace, metrics and logs
//! services, and an HTTP server decoding `/v1/traces`, `/v1/metrics` and `/v1/logs`
//! bodies with prost. It records every export with its headers, and answers as told:
//! accept, refuse (gRPC `UNAVAILABLE`, HTTP 503), or never answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
    logs_service_server::{LogsService, LogsServiceServer},
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use prost::Message as _;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accept every export.
    Accept,
    /// Refuse: gRPC `UNAVAILABLE`, HTTP 503.
    Unavailable,
    /// Never answer (until the receiver stops).
    Hang,
}

/// One export as it arrived.
#[derive(Debug, Clone)]
pub struct Export<T> {
    /// `grpc` or `http`.
    pub protocol: &'static str,
    /// Headers (gRPC metadata), names in lower case.
    pub headers: Vec<(String, String)>,
    /// The decoded request.
    pub request: T,
}

impl<T> Export<T> {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Everything received so far.
#[derive(Debug, Default, Clone)]
pub struct Received {
    /// Trace exports.
    pub traces: Vec<Export<ExportTraceServiceRequest>>,
    /// Metric exports.
    pub metrics: Vec<Export<ExportMetricsServiceRequest>>,
    /// Log exports.
    pub logs: Vec<Export<ExportLogsServiceRequest>>,
}

impl Received {
    /// Every span received, with its export's headers.
    pub fn spans(&self) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        self.traces
            .iter()
            .flat_map(|e| e.request.resource_spans.iter())
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter().cloned())
            .collect()
    }
    /// Every metric name received.
    pub fn metric_names(&self) -> Vec<String> {
        self.metrics
            .iter()
            .flat_map(|e| e.request.resource_metrics.iter())
            .flat_map(|r| r.scope_metrics.iter())
            .flat_map(|s| s.metrics.iter().map(|m| m.name.clone()))
            .collect()
    }
    /// Every log record received.
    pub fn log_records(&self) -> Vec<opentelemetry_proto::tonic::logs::v1::LogRecord> {
        self.logs
            .iter()
            .flat_map(|e| e.request.resource_logs.iter())
            .flat_map(|r| r.scope_logs.iter())
            .flat_map(|s| s.log_records.iter().cloned())
            .collect()
    }
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Received>>,
    mode: Arc<Mutex<Mode>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().expect("mode")
    }
}

fn metadata_headers(m: &tonic::metadata::MetadataMap) -> Vec<(String, String)> {
    m.clone()
        .into_headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

async fn answer(shared: &Shared) -> Result<(), tonic::Status> {
    match shared.mode() {
        Mode::Accept => Ok(()),
        Mode::Unavailable => Err(tonic::Status::unavailable("receiver told to refuse")),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
    }
}

#[tonic::async_trait]
impl TraceService for Shared {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = metadata_headers(request.metadata());
        answer(self).await?;
        self.received.lock().expect("store").traces.push(Export {
            protocol: "grpc",
            headers,
            request: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Shared {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = metadata_headers(request.metadata());
        answer(self).await?;
        self.received.lock().expect("store").metrics.push(Export {
            protocol: "grpc",
            headers,
            request: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Shared {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let headers = metadata_headers(request.metadata());
        answer(self).await?;
        self.received.lock().expect("store").logs.push(Export {
            protocol: "grpc",
            headers,
            request: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

async fn http_export(
    shared: Shared,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let gzip = headers
        .iter()
        .any(|(k, v)| k == "content-encoding" && v.contains("gzip"));
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let status = |code: u16| {
        let mut r = hyper::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::OK);
        Ok(r)
    };
    match shared.mode() {
        Mode::Accept => {}
        Mode::Unavailable => return status(503),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    if gzip {
        // The exporter compresses only when configured to; the receiver takes plain
        // bodies in these tests.
        return status(415);
    }
    let mut store = shared.received.lock().expect("store");
    let ok = match path.as_str() {
        "/v1/traces" => ExportTraceServiceRequest::decode(body)
            .map(|request| {
                store.traces.push(Export {
                    protocol: "http",
                    headers,
                    request,
                })
            })
            .is_ok(),
        "/v1/metrics" => ExportMetricsServiceRequest::decode(body)
            .map(|request| {
                store.metrics.push(Export {
                    protocol: "http",
                    headers,
                    request,
                })
            })
            .is_ok(),
        "/v1/logs" => ExportLogsServiceRequest::decode(body)
            .map(|request| {
                store.logs.push(Export {
                    protocol: "http",
                    headers,
                    request,
                })
            })
            .is_ok(),
        _ => return status(404),
    };
    status(if ok { 200 } else { 400 })
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    grpc: SocketAddr,
    http: SocketAddr,
    shared: Shared,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("grpc", &self.grpc)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// Starts both servers on free loopback ports, accepting.
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::start_on("127.0.0.1:0", "127.0.0.1:0")
    }

    /// Starts the gRPC server on `grpc` and the HTTP one on `http` (`127.0.0.1:0` picks a
    /// free port), accepting; panics when an address cannot be bound.
    pub fn start_on(grpc: &str, http: &str) -> OtlpReceiver {
        let shared = Shared {
            received: Arc::new(Mutex::new(Received::default())),
            mode: Arc::new(Mutex::new(Mode::Accept)),
        };
        let grpc_listener = std::net::TcpListener::bind(grpc)
            .unwrap_or_else(|e| panic!("bind the gRPC server on {grpc}: {e}"));
        let http_listener = std::net::TcpListener::bind(http)
            .unwrap_or_else(|e| panic!("bind the HTTP server on {http}: {e}"));
        grpc_listener.set_nonblocking(true).expect("nonblocking");
        http_listener.set_nonblocking(true).expect("nonblocking");
        let grpc = grpc_listener.local_addr().expect("addr");
        let http = http_listener.local_addr().expect("addr");
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let grpc_listener =
                    tokio::net::TcpListener::from_std(grpc_listener).expect("listener");
                let http_listener =
                    tokio::net::TcpListener::from_std(http_listener).expect("listener");
                let mut grpc_stop = stop_rx.clone();
                let grpc_server = tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(s.clone()))
                    .add_service(MetricsServiceServer::new(s.clone()))
                    .add_service(LogsServiceServer::new(s.clone()))
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(grpc_listener),
                        async move {
                            let _ = grpc_stop.changed().await;
                        },
                    );
                tokio::spawn(grpc_server);
                let mut http_stop = stop_rx;
                loop {
                    let conn = tokio::select! {
                        c = http_listener.accept() => c,
                        _ = http_stop.changed() => break,
                    };
                    let Ok((stream, _)) = conn else { continue };
                    let s = s.clone();
                    tokio::spawn(async move {
                        let svc =
                            hyper::service::service_fn(move |req| http_export(s.clone(), req));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
            rt.shutdown_background();
        });
        OtlpReceiver {
            grpc,
            http,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` of the gRPC server.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// `http://127.0.0.1:PORT` of the HTTP server (the exporter adds `/v1/<signal>`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Changes how it answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().expect("mode") = mode;
    }

    /// What arrived so far.
    pub fn received(&self) -> Received {
        self.shared.received.lock().expect("store").clone()
    }

    /// Waits (at most `within`) until `done` holds for what arrived; returns it.
    pub fn wait_until(&self, within: Duration, done: impl Fn(&Received) -> bool) -> Received {
        let end = Instant::now() + within;
        loop {
            let r = self.received();
            if done(&r) || Instant::now() >= end {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
