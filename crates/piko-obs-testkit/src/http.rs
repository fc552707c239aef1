//! The workspace's one HTTP GET: a request over a fresh HTTP/1.1 connection with a
//! bounded connect and read, for checking what a server on loopback answers. And, with
//! the `axum` feature, an axum router served on a free loopback port.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long [`http_get`] waits to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long [`http_get`] waits for each read of the answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A response read by [`http_get`].
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `content-type` header, empty when absent.
    pub content_type: String,
    /// The body.
    pub body: String,
}

/// `GET path` on `addr` over a fresh HTTP/1.1 connection, with connect and read
/// timeouts ([`CONNECT_TIMEOUT`], [`READ_TIMEOUT`]); an error when the server cannot be
/// reached.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    http_get_with(addr, path, &[])
}

/// [`http_get`] with more request headers (`traceparent`, say).
pub fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    http_get_within(addr, path, headers, READ_TIMEOUT)
}

/// [`http_get_with`] waiting at most `read_timeout` for each read of the answer (a
/// server under load, or a large `/metrics`, may need more than [`READ_TIMEOUT`]).
pub fn http_get_within(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    read_timeout: Duration,
) -> io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    s.set_read_timeout(Some(read_timeout))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))?;
    let content_type = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok(Response {
        status,
        content_type,
        body: body.to_string(),
    })
}

/// Serves the router `make` builds (given the address it will listen on) on a free
/// loopback port, on a runtime of its own: the runtime (dropping it stops the server)
/// and the address.
#[cfg(feature = "axum")]
pub fn serve_axum(
    make: impl FnOnce(SocketAddr) -> axum::Router,
) -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let router = make(addr);
    runtime.spawn(async move { axum::serve(listener, router).await });
    (runtime, addr)
}
