//! `probe` and the built binary against real TCP servers on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use piko_obs_probe::{Answer, Failure, Outcome, Stage, parse_url, probe};

const HEALTHY_JSON: &str = r#"{"name":"orders","state":"HEALTHY","message":"","timestamp":"2026-11-25T17:40:01.915116712Z","duration":"1.2ms","dependencies":[{"name":"postgres","state":"HEALTHY","timestamp":"2026-11-25T17:40:01.915116712Z","duration":"310µs"}]}"#;
const DEGRADED_JSON: &str = r#"{"name":"orders","state":"DEGRADED","message":"Readiness check found issues","timestamp":"2026-11-25T17:40:01.915116712Z","duration":"1.2ms","dependencies":[{"name":"recommendations","state":"UNHEALTHY","message":"upstream 502","timestamp":"2026-11-25T17:40:01.915116712Z","duration":"45µs"}]}"#;
const UNHEALTHY_JSON: &str = r#"{"name":"orders","state":"UNHEALTHY","message":"Readiness check found issues","timestamp":"2026-11-25T17:40:01.915116712Z","duration":"1.2ms","dependencies":[{"name":"postgres","state":"UNHEALTHY","message":"connection refused","timestamp":"2026-11-25T17:40:01.915116712Z","duration":"45µs"}]}"#;

/// How long a test server holds a connection it does not close itself.
const HOLD: Duration = Duration::from_secs(5);

/// What a test server does with each connection, after reading the request.
#[derive(Clone)]
enum Behaviour {
    /// Write these bytes, then close.
    AnswerAndClose(Vec<u8>),
    /// Write these bytes, then keep the connection open (until the client closes).
    AnswerAndHold(Vec<u8>),
    /// Never write anything; hold the connection.
    Silent,
    /// Write these bytes one at a time, 50 ms apart, then hold.
    Trickle(Vec<u8>),
    /// Close without answering.
    Close,
}

/// A server on 127.0.0.1 that serves `connections` connections, one after the other.
/// Its handle gives the requests it read.
fn serve(behaviour: Behaviour, connections: usize) -> (SocketAddr, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test server");
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let mut requests = Vec::new();
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().expect("accept");
            requests.push(read_request(&mut stream));
            match &behaviour {
                Behaviour::AnswerAndClose(bytes) => {
                    let _ = stream.write_all(bytes);
                }
                Behaviour::AnswerAndHold(bytes) => {
                    let _ = stream.write_all(bytes);
                    hold(stream);
                }
                Behaviour::Silent => hold(stream),
                Behaviour::Trickle(bytes) => {
                    for byte in bytes {
                        if stream.write_all(&[*byte]).is_err() {
                            break;
                        }
                        thread::sleep(Duration::from_millis(50));
                    }
                    hold(stream);
                }
                Behaviour::Close => {}
            }
        }
        requests
    });
    (addr, handle)
}

/// Reads the request head (up to the blank line).
fn read_request(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(HOLD)).unwrap();
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&request).into_owned()
}

/// Keeps a connection open until the client closes it or `HOLD` passes.
fn hold(mut stream: TcpStream) {
    stream.set_read_timeout(Some(HOLD)).unwrap();
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A port nobody listens on: bound, then released.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

fn probe_url(url: &str, timeout: Duration) -> (Outcome, Duration) {
    let url = parse_url(url).unwrap();
    let start = Instant::now();
    let outcome = probe(&url, timeout);
    (outcome, start.elapsed())
}

fn answered(outcome: &Outcome) -> &Answer {
    match outcome {
        Outcome::Answered(answer) => answer,
        Outcome::Failed(failure) => panic!("expected an answer, got {failure}"),
    }
}

fn failed(outcome: &Outcome) -> &Failure {
    match outcome {
        Outcome::Failed(failure) => failure,
        Outcome::Answered(answer) => panic!("expected a failure, got {answer:?}"),
    }
}

#[test]
fn healthy_piko_obs_json_is_healthy_and_the_request_is_right() {
    // The server keeps the connection open: the probe must stop at Content-Length.
    let (addr, server) = serve(Behaviour::AnswerAndHold(http("200 OK", HEALTHY_JSON)), 1);
    let (outcome, elapsed) = probe_url(
        &format!("http://{addr}/live?full=1"),
        Duration::from_secs(3),
    );
    assert!(outcome.is_healthy());
    assert_eq!(outcome.exit_code(), 0);
    assert_eq!(outcome.to_string(), "healthy: 200 HEALTHY");
    assert_eq!(answered(&outcome).body, HEALTHY_JSON.as_bytes());
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");

    let requests = server.join().unwrap();
    let request = &requests[0];
    assert!(
        request.starts_with("GET /live?full=1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!("\r\nHost: {addr}\r\n")),
        "{request}"
    );
    assert!(
        request.contains(&format!(
            "\r\nUser-Agent: piko-obs-probe/{}\r\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{request}"
    );
    assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
}

#[test]
fn degraded_answers_200_and_is_healthy() {
    let (addr, _server) = serve(Behaviour::AnswerAndClose(http("200 OK", DEGRADED_JSON)), 1);
    let (outcome, _) = probe_url(&format!("http://{addr}/ready"), Duration::from_secs(3));
    assert!(outcome.is_healthy());
    assert_eq!(outcome.to_string(), "healthy: 200 DEGRADED");
}

#[test]
fn status_503_is_unhealthy_with_the_state() {
    let (addr, _server) = serve(
        Behaviour::AnswerAndClose(http("503 Service Unavailable", UNHEALTHY_JSON)),
        1,
    );
    let (outcome, _) = probe_url(&format!("http://{addr}/ready"), Duration::from_secs(3));
    assert!(!outcome.is_healthy());
    assert_eq!(outcome.exit_code(), 1);
    assert_eq!(answered(&outcome).status, 503);
    assert_eq!(outcome.to_string(), "unhealthy: 503 UNHEALTHY");
}

#[test]
fn other_bodies_are_shown_as_one_line_excerpts() {
    let (addr, _server) = serve(
        Behaviour::AnswerAndClose(b"HTTP/1.0 404 Not Found\r\n\r\n404 page\nnot found\n".to_vec()),
        1,
    );
    let (outcome, _) = probe_url(&format!("http://{addr}/nope"), Duration::from_secs(3));
    assert_eq!(outcome.to_string(), "unhealthy: 404 404 page not found");

    let (addr, _server) = serve(
        Behaviour::AnswerAndClose(http("200 OK", "ok\r\n  all good\n")),
        1,
    );
    let (outcome, _) = probe_url(&format!("http://{addr}/"), Duration::from_secs(3));
    assert_eq!(outcome.to_string(), "healthy: 200 ok all good");
}

#[test]
fn chunked_bodies_end_at_the_last_chunk() {
    let (first, second) = HEALTHY_JSON.split_at(20);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    // The server holds the connection: only the last chunk can end the read.
    let (addr, _server) = serve(Behaviour::AnswerAndHold(answer.into_bytes()), 1);
    let (outcome, elapsed) = probe_url(&format!("http://{addr}/live"), Duration::from_secs(3));
    assert_eq!(outcome.to_string(), "healthy: 200 HEALTHY");
    assert_eq!(answered(&outcome).body, HEALTHY_JSON.as_bytes());
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn large_bodies_stop_at_the_cap() {
    let body = "x".repeat(1024 * 1024);
    let (addr, _server) = serve(Behaviour::AnswerAndHold(http("200 OK", &body)), 1);
    let (outcome, elapsed) = probe_url(&format!("http://{addr}/"), Duration::from_secs(3));
    let answer = answered(&outcome);
    assert_eq!(answer.status, 200);
    assert!(answer.body.len() < 64 * 1024, "{}", answer.body.len());
    assert!(answer.body.len() > 60 * 1024, "{}", answer.body.len());
    assert_eq!(
        outcome.to_string(),
        format!("healthy: 200 {}", "x".repeat(200))
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn interim_100_continue_is_skipped() {
    let mut answer = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    answer.extend(http("200 OK", HEALTHY_JSON));
    let (addr, _server) = serve(Behaviour::AnswerAndClose(answer), 1);
    let (outcome, _) = probe_url(&format!("http://{addr}/live"), Duration::from_secs(3));
    assert_eq!(outcome.to_string(), "healthy: 200 HEALTHY");
}

#[test]
fn a_silent_server_times_out_within_the_timeout() {
    let (addr, _server) = serve(Behaviour::Silent, 1);
    let timeout = Duration::from_millis(300);
    let (outcome, elapsed) = probe_url(&format!("http://{addr}/live"), timeout);
    assert!(
        elapsed >= Duration::from_millis(250),
        "returned too early: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert_eq!(
        failed(&outcome),
        &Failure::Timeout {
            timeout,
            stage: Stage::Answer { addr, received: 0 }
        }
    );
    assert_eq!(
        outcome.to_string(),
        format!("unhealthy: no answer within 300ms from {addr}")
    );
    assert_eq!(outcome.exit_code(), 1);
}

#[test]
fn a_trickling_server_cannot_stretch_the_timeout() {
    // One byte every 50 ms: every read succeeds, but the run's deadline is shared.
    let (addr, _server) = serve(
        Behaviour::Trickle(
            b"HTTP/1.1 200 OK\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n".to_vec(),
        ),
        1,
    );
    let timeout = Duration::from_millis(300);
    let (outcome, elapsed) = probe_url(&format!("http://{addr}/live"), timeout);
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    match failed(&outcome) {
        Failure::Timeout {
            stage: Stage::Answer { received, .. },
            ..
        } => assert!(*received > 0),
        other => panic!("{other:?}"),
    }
    assert!(
        outcome
            .to_string()
            .starts_with("unhealthy: no complete answer within 300ms from "),
        "{outcome}"
    );
}

#[test]
fn a_closed_port_is_connection_refused() {
    let addr = closed_port();
    let (outcome, elapsed) = probe_url(&format!("http://{addr}/live"), Duration::from_secs(3));
    assert_eq!(failed(&outcome), &Failure::Refused { addr });
    assert_eq!(
        outcome.to_string(),
        format!("unhealthy: connection refused to {addr}")
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn a_garbage_answer_is_malformed_without_waiting() {
    let (addr, _server) = serve(
        Behaviour::AnswerAndHold(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
        1,
    );
    let (outcome, elapsed) = probe_url(&format!("http://{addr}/live"), Duration::from_secs(3));
    assert!(matches!(failed(&outcome), Failure::Malformed { .. }));
    assert_eq!(
        outcome.to_string(),
        format!(
            "unhealthy: malformed answer from {addr}: not an HTTP/1.x status line: \"SSH-2.0-OpenSSH_9.6\""
        )
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn a_close_without_answer_is_reported() {
    let (addr, _server) = serve(Behaviour::Close, 1);
    let (outcome, _) = probe_url(&format!("http://{addr}/live"), Duration::from_secs(3));
    assert_eq!(failed(&outcome), &Failure::Closed { addr, received: 0 });
    assert_eq!(
        outcome.to_string(),
        format!("unhealthy: connection closed by {addr} without an answer")
    );
}

#[test]
fn host_names_are_resolved() {
    // `localhost` may resolve to ::1 first (refused here) and then 127.0.0.1.
    let (addr, server) = serve(Behaviour::AnswerAndClose(http("200 OK", HEALTHY_JSON)), 1);
    let (outcome, _) = probe_url(
        &format!("http://localhost:{}/live", addr.port()),
        Duration::from_secs(3),
    );
    assert_eq!(outcome.to_string(), "healthy: 200 HEALTHY");
    let requests = server.join().unwrap();
    assert!(
        requests[0].contains(&format!("\r\nHost: localhost:{}\r\n", addr.port())),
        "{}",
        requests[0]
    );
}

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

fn run_binary(args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_piko-obs-probe"))
        .args(args)
        .output()
        .expect("run piko-obs-probe");
    (output, start.elapsed())
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn binary_exits_0_on_200() {
    let (addr, _server) = serve(Behaviour::AnswerAndClose(http("200 OK", HEALTHY_JSON)), 1);
    let url = format!("http://{addr}/live");
    let (output, _) = run_binary(&["--timeout", "2s", &url]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "healthy: 200 HEALTHY\n");
    assert_eq!(stderr(&output), "");
}

#[test]
fn binary_quiet_prints_nothing() {
    let (addr, _server) = serve(Behaviour::AnswerAndClose(http("200 OK", HEALTHY_JSON)), 2);
    let url = format!("http://{addr}/live");
    let (output, _) = run_binary(&["--quiet", &url]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "");
    let (output, _) = run_binary(&[&url, "-q", "--timeout=1s"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "");
}

#[test]
fn binary_exits_1_on_503_refused_garbage_and_timeout() {
    let (addr, _server) = serve(
        Behaviour::AnswerAndClose(http("503 Service Unavailable", UNHEALTHY_JSON)),
        1,
    );
    let (output, _) = run_binary(&[&format!("http://{addr}/ready")]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "unhealthy: 503 UNHEALTHY\n");

    let closed = closed_port();
    let (output, _) = run_binary(&[&format!("http://{closed}/live")]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        format!("unhealthy: connection refused to {closed}\n")
    );

    let (addr, _server) = serve(Behaviour::AnswerAndClose(b"not http at all\n".to_vec()), 1);
    let (output, _) = run_binary(&[&format!("http://{addr}/live")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).starts_with(&format!("unhealthy: malformed answer from {addr}: ")),
        "{}",
        stdout(&output)
    );

    let (addr, _server) = serve(Behaviour::Silent, 1);
    let (output, elapsed) = run_binary(&["--timeout", "300ms", &format!("http://{addr}/live")]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        format!("unhealthy: no answer within 300ms from {addr}\n")
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn binary_exits_2_on_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "missing URL"),
        (
            &["localhost:9090/live"],
            "has no scheme; write http://localhost:9090/live",
        ),
        (&["https://127.0.0.1:9443/live"], "https is not supported"),
        (&["http://127.0.0.1:99999/live"], "invalid port \"99999\""),
        (
            &["--timeout", "0s", "http://127.0.0.1:9090/live"],
            "--timeout: invalid duration \"0s\": it must be more than zero",
        ),
        (
            &["--timeout", "soon", "http://127.0.0.1:9090/live"],
            "--timeout: invalid duration \"soon\"",
        ),
        (&["--timeout"], "--timeout needs a value"),
        (
            &["--verbose", "http://127.0.0.1:9090/live"],
            "unknown option --verbose",
        ),
    ];
    for (args, message) in cases {
        let (output, _) = run_binary(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&output), "", "{args:?}");
        let err = stderr(&output);
        assert!(err.starts_with("piko-obs-probe: "), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(
            err.contains("usage: piko-obs-probe [--timeout DURATION] [--quiet] URL"),
            "{args:?}: {err}"
        );
    }
    let (output, _) = run_binary(&["https://127.0.0.1:9443/live"]);
    assert!(stderr(&output).contains("plain-HTTP probe port"));
}

#[test]
fn binary_help_and_version() {
    let (output, _) = run_binary(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    assert!(
        help.contains("usage: piko-obs-probe [--timeout DURATION] [--quiet] URL"),
        "{help}"
    );
    assert!(
        help.contains("Exit codes: 0 the URL answered 200"),
        "{help}"
    );
    assert!(help.contains("HEALTHCHECK"), "{help}");

    let (output, _) = run_binary(&["--version"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        format!("piko-obs-probe {}\n", env!("CARGO_PKG_VERSION"))
    );
}
