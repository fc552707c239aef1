//! Health probes: the probe domain and the probe server, re-exported.
//!
//! `init()` starts the probe server on its own port (`127.0.0.1:9090` by default) and
//! runs it on piko-obs's own small runtime, so it works from synchronous and async
//! `main` alike. The guard drains readiness, waits the drain delay, then stops it.
//!
//! ```
//! use std::time::Duration;
//! use piko_obs::PikoObs;
//! use piko_obs::health::{Status, probe_fn};
//!
//! let guard = PikoObs::builder()
//!     .with_console_output(false)
//!     .with_health_probe_port(0) // any free port, for this example
//!     .with_custom_health_probe(probe_fn("db", |_, _| async { Status::healthy("db") }))
//!     .init()
//!     .unwrap();
//! let addr = guard.health_addr().unwrap();
//! assert!(addr.ip().is_loopback());
//! guard.shutdown().unwrap();
//! ```

pub use piko_obs_health::*;
pub use piko_obs_health_warp::{
    HealthServer, HttpProbe, InvalidUrl, MetricsRender, RunningServer, ServerBuilder, ServerError,
    TcpProbe, TlsMinVersion, TlsOptions,
};
