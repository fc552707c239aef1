//! Settings operators change without a rebuild: the environment variables `init()`
//! reads for the run mode and the probe server, and the start-up summary it logs.
//!
//! One precedence for every setting piko-obs reads from the environment: **code, then
//! environment, then default**. A builder option given in code wins; when it is not
//! given, the variable is read; when that is unset or blank, the default applies. So
//! set in code only what operators must not change, and leave the rest to the
//! environment. The same order holds for `PIKO_LOG_LEVEL` (`with_log_level`),
//! `PIKO_DISABLE_CONSOLE_LOG` (`with_console_output`), the `OTEL_*` variables
//! (`with_otlp_*`), the `SENTRY_*` variables (`with_sentry`), `ENVIRONMENT`
//! (`with_environment`) and `PIKO_NOTIFICATION_DEAD_LETTER_PATH`
//! (`with_notification_dead_letter_path`).
//!
//! | variable | builder option | default |
//! |---|---|---|
//! | `PIKO_RUN_MODE` | `with_run_mode` | `dev` |
//! | `PIKO_HEALTH_BIND_ADDRESS` | `with_health_bind_address` | `127.0.0.1` |
//! | `PIKO_HEALTH_PORT` | `with_health_probe_port` | `9090` |
//! | `PIKO_HEALTH_LIVE_PATH` | `with_health_live_path` | `/live` |
//! | `PIKO_HEALTH_READY_PATH` | `with_health_ready_path` | `/ready` |
//! | `PIKO_HEALTH_STARTUP_PATH` | `with_health_startup_path` | `/startup` |
//! | `PIKO_HEALTH_METRICS_PATH` | `with_health_metrics_path` | `/metrics` |
//!
//! A value that cannot work fails `init()` with an error naming the variable.

#[cfg(feature = "health")]
pub use piko_obs_health_warp::{
    PIKO_HEALTH_BIND_ADDRESS, PIKO_HEALTH_LIVE_PATH, PIKO_HEALTH_METRICS_PATH, PIKO_HEALTH_PORT,
    PIKO_HEALTH_READY_PATH, PIKO_HEALTH_STARTUP_PATH,
};
pub use piko_obs_lifecycle::EnvSettingError;
pub use piko_obs_lifecycle::settings::PIKO_RUN_MODE;

// The probe server's variables need the `health` feature.
#[cfg(feature = "health")]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunMode;
    use piko_obs_health_warp::{ProbeServer, ServerSettings as ProbeServerInCode};

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn code_wins_then_environment_then_default() {
        let vars = env(&[
            (PIKO_HEALTH_PORT, "9191"),
            (PIKO_HEALTH_BIND_ADDRESS, "0.0.0.0"),
            (PIKO_HEALTH_READY_PATH, "/readyz"),
            (PIKO_HEALTH_LIVE_PATH, "  "),
            (PIKO_RUN_MODE, "prod"),
        ]);
        let s = ProbeServerInCode {
            port: Some(8000),
            ..Default::default()
        }
        .resolve(&vars)
        .unwrap();
        assert_eq!(
            s,
            ProbeServer {
                bind: "0.0.0.0".into(),
                port: 8000,
                live: "/live".into(),
                ready: "/readyz".into(),
                startup: "/startup".into(),
                metrics: "/metrics".into(),
            }
        );
        assert_eq!(RunMode::resolve(None, &vars).unwrap(), RunMode::Prod);
        assert_eq!(
            RunMode::resolve(Some(RunMode::Dev), &vars).unwrap(),
            RunMode::Dev
        );
        assert_eq!(RunMode::resolve(None, &env(&[])).unwrap(), RunMode::Dev);
        let defaults = ProbeServerInCode::default().resolve(&env(&[])).unwrap();
        assert_eq!((defaults.bind.as_str(), defaults.port), ("127.0.0.1", 9090));
    }

    #[test]
    fn a_bad_value_names_its_variable_and_the_fix() {
        for (vars, variable, hint) in [
            (
                env(&[(PIKO_HEALTH_PORT, "ninety")]),
                PIKO_HEALTH_PORT,
                "0 to 65535",
            ),
            (
                env(&[(PIKO_HEALTH_BIND_ADDRESS, "localhost:9090")]),
                PIKO_HEALTH_BIND_ADDRESS,
                "0.0.0.0",
            ),
            (
                env(&[(PIKO_HEALTH_STARTUP_PATH, "startup")]),
                PIKO_HEALTH_STARTUP_PATH,
                "starts with /",
            ),
        ] {
            let e = ProbeServerInCode::default().resolve(&vars).unwrap_err();
            assert_eq!(e.variable, variable);
            let text = e.to_string();
            assert!(text.contains(variable) && text.contains(hint), "{text}");
        }
        let e = RunMode::resolve(None, &env(&[(PIKO_RUN_MODE, "staging")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable PIKO_RUN_MODE=\"staging\": use dev or prod"
        );
    }
}
