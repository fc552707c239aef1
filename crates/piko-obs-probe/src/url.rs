//! The URL to probe: `http://host[:port][/path][?query]`.

use std::fmt;
use std::net::Ipv6Addr;

use crate::args::UsageError;

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The host as written, without the brackets of an IPv6 address.
    pub host: String,
    /// The port (80 unless given).
    pub port: u16,
    /// The request target: the path and the query, `/` at least. Any `#fragment` is
    /// dropped.
    pub target: String,
}

impl Url {
    /// The value of the `Host` header: the host (in brackets if IPv6), and `:port`
    /// unless it is 80.
    pub(crate) fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.target)
    }
}

/// Parses `http://host[:port][/path][?query]`.
///
/// The host is a name, an IPv4 address or an IPv6 address in brackets; the port is 80
/// unless given; the target is `/` unless given. `https://`, other schemes, user info
/// (`user@`), spaces and control characters are errors that say what is wrong.
///
/// ```
/// use piko_obs_probe::parse_url;
///
/// let url = parse_url("http://[::1]:9090/ready?verbose=1").unwrap();
/// assert_eq!((url.host.as_str(), url.port, url.target.as_str()), ("::1", 9090, "/ready?verbose=1"));
/// assert_eq!(parse_url("http://example.com").unwrap().target, "/");
/// ```
pub fn parse_url(text: &str) -> Result<Url, UsageError> {
    if text.is_empty() {
        return Err(UsageError::new(
            "empty URL; give one like http://127.0.0.1:9090/live",
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UsageError::new(format!(
            "URL {text:?} contains a space or a control character; percent-encode it"
        )));
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(UsageError::new(format!(
            "URL {text:?} has no scheme; write http://{text}"
        )));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(UsageError::new(format!(
            "https is not supported ({text}): piko-obs-probe speaks plain HTTP only; probe \
             the plain-HTTP probe port instead (the piko-obs probe server runs on its own \
             loopback port, usually http, e.g. http://127.0.0.1:9090/live)"
        )));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(UsageError::new(format!(
            "unsupported scheme {scheme:?} in {text:?}; piko-obs-probe speaks http:// only"
        )));
    }
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(UsageError::new(format!(
            "user info (user@host) is not supported in {text:?}"
        )));
    }
    if authority.is_empty() {
        return Err(UsageError::new(format!("missing host in {text:?}")));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inside, tail)) = bracketed.split_once(']') else {
            return Err(UsageError::new(format!(
                "missing ] after the IPv6 address in {text:?}"
            )));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(UsageError::new(format!(
                "[{inside}] is not an IPv6 address (in {text:?})"
            )));
        }
        let port = match tail {
            "" => None,
            _ => match tail.strip_prefix(':') {
                Some(port) => Some(port),
                None => {
                    return Err(UsageError::new(format!(
                        "unexpected {tail:?} after the IPv6 address in {text:?}"
                    )));
                }
            },
        };
        (inside, port)
    } else {
        if authority.matches(':').count() > 1 {
            return Err(UsageError::new(format!(
                "an IPv6 host goes in brackets, like http://[::1]:9090/live (in {text:?})"
            )));
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(UsageError::new(format!("missing host in {text:?}")));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(UsageError::new(format!(
                "invalid host {host:?} in {text:?}"
            )));
        }
        (host, port)
    };
    let port = match port {
        None => 80,
        Some("") => {
            return Err(UsageError::new(format!(
                "missing port after ':' in {text:?}"
            )));
        }
        Some(port) => match port.parse::<u16>() {
            Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(UsageError::new(format!(
                    "invalid port {port:?} in {text:?}: a number from 1 to 65535"
                )));
            }
        },
    };
    let target = if target.is_empty() {
        "/".to_owned()
    } else if target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_owned()
    };
    Ok(Url {
        host: host.to_owned(),
        port,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_url(text: &str) -> String {
        parse_url(text).unwrap_err().message().to_owned()
    }

    fn url(host: &str, port: u16, target: &str) -> Url {
        Url {
            host: host.to_owned(),
            port,
            target: target.to_owned(),
        }
    }

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url("http://127.0.0.1:9090/live").unwrap(),
            url("127.0.0.1", 9090, "/live")
        );
        assert_eq!(
            parse_url("http://example.com").unwrap(),
            url("example.com", 80, "/")
        );
        assert_eq!(
            parse_url("HTTP://Example.com:8080").unwrap(),
            url("Example.com", 8080, "/")
        );
        assert_eq!(
            parse_url("http://localhost:9090?full=1").unwrap(),
            url("localhost", 9090, "/?full=1")
        );
        assert_eq!(
            parse_url("http://[::1]:9090/ready?x=1&y=2#frag").unwrap(),
            url("::1", 9090, "/ready?x=1&y=2")
        );
        assert_eq!(
            parse_url("http://[fe80::1]/").unwrap(),
            url("fe80::1", 80, "/")
        );
        assert_eq!(
            parse_url("http://my_host-1.svc.cluster.local:65535/a/b").unwrap(),
            url("my_host-1.svc.cluster.local", 65535, "/a/b")
        );
    }

    #[test]
    fn urls_display_and_authority() {
        let v6 = parse_url("http://[::1]:9090/live").unwrap();
        assert_eq!(v6.authority(), "[::1]:9090");
        assert_eq!(v6.to_string(), "http://[::1]:9090/live");
        let v4 = parse_url("http://10.0.0.1/x?y").unwrap();
        assert_eq!(v4.authority(), "10.0.0.1");
        assert_eq!(v4.to_string(), "http://10.0.0.1/x?y");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(err_url("").starts_with("empty URL"));
        let https = err_url("https://127.0.0.1:9443/live");
        assert!(https.starts_with("https is not supported"), "{https}");
        assert!(https.contains("plain-HTTP probe port"), "{https}");
        assert!(err_url("HTTPS://x/").starts_with("https is not supported"));
        assert_eq!(
            err_url("ftp://x/"),
            "unsupported scheme \"ftp\" in \"ftp://x/\"; piko-obs-probe speaks http:// only"
        );
        assert_eq!(
            err_url("127.0.0.1:9090/live"),
            "URL \"127.0.0.1:9090/live\" has no scheme; write http://127.0.0.1:9090/live"
        );
        assert_eq!(err_url("http:///live"), "missing host in \"http:///live\"");
        assert_eq!(err_url("http://:80/"), "missing host in \"http://:80/\"");
        assert_eq!(
            err_url("http://host:/"),
            "missing port after ':' in \"http://host:/\""
        );
        for port in ["0", "65536", "+80", "8o", "-1"] {
            let text = format!("http://host:{port}/");
            assert_eq!(
                err_url(&text),
                format!("invalid port {port:?} in {text:?}: a number from 1 to 65535")
            );
        }
        assert!(err_url("http://a b/").contains("contains a space or a control character"));
        assert!(err_url("http://x/\n").contains("control character"));
        assert!(err_url("http://user:pw@host/").starts_with("user info"));
        assert!(err_url("http://::1/").starts_with("an IPv6 host goes in brackets"));
        assert!(err_url("http://[::1/").starts_with("missing ]"));
        assert!(err_url("http://[nope]/").starts_with("[nope] is not an IPv6 address"));
        assert!(err_url("http://[::1]x/").starts_with("unexpected \"x\""));
        assert!(err_url("http://ex%61mple/").starts_with("invalid host \"ex%61mple\""));
    }
}
