//! A webhook sink: a real HTTP/1.1 server on loopback that records every request
//! (method, path, headers, body, arrival time) and answers from a script, then with a
//! default answer, or fails at random at a given rate. An answer can carry a long body,
//! streamed, and the sink records how much of it the connection took.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Either, Full};
use hyper::body::{Bytes, Frame, SizeHint};
use hyper_util::rt::TokioIo;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
    /// The status the sink answered with.
    pub status: u16,
}

impl Recorded {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The whole request as text: `POST /path HTTP/1.1`, then every header as
    /// `name: value` lines, a blank line and the body; or, if `body_first`, the
    /// request line, the body, a blank line and the headers.
    pub fn whole(&self, body_first: bool) -> String {
        let head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        let headers: String = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        if body_first {
            format!("{head}{}\r\n\r\n{headers}", self.text())
        } else {
            format!("{head}{headers}\r\n{}", self.text())
        }
    }
}

/// An answer of the sink.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// How long to wait before answering.
    pub delay: Duration,
    /// Whether the body echoes the request's path and query and its `authorization`
    /// header, as a careless server's error page does.
    pub echo: bool,
    /// Whether the body echoes the whole request, as a debugging proxy or an echo
    /// endpoint does ([`Recorded::whole`]; `Some(true)` puts the body before the
    /// headers); takes precedence over [`echo`](Reply::echo).
    pub echo_all: Option<bool>,
    /// A body of this many bytes (`0123456789abcdef` repeated, its exact length known
    /// to hyper), streamed in pieces of 16 KiB, instead of the empty or echoed one; 0
    /// for none.
    pub body_len: usize,
    /// This body, when it neither echoes nor streams (a Jaeger sampling strategy, say).
    pub text: Option<String>,
}

impl Reply {
    /// An answer with this status, at once.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            echo: false,
            echo_all: None,
            body_len: 0,
            text: None,
        }
    }
    /// Answers with `text` as the body.
    pub fn with_text(mut self, text: &str) -> Reply {
        self.text = Some(text.into());
        self
    }
    /// Answers with a body of `len` bytes, streamed (see [`Reply::body_len`]); what the
    /// connection took of it is in [`Sink::streamed`].
    pub fn with_body_of(mut self, len: usize) -> Reply {
        self.body_len = len;
        self
    }
    /// Echoes the request's path, query and `authorization` header in the body.
    pub fn echoing(mut self) -> Reply {
        self.echo = true;
        self
    }
    /// Echoes the whole request in the body (see [`Recorded::whole`]), the body
    /// before the headers if `body_first` (an answer's excerpt is short: each order
    /// brings other parts to its start).
    pub fn echoing_all(mut self, body_first: bool) -> Reply {
        self.echo_all = Some(body_first);
        self
    }
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Waits before answering (a long wait is a server that never answers).
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// How much of a streamed body (see [`Reply::with_body_of`]) the connection took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streamed {
    /// The body's whole length.
    pub len: usize,
    /// The bytes handed to the connection before it ended (written to the socket, or
    /// in the server's buffer when the client went away).
    pub sent: usize,
    /// Whether the whole body was handed to the connection.
    pub finished: bool,
}

/// What a TLS sink accepts connections with; without the `otlp` feature there is no
/// TLS, and no value of this type.
#[cfg(feature = "otlp")]
type Acceptor = tokio_rustls::TlsAcceptor;
#[cfg(not(feature = "otlp"))]
#[derive(Clone)]
enum Acceptor {}

struct State {
    requests: Vec<Recorded>,
    /// How many of `requests` [`Sink::next_request`] has returned.
    taken: usize,
    streamed: Vec<Streamed>,
    script: VecDeque<Reply>,
    default: Reply,
    failure_rate: f64,
    rng: u64,
}

/// The running sink; stops when dropped.
pub struct Sink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    /// Starts a sink answering 200 to everything.
    pub fn start() -> Sink {
        Sink::with_default(Reply::status(200))
    }

    /// Starts a sink answering `default` once its script is used up.
    pub fn with_default(default: Reply) -> Sink {
        Sink::with_default_on("127.0.0.1:0", default)
    }

    /// Like [`Sink::with_default`], listening on `addr` (`127.0.0.1:0` picks a free
    /// port); panics when it cannot be bound.
    pub fn with_default_on(addr: &str, default: Reply) -> Sink {
        Sink::try_on(addr, default).unwrap_or_else(|e| panic!("bind the sink on {addr}: {e}"))
    }

    /// Like [`Sink::with_default_on`], with an error when `addr` cannot be bound (a
    /// caller that restarts a sink on its port may try again).
    pub fn try_on(addr: &str, default: Reply) -> std::io::Result<Sink> {
        Sink::serve(addr, default, None)
    }

    /// Starts a sink answering 200 to everything over HTTPS, with the certificate and
    /// key of `tls` (a connection whose handshake fails is dropped unrecorded).
    #[cfg(feature = "otlp")]
    pub fn start_tls(tls: &crate::otlp::ServerTls) -> Sink {
        let config = crate::otlp::tls_config(tls, &[b"http/1.1"]);
        Sink::serve(
            "127.0.0.1:0",
            Reply::status(200),
            Some(tokio_rustls::TlsAcceptor::from(config)),
        )
        .expect("bind the sink on 127.0.0.1:0")
    }

    fn serve(addr: &str, default: Reply, tls: Option<Acceptor>) -> std::io::Result<Sink> {
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            taken: 0,
            streamed: Vec::new(),
            script: VecDeque::new(),
            default,
            failure_rate: 0.0,
            rng: 0x2545_F491_4F6C_DD1D,
        }));
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                loop {
                    let conn = tokio::select! {
                        c = listener.accept() => c,
                        _ = &mut stop_rx => break,
                    };
                    let Ok((stream, _)) = conn else { continue };
                    let st = st.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                        let http = hyper::server::conn::http1::Builder::new();
                        match tls {
                            None => {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                            #[cfg(feature = "otlp")]
                            Some(acceptor) => {
                                let handshake = acceptor.accept(stream);
                                let Ok(Ok(stream)) =
                                    tokio::time::timeout(Duration::from_secs(5), handshake).await
                                else {
                                    return;
                                };
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                            #[cfg(not(feature = "otlp"))]
                            Some(never) => match never {},
                        }
                    });
                }
            });
            rt.shutdown_background();
        });
        Ok(Sink {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The sink's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().expect("sink").script.extend(replies);
    }

    /// Fails this share of the requests past the script with 500, at random
    /// (a fixed seed, so runs repeat).
    pub fn fail_at_random(&self, rate: f64) {
        self.state.lock().expect("sink").failure_rate = rate;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().expect("sink").requests.clone()
    }

    /// The streamed bodies whose connection has ended (finished or not), in the order
    /// they ended.
    pub fn streamed(&self) -> Vec<Streamed> {
        self.state.lock().expect("sink").streamed.clone()
    }

    /// The next request that no earlier call returned, waiting for it at most `within`
    /// (requests come back in arrival order, each once); `None` when none arrived in
    /// time.
    pub fn next_request(&self, within: Duration) -> Option<Recorded> {
        let end = Instant::now() + within;
        loop {
            {
                let mut s = self.state.lock().expect("sink");
                if let Some(r) = s.requests.get(s.taken).cloned() {
                    s.taken += 1;
                    return Some(r);
                }
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most `within`) until `n` requests have arrived; returns them.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Recorded> {
        let end = Instant::now() + within;
        loop {
            let r = self.requests();
            if r.len() >= n || Instant::now() >= end {
                return r;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pieces a streamed body is sent in: 16 KiB of `0123456789abcdef`.
const PIECE: usize = 16 * 1024;

/// A body of `left` more bytes of the pattern; records what was taken when dropped.
struct Pattern {
    piece: Bytes,
    len: usize,
    left: usize,
    state: Arc<Mutex<State>>,
}

impl hyper::body::Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let n = this.left.min(PIECE);
        this.left -= n;
        Poll::Ready(Some(Ok(Frame::data(this.piece.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left as u64)
    }
}

impl Drop for Pattern {
    fn drop(&mut self) {
        let streamed = Streamed {
            len: self.len,
            sent: self.len - self.left,
            finished: self.left == 0,
        };
        if let Ok(mut s) = self.state.lock() {
            s.streamed.push(streamed);
        }
    }
}

type Answer = Either<Full<Bytes>, Pattern>;

async fn handle(
    state: Arc<Mutex<State>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Answer>, Infallible> {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let reply = {
        let mut s = state.lock().expect("sink");
        let reply = match s.script.pop_front() {
            Some(r) => r,
            None if s.failure_rate > 0.0 => {
                s.rng ^= s.rng << 13;
                s.rng ^= s.rng >> 7;
                s.rng ^= s.rng << 17;
                let draw = (s.rng >> 11) as f64 / (1u64 << 53) as f64;
                if draw < s.failure_rate {
                    Reply::status(500)
                } else {
                    s.default.clone()
                }
            }
            None => s.default.clone(),
        };
        let recorded = Recorded {
            method,
            path,
            headers,
            body,
            at,
            status: reply.status,
        };
        let echoed = if let Some(body_first) = reply.echo_all {
            Some(recorded.whole(body_first))
        } else if reply.echo {
            let auth = recorded.header("authorization").unwrap_or("");
            Some(format!(
                "Cannot POST {} (authorization: {auth})",
                recorded.path
            ))
        } else {
            reply.text.clone()
        };
        s.requests.push(recorded);
        (reply, echoed)
    };
    let (reply, echoed) = reply;
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let body = if reply.body_len > 0 {
        let piece: Vec<u8> = b"0123456789abcdef"
            .iter()
            .copied()
            .cycle()
            .take(PIECE)
            .collect();
        Either::Right(Pattern {
            piece: Bytes::from(piece),
            len: reply.body_len,
            left: reply.body_len,
            state: state.clone(),
        })
    } else {
        Either::Left(Full::new(echoed.map(Bytes::from).unwrap_or_default()))
    };
    let mut r = hyper::Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap_or(hyper::StatusCode::OK);
    for (n, v) in reply.headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(n.as_bytes()),
            hyper::header::HeaderValue::from_str(&v),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    Ok(r)
}
