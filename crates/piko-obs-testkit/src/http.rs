//! The workspace's one HTTP GET: a request over a fresh HTTP/1.1 connection with a
//! bounded connect and read, for checking what a server on loopback answers; its async
//! form for any method, [`http_request`], also over a connection the test opened (plain
//! or TLS), [`http_request_on`]. And, with the `axum` feature, an axum router served on a free
//! loopback port.

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
    /// The headers, in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (any case), empty when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    fn new(status: u16, headers: Vec<(String, String)>, body: String) -> Response {
        let mut r = Response {
            status,
            content_type: String::new(),
            headers,
            body,
        };
        r.content_type = r.header("content-type").to_string();
        r
    }
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
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response::new(status, headers, body.to_string()))
}

/// `method path` on `addr` over a fresh connection, as [`http_request_on`] does it (the
/// async form of [`http_get`], for any method); panics when `addr` refuses the
/// connection.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> Result<Response, hyper::Error> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    http_request_on(stream, method, path).await
}

/// `method path` over `io`, a connection the test opened (plain TCP, or TLS it set up),
/// with hyper's HTTP/1.1 client: the answer, waited for at most [`READ_TIMEOUT`] (past
/// which it panics: a server that never answers fails the test); an error when the
/// server closed the connection without answering.
pub async fn http_request_on<S>(io: S, method: &str, path: &str) -> Result<Response, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt as _, Empty};
    use hyper::body::Bytes;

    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let answer = tokio::time::timeout(READ_TIMEOUT, async move {
        let resp = tx.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_string(), v)
            })
            .collect();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Response::new(
            status,
            headers,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    })
    .await
    .unwrap_or_else(|_| panic!("no answer to {method} {path} within {READ_TIMEOUT:?}"));
    driver.abort();
    answer
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
