//! The servers `cargo xtask bench probes` drives: an application on its own tokio runtime
//! (two workers, as `#[tokio::main]` gives a 2-core machine) serving `GET /`, which wrk
//! saturates, and `GET /ready` beside it (what a service writes without piko-obs: the
//! probe route on the application's runtime and port); and piko-obs's probe server,
//! started by `init()` on its own thread. The application's `/ready` returns the
//! bytes of piko-obs's `/ready` answer captured at start-up, so both send the same
//! answer. Prints `app=ADDR` and `probe=ADDR`, then serves until stdin closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use piko_obs::health::{Status, probe_fn};
use warp::Filter;

/// piko-obs's `/ready` body, read once over loopback.
fn ready_body(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("probe port");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut text = Vec::new();
    s.read_to_end(&mut text).expect("answer");
    let at = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    text.split_off(at + 4)
}

fn main() {
    let app = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let guard = app.block_on(async {
        piko_obs::builder()
            .with_console_output(false)
            .with_log_bridge(false)
            .with_service_name("bench")
            .with_health_probe_port(0)
            .with_custom_health_probe(probe_fn("db", |_, _| async { Status::healthy("db") }))
            .init()
            .expect("init")
    });
    let probe = guard.health_addr().expect("probe server");
    let body: &'static [u8] = ready_body(probe).leak();
    let addr = app.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hello = warp::path::end().map(|| "hello from the application\n");
        let ready = warp::path!("ready")
            .map(move || warp::reply::with_header(body, "content-type", "application/json"));
        tokio::spawn(warp::serve(hello.or(ready)).incoming(listener).run());
        addr
    });
    println!("app={addr}");
    println!("probe={probe}");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    app.shutdown_timeout(Duration::from_secs(1));
    guard.shutdown().expect("shutdown");
}
