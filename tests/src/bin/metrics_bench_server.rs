//! The servers `cargo xtask bench metrics` drives with wrk: the example service's
//! `GET /` route with piko-obs's request metrics (`warp_route`) and the same route
//! without them, in one process, on one runtime, with piko-obs's recorder installed
//! by `init()`. Prints `measured=ADDR` and `bare=ADDR`, then serves until stdin closes.

use std::io::Read;

use piko_obs::metrics::http::warp_route;
use warp::Filter;

fn main() {
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_probe_port(0)
        .init()
        .expect("init");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (measured, bare) = runtime.block_on(async {
        let hello = warp::path::end().map(|| "hello from monitor\n");
        let mut addrs = Vec::new();
        for wrapped in [true, false] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addrs.push(listener.local_addr().expect("addr"));
            if wrapped {
                tokio::spawn(warp::serve(warp_route("/", hello)).incoming(listener).run());
            } else {
                tokio::spawn(warp::serve(hello).incoming(listener).run());
            }
        }
        (addrs[0], addrs[1])
    });
    println!("measured={measured}");
    println!("bare={bare}");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(runtime);
    let text = piko_obs::metrics::render().expect("installed");
    let count = text
        .lines()
        .find(|l| l.starts_with("http_server_request_duration_seconds_count{"))
        .unwrap_or("none");
    eprintln!("metrics_bench_server: {count}");
    guard.shutdown().expect("shutdown");
}
