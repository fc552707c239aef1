//! `ServerSetup::start_parts` over real HTTP on loopback: the server and its drain go on
//! the stack, `/metrics` serves the recorder's render only when metrics are on, probe
//! panics reach the observer, and `shown` is the start-up summary's part.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use piko_obs_health::{ProbeOptions, Status, probe_fn};
use piko_obs_health_warp::ProbeServer;
use piko_obs_health_warp::setup::{Composition, ServerSetup, ServingServer};
use piko_obs_lifecycle::Unwind;
use piko_obs_testkit::http_get;

type Panics = Arc<Mutex<Vec<String>>>;

/// What the composing program hands over: metrics on or off, panics recorded.
fn composition<'a>(
    runtime: &'a tokio::runtime::Runtime,
    server: &'a ProbeServer,
    metrics_on: bool,
    panics: Panics,
) -> Composition<'a> {
    Composition {
        runtime: Some(runtime.handle()),
        service_name: "shop",
        server,
        drain_delay: Duration::ZERO,
        metrics_on,
        recorder: Some(Arc::new(|| "orders_total 3\n".to_string())),
        on_probe_panic: Box::new(move |p| panics.lock().unwrap().push(p.message.to_string())),
    }
}

fn started(
    metrics_on: bool,
    panics: Panics,
    parts: &Unwind,
    runtime: &tokio::runtime::Runtime,
) -> ServingServer {
    let panicking = probe_fn("flaky", |_, _| async {
        panic!("boom");
        #[allow(unreachable_code)]
        Status::healthy("flaky")
    });
    let mut setup = ServerSetup::default()
        .with_port(0)
        .with_probe(panicking, ProbeOptions::default());
    let server = setup.resolve(&|_: &str| None).unwrap();
    let with = composition(runtime, &server, metrics_on, panics);
    setup.start_parts(with, parts).unwrap().unwrap()
}

#[test]
fn the_server_and_its_drain_go_on_the_stack_and_metrics_follow_the_switch() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let panics = Panics::default();
    let parts = Unwind::new(Duration::from_secs(1));
    let on = started(true, panics.clone(), &parts, &runtime);
    let (probes, metrics) = on.shown();
    assert_eq!(probes, format!("http://{} /live /ready /startup", on.addr));
    assert_eq!(metrics, "/metrics");
    let body = http_get(on.addr, "/metrics").unwrap();
    assert_eq!((body.status, body.body.as_str()), (200, "orders_total 3\n"));
    assert_eq!(http_get(on.addr, "/ready").unwrap().status, 503);
    assert_eq!(panics.lock().unwrap().as_slice(), ["boom"]);

    let off = started(false, panics, &parts, &runtime);
    assert_eq!(off.shown().1, "off");
    assert_eq!(http_get(off.addr, "/metrics").unwrap().status, 404);

    // Unwinding shuts both servers down: their ports refuse connections.
    drop(parts);
    assert!(http_get(on.addr, "/live").is_err());
    assert!(http_get(off.addr, "/live").is_err());
}

#[test]
fn a_disabled_server_starts_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let parts = Unwind::new(Duration::from_secs(1));
    let mut setup = ServerSetup::default().with_enabled(false);
    let server = setup.resolve(&|_: &str| None).unwrap();
    let with = composition(&runtime, &server, true, Panics::default());
    assert!(setup.start_parts(with, &parts).unwrap().is_none());
}
