//! The server: configuration, routing, accept loop, TLS and shutdown.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use hyper::StatusCode;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use piko_obs_health::{CheckKind, HealthService, State};
use tokio::sync::watch;
use warp::Filter;
use warp::http::{Method, Response};
use warp::hyper::body::Bytes;

/// Renders the Prometheus text for `/metrics`.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// The lowest TLS version the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMinVersion {
    /// TLS 1.2 and 1.3 (default).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Serve over TLS with a certificate chain and key from PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Lowest version accepted.
    pub min_version: TlsMinVersion,
}

/// The server could not start; the message names the setting to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The bind address is not an IP address.
    #[error("health bind address {0:?} is not an IP address (use 127.0.0.1, 0.0.0.0 or ::1)")]
    BadBindAddress(String),
    /// A path does not start with `/`, or two probes share one.
    #[error("health {what} path {path:?} {problem}")]
    BadPath {
        /// Which path (`live`, `ready`, `startup`, `metrics`).
        what: &'static str,
        /// The path given.
        path: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The port is taken.
    #[error(
        "health probe port {addr} is already in use: stop the other process or choose another port with with_health_probe_port (HEALTH_PORT in the example)"
    )]
    PortInUse {
        /// The address tried.
        addr: SocketAddr,
    },
    /// Another bind failure.
    #[error("cannot listen on health address {addr}: {source}")]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS files could not be used.
    #[error("health server TLS: {0}")]
    Tls(String),
    /// `start` was called outside a tokio runtime.
    #[error("the health server must be started inside a tokio runtime")]
    NoRuntime,
}

/// Entry point: `HealthServer::builder(service)`.
#[derive(Debug)]
pub struct HealthServer;

impl HealthServer {
    /// A builder with the defaults: `127.0.0.1:9090`, `/live`, `/ready`, `/startup`,
    /// `/metrics` (404 until a render function is set), plain HTTP, 5 s shutdown.
    pub fn builder(service: HealthService) -> ServerBuilder {
        ServerBuilder {
            service,
            bind_address: "127.0.0.1".into(),
            port: 9090,
            live_path: "/live".into(),
            ready_path: "/ready".into(),
            startup_path: "/startup".into(),
            metrics_path: "/metrics".into(),
            metrics: None,
            tls: None,
            response_cache: None,
        }
    }
}

/// Configures the probe server.
#[must_use]
pub struct ServerBuilder {
    service: HealthService,
    bind_address: String,
    port: u16,
    live_path: String,
    ready_path: String,
    startup_path: String,
    metrics_path: String,
    metrics: Option<MetricsRender>,
    tls: Option<TlsOptions>,
    response_cache: Option<Duration>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("bind_address", &self.bind_address)
            .field("port", &self.port)
            .field("live_path", &self.live_path)
            .field("ready_path", &self.ready_path)
            .field("startup_path", &self.startup_path)
            .field("metrics_path", &self.metrics_path)
            .field("metrics", &self.metrics.is_some())
            .field("tls", &self.tls)
            .field("response_cache", &self.response_cache)
            .finish()
    }
}

impl ServerBuilder {
    /// The IP address to bind (default `127.0.0.1`; exposing the probes is explicit).
    pub fn with_bind_address(mut self, addr: impl Into<String>) -> Self {
        self.bind_address = addr.into();
        self
    }
    /// The port (default 9090; 0 picks a free one).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// The liveness path (default `/live`).
    pub fn with_live_path(mut self, path: impl Into<String>) -> Self {
        self.live_path = path.into();
        self
    }
    /// The readiness path (default `/ready`).
    pub fn with_ready_path(mut self, path: impl Into<String>) -> Self {
        self.ready_path = path.into();
        self
    }
    /// The startup path (default `/startup`).
    pub fn with_startup_path(mut self, path: impl Into<String>) -> Self {
        self.startup_path = path.into();
        self
    }
    /// The metrics path (default `/metrics`).
    pub fn with_metrics_path(mut self, path: impl Into<String>) -> Self {
        self.metrics_path = path.into();
        self
    }
    /// What `/metrics` serves.
    pub fn with_metrics(mut self, render: MetricsRender) -> Self {
        self.metrics = Some(render);
        self
    }
    /// Serve over TLS.
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Answers each probe path from the last answer while it is younger than `ttl`
    /// (default: no cache; zero turns it off). A storm of probe requests then runs the
    /// probes and encodes their statuses once per `ttl`. Readiness never answers from the
    /// cache once drain is signalled.
    pub fn with_response_cache(mut self, ttl: Duration) -> Self {
        self.response_cache = (!ttl.is_zero()).then_some(ttl);
        self
    }

    fn check_paths(&self) -> Result<(), ServerError> {
        let paths = [
            ("live", &self.live_path),
            ("ready", &self.ready_path),
            ("startup", &self.startup_path),
            ("metrics", &self.metrics_path),
        ];
        for (i, (what, path)) in paths.iter().enumerate() {
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                return Err(ServerError::BadPath {
                    what,
                    path: path.to_string(),
                    problem: "must start with '/' and have no spaces (for example /ready)",
                });
            }
            if paths[..i].iter().any(|(_, p)| p == path) {
                return Err(ServerError::BadPath {
                    what,
                    path: path.to_string(),
                    problem: "is already used by another health path",
                });
            }
        }
        Ok(())
    }

    /// Binds and starts serving on the current tokio runtime. A bad address or path, a
    /// port in use and unreadable TLS files are errors here.
    pub fn start(self) -> Result<RunningServer, ServerError> {
        self.check_paths()?;
        let ip: IpAddr = self
            .bind_address
            .trim()
            .parse()
            .map_err(|_| ServerError::BadBindAddress(self.bind_address.clone()))?;
        let addr = SocketAddr::new(ip, self.port);
        let tls = self.tls.as_ref().map(load_tls).transpose()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ServerError::NoRuntime)?;
        let std_listener = std::net::TcpListener::bind(addr).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                ServerError::PortInUse { addr }
            } else {
                ServerError::Bind { addr, source }
            }
        })?;
        let local_addr = std_listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        std_listener
            .set_nonblocking(true)
            .map_err(|source| ServerError::Bind { addr, source })?;
        let listener = {
            let _enter = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener)
                .map_err(|source| ServerError::Bind { addr, source })?
        };
        let routes = Arc::new(Routes {
            service: self.service,
            live: self.live_path,
            ready: self.ready_path,
            startup: self.startup_path,
            metrics_path: self.metrics_path,
            metrics: self.metrics,
            cache: self.response_cache.map(|ttl| (ttl, Default::default())),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = runtime.spawn(accept_loop(listener, routes, tls, stop_rx));
        Ok(RunningServer {
            local_addr,
            stop: stop_tx,
            task,
        })
    }
}

fn load_tls(opts: &TlsOptions) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p)
            .map_err(|e| ServerError::Tls(format!("cannot read the {what} file {p:?}: {e}")))
    };
    let cert_pem = read(&opts.cert_file, "certificate")?;
    let key_pem = read(&opts.key_file, "key")?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| ServerError::Tls(format!("certificate file {:?}: {e}", opts.cert_file)))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "certificate file {:?} holds no PEM certificate",
            opts.cert_file
        )));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServerError::Tls(format!("key file {:?}: {e}", opts.key_file)))?
        .ok_or_else(|| {
            ServerError::Tls(format!(
                "key file {:?} holds no PEM private key",
                opts.key_file
            ))
        })?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match opts.min_version {
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ServerError::Tls(format!(
                "certificate and key do not make a usable pair: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// The address bound (with the port chosen when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish for at most `timeout`, then
    /// closes the remaining connections.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            task.abort();
        }
    }
}

struct Routes {
    service: HealthService,
    live: String,
    ready: String,
    startup: String,
    metrics_path: String,
    metrics: Option<MetricsRender>,
    /// The answer cache's time to live, and the last answer of each check kind.
    cache: Option<(Duration, [ArcSwapOption<Cached>; 3])>,
}

/// A probe path's last answer.
struct Cached {
    at: Instant,
    code: StatusCode,
    body: Bytes,
}

fn slot(kind: CheckKind) -> usize {
    match kind {
        CheckKind::Liveness => 0,
        CheckKind::Readiness => 1,
        _ => 2,
    }
}

type Reply = Response<warp::hyper::body::Bytes>;

impl Routes {
    fn kind_of(&self, path: &str) -> Option<CheckKind> {
        if path == self.live {
            Some(CheckKind::Liveness)
        } else if path == self.ready {
            Some(CheckKind::Readiness)
        } else if path == self.startup {
            Some(CheckKind::Startup)
        } else {
            None
        }
    }

    async fn respond(&self, method: Method, path: &str) -> Reply {
        let known = self.kind_of(path).is_some() || path == self.metrics_path;
        if !known {
            return plain(StatusCode::NOT_FOUND, "404 page not found\n");
        }
        let head = method == Method::HEAD;
        if method != Method::GET && !head {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let (status, content_type, body) = match self.kind_of(path) {
            Some(kind) => {
                let cache = self
                    .cache
                    .as_ref()
                    .filter(|_| !(kind == CheckKind::Readiness && self.service.is_draining()));
                if let Some((ttl, slots)) = cache
                    && let Some(c) = &*slots[slot(kind)].load()
                    && c.at.elapsed() < *ttl
                {
                    (c.code, "application/json", c.body.clone())
                } else {
                    let s = self.service.check(kind).await;
                    let code = if s.state == State::Unhealthy {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    let mut body = serde_json::to_vec(&s).unwrap_or_default();
                    body.push(b'\n');
                    let body = Bytes::from(body);
                    if let Some((_, slots)) = cache {
                        slots[slot(kind)].store(Some(Arc::new(Cached {
                            at: Instant::now(),
                            code,
                            body: body.clone(),
                        })));
                    }
                    (code, "application/json", body)
                }
            }
            None => match &self.metrics {
                Some(render) => (
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    Bytes::from(render().into_bytes()),
                ),
                None => return plain(StatusCode::NOT_FOUND, "404 page not found\n"),
            },
        };
        let mut r = Response::new(if head { Bytes::new() } else { body });
        *r.status_mut() = status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    }
}

fn plain(code: StatusCode, text: &'static str) -> Reply {
    let mut r = Response::new(Bytes::from_static(text.as_bytes()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    routes: Arc<Routes>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let filter = {
        let routes = routes.clone();
        warp::method().and(warp::path::full()).and_then(
            move |method: Method, path: warp::path::FullPath| {
                let routes = routes.clone();
                async move { Ok::<_, Infallible>(routes.respond(method, path.as_str()).await) }
            },
        )
    };
    let service = TowerToHyperService::new(warp::service(filter));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None::<Duration>);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: back off briefly, keep serving.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let builder = builder.clone();
        match &tls {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Ok(Ok(tls_stream)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                    else {
                        return;
                    };
                    let conn = builder
                        .serve_connection(TokioIo::new(tls_stream), service)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}
