//! An OTLP receiver on loopback, built on the official protobuf definitions
//! (`opentelemetry-proto`): a tonic gRPC server for the trace, metrics and logs
//! services, and an HTTP server decoding `/v1/traces`, `/v1/metrics` and `/v1/logs`
//! bodies with prost, or with serde (the OTLP JSON mapping, `opentelemetry-proto`'s
//! `with-serde`) when their `content-type` is `application/json`. It records every export with its headers, and answers as told:
//! accept, refuse (gRPC `UNAVAILABLE`, HTTP 503), or never answer. Both servers take
//! gzip-compressed requests (gRPC `grpc-encoding: gzip`, HTTP `content-encoding: gzip`),
//! and can serve TLS, optionally requiring a client certificate ([`ServerTls`]).

use std::convert::Infallible;
use std::io::Read as _;
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
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::codec::CompressionEncoding;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The most bytes a gzip body may inflate to.
const MAX_BODY: u64 = 64 << 20;

/// TLS for both of the receiver's servers.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate chain, PEM.
    pub cert_pem: String,
    /// The server's private key, PEM.
    pub key_pem: String,
    /// When set, every client must present a certificate issued by this CA (PEM);
    /// a connection without one, or with another, is refused during the handshake.
    pub client_ca_pem: Option<String>,
}

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
    /// The client's certificate (DER), when it presented one over TLS.
    pub client_cert: Option<Vec<u8>>,
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
    /// The TLS handshakes that failed: the server (`grpc` or `http`), and why, as
    /// rustls words it.
    pub tls_handshake_errors: Vec<(&'static str, String)>,
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
    /// Every metric received, in the order the exports arrived.
    pub fn all_metrics(&self) -> Vec<opentelemetry_proto::tonic::metrics::v1::Metric> {
        self.metrics
            .iter()
            .flat_map(|e| e.request.resource_metrics.iter())
            .flat_map(|r| r.scope_metrics.iter())
            .flat_map(|s| s.metrics.iter().cloned())
            .collect()
    }
    /// Every metric name received.
    pub fn metric_names(&self) -> Vec<String> {
        self.all_metrics().into_iter().map(|m| m.name).collect()
    }
    /// The last metric named `name` received, if any.
    pub fn last_metric(
        &self,
        name: &str,
    ) -> Option<opentelemetry_proto::tonic::metrics::v1::Metric> {
        self.all_metrics().into_iter().rfind(|m| m.name == name)
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

/// The first certificate the client presented over TLS, DER.
fn peer_cert<T>(request: &tonic::Request<T>) -> Option<Vec<u8>> {
    request
        .peer_certs()
        .and_then(|certs| certs.first().map(|c| c.to_vec()))
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
        let client_cert = peer_cert(&request);
        answer(self).await?;
        self.received.lock().expect("store").traces.push(Export {
            protocol: "grpc",
            headers,
            client_cert,
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
        let client_cert = peer_cert(&request);
        answer(self).await?;
        self.received.lock().expect("store").metrics.push(Export {
            protocol: "grpc",
            headers,
            client_cert,
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
        let client_cert = peer_cert(&request);
        answer(self).await?;
        self.received.lock().expect("store").logs.push(Export {
            protocol: "grpc",
            headers,
            client_cert,
            request: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Inflates a gzip body, at most [`MAX_BODY`] bytes of it; `None` if it is not gzip.
fn gunzip(body: &[u8]) -> Option<Bytes> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_BODY)
        .read_to_end(&mut out)
        .ok()?;
    Some(Bytes::from(out))
}

async fn http_export(
    shared: Shared,
    client_cert: Option<Vec<u8>>,
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
    let json = headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("application/json"));
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
    let body = if gzip {
        // A body that says gzip but is not is refused, as a collector would.
        match gunzip(&body) {
            Some(b) => b,
            None => return status(400),
        }
    } else {
        body
    };
    let mut store = shared.received.lock().expect("store");
    let ok = match path.as_str() {
        "/v1/traces" => decode::<ExportTraceServiceRequest>(json, body)
            .map(|request| {
                store.traces.push(Export {
                    protocol: "http",
                    headers,
                    client_cert,
                    request,
                })
            })
            .is_ok(),
        "/v1/metrics" => decode::<ExportMetricsServiceRequest>(json, body)
            .map(|request| {
                store.metrics.push(Export {
                    protocol: "http",
                    headers,
                    client_cert,
                    request,
                })
            })
            .is_ok(),
        "/v1/logs" => decode::<ExportLogsServiceRequest>(json, body)
            .map(|request| {
                store.logs.push(Export {
                    protocol: "http",
                    headers,
                    client_cert,
                    request,
                })
            })
            .is_ok(),
        _ => return status(404),
    };
    status(if ok { 200 } else { 400 })
}

/// Decodes a request body: OTLP JSON when `json`, else protobuf.
fn decode<T>(json: bool, body: Bytes) -> Result<T, String>
where
    T: prost::Message + Default + serde::de::DeserializeOwned,
{
    if json {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        T::decode(body).map_err(|e| e.to_string())
    }
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    grpc: SocketAddr,
    http: SocketAddr,
    scheme: &'static str,
    shared: Shared,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("grpc", &self.grpc)
            .field("http", &self.http)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// A rustls server configuration (ring) for `tls`, requiring a client certificate
/// issued by `client_ca_pem` when it is set, and offering the ALPN protocols `alpn`.
pub(crate) fn tls_config(tls: &ServerTls, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("server certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).expect("server key PEM");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match &tls.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.expect("client CA PEM")).expect("client CA");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .expect("server certificate and key");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Completes the TLS handshake of a connection to the `protocol` server, within
/// [`HANDSHAKE`]; records why it failed, if it did.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    protocol: &'static str,
    shared: &Shared,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let why = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => return Some(tls),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no handshake within {HANDSHAKE:?}"),
    };
    shared
        .received
        .lock()
        .expect("store")
        .tls_handshake_errors
        .push((protocol, why));
    None
}

/// Serves the three gRPC services on the connections of `incoming` until `stop`.
async fn serve_grpc<I, IO, IE>(
    shared: Shared,
    incoming: I,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: futures_util::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(shared.clone()).accept_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            MetricsServiceServer::new(shared.clone()).accept_compressed(CompressionEncoding::Gzip),
        )
        .add_service(LogsServiceServer::new(shared).accept_compressed(CompressionEncoding::Gzip))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.changed().await;
        })
        .await;
}

/// Serves one HTTP/1 connection.
async fn serve_http<IO>(io: IO, shared: Shared, client_cert: Option<Vec<u8>>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        http_export(shared.clone(), client_cert.clone(), req)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

impl OtlpReceiver {
    /// Starts both servers on free loopback ports, accepting.
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::start_on("127.0.0.1:0", "127.0.0.1:0")
    }

    /// Starts the gRPC server on `grpc` and the HTTP one on `http` (`127.0.0.1:0` picks a
    /// free port), accepting; panics when an address cannot be bound.
    pub fn start_on(grpc: &str, http: &str) -> OtlpReceiver {
        OtlpReceiver::start_with(grpc, http, None)
    }

    /// Starts both servers on free loopback ports, serving TLS as `tls` says; the
    /// endpoints are then `https://`. A connection that fails the handshake (a client
    /// that does not trust the certificate, or has no client certificate when one is
    /// required) is dropped: only why it failed is recorded
    /// ([`Received::tls_handshake_errors`]).
    pub fn start_tls(tls: &ServerTls) -> OtlpReceiver {
        OtlpReceiver::start_with("127.0.0.1:0", "127.0.0.1:0", Some(tls))
    }

    fn start_with(grpc: &str, http: &str, tls: Option<&ServerTls>) -> OtlpReceiver {
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
        // Built here, so that a bad certificate fails the caller, not the thread. The
        // gRPC server negotiates HTTP/2 by ALPN, as gRPC clients require.
        let grpc_tls = tls.map(|t| tokio_rustls::TlsAcceptor::from(tls_config(t, &[b"h2"])));
        let http_tls = tls.map(|t| tokio_rustls::TlsAcceptor::from(tls_config(t, &[])));
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
                match grpc_tls {
                    None => {
                        let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener);
                        tokio::spawn(serve_grpc(s.clone(), incoming, stop_rx.clone()));
                    }
                    Some(acceptor) => {
                        // Handshakes here, each on a task of its own; the connections
                        // that complete one go to the server.
                        let (tx, rx) = tokio::sync::mpsc::channel(16);
                        let incoming = futures_util::stream::unfold(rx, |mut rx| async move {
                            rx.recv().await.map(|c| (Ok::<_, std::io::Error>(c), rx))
                        });
                        tokio::spawn(serve_grpc(s.clone(), incoming, stop_rx.clone()));
                        let (s, mut stop) = (s.clone(), stop_rx.clone());
                        tokio::spawn(async move {
                            loop {
                                let conn = tokio::select! {
                                    c = grpc_listener.accept() => c,
                                    _ = stop.changed() => break,
                                };
                                let Ok((stream, _)) = conn else { continue };
                                let (acceptor, s, tx) = (acceptor.clone(), s.clone(), tx.clone());
                                tokio::spawn(async move {
                                    if let Some(tls) =
                                        handshake(&acceptor, stream, "grpc", &s).await
                                    {
                                        let _ = tx.send(tls).await;
                                    }
                                });
                            }
                        });
                    }
                }
                let mut http_stop = stop_rx;
                loop {
                    let conn = tokio::select! {
                        c = http_listener.accept() => c,
                        _ = http_stop.changed() => break,
                    };
                    let Ok((stream, _)) = conn else { continue };
                    let s = s.clone();
                    let acceptor = http_tls.clone();
                    tokio::spawn(async move {
                        let Some(acceptor) = acceptor else {
                            return serve_http(stream, s, None).await;
                        };
                        let Some(stream) = handshake(&acceptor, stream, "http", &s).await else {
                            return;
                        };
                        let client_cert = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| c.to_vec());
                        serve_http(stream, s, client_cert).await;
                    });
                }
            });
            rt.shutdown_background();
        });
        OtlpReceiver {
            grpc,
            http,
            scheme: if tls.is_some() { "https" } else { "http" },
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS) of the gRPC server.
    pub fn grpc_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.grpc)
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS) of the HTTP server (the exporter
    /// adds `/v1/<signal>`).
    pub fn http_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.http)
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
