//! The HTTP client the providers share: rustls with the platform's roots (ring, set on
//! the client, nothing installed process-wide), connect and total timeouts, no
//! redirects, and a cap on how much of an answer is read.

use std::time::Duration;

use piko_obs_notify::{SendError, parse_retry_after};

use crate::ConfigError;

/// The default bound on connecting.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default bound on a whole request.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an answer is read at most.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A shared HTTP client for providers. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    connect: Duration,
    total: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("connect_timeout", &self.connect)
            .field("total_timeout", &self.total)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client with the default timeouts (5 s to connect, 10 s in all).
    pub fn new() -> Result<HttpClient, ConfigError> {
        HttpClient::with_timeouts(DEFAULT_CONNECT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT)
    }

    /// A client with these timeouts (each at least 1 ms).
    pub fn with_timeouts(connect: Duration, total: Duration) -> Result<HttpClient, ConfigError> {
        if connect.is_zero() || total.is_zero() {
            return Err(ConfigError::new(
                "http client timeouts",
                "must be greater than zero (for example 5s to connect, 10s in all)",
            ));
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                use rustls_platform_verifier::BuilderVerifierExt as _;
                b.with_platform_verifier()
            })
            .map_err(|e| ConfigError::new("http client TLS", format!("cannot set up rustls: {e}")))?
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(connect)
            .timeout(total)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::new("http client", e.without_url().to_string()))?;
        Ok(HttpClient {
            client,
            connect,
            total,
        })
    }

    /// POSTs `body` to `url`; 2xx is success, anything else an error carrying the
    /// status, `Retry-After` and a short excerpt of the answer. No URL in any error.
    pub(crate) async fn post(
        &self,
        provider: &'static str,
        url: &reqwest::Url,
        headers: http::HeaderMap,
        body: Vec<u8>,
    ) -> Result<(), SendError> {
        // Kept (a cheap clone, none when absent) for masking an error's excerpt.
        let authorization: Vec<http::HeaderValue> = headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .cloned()
            .collect();
        let sent = self
            .client
            .post(url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await;
        let mut answer = match sent {
            Ok(r) => r,
            Err(e) => return Err(self.transport(provider, e)),
        };
        let status = answer.status().as_u16();
        let retry_after = answer
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        // Read at most MAX_ANSWER_BYTES, so a huge answer cannot hold memory or time.
        let mut text = Vec::new();
        while text.len() < MAX_ANSWER_BYTES {
            match answer.chunk().await {
                Ok(Some(c)) => {
                    text.extend_from_slice(&c[..c.len().min(MAX_ANSWER_BYTES - text.len())])
                }
                Ok(None) => break,
                Err(e) if (200..300).contains(&status) => {
                    // The status arrived; the rest of the answer does not matter.
                    let _ = e;
                    break;
                }
                Err(e) => return Err(self.transport(provider, e)),
            }
        }
        if (200..300).contains(&status) {
            return Ok(());
        }
        // A careless platform echoes the request (`Cannot POST /hooks/<secret>`): the
        // secrets are masked before anything of the answer is kept.
        let mut answer_text = String::from_utf8_lossy(&text).into_owned();
        for secret in &secrets_of(url, &authorization) {
            if answer_text.contains(secret.as_str()) {
                answer_text = answer_text.replace(secret.as_str(), "<redacted>");
            }
        }
        let excerpt: String = answer_text
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        Err(SendError::Status {
            provider,
            status,
            retry_after,
            detail: (!excerpt.trim().is_empty()).then_some(excerpt),
        })
    }

    /// POSTs `body` as JSON (see [`post`](Self::post)).
    #[cfg(feature = "_json")]
    pub(crate) async fn post_json(
        &self,
        provider: &'static str,
        url: &reqwest::Url,
        body: &serde_json::Value,
    ) -> Result<(), SendError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| SendError::Rejected(format!("{provider}: cannot encode: {e}")))?;
        self.post(provider, url, json_headers(), bytes).await
    }

    /// A connect that did not complete within the connect timeout is a transport error
    /// naming that bound; any other timeout is the total one.
    fn transport(&self, provider: &'static str, e: reqwest::Error) -> SendError {
        if e.is_timeout() && e.is_connect() {
            SendError::Transport {
                provider,
                source: Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no connection within {} (the connect timeout)",
                        humanize(self.connect)
                    ),
                )),
            }
        } else if e.is_timeout() {
            SendError::Timeout {
                provider,
                after: self.total,
            }
        } else {
            SendError::Transport {
                provider,
                source: Box::new(e.without_url()),
            }
        }
    }
}

/// `5s`, or `400ms` when not whole seconds (as `SendError` shows durations).
fn humanize(d: Duration) -> String {
    if d.as_secs() >= 1 && d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// What of a request is secret and could come back in an answer: the URL's path, its
/// segments and query values (webhook tokens, topics), its password, and the
/// `authorization` header values (a token, or basic credentials), longest first; worked
/// out only for an answer that is an error. Short pieces
/// (under 6 characters, such as `api` or `v2`) are left: masking them would hide the
/// answer, not a secret.
fn secrets_of(url: &reqwest::Url, authorization: &[http::HeaderValue]) -> Vec<String> {
    let mut secrets: Vec<String> = Vec::new();
    if url.path().len() > 1 {
        secrets.push(url.path().to_string());
    }
    secrets.extend(
        url.path_segments()
            .into_iter()
            .flatten()
            .map(str::to_string),
    );
    if let Some(q) = url.query() {
        secrets.push(q.to_string());
    }
    secrets.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
    secrets.extend(url.password().map(str::to_string));
    for value in authorization {
        if let Ok(v) = value.to_str() {
            secrets.push(v.to_string());
            if let Some((_, credentials)) = v.split_once(' ') {
                secrets.push(credentials.trim().to_string());
            }
        }
    }
    secrets.retain(|s| s.len() >= 6);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// Parses a provider URL (http or https), without ever putting it in an error.
pub(crate) fn parse_url(field: &'static str, text: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| {
        ConfigError::new(
            field,
            format!("is not a valid URL ({e}); give the full https:// address"),
        )
    })?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(ConfigError::new(
            field,
            "must be an http:// or https:// URL with a host",
        )),
    }
}

/// The URL with its path and query hidden, for `Debug`.
pub(crate) fn redacted(url: &reqwest::Url) -> String {
    format!(
        "{}://{}/<redacted>",
        url.scheme(),
        url.host_str().unwrap_or("?")
    )
}

/// JSON headers.
#[cfg(any(feature = "_json", feature = "webhook"))]
pub(crate) fn json_headers() -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h
}
