//! Ready-made probes for dependencies reached over the network.

use std::net::SocketAddr;
use std::time::Instant;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use piko_obs_health::{CheckKind, Probe, Status};

/// Healthy when a TCP connection to `addr` opens before the deadline.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    name: String,
    addr: String,
}

impl TcpProbe {
    /// A probe named `name` connecting to `addr` (`host:port`).
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> TcpProbe {
        TcpProbe {
            name: name.into(),
            addr: addr.into(),
        }
    }
}

impl Probe for TcpProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, _kind: CheckKind, deadline: Instant) -> Status {
        match tokio::time::timeout_at(deadline.into(), tokio::net::TcpStream::connect(&self.addr))
            .await
        {
            Ok(Ok(_)) => Status::healthy(&self.name),
            Ok(Err(e)) => Status::unhealthy(&self.name, format!("connect to {}: {e}", self.addr)),
            Err(_) => Status::unhealthy(&self.name, format!("connect to {}: timed out", self.addr)),
        }
    }
}

/// A URL that `HttpProbe` cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("health probe URL {url:?}: {reason}")]
pub struct InvalidUrl {
    /// The URL given, without its user info (`***@` instead), query and fragment, which
    /// can hold credentials.
    pub url: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Healthy when `GET url` answers 2xx before the deadline; 3xx and 4xx are DEGRADED,
/// 5xx and failures UNHEALTHY. Plain `http://` URLs only, without user info.
///
/// Its messages are served without authentication on the probe paths, so they name
/// the URL without its query (which can hold a token): `GET http://host:port/path`.
#[derive(Clone)]
pub struct HttpProbe {
    name: String,
    url: hyper::Uri,
    authority: String,
    /// The URL as messages show it: scheme, authority and path.
    shown: String,
}

impl std::fmt::Debug for HttpProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProbe")
            .field("name", &self.name)
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

/// `text` without user info (`***@` instead), query and fragment, for error messages.
fn redacted(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, text),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{path}"),
        None => format!("{authority}{path}"),
    }
}

impl HttpProbe {
    /// A probe named `name` for `url`, checked here.
    pub fn new(name: impl Into<String>, url: &str) -> Result<HttpProbe, InvalidUrl> {
        let bad = |reason| InvalidUrl {
            url: redacted(url),
            reason,
        };
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| bad("not a URL (for example http://127.0.0.1:8080/health)"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported by HttpProbe; use a TcpProbe or an http URL",
                ));
            }
            _ => return Err(bad("the URL must start with http://")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("the URL has no host"))?
            .to_string();
        if authority.contains('@') {
            return Err(bad(
                "user info (user:password@) is not supported: probe messages are served \
                 without authentication; use a URL that needs no credentials",
            ));
        }
        let shown = format!("http://{authority}{}", uri.path());
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority
        } else {
            format!("{authority}:80")
        };
        Ok(HttpProbe {
            name: name.into(),
            url: uri,
            authority,
            shown,
        })
    }

    async fn get(&self) -> Result<hyper::StatusCode, String> {
        let addr: Vec<SocketAddr> = tokio::net::lookup_host(&self.authority)
            .await
            .map_err(|e| format!("resolve {}: {e}", self.authority))?
            .collect();
        let first = addr.first().ok_or("no address")?;
        let stream = tokio::net::TcpStream::connect(first)
            .await
            .map_err(|e| format!("connect {first}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(conn);
        let path = self.url.path_and_query().map_or("/", |p| p.as_str());
        let req = hyper::Request::get(path)
            .header(
                hyper::header::HOST,
                self.url.authority().map_or("", |a| a.as_str()),
            )
            .header(hyper::header::USER_AGENT, "piko-obs-health")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"));
        driver.abort();
        Ok(resp?.status())
    }
}

impl Probe for HttpProbe {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, _kind: CheckKind, deadline: Instant) -> Status {
        match tokio::time::timeout_at(deadline.into(), self.get()).await {
            Ok(Ok(code)) if code.is_success() => Status::healthy(&self.name),
            Ok(Ok(code)) if code.is_server_error() => {
                Status::unhealthy(&self.name, format!("GET {} answered {code}", self.shown))
            }
            Ok(Ok(code)) => {
                Status::degraded(&self.name, format!("GET {} answered {code}", self.shown))
            }
            Ok(Err(e)) => Status::unhealthy(&self.name, format!("GET {}: {e}", self.shown)),
            Err(_) => Status::unhealthy(&self.name, format!("GET {}: timed out", self.shown)),
        }
    }
}
