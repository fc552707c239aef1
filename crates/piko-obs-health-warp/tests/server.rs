//! The probe server over real HTTP on loopback (Piko's H1-H4, H6, H14-H17, H19-H21,
//! H23, and the improvements of the health issue).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use piko_obs_health::{HealthService, ProbeOptions, State, Status, probe_fn};
use piko_obs_health_warp::{
    HttpProbe, ServerBuilder, ServerError, TcpProbe, TlsMinVersion, TlsOptions,
};
use piko_obs_testkit::{http_request, http_request_on};

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
    let server = ServerBuilder::new(h).with_port(0).start().unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback(), "binds loopback by default");
    for path in ["/live", "/ready", "/startup"] {
        let r = http_request(addr, "GET", path).await.unwrap();
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
    let r = http_request(addr, "GET", "/ready").await.unwrap();
    assert_eq!(r.status, 503);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["state"], "UNHEALTHY");
    assert_eq!(v["message"], "Readiness check found issues");
    // HEAD: the same status, no body.
    let r = http_request(addr, "HEAD", "/ready").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (503, ""));
    let r = http_request(addr, "HEAD", "/startup").await.unwrap();
    assert_eq!(r.status, 503);
    // A dependency's outage leaves liveness alone.
    let r = http_request(addr, "HEAD", "/live").await.unwrap();
    assert_eq!(r.status, 200);
    // Other methods and unknown paths.
    let r = http_request(addr, "POST", "/live").await.unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "GET, HEAD");
    assert_eq!(
        http_request(addr, "GET", "/nope").await.unwrap().status,
        404
    );
    assert_eq!(
        http_request(addr, "GET", "/metrics").await.unwrap().status,
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
    let server = ServerBuilder::new(h.clone()).with_port(0).start().unwrap();
    let addr = server.local_addr();
    let r = http_request(addr, "GET", "/ready").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"state\":\"DEGRADED\""));
    h.signal_drain();
    let r = http_request(addr, "GET", "/ready").await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.body.contains("Application is shutting down"));
    assert_eq!(
        http_request(addr, "GET", "/live").await.unwrap().status,
        200
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_paths_and_metrics_render() {
    let server = ServerBuilder::new(service())
        .with_port(0)
        .with_live_path("/healthz")
        .with_ready_path("/readyz")
        .with_startup_path("/startupz")
        .with_metrics_path("/prom")
        .with_metrics(Arc::new(|| "# TYPE up gauge\nup 1\n".to_string()))
        .start()
        .unwrap();
    let addr = server.local_addr();
    assert_eq!(
        http_request(addr, "GET", "/healthz").await.unwrap().status,
        200
    );
    assert_eq!(
        http_request(addr, "GET", "/readyz").await.unwrap().status,
        200
    );
    assert_eq!(
        http_request(addr, "GET", "/startupz").await.unwrap().status,
        200
    );
    assert_eq!(
        http_request(addr, "GET", "/live").await.unwrap().status,
        404
    );
    let m = http_request(addr, "GET", "/prom").await.unwrap();
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
    let server = ServerBuilder::new(h).with_port(0).start().unwrap();
    let addr = server.local_addr();
    let start = Instant::now();
    let r = http_request(addr, "GET", "/ready").await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(r.status, 503);
    assert!(r.body.contains("Health check timed out after 300ms"));
    let r = http_request(addr, "GET", "/live").await.unwrap();
    assert_eq!(r.status, 503);
    // A fixed text: the panic's message is not served.
    assert!(
        r.body.contains("\"message\":\"probe panicked\""),
        "{}",
        r.body
    );
    assert!(!r.body.contains("probe bug"), "{}", r.body);
    // The server and the probe carry on.
    let r = http_request(addr, "GET", "/live").await.unwrap();
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
    // A thousand clients at once: above the default connection limit (256).
    let server = ServerBuilder::new(h)
        .with_port(0)
        .with_max_connections(1_000)
        .start()
        .unwrap();
    let addr = server.local_addr();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            tokio::spawn(async move { http_request(addr, "GET", "/ready").await.unwrap().status })
        })
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
    let e = ServerBuilder::new(service())
        .with_port(port)
        .start()
        .unwrap_err();
    assert!(matches!(e, ServerError::PortInUse { .. }));
    assert!(e.to_string().contains("already in use"), "{e}");
    let e = ServerBuilder::new(service())
        .with_bind_address("localhost:x")
        .start()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("\"localhost:x\" is not an IP address"),
        "{e}"
    );
    let e = ServerBuilder::new(service())
        .with_ready_path("ready")
        .start()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("ready path \"ready\" must start with '/'"),
        "{e}"
    );
    let e = ServerBuilder::new(service())
        .with_ready_path("/live")
        .start()
        .unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    let e = ServerBuilder::new(service())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_connection_limits_fail_at_start() {
    let e = ServerBuilder::new(service())
        .with_port(0)
        .with_header_read_timeout(Duration::ZERO)
        .start()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "health server header_read_timeout: must be greater than zero (for example 5s) \
         (ServerBuilder::with_header_read_timeout)"
    );
    let e = ServerBuilder::new(service())
        .with_port(0)
        .with_idle_timeout(Duration::ZERO)
        .start()
        .unwrap_err();
    assert!(e.to_string().contains("idle_timeout"), "{e}");
    let e = ServerBuilder::new(service())
        .with_port(0)
        .with_max_connections(0)
        .start()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("max_connections: must be at least 1"),
        "{e}"
    );
    // A huge timeout is cut to an hour, not an overflow.
    let server = ServerBuilder::new(service())
        .with_port(0)
        .with_header_read_timeout(Duration::MAX)
        .with_idle_timeout(Duration::MAX)
        .start()
        .unwrap();
    assert_eq!(
        http_request(server.local_addr(), "GET", "/ready")
            .await
            .unwrap()
            .status,
        200
    );
    server.shutdown(Duration::from_secs(2)).await;
}

/// A connection that sends half a request header and nothing more.
async fn half_open(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    s
}

/// Waits (at most 2 s) until the server holds at least `n` connections.
async fn until_open(counters: &piko_obs_health_warp::ConnectionCounters, n: u64) {
    until(counters, |s| s.open >= n).await;
}

/// Waits (at most 2 s) until the counts satisfy `done`; the counts then.
async fn until(
    counters: &piko_obs_health_warp::ConnectionCounters,
    done: impl Fn(&piko_obs_health_warp::ConnectionStats) -> bool,
) -> piko_obs_health_warp::ConnectionStats {
    let wait = Instant::now() + Duration::from_secs(2);
    loop {
        let stats = counters.snapshot();
        if done(&stats) || Instant::now() >= wait {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long the server took to close `s` (end of stream or reset), at most `limit`.
async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            // An answer (408 and the like) before the close.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_and_silent_connections_are_closed_at_the_header_timeout() {
    let server = ServerBuilder::new(service())
        .with_port(0)
        .with_header_read_timeout(Duration::from_millis(300))
        .start()
        .unwrap();
    let addr = server.local_addr();
    let mut half = half_open(addr).await;
    // A client that sends nothing at all (not even enough to tell HTTP/1.1 from HTTP/2).
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // An HTTP/2 client that sends the connection preface and no request.
    let mut h2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
    }
    let start = Instant::now();
    for s in [&mut half, &mut silent, &mut h2] {
        assert!(closed_within(s, Duration::from_secs(3)).await.is_some());
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
    }
    // (A task counts its connection closed just after closing it.)
    let stats = until(&server.counters(), |s| s.open == 0).await;
    assert_eq!(stats.header_timeouts, 3, "{stats:?}");
    assert_eq!(stats.open, 0, "{stats:?}");
    // A request in time is answered.
    assert_eq!(
        http_request(addr, "GET", "/ready").await.unwrap().status,
        200
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = ServerBuilder::new(service())
        .with_port(0)
        .with_idle_timeout(Duration::from_millis(300))
        .start()
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    s.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let took = closed_within(&mut s, Duration::from_secs(3)).await;
    let took = took.expect("closed by the idle timeout");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    let stats = until(&server.counters(), |s| s.open == 0).await;
    assert_eq!((stats.idle_timeouts, stats.open), (1, 0), "{stats:?}");
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_the_oldest_idle_connection_makes_room() {
    let server = ServerBuilder::new(service())
        .with_port(0)
        .with_max_connections(4)
        .with_header_read_timeout(Duration::from_secs(30))
        .start()
        .unwrap();
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(half_open(addr).await);
    }
    // The limit is reached: each probe closes the oldest half-open connection.
    let counters = server.counters();
    for i in 0..3 {
        until_open(&counters, 4).await;
        let start = Instant::now();
        assert_eq!(
            http_request(addr, "GET", "/ready").await.unwrap().status,
            200
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let took = closed_within(&mut held[i], Duration::from_secs(1)).await;
        assert!(took.is_some(), "connection {i} evicted");
        held.push(half_open(addr).await);
    }
    let stats = counters.snapshot();
    // A refill can also find the last probe's connection not yet closed, and make
    // room in its turn.
    assert!((3..=6).contains(&stats.evicted), "{stats:?}");
    assert_eq!(stats.refused, 0, "{stats:?}");
    // The newest half-open connection is still held.
    let newest = held.last_mut().unwrap();
    assert!(
        closed_within(newest, Duration::from_millis(50))
            .await
            .is_none()
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_with_every_request_in_flight_a_new_connection_is_closed_at_once() {
    let h = HealthService::new("orders", Duration::from_secs(5)).unwrap();
    h.register(probe_fn("slow", |_, _| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Status::healthy("slow")
    }))
    .unwrap();
    let server = ServerBuilder::new(h)
        .with_port(0)
        .with_max_connections(2)
        .start()
        .unwrap();
    let addr = server.local_addr();
    let busy: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move { http_request(addr, "GET", "/ready").await.unwrap().status })
        })
        .collect();
    until_open(&server.counters(), 2).await;
    // Let both requests reach the probe.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let took = closed_within(&mut third, Duration::from_millis(500)).await;
    assert!(took.is_some(), "closed at once");
    assert_eq!(server.counters().snapshot().refused, 1);
    for b in busy {
        assert_eq!(b.await.unwrap(), 200, "requests in flight are not cut");
    }
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_half_open_connections_at_once() {
    let server = ServerBuilder::new(service())
        .with_port(0)
        .with_header_read_timeout(Duration::from_secs(60))
        .start()
        .unwrap();
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(half_open(addr).await);
    }
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let counters = server.counters();
    until_open(&counters, 51).await;
    let start = Instant::now();
    server.shutdown(Duration::from_secs(10)).await;
    let took = start.elapsed();
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(counters.snapshot().open, 0);
    for s in held.iter_mut().chain([&mut silent]) {
        assert!(closed_within(s, Duration::from_secs(1)).await.is_some());
    }
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let e = ServerBuilder::new(service())
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
    let server = ServerBuilder::new(service())
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
    let r = http_request_on(stream, "GET", "/ready").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"state\":\"HEALTHY\""));
    server.shutdown(Duration::from_secs(2)).await;

    tls.min_version = TlsMinVersion::Tls13;
    let server = ServerBuilder::new(service())
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
    assert_eq!(
        http_request_on(ok, "GET", "/live").await.unwrap().status,
        200
    );
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
    let server = ServerBuilder::new(h).with_port(0).start().unwrap();
    let addr = server.local_addr();
    let in_flight = tokio::spawn(async move { http_request(addr, "GET", "/ready").await.unwrap() });
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

/// A real dependency (another probe server) and its address, and a port nobody
/// listens on.
fn a_dependency_and_a_closed_port() -> (
    piko_obs_health_warp::RunningServer,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let dep = ServerBuilder::new(service()).with_port(0).start().unwrap();
    let dep_addr = dep.local_addr();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    (dep, dep_addr, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_http_probes_check_real_dependencies() {
    let (dep, dep_addr, closed) = a_dependency_and_a_closed_port();
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
    let server = ServerBuilder::new(h.clone())
        .with_port(0)
        .with_response_cache(ttl)
        .start()
        .unwrap();
    let addr = server.local_addr();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            http_request(addr, "GET", "/ready").await.unwrap().status,
            200
        );
    }
    if started.elapsed() < ttl {
        assert_eq!(runs.load(Ordering::SeqCst), 1, "twenty answers, one run");
    }
    // A dependency goes down: visible once the cached answer is older than the TTL.
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let r = http_request(addr, "GET", "/ready").await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    // It comes back, and the service starts draining: readiness says so at once.
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(
        http_request(addr, "GET", "/ready").await.unwrap().status,
        200
    );
    h.signal_drain();
    let r = http_request(addr, "GET", "/ready").await.unwrap();
    assert_eq!(r.status, 503, "drain is never hidden by the cache");
    assert!(r.body.contains("shutting down"), "{}", r.body);
    // Liveness is unchanged by the drain.
    assert_eq!(
        http_request(addr, "GET", "/live").await.unwrap().status,
        200
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probe_urls_never_show_credentials_or_query_tokens() {
    // User info is refused when the probe is built, and the error does not repeat it.
    for url in [
        "http://admin:hunter2@127.0.0.1:8080/health",
        "http://hunter2@127.0.0.1:8080/health?token=s3cr3t",
    ] {
        let e = HttpProbe::new("db", url).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(text.contains("user info"), "{text}");
        assert!(text.contains("***@127.0.0.1:8080/health"), "{text}");
        for secret in ["hunter2", "admin", "s3cr3t"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    let e = HttpProbe::new("db", "https://u:hunter2@x/?token=s3cr3t").unwrap_err();
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
    assert!(!format!("{e} {e:?}").contains("s3cr3t"), "{e}");
    // The query is sent, and kept out of the messages served on the probe paths.
    let (dep, dep_addr, closed) = a_dependency_and_a_closed_port();
    let h = HealthService::new("edge", Duration::from_secs(2)).unwrap();
    let up = HttpProbe::new("up", &format!("http://{dep_addr}/live?token=s3cr3t")).unwrap();
    assert!(!format!("{up:?}").contains("s3cr3t"), "{up:?}");
    h.register(up).unwrap();
    let missing = format!("http://{dep_addr}/missing?token=s3cr3t");
    h.register(HttpProbe::new("missing", &missing).unwrap())
        .unwrap();
    let down = format!("http://{closed}/health?token=s3cr3t#frag");
    h.register(HttpProbe::new("down", &down).unwrap()).unwrap();
    let server = ServerBuilder::new(h).with_port(0).start().unwrap();
    let r = http_request(server.local_addr(), "GET", "/ready")
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let message = |name: &str| {
        v["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        message("missing"),
        format!("GET http://{dep_addr}/missing answered 404 Not Found")
    );
    assert!(
        message("down").starts_with(&format!("GET http://{closed}/health: connect")),
        "{}",
        message("down")
    );
    assert!(!r.body.contains("s3cr3t"), "{}", r.body);
    assert!(!r.body.contains("token"), "{}", r.body);
    server.shutdown(Duration::from_secs(2)).await;
    dep.shutdown(Duration::from_secs(2)).await;
}
