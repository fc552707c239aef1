//! One HTTP/1.1 `GET` over a std `TcpStream`, bounded by one deadline: resolving,
//! connecting, sending, and reading and parsing the answer (up to 64 KiB).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::VERSION;
use crate::args::MAX_TIMEOUT;
use crate::report::{Answer, Failure, Outcome, Stage};
use crate::url::Url;

/// At most this many bytes of the answer (status line, headers and body) are read.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Probes `url` once: resolves the host, connects (trying each address), sends
/// `GET target HTTP/1.1` and reads the answer, all within `timeout`.
///
/// Never panics on what the network does; a host name is resolved on a helper thread so
/// that a slow resolver cannot hold the run past its timeout.
pub fn probe(url: &Url, timeout: Duration) -> Outcome {
    match run(url, timeout) {
        Ok(answer) => Outcome::Answered(answer),
        Err(failure) => Outcome::Failed(failure),
    }
}

fn run(url: &Url, timeout: Duration) -> Result<Answer, Failure> {
    let start = Instant::now();
    let deadline = start.checked_add(timeout.min(MAX_TIMEOUT)).unwrap_or(start);
    let addrs = resolve(url, deadline, timeout)?;
    let (mut stream, addr) = connect(&addrs, deadline, timeout)?;
    send(&mut stream, addr, url, deadline, timeout)?;
    receive(&mut stream, addr, deadline, timeout)
}

/// The time left before `deadline`, `None` once it has passed.
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn resolve(url: &Url, deadline: Instant, timeout: Duration) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    let timed_out = || Failure::Timeout {
        timeout,
        stage: Stage::Resolve {
            host: url.host.clone(),
        },
    };
    let left = remaining(deadline).ok_or_else(timed_out)?;
    let (tx, rx) = mpsc::channel();
    let (host, port) = (url.host.clone(), url.port);
    thread::Builder::new()
        .name("piko-obs-probe-resolve".to_owned())
        .spawn(move || {
            let found = (host.as_str(), port)
                .to_socket_addrs()
                .map(|addrs| addrs.collect::<Vec<_>>());
            // The receiver is gone if the run timed out; nothing to do then.
            let _ = tx.send(found);
        })
        .map_err(|e| Failure::Resolve {
            host: url.host.clone(),
            error: format!("cannot start the resolver thread: {e}"),
        })?;
    match rx.recv_timeout(left) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(Failure::Resolve {
            host: url.host.clone(),
            error: "no address found".to_owned(),
        }),
        Ok(Err(e)) => Err(Failure::Resolve {
            host: url.host.clone(),
            error: e.to_string(),
        }),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(timed_out()),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Failure::Resolve {
            host: url.host.clone(),
            error: "the resolver thread stopped".to_owned(),
        }),
    }
}

/// Tries each address in turn; each gets an equal share of the time left, so an address
/// that drops packets cannot take the time of the ones after it.
fn connect(
    addrs: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), Failure> {
    let mut last = None;
    for (index, addr) in addrs.iter().enumerate() {
        let Some(left) = remaining(deadline) else {
            break;
        };
        let tries_left = u32::try_from(addrs.len() - index).unwrap_or(u32::MAX);
        let share = (left / tries_left).max(Duration::from_millis(1)).min(left);
        match TcpStream::connect_timeout(addr, share) {
            Ok(stream) => return Ok((stream, *addr)),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                last = Some(Failure::Refused { addr: *addr });
            }
            Err(e) if is_timeout(&e) => {
                last = Some(Failure::Timeout {
                    timeout,
                    stage: Stage::Connect { addr: *addr },
                });
            }
            Err(e) => {
                last = Some(Failure::Connect {
                    addr: *addr,
                    error: e.to_string(),
                });
            }
        }
    }
    Err(last.unwrap_or_else(|| Failure::Timeout {
        timeout,
        stage: Stage::Connect {
            addr: addrs
                .first()
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        },
    }))
}

fn send(
    stream: &mut TcpStream,
    addr: SocketAddr,
    url: &Url,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), Failure> {
    let timed_out = || Failure::Timeout {
        timeout,
        stage: Stage::Send { addr },
    };
    let left = remaining(deadline).ok_or_else(timed_out)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: piko-obs-probe/{VERSION}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.target,
        url.authority()
    );
    let result = stream
        .set_write_timeout(Some(left))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .and_then(|()| stream.flush());
    match result {
        Ok(()) => Ok(()),
        Err(e) if is_timeout(&e) => Err(timed_out()),
        Err(e) => Err(Failure::Send {
            addr,
            error: e.to_string(),
        }),
    }
}

fn receive(
    stream: &mut TcpStream,
    addr: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    // Why reading stopped before the answer was complete.
    let stop = loop {
        match parse_answer(&buf, false) {
            Parsed::Answer(answer) => return Ok(answer),
            Parsed::Malformed(reason) => return Err(Failure::Malformed { addr, reason }),
            Parsed::NeedMore => {}
        }
        let room = MAX_ANSWER_BYTES - buf.len();
        if room == 0 {
            break Stop::Cap;
        }
        let Some(left) = remaining(deadline) else {
            break Stop::Deadline;
        };
        if let Err(e) = stream.set_read_timeout(Some(left)) {
            break Stop::Error(e);
        }
        let want = room.min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => break Stop::Closed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => break Stop::Deadline,
            Err(e) => break Stop::Error(e),
        }
    };
    // Whatever stopped the reading, complete headers make an answer.
    match parse_answer(&buf, true) {
        Parsed::Answer(answer) => Ok(answer),
        Parsed::Malformed(reason) => Err(Failure::Malformed { addr, reason }),
        Parsed::NeedMore => Err(match stop {
            Stop::Cap => Failure::Malformed {
                addr,
                reason: format!("no end of the headers in the first {MAX_ANSWER_BYTES} bytes"),
            },
            Stop::Deadline => Failure::Timeout {
                timeout,
                stage: Stage::Answer {
                    addr,
                    received: buf.len(),
                },
            },
            Stop::Closed => Failure::Closed {
                addr,
                received: buf.len(),
            },
            Stop::Error(e) => Failure::Receive {
                addr,
                error: e.to_string(),
            },
        }),
    }
}

enum Stop {
    Cap,
    Deadline,
    Closed,
    Error(io::Error),
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// The headers (or, when not `finished`, the body) are not complete yet.
    NeedMore,
    Answer(Answer),
    Malformed(String),
}

/// Parses the bytes read so far. With `finished`, complete headers make an answer
/// whatever the body holds; without it, the body must be complete too.
fn parse_answer(buf: &[u8], finished: bool) -> Parsed {
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        let Some((head_len, body_start)) = head_end(rest) else {
            // Reject a non-HTTP answer as soon as it shows, without waiting for more.
            return match check_first_line(rest) {
                Ok(()) => Parsed::NeedMore,
                Err(reason) => Parsed::Malformed(reason),
            };
        };
        let mut lines = rest[..head_len]
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
        let status = match parse_status_line(lines.next().unwrap_or_default()) {
            Ok(status) => status,
            Err(reason) => return Parsed::Malformed(reason),
        };
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for line in lines.filter(|line| !line.is_empty()) {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Parsed::Malformed(format!("bad header line {}", show(line)));
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                let Some(n) = parse_number(value, 10) else {
                    return Parsed::Malformed(format!("bad Content-Length {}", show(value)));
                };
                if length.is_some_and(|old| old != n) {
                    return Parsed::Malformed("two different Content-Length headers".to_owned());
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
        }
        let body = &rest[body_start..];
        if (100..200).contains(&status) && status != 101 {
            // An interim answer (100 Continue, 103 Early Hints): the real one follows.
            start += body_start;
            continue;
        }
        let (body, complete) = if status == 101 || status == 204 || status == 304 {
            (Vec::new(), true)
        } else if chunked {
            match decode_chunked(body) {
                Ok(decoded) => decoded,
                Err(reason) => return Parsed::Malformed(reason),
            }
        } else if let Some(length) = length {
            let take = usize::try_from(length).map_or(body.len(), |n| n.min(body.len()));
            (body[..take].to_vec(), body.len() as u64 >= length)
        } else {
            (body.to_vec(), false)
        };
        return if complete || finished {
            Parsed::Answer(Answer { status, body })
        } else {
            Parsed::NeedMore
        };
    }
}

/// Where the head ends: `(length of the head without its blank line, start of the body)`.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = find(buf, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = find(buf, b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Checks the start of an answer whose head is not complete yet.
fn check_first_line(buf: &[u8]) -> Result<(), String> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line = &buf[..end];
            parse_status_line(line.strip_suffix(b"\r").unwrap_or(line)).map(|_| ())
        }
        None => {
            const PREFIX: &[u8] = b"HTTP/1.";
            let n = buf.len().min(PREFIX.len());
            if buf[..n] == PREFIX[..n] {
                Ok(())
            } else {
                Err(format!("not an HTTP/1.x status line: {}", show(buf)))
            }
        }
    }
}

/// `HTTP/1.x NNN [reason]`, strictly: returns the status code.
fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let bad = || format!("not an HTTP/1.x status line: {}", show(line));
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(bad)?;
    match rest {
        [minor, b' ', a @ b'1'..=b'5', b, c, tail @ ..]
            if minor.is_ascii_digit()
                && b.is_ascii_digit()
                && c.is_ascii_digit()
                && (tail.is_empty() || tail[0] == b' ')
                && !tail.iter().any(|&t| t.is_ascii_control() && t != b'\t') =>
        {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => Err(bad()),
    }
}

/// Digits only (decimal or hexadecimal), at most 16 of them.
fn parse_number(text: &[u8], radix: u32) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    if !text.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(text, radix).ok()
}

/// Decodes as much of a chunked body as has come: `(data, whether the last chunk came)`.
fn decode_chunked(data: &[u8]) -> Result<(Vec<u8>, bool), String> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(end) = data[pos..].iter().position(|&b| b == b'\n') else {
            return Ok((out, false));
        };
        let line = &data[pos..pos + end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let Some(size) = parse_number(size_text.trim_ascii(), 16) else {
            return Err(format!("bad chunk size line {}", show(line)));
        };
        pos += end + 1;
        if size == 0 {
            return Ok((out, true));
        }
        let available = data.len() - pos;
        let Some(size) = usize::try_from(size).ok().filter(|&size| size <= available) else {
            out.extend_from_slice(&data[pos..]);
            return Ok((out, false));
        };
        out.extend_from_slice(&data[pos..pos + size]);
        pos += size;
        let tail = &data[pos..];
        if tail.starts_with(b"\r\n") {
            pos += 2;
        } else if tail.starts_with(b"\n") {
            pos += 1;
        } else if tail.is_empty() || tail == b"\r" {
            return Ok((out, false));
        } else {
            return Err("a chunk is not followed by CRLF".to_owned());
        }
    }
}

/// Up to 60 bytes, quoted and escaped, for messages.
fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]);
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_strict() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable"),
            Ok(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204"), Ok(204));
        assert_eq!(parse_status_line(b"HTTP/1.1 404 "), Ok(404));
        for bad in [
            &b"HTTP/2 200 OK"[..],
            b"HTTP/1.1 200OK",
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 600 Nope",
            b"HTTP/1.1  200 OK",
            b"http/1.1 200 OK",
            b"HTTP/1.x 200 OK",
            b"HTTP/1.1 200 O\x01K",
            b"SSH-2.0-OpenSSH_9.6",
            b"",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_status_line(b"garbage").unwrap_err(),
            "not an HTTP/1.x status line: \"garbage\""
        );
    }

    fn answer(status: u16, body: &str) -> Parsed {
        Parsed::Answer(Answer {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn answers_with_content_length_end_at_the_length() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_answer(full, false), answer(200, "hello"));
        assert_eq!(
            parse_answer(&full[..full.len() - 2], false),
            Parsed::NeedMore
        );
        assert_eq!(
            parse_answer(&full[..full.len() - 2], true),
            answer(200, "hel")
        );
        // Bytes past the length are not body.
        let more = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhello";
        assert_eq!(parse_answer(more, false), answer(200, "he"));
        // Bare LF line ends are accepted.
        assert_eq!(
            parse_answer(b"HTTP/1.0 503 No\nContent-Length: 2\n\nno", false),
            answer(503, "no")
        );
    }

    #[test]
    fn answers_without_length_end_at_close() {
        let buf = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\npartial";
        assert_eq!(parse_answer(buf, false), Parsed::NeedMore);
        assert_eq!(parse_answer(buf, true), answer(200, "partial"));
        assert_eq!(
            parse_answer(b"HTTP/1.1 204 No Content\r\n\r\n", false),
            answer(204, "")
        );
    }

    #[test]
    fn chunked_answers_are_decoded() {
        let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n6;ext=1\r\npedia \r\nD\r\nin\r\n\r\nchunks.\r\n0\r\n\r\n";
        assert_eq!(
            parse_answer(buf, false),
            answer(200, "Wikipedia in\r\n\r\nchunks.")
        );
        // Cut inside the second chunk: complete headers make an answer of what came.
        let cut = &buf[..70];
        assert_eq!(parse_answer(cut, false), Parsed::NeedMore);
        assert_eq!(parse_answer(cut, true), answer(200, "Wikipedia"));
        assert_eq!(
            parse_answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                false
            ),
            Parsed::Malformed("bad chunk size line \"zz\"".to_owned())
        );
        assert_eq!(
            parse_answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
                false
            ),
            Parsed::Malformed("a chunk is not followed by CRLF".to_owned())
        );
    }

    #[test]
    fn interim_answers_are_skipped() {
        let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(parse_answer(buf, false), answer(200, "ok"));
        assert_eq!(
            parse_answer(b"HTTP/1.1 100 Continue\r\n\r\n", true),
            Parsed::NeedMore
        );
    }

    #[test]
    fn malformed_answers_are_reported_early() {
        // Not HTTP at all: rejected from the first bytes, before a newline comes.
        assert_eq!(
            parse_answer(b"SSH-2.0", false),
            Parsed::Malformed("not an HTTP/1.x status line: \"SSH-2.0\"".to_owned())
        );
        assert_eq!(parse_answer(b"HTTP/1", false), Parsed::NeedMore);
        assert_eq!(parse_answer(b"", false), Parsed::NeedMore);
        assert!(matches!(
            parse_answer(b"HTTP/1.1 OK\r\n", false),
            Parsed::Malformed(_)
        ));
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false),
            Parsed::Malformed("bad header line \"no colon\"".to_owned())
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false),
            Parsed::Malformed("bad Content-Length \"-1\"".to_owned())
        );
        assert_eq!(
            parse_answer(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Parsed::Malformed("two different Content-Length headers".to_owned())
        );
    }
}
