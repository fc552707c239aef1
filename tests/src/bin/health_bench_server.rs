//! The servers `cargo xtask bench health` drives with wrk: piko-obs's probe server with
//! five instant probes, and a bare warp route returning a constant, in one process and
//! on one runtime. The constant is a `/ready` answer captured at start-up, so both
//! routes send the same number of bytes. The probe server runs with the facade's default
//! response cache (`measured=ADDR`), and again without it (`uncached=ADDR`, which measures
//! the cost of running the probes and encoding their statuses on every request). Prints
//! `measured=ADDR`, `bare=ADDR` and `uncached=ADDR`, then serves until stdin closes.

use std::io::Read;
use std::time::Duration;

use piko_obs::health::{CheckKind, ServerBuilder};
use warp::Filter;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (ready, bare, uncached_server) = runtime.block_on(async {
        let health = piko_obs_tests::five_instant_probes();
        let mut snapshot = serde_json::to_vec(&health.check(CheckKind::Readiness).await)
            .expect("a status encodes");
        snapshot.push(b'\n');
        let snapshot: &'static [u8] = snapshot.leak();
        let server = ServerBuilder::new(health.clone())
            .with_port(0)
            .with_response_cache(piko_obs::DEFAULT_HEALTH_RESPONSE_CACHE)
            .start()
            .expect("probe server");
        let uncached = ServerBuilder::new(health)
            .with_port(0)
            .start()
            .expect("probe server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let bare = listener.local_addr().expect("addr");
        let route = warp::path!("ready")
            .map(move || warp::reply::with_header(snapshot, "content-type", "application/json"));
        tokio::spawn(warp::serve(route).incoming(listener).run());
        (server, bare, uncached)
    });
    let (ready, bare, uncached) = (ready, bare, uncached_server);
    println!("measured={}", ready.local_addr());
    println!("bare={bare}");
    println!("uncached={}", uncached.local_addr());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    runtime.block_on(ready.shutdown(Duration::from_secs(1)));
    runtime.block_on(uncached.shutdown(Duration::from_secs(1)));
}
