//! What a run found and the line printed about it: the outcome, the answer, the failure,
//! and the summary of a body (the piko-obs health `state` or a one-line excerpt).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The printed excerpt of a body holds at most this many characters.
pub(crate) const EXCERPT_CHARS: usize = 200;

/// Exit code: the URL answered `200`.
pub(crate) const EXIT_HEALTHY: u8 = 0;

/// Exit code: anything else (another status, no connection, timeout, malformed answer).
pub(crate) const EXIT_UNHEALTHY: u8 = 1;

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with an HTTP status.
    Answered(Answer),
    /// No usable answer.
    Failed(Failure),
}

impl Outcome {
    /// Whether the URL answered `200`.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Outcome::Answered(answer) if answer.status == 200)
    }

    /// The process exit code: 0 when healthy, else 1.
    pub fn exit_code(&self) -> u8 {
        if self.is_healthy() {
            EXIT_HEALTHY
        } else {
            EXIT_UNHEALTHY
        }
    }
}

/// The printed line: `healthy: 200 HEALTHY`, `unhealthy: 503 UNHEALTHY`,
/// `unhealthy: connection refused to 127.0.0.1:9090`, ...
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Answered(answer) => {
                let word = if answer.status == 200 {
                    "healthy"
                } else {
                    "unhealthy"
                };
                write!(f, "{word}: {}", answer.status)?;
                let summary = answer.summary();
                if summary.is_empty() {
                    Ok(())
                } else {
                    write!(f, " {summary}")
                }
            }
            Outcome::Failed(failure) => write!(f, "unhealthy: {failure}"),
        }
    }
}

/// An HTTP answer: its status and (up to the 64 KiB cap) its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code of the status line.
    pub status: u16,
    /// The body, de-chunked, possibly cut short by the cap, a close or the deadline.
    pub body: Vec<u8>,
}

impl Answer {
    /// The `state` of the piko-obs health JSON if the body is one, else the first 200
    /// characters of the body on one line.
    pub(crate) fn summary(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        match health_state(&text) {
            Some(state) => state.to_owned(),
            None => excerpt(&text),
        }
    }
}

/// Why a probe run got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The host name did not resolve.
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        error: String,
    },
    /// Every address refused the connection (the last one is named).
    Refused {
        /// The address that refused.
        addr: SocketAddr,
    },
    /// Connecting failed otherwise (the last address tried is named).
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: String,
    },
    /// Sending the request failed.
    Send {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: String,
    },
    /// Reading failed before the end of the headers.
    Receive {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: String,
    },
    /// The server closed the connection before the end of the headers.
    Closed {
        /// The address.
        addr: SocketAddr,
        /// How many bytes had come.
        received: usize,
    },
    /// The answer is not HTTP/1.x.
    Malformed {
        /// The address.
        addr: SocketAddr,
        /// What is wrong.
        reason: String,
    },
    /// The timeout passed before the end of the headers.
    Timeout {
        /// The timeout of the run.
        timeout: Duration,
        /// What was being waited for.
        stage: Stage,
    },
}

/// What a run was waiting for when its timeout passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Resolving the host name.
    Resolve {
        /// The host name.
        host: String,
    },
    /// Connecting (the last address tried is named).
    Connect {
        /// The address.
        addr: SocketAddr,
    },
    /// Sending the request.
    Send {
        /// The address.
        addr: SocketAddr,
    },
    /// Reading the status line and headers.
    Answer {
        /// The address.
        addr: SocketAddr,
        /// How many bytes had come.
        received: usize,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Resolve { host, error } => write!(f, "cannot resolve {host}: {error}"),
            Failure::Refused { addr } => write!(f, "connection refused to {addr}"),
            Failure::Connect { addr, error } => write!(f, "cannot connect to {addr}: {error}"),
            Failure::Send { addr, error } => {
                write!(f, "cannot send the request to {addr}: {error}")
            }
            Failure::Receive { addr, error } => {
                write!(f, "error reading the answer from {addr}: {error}")
            }
            Failure::Closed { addr, received: 0 } => {
                write!(f, "connection closed by {addr} without an answer")
            }
            Failure::Closed { addr, received } => write!(
                f,
                "connection closed by {addr} before the end of the headers ({received} bytes received)"
            ),
            Failure::Malformed { addr, reason } => {
                write!(f, "malformed answer from {addr}: {reason}")
            }
            Failure::Timeout { timeout, stage } => match stage {
                Stage::Resolve { host } => {
                    write!(f, "no answer within {timeout:?} (resolving {host})")
                }
                Stage::Connect { addr } => {
                    write!(f, "no answer within {timeout:?} (connecting to {addr})")
                }
                Stage::Send { addr } => write!(
                    f,
                    "no answer within {timeout:?} (sending the request to {addr})"
                ),
                Stage::Answer { addr, received: 0 } => {
                    write!(f, "no answer within {timeout:?} from {addr}")
                }
                Stage::Answer { addr, received } => write!(
                    f,
                    "no complete answer within {timeout:?} from {addr} ({received} bytes received)"
                ),
            },
        }
    }
}

impl std::error::Error for Failure {}

/// Finds the top-level `"state"` string of a piko-obs health JSON body
/// (`{"name":"app","state":"HEALTHY",...}`) with a small scan (no JSON library).
///
/// Returns `None` unless the body is a JSON object whose top-level `state` is a short
/// word (letters, digits, `_`, `-`); nested `state`s (of dependencies) are skipped.
pub(crate) fn health_state(body: &str) -> Option<&str> {
    let mut scan = Scan {
        bytes: body.as_bytes(),
        pos: 0,
    };
    scan.space();
    scan.eat(b'{')?;
    loop {
        scan.space();
        if scan.peek()? == b'}' {
            return None;
        }
        let (key_start, key_end) = scan.string()?;
        scan.space();
        scan.eat(b':')?;
        scan.space();
        if &body[key_start..key_end] == "state" {
            let (start, end) = scan.string()?;
            let state = &body[start..end];
            let word = !state.is_empty()
                && state.len() <= 32
                && state
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            return word.then_some(state);
        }
        scan.value()?;
        scan.space();
        match scan.bump()? {
            b',' => {}
            _ => return None,
        }
    }
}

/// A cursor over JSON bytes; every method returns `None` on anything unexpected.
struct Scan<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.bump()? == want).then_some(())
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// A string; returns the byte range between its quotes (escapes left as they are).
    fn string(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.pos;
        loop {
            match self.bump()? {
                b'"' => return Some((start, self.pos - 1)),
                b'\\' => {
                    self.bump()?;
                }
                _ => {}
            }
        }
    }

    /// Skips one value: a string, an object or array (whatever it nests), or a literal.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                        }
                        b'{' | b'[' => {
                            depth += 1;
                            self.pos += 1;
                        }
                        b'}' | b']' => {
                            depth -= 1;
                            self.pos += 1;
                            if depth == 0 {
                                return Some(());
                            }
                        }
                        _ => self.pos += 1,
                    }
                }
            }
            _ => {
                let start = self.pos;
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                ) {
                    self.pos += 1;
                }
                (self.pos > start).then_some(())
            }
        }
    }
}

/// The first [`EXCERPT_CHARS`] characters of a text on one line: runs of whitespace and
/// control characters become one space.
pub(crate) fn excerpt(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(EXCERPT_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_state_is_found_at_the_top_level_only() {
        let piko = r#"{"name":"app","state":"UNHEALTHY","message":"Readiness check found issues","timestamp":"2023-11-14T22:13:20.004500Z","duration":"1.234ms","dependencies":[{"name":"cache","state":"HEALTHY","timestamp":"2023-11-14T22:13:20.004500Z","duration":"0s"}]}"#;
        assert_eq!(health_state(piko), Some("UNHEALTHY"));
        assert_eq!(
            health_state(
                " {\n \"name\" : \"a\\\"state\\\":\\\"X\" ,\n \"state\" : \"HEALTHY\" }\n"
            ),
            Some("HEALTHY")
        );
        assert_eq!(
            health_state(
                r#"{"n":1.5,"ok":true,"x":null,"deps":{"state":"NO"},"state":"DEGRADED"}"#
            ),
            Some("DEGRADED")
        );
        assert_eq!(health_state(r#"{"deps":[{"state":"HEALTHY"}]}"#), None);
        assert_eq!(health_state(r#"{"state":42}"#), None);
        assert_eq!(health_state(r#"{"state":"has space"}"#), None);
        assert_eq!(health_state(r#"{"state":""}"#), None);
        assert_eq!(health_state(r#"["state","HEALTHY"]"#), None);
        assert_eq!(health_state(r#"{"name":"cut"#), None);
        assert_eq!(health_state("state: HEALTHY"), None);
        assert_eq!(health_state(""), None);
        let state_after_the_dependencies = r#"{"name":"app","dependencies":[{"name":"db","state":"UNHEALTHY"}],"state":"DEGRADED"}"#;
        assert_eq!(health_state(state_after_the_dependencies), Some("DEGRADED"));
        assert_eq!(health_state("ok"), None);
    }

    #[test]
    fn excerpts_are_one_line_and_capped() {
        assert_eq!(excerpt("line one\r\nline two\n"), "line one line two");
        assert_eq!(excerpt(""), "");
        assert_eq!(excerpt("a\u{0}b"), "a b");
        assert_eq!(excerpt("  ok\r\n\tall good\n"), "ok all good");
        let long = "é".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS);
    }

    #[test]
    fn outcome_lines() {
        let ok = Outcome::Answered(Answer {
            status: 200,
            body: br#"{"name":"a","state":"HEALTHY"}"#.to_vec(),
        });
        assert_eq!(ok.to_string(), "healthy: 200 HEALTHY");
        assert_eq!(ok.exit_code(), EXIT_HEALTHY);
        let empty = Outcome::Answered(Answer {
            status: 200,
            body: Vec::new(),
        });
        assert_eq!(empty.to_string(), "healthy: 200");
        let not_found = Outcome::Answered(Answer {
            status: 404,
            body: b"404 page\nnot found\n".to_vec(),
        });
        assert_eq!(not_found.to_string(), "unhealthy: 404 404 page not found");
        assert_eq!(not_found.exit_code(), EXIT_UNHEALTHY);
        let addr = SocketAddr::from(([127, 0, 0, 1], 9090));
        assert_eq!(
            Outcome::Failed(Failure::Refused { addr }).to_string(),
            "unhealthy: connection refused to 127.0.0.1:9090"
        );
        let timeout = |stage| {
            Outcome::Failed(Failure::Timeout {
                timeout: Duration::from_secs(3),
                stage,
            })
            .to_string()
        };
        assert_eq!(
            timeout(Stage::Answer { addr, received: 0 }),
            "unhealthy: no answer within 3s from 127.0.0.1:9090"
        );
        assert_eq!(
            timeout(Stage::Answer { addr, received: 7 }),
            "unhealthy: no complete answer within 3s from 127.0.0.1:9090 (7 bytes received)"
        );
        assert_eq!(
            timeout(Stage::Connect { addr }),
            "unhealthy: no answer within 3s (connecting to 127.0.0.1:9090)"
        );
        assert_eq!(
            Outcome::Failed(Failure::Timeout {
                timeout: Duration::from_millis(1500),
                stage: Stage::Resolve {
                    host: "db".to_owned()
                },
            })
            .to_string(),
            "unhealthy: no answer within 1.5s (resolving db)"
        );
    }
}
