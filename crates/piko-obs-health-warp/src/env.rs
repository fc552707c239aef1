//! The probe server's address and paths from the environment: code, then the
//! `PIKO_HEALTH_*` variables, then the defaults.

use piko_obs_lifecycle::settings::{EnvSettingError, pick};

use crate::ServerBuilder;

/// The probe server's IP address, `0.0.0.0` in a pod.
pub const PIKO_HEALTH_BIND_ADDRESS: &str = "PIKO_HEALTH_BIND_ADDRESS";
/// The probe server's port.
pub const PIKO_HEALTH_PORT: &str = "PIKO_HEALTH_PORT";
/// The liveness path.
pub const PIKO_HEALTH_LIVE_PATH: &str = "PIKO_HEALTH_LIVE_PATH";
/// The readiness path.
pub const PIKO_HEALTH_READY_PATH: &str = "PIKO_HEALTH_READY_PATH";
/// The startup path.
pub const PIKO_HEALTH_STARTUP_PATH: &str = "PIKO_HEALTH_STARTUP_PATH";
/// The metrics path on the probe port.
pub const PIKO_HEALTH_METRICS_PATH: &str = "PIKO_HEALTH_METRICS_PATH";

/// Where the probe server listens and what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeServer {
    /// The IP address.
    pub bind: String,
    /// The port (0 picks a free one).
    pub port: u16,
    /// The liveness path.
    pub live: String,
    /// The readiness path.
    pub ready: String,
    /// The startup path.
    pub startup: String,
    /// The metrics path.
    pub metrics: String,
}

/// The probe server's address and paths given in code (`None`: not given); [`resolve`](Self::resolve)
/// fills the rest from the `PIKO_HEALTH_*` variables, then the defaults.
#[derive(Debug, Clone, Default)]
pub struct ServerSettings {
    /// The IP address.
    pub bind: Option<String>,
    /// The port.
    pub port: Option<u16>,
    /// The liveness path.
    pub live: Option<String>,
    /// The readiness path.
    pub ready: Option<String>,
    /// The startup path.
    pub startup: Option<String>,
    /// The metrics path.
    pub metrics: Option<String>,
}

impl ServerSettings {
    /// Code, else the environment, else the defaults (`127.0.0.1:9090`, `/live`, `/ready`,
    /// `/startup`, `/metrics`); a variable that cannot work is an error naming it.
    pub fn resolve(
        self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<ProbeServer, EnvSettingError> {
        let address = |v: &str| -> Result<String, String> {
            v.parse::<std::net::IpAddr>()
                .map(|_| v.to_string())
                .map_err(|_| {
                    "not an IP address; use 0.0.0.0 (every interface), 127.0.0.1 or ::".into()
                })
        };
        let path = |v: &str| -> Result<String, String> {
            if v.starts_with('/') && !v.contains(char::is_whitespace) {
                Ok(v.to_string())
            } else {
                Err("a path starts with / and has no spaces, for example /ready".into())
            }
        };
        Ok(ProbeServer {
            bind: pick(self.bind, PIKO_HEALTH_BIND_ADDRESS, env, address, || {
                "127.0.0.1".into()
            })?,
            port: pick(
                self.port,
                PIKO_HEALTH_PORT,
                env,
                |v| {
                    v.parse().map_err(|_| {
                        "not a port number; use 0 to 65535 (0 picks a free port)".into()
                    })
                },
                || 9090,
            )?,
            live: pick(self.live, PIKO_HEALTH_LIVE_PATH, env, path, || {
                "/live".into()
            })?,
            ready: pick(self.ready, PIKO_HEALTH_READY_PATH, env, path, || {
                "/ready".into()
            })?,
            startup: pick(self.startup, PIKO_HEALTH_STARTUP_PATH, env, path, || {
                "/startup".into()
            })?,
            metrics: pick(self.metrics, PIKO_HEALTH_METRICS_PATH, env, path, || {
                "/metrics".into()
            })?,
        })
    }
}

impl ServerBuilder {
    /// Listens where `server` says and serves its paths.
    pub fn with_probe_server(self, server: &ProbeServer) -> Self {
        self.with_bind_address(server.bind.clone())
            .with_port(server.port)
            .with_live_path(server.live.clone())
            .with_ready_path(server.ready.clone())
            .with_startup_path(server.startup.clone())
            .with_metrics_path(server.metrics.clone())
    }
}
