//! The program `cargo xtask bench startup` starts again and again: a service with its
//! application port (`GET /`) and, with `on`, piko-obs with every subsystem the
//! environment turns on (the probe server, OTLP to `OTEL_EXPORTER_OTLP_ENDPOINT`, Sentry
//! to `SENTRY_DSN`, the alert providers of the `*_URL` variables, the process metrics),
//! as the `monitor` example sets it up; with `off`, the same program without piko-obs,
//! serving `GET /ready` on its application port instead. Ports from `HEALTH_PORT` and
//! `APP_PORT`. Serves until stdin closes.

use std::io::Read;

use piko_obs::health::{Status, probe_fn};
use warp::Filter;

fn port(var: &str) -> u16 {
    std::env::var(var)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{var} must be a port number"))
}

fn main() {
    let on = match std::env::args().nth(1).as_deref() {
        Some("on") => true,
        Some("off") => false,
        other => panic!("expected on or off, got {other:?}"),
    };
    let guard = on.then(|| {
        piko_obs::builder()
            .with_run_mode(piko_obs::RunMode::Prod)
            .with_service_name("startup")
            .with_health_probe_port(port("HEALTH_PORT"))
            .with_notification_providers_from_env()
            .with_sentry_from_env()
            .with_custom_health_probe(probe_fn("upstream", |_, _| async {
                Status::healthy("upstream")
            }))
            .init()
            .expect("init")
    });
    let app = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    app.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port("APP_PORT")))
            .await
            .expect("bind the application port");
        let hello = warp::path::end().map(|| "hello\n");
        let ready = warp::path!("ready").map(|| "{\"state\":\"HEALTHY\"}\n");
        if on {
            tokio::spawn(warp::serve(hello).incoming(listener).run());
        } else {
            tokio::spawn(warp::serve(hello.or(ready)).incoming(listener).run());
        }
    });
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    app.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Some(g) = guard {
        let _ = g.shutdown();
    }
}
