//! Health checks as `metrics` series (`piko_obs_health_check_duration_seconds`,
//! `piko_obs_health_probe_state`).

use crate::{HealthService, State};

/// Records, from now on, each check's duration and each probe's state and duration.
pub fn observe_metrics(service: &HealthService) {
    metrics::describe_histogram!(
        "piko_obs_health_check_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of health checks, per kind, and of each probe in them."
    );
    metrics::describe_gauge!(
        "piko_obs_health_probe_state",
        "Last state of each probe per kind: 0 healthy, 1 degraded, 2 unhealthy."
    );
    service.observe(|kind, status| {
        metrics::histogram!(
            "piko_obs_health_check_duration_seconds",
            "kind" => kind.as_str(),
            "probe" => ""
        )
        .record(status.duration.as_secs_f64());
        for dep in &status.dependencies {
            metrics::histogram!(
                "piko_obs_health_check_duration_seconds",
                "kind" => kind.as_str(),
                "probe" => dep.name.clone()
            )
            .record(dep.duration.as_secs_f64());
            let state = match dep.state {
                State::Healthy => 0.0,
                State::Degraded => 1.0,
                State::Unhealthy => 2.0,
            };
            metrics::gauge!(
                "piko_obs_health_probe_state",
                "kind" => kind.as_str(),
                "probe" => dep.name.clone()
            )
            .set(state);
        }
    });
}
