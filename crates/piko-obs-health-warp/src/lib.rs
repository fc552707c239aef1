//! The piko-obs probe server: Kubernetes liveness, readiness and startup probes, and
//! `/metrics`, on their own port, separate from the application's.
//!
//! - [`ServerBuilder::new`] takes a [`piko_obs_health::HealthService`] and the
//!   options of the seed guide (bind address, port, paths, metrics, TLS); `start()`
//!   binds at once, so a port in use or a bad address is an error there, and port 0 is
//!   allowed ([`RunningServer::local_addr`] tells the port chosen).
//! - `HEALTHY` and `DEGRADED` answer 200, `UNHEALTHY` 503, on every probe path; `HEAD`
//!   gets the same status with no body; other methods get 405 with `Allow`; unknown
//!   paths 404. Bodies are Piko's JSON status tree.
//! - `/metrics` serves the render function it is given, or 404 without one.
//! - Optional TLS from PEM files (rustls with ring), minimum version 1.2 or 1.3.
//! - Any client is survived: a request header must arrive within the header read
//!   timeout (5 s), a connection with no request in flight closes after the idle
//!   timeout (90 s), at most 256 connections are held (past it the oldest one with no
//!   request in flight makes room, or the new one is closed at once), HTTP/2
//!   connections are pinged every 20 s; [`ConnectionCounters`] counts all of it.
//! - [`ServerBuilder::start_on_own_thread`] serves on a thread of its own (one thread
//!   does a probe's whole answer), under `SCHED_DEADLINE` where the process has
//!   `CAP_SYS_NICE` ([`PROBE_THREAD_RUNTIME`] every [`PROBE_THREAD_PERIOD`]), else with
//!   a short CPU time slice on Linux 6.12 and later ([`PROBE_THREAD_SLICE`]), so that a
//!   probe is answered at once while the application keeps every core busy
//!   ([`Scheduling`]); `start()` serves on the caller's runtime.
//! - [`TcpProbe`] and [`HttpProbe`] check a dependency by connecting to it.
//! - [`ServerSetup`]: a process's probe server from settings and the `PIKO_HEALTH_*`
//!   variables (service, probes, server on its own thread, drain), and its counters
//!   process-wide ([`setup::global`]).
//!
//! Routing uses warp filters; connections are served by hyper (HTTP/1.1 and HTTP/2),
//! with graceful shutdown bounded by a timeout: connections with no request in flight
//! close at once, every connection task ends by the bound.
//!
//! ```
//! use std::time::Duration;
//! use piko_obs_health::{HealthService, Status, probe_fn};
//! use piko_obs_health_warp::ServerBuilder;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let health = HealthService::new("orders", Duration::from_secs(5)).unwrap();
//! health.register(probe_fn("db", |_, _| async { Status::healthy("db") })).unwrap();
//! let server = ServerBuilder::new(health)
//!     .with_port(0) // any free port
//!     .start()
//!     .expect("probe server started");
//! println!("probes on http://{}/ready", server.local_addr());
//! server.shutdown(Duration::from_secs(1)).await;
//! # });
//! ```
//!
//! No feature flags.

mod env;
mod lifecycle;
mod probes;
mod server;
pub mod setup;
pub mod telemetry;
mod thread;

pub use env::{
    PIKO_HEALTH_BIND_ADDRESS, PIKO_HEALTH_LIVE_PATH, PIKO_HEALTH_METRICS_PATH, PIKO_HEALTH_PORT,
    PIKO_HEALTH_READY_PATH, PIKO_HEALTH_STARTUP_PATH, ProbeServer, ServerSettings,
};

pub use probes::{HttpProbe, InvalidUrl, TcpProbe};
pub use server::{
    ConnectionCounters, ConnectionStats, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, MAX_CONNECTION_TIMEOUT, MetricsRender, RunningServer, ServerBuilder,
    ServerError, TlsMinVersion, TlsOptions,
};
pub use setup::{DEFAULT_HEALTH_RESPONSE_CACHE, ServerSetup, ServerSetupError, StartedServer};
pub use thread::{PROBE_THREAD_PERIOD, PROBE_THREAD_RUNTIME, PROBE_THREAD_SLICE, Scheduling};
