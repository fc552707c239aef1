//! The server: configuration, routing, accept loop, TLS and shutdown.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::thread::Scheduling;

use hyper::StatusCode;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use piko_obs_health::{CheckKind, HealthService, State};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
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

/// How long a client may take to send a request's header, from the moment its
/// connection is accepted (or, on a kept-alive HTTP/1.1 connection, from the first byte
/// of the next request): [`ServerBuilder::with_header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection may stay open with no request in flight once it has served
/// one: [`ServerBuilder::with_idle_timeout`]. Longer than the usual scrape interval
/// (15 to 60 s), so Prometheus keeps its connection between scrapes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How many connections the server holds at once: [`ServerBuilder::with_max_connections`].
/// A quarter of the usual container file limit (1,024); the kubelet and a scraper need
/// a handful.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The longest header read or idle timeout the server keeps; longer ones are cut to it.
pub const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// How often an HTTP/2 connection is pinged while it is open, and how long the answer
/// may take before the connection is closed.
const H2_KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(20), Duration::from_secs(10));

/// Streams one HTTP/2 connection may have open at once (probe requests are short).
const H2_MAX_STREAMS: u32 = 32;

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
        "health probe port {addr} is already in use: stop the other process or choose another port (ServerBuilder::with_port)"
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
    #[error(
        "the health server must be started inside a tokio runtime (or with ServerBuilder::start_on_own_thread)"
    )]
    NoRuntime,
    /// The server's own thread or its runtime could not be created.
    #[error("cannot start the health server's thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A connection limit is zero.
    #[error("health server {setting}: {problem} (ServerBuilder::with_{setting})")]
    BadLimit {
        /// The setting (`header_read_timeout`, `idle_timeout`, `max_connections`).
        setting: &'static str,
        /// What is wrong and how to fix it.
        problem: &'static str,
    },
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
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    deadline: bool,
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
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl ServerBuilder {
    /// A builder with the defaults: `127.0.0.1:9090`, `/live`, `/ready`, `/startup`,
    /// `/metrics` (404 until a render function is set), plain HTTP, a 5 s header read
    /// timeout, a 90 s idle timeout and at most 256 connections.
    pub fn new(service: HealthService) -> Self {
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
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            deadline: true,
        }
    }

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

    /// How long a client may take to send a request's header (default 5 s): counted from
    /// the connection's accept for the first request (the TLS handshake included), and
    /// from the first byte of each later request on a kept-alive HTTP/1.1 connection.
    /// Past it the connection is closed. Zero is an error at `start`; more than an hour
    /// ([`MAX_CONNECTION_TIMEOUT`]) is cut to an hour.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a connection that has served a request may stay open with no request in
    /// flight (default 90 s), over HTTP/1.1 and HTTP/2 alike. Zero is an error at
    /// `start`; more than an hour is cut to an hour.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The most connections held at once (default 256). A connection accepted past it
    /// closes the oldest connection with no request in flight (a client that has not
    /// sent its header yet, or an idle one), so a probe always gets through while
    /// clients hold connections open; when every connection has a request in flight,
    /// the new one is closed at once. Both are counted in [`ConnectionStats`]. Zero is
    /// an error at `start`.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Whether [`start_on_own_thread`](Self::start_on_own_thread) asks for
    /// `SCHED_DEADLINE` on the probe thread where the process may have it (default: on;
    /// see [`Scheduling::Deadline`]). Off, the thread only asks for the short time slice.
    pub fn with_deadline_scheduling(mut self, on: bool) -> Self {
        self.deadline = on;
        self
    }

    fn check_limits(&self) -> Result<(), ServerError> {
        if self.header_read_timeout.is_zero() {
            return Err(ServerError::BadLimit {
                setting: "header_read_timeout",
                problem: "must be greater than zero (for example 5s)",
            });
        }
        if self.idle_timeout.is_zero() {
            return Err(ServerError::BadLimit {
                setting: "idle_timeout",
                problem: "must be greater than zero (for example 90s)",
            });
        }
        if self.max_connections == 0 {
            return Err(ServerError::BadLimit {
                setting: "max_connections",
                problem: "must be at least 1 (for example 256)",
            });
        }
        Ok(())
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

    /// Binds and starts serving on the current tokio runtime, beside its other tasks. A
    /// bad address or path, a port in use and unreadable TLS files are errors here, and
    /// so is a call outside a tokio runtime. A server that must answer while the
    /// application keeps the runtime busy is started with
    /// [`start_on_own_thread`](Self::start_on_own_thread).
    pub fn start(self) -> Result<RunningServer, ServerError> {
        let checked = self.check()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ServerError::NoRuntime)?;
        let (bound, serve) = checked.bind(&runtime)?;
        let task = runtime.spawn(serve);
        Ok(bound.running(task, runtime, None, Scheduling::SharedRuntime))
    }

    /// Binds, then serves on a thread of its own (`piko-obs-probes`) running a
    /// current-thread tokio runtime: one thread accepts a probe's connection, reads the
    /// request, runs the probes (their tasks too) and writes the answer, whatever the
    /// application's runtimes are doing, and needs no runtime to be started from. Where
    /// the process has `CAP_SYS_NICE`, the thread runs under `SCHED_DEADLINE`
    /// ([`Scheduling::Deadline`]: a bounded CPU budget the kernel gives it as soon as it
    /// wakes; [`with_deadline_scheduling`](Self::with_deadline_scheduling) turns this
    /// off). Elsewhere, on Linux 6.12 and later, it asks for a short CPU time slice
    /// ([`PROBE_THREAD_SLICE`](crate::PROBE_THREAD_SLICE)), so that when every core is
    /// busy a probe's wake-up preempts the running thread rather than waiting for its
    /// slice to end; where the kernel refuses that too, the server runs with the default
    /// slice and says why in [`RunningServer::scheduling`]. Errors as
    /// [`start`](Self::start)'s, and [`ServerError::Thread`] when the thread or its
    /// runtime cannot be created.
    ///
    /// ```
    /// use std::time::Duration;
    /// use piko_obs_health::HealthService;
    /// use piko_obs_health_warp::ServerBuilder;
    /// use piko_obs_lifecycle::Lifecycle;
    ///
    /// let health = HealthService::new("orders", Duration::from_secs(5)).unwrap();
    /// let server = ServerBuilder::new(health)
    ///     .with_port(0)
    ///     .start_on_own_thread() // no runtime needed
    ///     .expect("probe server started");
    /// // "own thread, SCHED_DEADLINE 2 ms every 10 ms" with CAP_SYS_NICE,
    /// // else "own thread, 0.1 ms time slice" on Linux 6.12 and later
    /// println!("probes on http://{}/ready, {}", server.local_addr(), server.scheduling());
    /// server.shutdown_within(Duration::from_secs(1)).unwrap();
    /// ```
    pub fn start_on_own_thread(self) -> Result<RunningServer, ServerError> {
        let deadline = self.deadline;
        let checked = self.check()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ServerError::Thread)?;
        let handle = runtime.handle().clone();
        // From here on, an error drops the runtime without a panic, in async code too.
        let runtime = crate::thread::ServerRuntime::new(runtime);
        let (bound, serve) = checked.bind(&handle)?;
        let task = handle.spawn(serve);
        let (exit, exit_seen) = tokio::sync::oneshot::channel::<()>();
        let (told, scheduling) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(crate::thread::THREAD_NAME.into())
            .spawn(move || {
                let _ = told.send(crate::thread::ask_scheduling(deadline));
                // Runs the server's tasks until its handle is dropped (the accept loop
                // ends before, at shutdown).
                runtime.run_until(exit_seen);
            })
            .map_err(ServerError::Thread)?;
        let scheduling = scheduling.recv().unwrap_or_else(|_| {
            Scheduling::DefaultSlice("the probe thread ended before it started".into())
        });
        Ok(bound.running(task, handle, Some(exit), scheduling))
    }

    /// Checks the settings and loads the TLS files.
    fn check(self) -> Result<Checked, ServerError> {
        self.check_paths()?;
        self.check_limits()?;
        let ip: IpAddr = self
            .bind_address
            .trim()
            .parse()
            .map_err(|_| ServerError::BadBindAddress(self.bind_address.clone()))?;
        let addr = SocketAddr::new(ip, self.port);
        let tls = self.tls.as_ref().map(load_tls).transpose()?;
        Ok(Checked {
            builder: self,
            addr,
            tls,
        })
    }
}

/// Settings checked, TLS loaded, not yet bound.
struct Checked {
    builder: ServerBuilder,
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Checked {
    /// Binds within `runtime`; the future serves.
    fn bind(
        self,
        runtime: &tokio::runtime::Handle,
    ) -> Result<
        (
            Bound,
            impl std::future::Future<Output = ()> + Send + 'static,
        ),
        ServerError,
    > {
        let Checked {
            builder: this,
            addr,
            tls,
        } = self;
        let listener = {
            let _enter = runtime.enter();
            listen(addr)?
        };
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let routes = Arc::new(Routes {
            service: this.service,
            live: this.live_path,
            ready: this.ready_path,
            startup: this.startup_path,
            metrics_path: this.metrics_path,
            metrics: this.metrics,
            cache: this.response_cache.map(|ttl| (ttl, Default::default())),
        });
        let (stop, stop_rx) = watch::channel(false);
        let counters = ConnectionCounters::default();
        let limits = Limits {
            header_read: this.header_read_timeout.min(MAX_CONNECTION_TIMEOUT),
            idle: this.idle_timeout.min(MAX_CONNECTION_TIMEOUT),
            max_connections: this.max_connections,
        };
        let serve = accept_loop(listener, routes, tls, limits, counters.clone(), stop_rx);
        let bound = Bound {
            local_addr,
            stop,
            counters,
        };
        Ok((bound, serve))
    }
}

/// A bound server, not yet serving.
struct Bound {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    counters: ConnectionCounters,
}

impl Bound {
    fn running(
        self,
        task: tokio::task::JoinHandle<()>,
        runtime: tokio::runtime::Handle,
        exit: Option<tokio::sync::oneshot::Sender<()>>,
        scheduling: Scheduling,
    ) -> RunningServer {
        RunningServer {
            local_addr: self.local_addr,
            stop: self.stop,
            task: std::sync::Mutex::new(Some(task)),
            runtime,
            counters: self.counters,
            scheduling,
            _exit: exit,
        }
    }
}

/// Connections the kernel completes and queues for the accept loop: enough that a
/// burst of connections is queued rather than dropped (a dropped connection attempt is
/// retried by the client a second later, longer than a probe's usual timeout).
const LISTEN_BACKLOG: u32 = 1024;

fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServerError> {
    let bind_error = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ServerError::PortInUse { addr }
        } else {
            ServerError::Bind { addr, source }
        }
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(addr).map_err(bind_error)?;
    socket.listen(LISTEN_BACKLOG).map_err(bind_error)
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
    /// Taken by the first shutdown.
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The runtime the accept loop runs on, for a shutdown from outside it.
    runtime: tokio::runtime::Handle,
    counters: ConnectionCounters,
    scheduling: Scheduling,
    /// On its own thread: dropped with the server, which ends the thread.
    _exit: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningServer {
    /// The address bound (with the port chosen when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's connection counters (a handle that stays valid after shutdown).
    pub fn counters(&self) -> ConnectionCounters {
        self.counters.clone()
    }

    /// Where the server runs, and the scheduling its own thread got from the kernel.
    pub fn scheduling(&self) -> &Scheduling {
        &self.scheduling
    }

    /// Stops accepting, closes at once every connection with no request in flight (a
    /// client that never finishes its header included), lets requests in flight finish
    /// for at most `timeout`, then closes the remaining connections.
    pub async fn shutdown(self, timeout: Duration) {
        self.stop_within(timeout).await;
    }

    /// Signals the accept loop to stop and waits for it at most `timeout`; a second call
    /// does nothing.
    pub(crate) fn stop_within(
        &self,
        timeout: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        async move {
            if let Some(mut task) = task
                && tokio::time::timeout(timeout, &mut task).await.is_err()
            {
                task.abort();
            }
        }
    }

    /// The runtime the server runs on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
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

/// Counts of the probe server's connections: a snapshot of [`ConnectionCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections closed at once because the limit was reached and every connection
    /// held had a request in flight.
    pub refused: u64,
    /// Connections with no request in flight closed to make room for a new one at the
    /// limit.
    pub evicted: u64,
    /// Connections closed because a request's header did not arrive in time (or the TLS
    /// handshake did not finish in time).
    pub header_timeouts: u64,
    /// Connections closed after the idle timeout with no request in flight.
    pub idle_timeouts: u64,
    /// Failed accepts (out of file descriptors and the like); the server waits 50 ms
    /// after each and carries on.
    pub accept_errors: u64,
}

/// A handle on a server's connection counters ([`RunningServer::counters`]); cheap to
/// clone and to read, for a metrics collector.
#[derive(Debug, Clone, Default)]
pub struct ConnectionCounters(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    accept_errors: AtomicU64,
}

impl ConnectionCounters {
    /// The counts now.
    pub fn snapshot(&self) -> ConnectionStats {
        let c = &*self.0;
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnectionStats {
            accepted: read(&c.accepted),
            open: read(&c.open),
            refused: read(&c.refused),
            evicted: read(&c.evicted),
            header_timeouts: read(&c.header_timeouts),
            idle_timeouts: read(&c.idle_timeouts),
            accept_errors: read(&c.accept_errors),
        }
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts a connection as open while it lives (its task holds it, so an aborted task
/// counts down too).
struct OpenConnection(ConnectionCounters);

impl OpenConnection {
    fn new(counters: &ConnectionCounters) -> OpenConnection {
        ConnectionCounters::add(&counters.0.open);
        OpenConnection(counters.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection limits, as `start` checked and clamped them.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read: Duration,
    idle: Duration,
    max_connections: usize,
}

/// What every connection task shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    service: Service,
    limits: Limits,
    counters: ConnectionCounters,
}

/// The routes as a hyper service, type-erased so that [`Shared`] can name it.
type Service = Box<dyn Fn(hyper::Request<hyper::body::Incoming>) -> Answer + Send + Sync>;

type Answer = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<warp::reply::Response, Infallible>> + Send>,
>;

/// One connection's state, shared by its task, its requests and the accept loop.
struct ConnState {
    accepted: Instant,
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// Whether a request has arrived (the header timeout applies until one does).
    served: AtomicBool,
    /// When the last request was answered, in nanoseconds after `accepted`.
    idle_since: AtomicU64,
    /// Set by the accept loop to close the connection and make room for a new one.
    evicted: AtomicBool,
    /// Wakes the task when it is evicted.
    wake: Notify,
}

/// Why a connection with no request in flight is closed at its deadline.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    Header,
    Idle,
}

impl ConnState {
    fn new() -> ConnState {
        let now = Instant::now();
        ConnState {
            accepted: now,
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Why the connection is to be closed now for want of a request, or when to look
    /// again: never later than the earliest moment it could be due (a request that
    /// arrives meanwhile moves the deadline no earlier than an idle timeout from now).
    /// Requests do not wake the task; it looks when the time comes.
    fn look(&self, limits: &Limits, now: Instant) -> Result<Expiry, Instant> {
        // `served` first: a request marks itself in flight before it sets `served`.
        let served = self.served.load(Ordering::Acquire);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            Err(now + limits.idle)
        } else if !served {
            let due = self.accepted + limits.header_read;
            if due <= now {
                Ok(Expiry::Header)
            } else {
                Err(due.min(now + limits.idle))
            }
        } else {
            let since = Duration::from_nanos(self.idle_since.load(Ordering::Acquire));
            let due = self
                .accepted
                .checked_add(since)
                .map_or(now, |end| end + limits.idle);
            if due <= now {
                Ok(Expiry::Idle)
            } else {
                Err(due)
            }
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// Marks a request in flight on its connection until dropped.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn enter(state: &Arc<ConnState>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.served.store(true, Ordering::Release);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let since = self.0.accepted.elapsed().as_nanos();
        self.0
            .idle_since
            .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    routes: Arc<Routes>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    counters: ConnectionCounters,
    mut stop: watch::Receiver<bool>,
) {
    let filter = warp::method().and(warp::path::full()).and_then(
        move |method: Method, path: warp::path::FullPath| {
            let routes = routes.clone();
            async move { Ok::<_, Infallible>(routes.respond(method, path.as_str()).await) }
        },
    );
    let routes = TowerToHyperService::new(warp::service(filter));
    let service: Service =
        Box::new(move |req| Box::pin(hyper::service::Service::call(&routes, req)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE.0)
        .keep_alive_timeout(H2_KEEP_ALIVE.1)
        .max_concurrent_streams(H2_MAX_STREAMS);
    let shared = Arc::new(Shared {
        builder,
        service,
        limits,
        counters,
    });
    // The connections held, oldest first; an entry whose task has ended holds the
    // only reference left, and is swept when the limit is reached.
    let mut conns: BTreeMap<u64, Arc<ConnState>> = BTreeMap::new();
    let mut next_id = 0u64;
    let mut tasks = JoinSet::new();
    let counters = &shared.counters;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: back off briefly, keep serving.
            ConnectionCounters::add(&counters.0.accept_errors);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if conns.len() >= limits.max_connections {
            conns.retain(|_, c| Arc::strong_count(c) > 1);
        }
        if conns.len() >= limits.max_connections {
            let oldest_idle = conns.iter().find(|(_, c)| c.idle()).map(|(id, _)| *id);
            match oldest_idle.and_then(|id| conns.remove(&id)) {
                Some(victim) => {
                    victim.evicted.store(true, Ordering::Release);
                    victim.wake.notify_one();
                    ConnectionCounters::add(&counters.0.evicted);
                }
                None => {
                    ConnectionCounters::add(&counters.0.refused);
                    drop(stream);
                    continue;
                }
            }
        }
        ConnectionCounters::add(&counters.0.accepted);
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::new());
        conns.insert(next_id, state.clone());
        next_id += 1;
        let open = OpenConnection::new(counters);
        tasks.spawn(connection(
            stream,
            tls.clone(),
            shared.clone(),
            state,
            stop.clone(),
            open,
        ));
    }
    drop(listener);
    // Every connection sees the stop: idle ones close at once, the others after their
    // requests. `RunningServer::shutdown` bounds the wait; past it this future is
    // dropped with the join set, which aborts what is left.
    while tasks.join_next().await.is_some() {}
}

/// One connection: the TLS handshake if any, then HTTP until the client closes, a
/// timeout, an eviction or the server's stop.
async fn connection(
    stream: tokio::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    mut stop: watch::Receiver<bool>,
    _open: OpenConnection,
) {
    match tls {
        None => serve(TokioIo::new(stream), &shared, &state, stop).await,
        Some(acceptor) => {
            let deadline = state.accepted + shared.limits.header_read;
            let handshake = tokio::time::timeout_at(deadline.into(), acceptor.accept(stream));
            let tls_stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(s)) => s,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        ConnectionCounters::add(&shared.counters.0.header_timeouts);
                        return;
                    }
                },
                // Before a request, only an eviction wakes the task.
                () = state.wake.notified() => return,
                _ = stop.wait_for(|s| *s) => return,
            };
            serve(TokioIo::new(tls_stream), &shared, &state, stop).await;
        }
    }
}

async fn serve<I>(
    io: I,
    shared: &Arc<Shared>,
    state: &Arc<ConnState>,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = {
        let (shared, state) = (shared.clone(), state.clone());
        hyper::service::service_fn(move |req| {
            let in_flight = InFlight::enter(&state);
            let answer = (shared.service)(req);
            async move {
                let reply = answer.await;
                drop(in_flight);
                reply
            }
        })
    };
    let conn = shared.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let counters = &shared.counters.0;
    let mut stopping = false;
    let first_look = match state.look(&shared.limits, Instant::now()) {
        Ok(_) => Instant::now(),
        Err(at) => at,
    };
    let sleep = tokio::time::sleep_until(first_look.into());
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                let timed_out = done.as_ref().err().and_then(|e| e.downcast_ref::<hyper::Error>())
                    .is_some_and(hyper::Error::is_timeout);
                if timed_out {
                    ConnectionCounters::add(&counters.header_timeouts);
                }
                return;
            }
            () = &mut sleep => {
                match state.look(&shared.limits, Instant::now()) {
                    Ok(why) => {
                        ConnectionCounters::add(match why {
                            Expiry::Header => &counters.header_timeouts,
                            Expiry::Idle => &counters.idle_timeouts,
                        });
                        return;
                    }
                    Err(at) => sleep.as_mut().reset(at.into()),
                }
            }
            () = state.wake.notified() => {
                if state.evicted.load(Ordering::Acquire) {
                    return;
                }
            }
            // Idle connections close at once; the others once their requests are
            // answered (hyper closes them then).
            _ = stop.wait_for(|s| *s), if !stopping => {
                if state.idle() {
                    return;
                }
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
