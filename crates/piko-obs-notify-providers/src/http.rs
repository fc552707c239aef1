//! The HTTP client the providers share: rustls with the platform's roots (ring, set on
//! the client, nothing installed process-wide), connect and total timeouts, no
//! redirects, and a cap on how much of an answer is read.

use std::time::Duration;

use piko_obs_lifecycle::settings::percent_encode;
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
        HttpClient::build(connect, total, Vec::new())
    }

    /// A client with these timeouts that also trusts the CA certificates of `ca_pem`
    /// (PEM text: one or more `CERTIFICATE` blocks), besides the platform's roots: for
    /// servers whose certificates an internal CA signed (an Alertmanager with
    /// `tls_server_config`, say). Text with no certificate is an error.
    pub fn with_extra_roots(
        connect: Duration,
        total: Duration,
        ca_pem: &str,
    ) -> Result<HttpClient, ConfigError> {
        use rustls::pki_types::pem::PemObject as _;
        let roots: Vec<rustls::pki_types::CertificateDer<'static>> =
            rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    ConfigError::new(
                        "http client CA certificates",
                        format!("are not valid PEM ({e}); give the CA's certificate file"),
                    )
                })?;
        if roots.is_empty() {
            return Err(ConfigError::new(
                "http client CA certificates",
                "hold no CERTIFICATE block; give the CA's PEM certificate file",
            ));
        }
        HttpClient::build(connect, total, roots)
    }

    fn build(
        connect: Duration,
        total: Duration,
        extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<HttpClient, ConfigError> {
        if connect.is_zero() || total.is_zero() {
            return Err(ConfigError::new(
                "http client timeouts",
                "must be greater than zero (for example 5s to connect, 10s in all)",
            ));
        }
        let tls_error = |e: rustls::Error| {
            ConfigError::new("http client TLS", format!("cannot set up rustls: {e}"))
        };
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?;
        let tls = if extra_roots.is_empty() {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder.with_platform_verifier().map_err(tls_error)?
        } else {
            let verifier =
                rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider)
                    .map_err(tls_error)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        }
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
    /// status, `Retry-After` and a short excerpt of the answer. No URL in any error, and
    /// no secret of the request in the excerpt: the URL's secret parts, the
    /// `authorization` header and every header marked sensitive are masked, and so is
    /// each of `secrets` (what else the provider holds secret, such as a routing key in
    /// the body), in the forms [`secrets_of`] lists.
    pub(crate) async fn post(
        &self,
        provider: &'static str,
        url: &reqwest::Url,
        headers: http::HeaderMap,
        body: Vec<u8>,
        secrets: &[String],
    ) -> Result<(), SendError> {
        let request = self
            .client
            .post(url.clone())
            .headers(headers)
            .body(body)
            .build();
        let request = match request {
            Ok(r) => r,
            Err(e) => return Err(self.transport(provider, e)),
        };
        // Kept (a cheap clone, none when absent) for masking an error's excerpt; taken
        // from the request as built, so with the basic auth reqwest makes of a URL's
        // `user:password@`.
        let sensitive: Vec<http::HeaderValue> = request
            .headers()
            .iter()
            .filter(|(name, value)| *name == http::header::AUTHORIZATION || value.is_sensitive())
            .map(|(_, value)| value.clone())
            .collect();
        let sent = self.client.execute(request).await;
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
        // A careless platform echoes the request (`Cannot POST /hooks/<secret>`), or all
        // of it, headers and body: the secrets are masked in the whole answer before
        // anything of it is kept, so the cut to 200 characters cannot keep part of one.
        let secrets = secrets_of(url, &sensitive, secrets);
        let capped = text.len() >= MAX_ANSWER_BYTES;
        let excerpt: String = redact(&String::from_utf8_lossy(&text), &secrets, capped)
            .chars()
            .take(200)
            .collect();
        Err(SendError::Status {
            provider,
            status,
            retry_after,
            detail: (!excerpt.trim().is_empty()).then_some(excerpt),
        })
    }

    /// POSTs `body` as JSON (see [`post`](Self::post), which hides `secrets` from an
    /// answer's excerpt).
    #[cfg(feature = "_json")]
    pub(crate) async fn post_json(
        &self,
        provider: &'static str,
        url: &reqwest::Url,
        body: &serde_json::Value,
        secrets: &[String],
    ) -> Result<(), SendError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| SendError::Rejected(format!("{provider}: cannot encode: {e}")))?;
        self.post(provider, url, json_headers(), bytes, secrets)
            .await
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

/// What marks a secret in an error's excerpt.
const MARKER: &str = "<redacted>";

/// What of a request is secret and could come back in an answer, in every form it
/// could come back in; worked out only for an answer that is an error.
///
/// The secrets: the URL's path, its segments and query values (webhook tokens,
/// topics), as sent and percent-decoded, where at least 6 characters long (shorter
/// pieces, such as `api` or `v2`, are left: masking them would hide the answer, not a
/// secret); and, whatever their length, the URL's password (and `user:password`), the
/// `sensitive` header values
/// (`authorization` and every header marked sensitive, such as a webhook's custom
/// headers), each with its credentials after the scheme (`Bearer <token>`,
/// `Basic <base64>`), and the provider's `extra` secrets (a routing key, basic-auth
/// `user:password`). The forms of each: as sent, JSON-escaped (also with `\/`, and
/// with all but ASCII as `\uXXXX`), percent-encoded (also with `+` for a space) and
/// HTML-escaped. Matching ignores ASCII case, so `%2f` is found as well as `%2F`.
fn secrets_of(
    url: &reqwest::Url,
    sensitive: &[http::HeaderValue],
    extra: &[String],
) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    if url.path().len() > 1 {
        pieces.push(url.path().to_string());
    }
    pieces.extend(
        url.path_segments()
            .into_iter()
            .flatten()
            .map(str::to_string),
    );
    if let Some(q) = url.query() {
        pieces.push(q.to_string());
    }
    pieces.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
    let decoded: Vec<String> = pieces.iter().map(|p| percent_decode(p)).collect();
    pieces.extend(decoded);
    pieces.retain(|s| s.chars().count() >= 6);
    if let Some(password) = url.password() {
        let password = percent_decode(password);
        pieces.push(format!("{}:{password}", percent_decode(url.username())));
        pieces.push(password);
    }
    for value in sensitive {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if let Some((_, credentials)) = v.split_once(' ') {
            pieces.push(credentials.trim().to_string());
        }
        pieces.push(v);
    }
    pieces.extend(extra.iter().cloned());
    let mut forms: Vec<String> = Vec::new();
    for piece in pieces {
        // The excerpt has no control characters (see `redact`), nor may its secrets.
        let piece: String = piece.chars().filter(|c| !c.is_control()).collect();
        if piece.is_empty() {
            continue;
        }
        let json = serde_json::to_string(&piece)
            .map(|j| j[1..j.len() - 1].to_string())
            .unwrap_or_default();
        let ascii_json: String = json
            .chars()
            .map(|c| match c.is_ascii() {
                true => c.to_string(),
                false => c
                    .encode_utf16(&mut [0; 2])
                    .iter()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect(),
            })
            .collect();
        let percent = percent_encode(&piece);
        forms.extend([
            json.replace('/', "\\/"),
            ascii_json,
            json,
            percent.replace("%20", "+"),
            percent,
            piece
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;"),
            piece,
        ]);
    }
    forms.retain(|f| !f.is_empty());
    forms.sort();
    forms.dedup();
    forms
}

/// `%XX` back to its byte (and what is not valid UTF-8 then to U+FFFD).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `answer` without its control characters, and with every occurrence of each of
/// `secrets` (ignoring ASCII case; overlapping ones merged) replaced by one
/// [`MARKER`]. An answer `capped` at [`MAX_ANSWER_BYTES`] may end inside a secret,
/// so its last bytes, as many as the longest secret has, are dropped (after the
/// control characters, which could otherwise split a secret across the cut).
fn redact(answer: &str, secrets: &[String], capped: bool) -> String {
    let mut text: String = answer.chars().filter(|c| !c.is_control()).collect();
    if capped {
        let longest = secrets.iter().map(String::len).max().unwrap_or(0);
        let mut end = text.len().saturating_sub(longest);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    let lower = text.to_ascii_lowercase();
    let mut hidden = vec![false; text.len()];
    for secret in secrets {
        let secret = secret.to_ascii_lowercase();
        let (mut from, mut covered) = (0, 0);
        while let Some(at) = lower[from..].find(&secret).map(|i| from + i) {
            // Only what earlier occurrences did not cover: linear in the answer.
            let end = at + secret.len();
            hidden[at.max(covered)..end].fill(true);
            covered = end;
            // The next search starts one character on: occurrences may overlap.
            from = at + lower[at..].chars().next().map_or(1, char::len_utf8);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut masking = false;
    for (i, c) in text.char_indices() {
        if !hidden[i] {
            out.push(c);
        } else if !masking {
            out.push_str(MARKER);
        }
        masking = hidden[i];
    }
    out
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

/// An `Authorization: Basic` value for `user` and `password`, marked sensitive, and the
/// secrets to mask in an error's excerpt (`user:password` and the password).
#[cfg(any(feature = "ntfy", feature = "alertmanager"))]
pub(crate) fn basic_auth(
    field: &'static str,
    user: &str,
    password: &str,
) -> Result<(http::HeaderValue, Vec<String>), ConfigError> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v = http::HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| ConfigError::new(field, "cannot be encoded"))?;
    v.set_sensitive(true);
    Ok((v, vec![format!("{user}:{password}"), password.to_string()]))
}

/// JSON headers.
#[cfg(any(feature = "_json", feature = "webhook", feature = "alertmanager"))]
pub(crate) fn json_headers() -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn each_form_of_a_secret_is_masked() {
        let secrets = secrets_of(
            &url("https://h.example/hooks/T0%2FSECRET?token=QUERY%3DSECRET&v=2"),
            &[http::HeaderValue::from_static("Basic dXNlcjpwYXNz")],
            &["ke\"y/é SECRET".to_string()],
        );
        for answer in [
            "T0%2FSECRET",
            "t0%2fsecret",
            "T0/SECRET",
            "QUERY%3DSECRET",
            "QUERY=SECRET",
            "Basic dXNlcjpwYXNz",
            "dXNlcjpwYXNz",
            "ke\"y/é SECRET",
            "ke\\\"y/é SECRET",
            "ke\\\"y\\/é SECRET",
            "ke\\\"y/\\u00e9 SECRET",
            "ke%22y%2F%C3%A9%20SECRET",
            "ke%22y%2F%C3%A9+SECRET",
            "ke&quot;y/é SECRET",
        ] {
            let shown = redact(&format!("[{answer}]"), &secrets, false);
            assert_eq!(shown, "[<redacted>]", "{answer}");
        }
        // Short URL pieces are left; a configured secret is masked whatever its length.
        assert_eq!(redact("v=2 hooks", &secrets, false), "v=2 hooks");
        let short = secrets_of(&url("https://h.example/"), &[], &["ab".to_string()]);
        assert_eq!(redact("xabx", &short, false), "x<redacted>x");
    }

    #[test]
    fn overlapping_secrets_make_one_marker_and_control_characters_go() {
        let secrets = vec!["abcd".to_string(), "cdef".to_string()];
        assert_eq!(redact("xxabcdefyy", &secrets, false), "xx<redacted>yy");
        // A line break inside an echoed secret does not hide it.
        assert_eq!(redact("ab\ncd\r\n", &secrets, false), "<redacted>");
    }

    #[test]
    fn a_capped_answer_cannot_end_in_part_of_a_secret() {
        let secrets = vec!["SECRETKEY".to_string()];
        let answer = format!("{}SECRE", "\n".repeat(MAX_ANSWER_BYTES - 5));
        assert_eq!(redact(&answer, &secrets, true), "");
        assert_eq!(redact("head SECRE", &secrets, false), "head SECRE");
    }
}
