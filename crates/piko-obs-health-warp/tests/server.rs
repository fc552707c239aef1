//! The probe server over real HTTP on loopback (Piko's H1-H4, H6, H14-H17, H19-H21,
//! H23, and the improvements of the health issue).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use piko_obs_health::{HealthService, ProbeOptions, State, Status, probe_fn};
use piko_obs_health_warp::{
    HealthServer, HttpProbe, ServerError, TcpProbe, TlsMinVersion, TlsOptions,
};

struct Reply {
    status: u16,
    content_type: String,
    allow: String,
    body: String,
}

/// One request on a fresh connection.
async fn request<S>(io: S, method: &str, path: &str) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let header = |k: &str| {
        resp.headers()
            .get(k)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (status, content_type, allow) = (
        resp.status().as_u16(),
        header("content-type"),
        header("allow"),
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    Reply {
        status,
        content_type,
        allow,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    request(stream, method, path).await
}

fn service() -> HealthService {
    let h = HealthService::new("orders", Duration::from_secs(5)).unwrap();
    h.register(probe_fn("db", |_, _| async { Status::healthy("db") }))
        .unwrap();
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_paths_answer_json_with_status_codes() {
    let h = service();
    let broken = Arc::new(AtomicUsize::new(0));
    let b = broken.clone();
    h.register(probe_fn("cache", move |_, _| {
        let state = if b.load(Ordering::SeqCst) == 1 {
            State::Unhealthy
        } else {
            State::Healthy
        };
        async move { Status::new("cache", state) }
    }))
    .unwrap();
    let server = HealthServer::builder(h).with_port(0).start().unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback(), "binds loopback by default");
    for path in ["/live", "/ready", "/startup"] {
        let r = get(addr, "GET", path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.content_type, "application/json");
        assert!(r.body.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["name"], "orders");
        assert_eq!(v["state"], "HEALTHY");
        if path == "/live" {
            // Probes answer readiness and startup unless registered for liveness.
            assert!(v.get("dependencies").is_none(), "{v}");
        } else {
            assert_eq!(v["dependencies"][0]["name"], "cache");
            assert_eq!(v["dependencies"][1]["name"], "db");
        }
        for key in ["timestamp", "duration", "message"] {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
    }
    broken.store(1, Ordering::SeqCst);
    let r = get(addr, "GET", "/ready").await;
    assert_eq!(r.status, 503);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["state"], "UNHEALTHY");
    assert_eq!(v["message"], "Readiness check found issues");
    // HEAD: the same status, no body.
    let r = get(addr, "HEAD", "/ready").await;
    assert_eq!((r.status, r.body.as_str()), (503, ""));
    let r = get(addr, "HEAD", "/startup").await;
    assert_eq!(r.status, 503);
    // A dependency's outage leaves liveness alone.
    let r = get(addr, "HEAD", "/live").await;
    assert_eq!(r.status, 200);
    // Other methods and unknown paths.
    let r = get(addr, "POST", "/live").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.allow, "GET, HEAD");
    assert_eq!(get(addr, "GET", "/nope").await.status, 404);
    assert_eq!(
        get(addr, "GET", "/metrics").await.status,
        404,
        "no render function"
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_answers_200_and_drain_503() {
    let h = service();
    h.register_with(
        probe_fn("search", |_, _| async {
            Status::unhealthy("search", "down")
        }),
        ProbeOptions::default().non_critical(),
    )
    .unwrap();
    let server = HealthServer::builder(h.clone())
        .with_port(0)
        .start()
        .unwrap();
    let addr = server.local_addr();
    let r = get(addr, "GET", "/ready").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"state\":\"DEGRADED\""));
    h.signal_drain();
    let r = get(addr, "GET", "/ready").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("Application is shutting down"));
    assert_eq!(get(addr, "GET", "/live").await.status, 200);
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_paths_and_metrics_render() {
    let server = HealthServer::builder(service())
        .with_port(0)
        .with_live_path("/healthz")
        .with_ready_path("/readyz")
        .with_startup_path("/startupz")
        .with_metrics_path("/prom")
        .with_metrics(Arc::new(|| "# TYPE up gauge\nup 1\n".to_string()))
        .start()
        .unwrap();
    let addr = server.local_addr();
    assert_eq!(get(addr, "GET", "/healthz").await.status, 200);
    assert_eq!(get(addr, "GET", "/readyz").await.status, 200);
    assert_eq!(get(addr, "GET", "/startupz").await.status, 200);
    assert_eq!(get(addr, "GET", "/live").await.status, 404);
    let m = get(addr, "GET", "/prom").await;
    assert_eq!(m.status, 200);
    assert_eq!(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(m.body, "# TYPE up gauge\nup 1\n");
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_probe_does_not_hold_the_response_and_a_panic_does_not_kill_the_server() {
    let h = HealthService::new("orders", Duration::from_millis(300)).unwrap();
    h.register(probe_fn("hangs", |_, _| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Status::healthy("hangs")
    }))
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    h.register_with(
        probe_fn("panics", move |_, _| {
            let first = c.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                assert!(!first, "probe bug on first call");
                Status::healthy("panics")
            }
        }),
        ProbeOptions::default().only(&[piko_obs_health::CheckKind::Liveness]),
    )
    .unwrap();
    let server = HealthServer::builder(h).with_port(0).start().unwrap();
    let addr = server.local_addr();
    let start = Instant::now();
    let r = get(addr, "GET", "/ready").await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(r.status, 503);
    assert!(r.body.contains("Health check timed out after 300ms"));
    let r = get(addr, "GET", "/live").await;
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("probe panicked: probe bug on first call"),
        "{}",
        r.body
    );
    // The server and the probe carry on.
    let r = get(addr, "GET", "/live").await;
    assert!(
        r.body.contains("\"name\":\"panics\",\"state\":\"HEALTHY\""),
        "{}",
        r.body
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_ready_requests_run_a_cached_probe_once() {
    let h = HealthService::new("orders", Duration::from_secs(5)).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    h.register_with(
        probe_fn("db", move |_, _| {
            r.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Status::healthy("db")
            }
        }),
        ProbeOptions::default().with_cache_ttl(Duration::from_secs(60)),
    )
    .unwrap();
    let server = HealthServer::builder(h).with_port(0).start().unwrap();
    let addr = server.local_addr();
    let tasks: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(async move { get(addr, "GET", "/ready").await.status }))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for t in tasks {
        assert!(Instant::now() < deadline);
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_and_a_port_in_use_fail_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = HealthServer::builder(service())
        .with_port(port)
        .start()
        .unwrap_err();
    assert!(matches!(e, ServerError::PortInUse { .. }));
    assert!(e.to_string().contains("already in use"), "{e}");
    let e = HealthServer::builder(service())
        .with_bind_address("localhost:x")
        .start()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("\"localhost:x\" is not an IP address"),
        "{e}"
    );
    let e = HealthServer::builder(service())
        .with_ready_path("ready")
        .start()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("ready path \"ready\" must start with '/'"),
        "{e}"
    );
    let e = HealthServer::builder(service())
        .with_ready_path("/live")
        .start()
        .unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    let e = HealthServer::builder(service())
        .with_port(0)
        .with_tls(TlsOptions {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
            min_version: TlsMinVersion::Tls12,
        })
        .start()
        .unwrap_err();
    assert!(
        e.to_string().contains("cannot read the certificate file"),
        "{e}"
    );
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let e = HealthServer::builder(service())
        .with_port(0)
        .start()
        .unwrap_err();
    assert!(matches!(e, ServerError::NoRuntime));
}

fn tls_files(dir: &std::path::Path) -> (TlsOptions, rustls::pki_types::CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    std::fs::write(dir.join("cert.pem"), cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), key_pem).unwrap();
    (
        TlsOptions {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            min_version: TlsMinVersion::Tls12,
        },
        cert.cert.der().clone(),
    )
}

fn client(
    cert: &rustls::pki_types::CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_probes_over_tls_with_a_minimum_version() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tls, cert) = tls_files(dir.path());
    let server = HealthServer::builder(service())
        .with_port(0)
        .with_tls(tls.clone())
        .start()
        .unwrap();
    let addr = server.local_addr();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = client(&cert, &[&rustls::version::TLS12])
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    let r = request(stream, "GET", "/ready").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"state\":\"HEALTHY\""));
    server.shutdown(Duration::from_secs(2)).await;

    tls.min_version = TlsMinVersion::Tls13;
    let server = HealthServer::builder(service())
        .with_port(0)
        .with_tls(tls)
        .start()
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let refused = client(&cert, &[&rustls::version::TLS12])
        .connect(name.clone(), tcp)
        .await;
    assert!(refused.is_err(), "a TLS 1.2 client must be refused");
    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let ok = client(&cert, &[&rustls::version::TLS13])
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(request(ok, "GET", "/live").await.status, 200);
    // Plain HTTP to a TLS port gets no answer, not a probe result.
    let plain = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let attempt = tokio::time::timeout(Duration::from_secs(5), async move {
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(plain)).await
    })
    .await;
    if let Ok(Ok((mut tx, conn))) = attempt {
        let driver = tokio::spawn(conn);
        let req = hyper::Request::get("/live")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert!(tx.send_request(req).await.is_err());
        driver.abort();
    }
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_even_with_a_request_in_flight() {
    let h = HealthService::new("orders", Duration::from_secs(30)).unwrap();
    h.register(probe_fn("slow", |_, _| async {
        tokio::time::sleep(Duration::from_secs(20)).await;
        Status::healthy("slow")
    }))
    .unwrap();
    let server = HealthServer::builder(h).with_port(0).start().unwrap();
    let addr = server.local_addr();
    let in_flight = tokio::spawn(async move { get(addr, "GET", "/ready").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    server.shutdown(Duration::from_millis(500)).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    in_flight.abort();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_http_probes_check_real_dependencies() {
    // A real dependency: another probe server.
    let dep = HealthServer::builder(service())
        .with_port(0)
        .start()
        .unwrap();
    let dep_addr = dep.local_addr();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let h = HealthService::new("edge", Duration::from_secs(2)).unwrap();
    h.register(TcpProbe::new("tcp-up", dep_addr.to_string()))
        .unwrap();
    h.register(TcpProbe::new("tcp-down", closed.to_string()))
        .unwrap();
    h.register(HttpProbe::new("http-up", &format!("http://{dep_addr}/live")).unwrap())
        .unwrap();
    h.register(HttpProbe::new("http-404", &format!("http://{dep_addr}/missing")).unwrap())
        .unwrap();
    let s = h.check(piko_obs_health::CheckKind::Readiness).await;
    let by_name = |n: &str| s.dependencies.iter().find(|d| d.name == n).unwrap().state;
    assert_eq!(by_name("tcp-up"), State::Healthy);
    assert_eq!(by_name("tcp-down"), State::Unhealthy);
    assert_eq!(by_name("http-up"), State::Healthy);
    assert_eq!(by_name("http-404"), State::Degraded);
    dep.shutdown(Duration::from_secs(2)).await;
    let s = h.check(piko_obs_health::CheckKind::Readiness).await;
    assert_eq!(s.state, State::Unhealthy);
    assert!(HttpProbe::new("x", "https://example.invalid/").is_err());
    assert!(HttpProbe::new("x", "not a url").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_cache_answers_within_its_ttl_and_never_hides_a_drain() {
    let h = HealthService::new("orders", Duration::from_secs(5)).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (r, d) = (runs.clone(), down.clone());
    h.register(probe_fn("db", move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
        let is_down = d.load(Ordering::SeqCst);
        async move {
            if is_down {
                Status::unhealthy("db", "down")
            } else {
                Status::healthy("db")
            }
        }
    }))
    .unwrap();
    let ttl = Duration::from_millis(300);
    let server = HealthServer::builder(h.clone())
        .with_port(0)
        .with_response_cache(ttl)
        .start()
        .unwrap();
    let addr = server.local_addr();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(get(addr, "GET", "/ready").await.status, 200);
    }
    if started.elapsed() < ttl {
        assert_eq!(runs.load(Ordering::SeqCst), 1, "twenty answers, one run");
    }
    // A dependency goes down: visible once the cached answer is older than the TTL.
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let r = get(addr, "GET", "/ready").await;
    assert_eq!(r.status, 503, "{}", r.body);
    // It comes back, and the service starts draining: readiness says so at once.
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(get(addr, "GET", "/ready").await.status, 200);
    h.signal_drain();
    let r = get(addr, "GET", "/ready").await;
    assert_eq!(r.status, 503, "drain is never hidden by the cache");
    assert!(r.body.contains("shutting down"), "{}", r.body);
    // Liveness is unchanged by the drain.
    assert_eq!(get(addr, "GET", "/live").await.status, 200);
    server.shutdown(Duration::from_secs(2)).await;
}
