//! Providers registered from the environment: one variable a provider.

#[cfg(any(
    feature = "slack",
    feature = "discord",
    feature = "pagerduty",
    feature = "teams",
    feature = "googlechat",
    feature = "ntfy",
    feature = "webhook"
))]
use piko_obs_notify::provider;
use piko_obs_notify::{NotificationService, Notifier, RegisterError};

#[allow(unused_imports)]
use crate::*;

/// The environment variables [`providers_from_env`] reads, each
/// registering the provider of the same name when set: `SLACK_WEBHOOK_URL` (slack),
/// `DISCORD_WEBHOOK_URL` (discord), `PAGERDUTY_ROUTING_KEY` (pagerduty; with
/// `PAGERDUTY_EVENTS_URL` to change the endpoint), `TEAMS_WEBHOOK_URL` (teams; with
/// `TEAMS_WEBHOOK_FORMAT=messagecard` for a legacy connector), `GOOGLE_CHAT_WEBHOOK_URL`
/// (googlechat), `NTFY_URL` (ntfy, server and topic; with `NTFY_TOKEN`), `WEBHOOK_URL`
/// (webhook; with `WEBHOOK_SECRET` to sign), `ALERTMANAGER_URL` (alertmanager: a
/// comma-separated list, one URL per Alertmanager of an HA cluster; with
/// `ALERTMANAGER_TOKEN` for a bearer token, `user:password@` in the URLs for basic
/// auth, `ALERTMANAGER_CA_FILE` for the PEM file of a CA to trust besides the
/// platform's, and `ALERTMANAGER_INSTANCE` for the `instance` label, default the host
/// name).
pub const ENV_PROVIDERS: [&str; 8] = [
    "SLACK_WEBHOOK_URL",
    "DISCORD_WEBHOOK_URL",
    "PAGERDUTY_ROUTING_KEY",
    "TEAMS_WEBHOOK_URL",
    "GOOGLE_CHAT_WEBHOOK_URL",
    "NTFY_URL",
    "WEBHOOK_URL",
    "ALERTMANAGER_URL",
];

/// Every variable the providers from the environment read.
pub const ENV_VARIABLES: [&str; 15] = [
    "SLACK_WEBHOOK_URL",
    "DISCORD_WEBHOOK_URL",
    "PAGERDUTY_ROUTING_KEY",
    "PAGERDUTY_EVENTS_URL",
    "TEAMS_WEBHOOK_URL",
    "TEAMS_WEBHOOK_FORMAT",
    "GOOGLE_CHAT_WEBHOOK_URL",
    "NTFY_URL",
    "NTFY_TOKEN",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "ALERTMANAGER_URL",
    "ALERTMANAGER_TOKEN",
    "ALERTMANAGER_CA_FILE",
    "ALERTMANAGER_INSTANCE",
];

/// A provider variable that is set but cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {source}")]
pub struct EnvProviderError {
    /// The variable.
    pub variable: &'static str,
    /// What is wrong with it (never its value).
    pub source: ConfigError,
}

/// A provider to register on a service: what [`providers_from_env`] returns.
pub type Registration = Box<dyn FnOnce(&NotificationService) -> Result<(), RegisterError> + Send>;

/// Registrations for each provider variable that `lookup` finds set (blank counts as
/// unset); a variable set to something that cannot work is an error naming it.
pub fn providers_from_env(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Registration>, EnvProviderError> {
    let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
    let mut out: Vec<Registration> = Vec::new();
    if ENV_PROVIDERS.iter().all(|k| get(k).is_none()) {
        return Ok(out);
    }
    let http = HttpClient::new().map_err(|source| EnvProviderError {
        variable: "HTTP client",
        source,
    })?;
    #[allow(dead_code)]
    fn reg(name: &'static str, n: impl Notifier) -> Registration {
        Box::new(move |s: &NotificationService| s.register(name, n))
    }
    let err = |variable: &'static str| move |source| EnvProviderError { variable, source };
    #[cfg(feature = "slack")]
    if let Some(url) = get("SLACK_WEBHOOK_URL") {
        out.push(reg(
            provider::SLACK,
            SlackNotifier::new(&http, &url).map_err(err("SLACK_WEBHOOK_URL"))?,
        ));
    }
    #[cfg(feature = "discord")]
    if let Some(url) = get("DISCORD_WEBHOOK_URL") {
        out.push(reg(
            provider::DISCORD,
            DiscordNotifier::new(&http, &url).map_err(err("DISCORD_WEBHOOK_URL"))?,
        ));
    }
    #[cfg(feature = "pagerduty")]
    if let Some(key) = get("PAGERDUTY_ROUTING_KEY") {
        let mut pd = PagerDutyNotifier::new(&http, &key).map_err(err("PAGERDUTY_ROUTING_KEY"))?;
        if let Some(url) = get("PAGERDUTY_EVENTS_URL") {
            pd = pd
                .with_events_url(&url)
                .map_err(err("PAGERDUTY_EVENTS_URL"))?;
        }
        out.push(reg(provider::PAGERDUTY, pd));
    }
    #[cfg(feature = "teams")]
    if let Some(url) = get("TEAMS_WEBHOOK_URL") {
        let format = match get("TEAMS_WEBHOOK_FORMAT").map(|f| f.trim().to_ascii_lowercase()) {
            None => TeamsFormat::Workflows,
            Some(f) if f == "workflows" || f == "adaptivecard" => TeamsFormat::Workflows,
            Some(f) if f == "messagecard" => TeamsFormat::MessageCard,
            Some(_) => {
                return Err(EnvProviderError {
                    variable: "TEAMS_WEBHOOK_FORMAT",
                    source: ConfigError::new(
                        "teams webhook format",
                        "must be workflows or messagecard",
                    ),
                });
            }
        };
        out.push(reg(
            provider::TEAMS,
            TeamsNotifier::new(&http, &url, format).map_err(err("TEAMS_WEBHOOK_URL"))?,
        ));
    }
    #[cfg(feature = "googlechat")]
    if let Some(url) = get("GOOGLE_CHAT_WEBHOOK_URL") {
        out.push(reg(
            provider::GOOGLE_CHAT,
            GoogleChatNotifier::new(&http, &url).map_err(err("GOOGLE_CHAT_WEBHOOK_URL"))?,
        ));
    }
    #[cfg(feature = "ntfy")]
    if let Some(url) = get("NTFY_URL") {
        let mut ntfy = NtfyNotifier::from_topic_url(&http, &url).map_err(err("NTFY_URL"))?;
        if let Some(token) = get("NTFY_TOKEN") {
            ntfy = ntfy.with_token(&token).map_err(err("NTFY_TOKEN"))?;
        }
        out.push(reg(provider::NTFY, ntfy));
    }
    #[cfg(feature = "webhook")]
    if let Some(url) = get("WEBHOOK_URL") {
        let mut hook = WebhookNotifier::new(&http, &url).map_err(err("WEBHOOK_URL"))?;
        if let Some(secret) = get("WEBHOOK_SECRET") {
            hook = hook
                .with_signing_secret(&secret)
                .map_err(err("WEBHOOK_SECRET"))?;
        }
        out.push(reg(provider::WEBHOOK, hook));
    }
    #[cfg(feature = "alertmanager")]
    if let Some(urls) = get("ALERTMANAGER_URL") {
        let http = match get("ALERTMANAGER_CA_FILE") {
            None => http.clone(),
            Some(path) => {
                let pem = std::fs::read_to_string(path.trim()).map_err(|e| EnvProviderError {
                    variable: "ALERTMANAGER_CA_FILE",
                    source: ConfigError::new(
                        "alertmanager CA file",
                        format!("cannot be read ({e}); give the path of a PEM file"),
                    ),
                })?;
                HttpClient::with_extra_roots(
                    crate::DEFAULT_CONNECT_TIMEOUT,
                    crate::DEFAULT_TOTAL_TIMEOUT,
                    &pem,
                )
                .map_err(err("ALERTMANAGER_CA_FILE"))?
            }
        };
        let mut am =
            AlertmanagerNotifier::from_url_list(&http, &urls).map_err(err("ALERTMANAGER_URL"))?;
        if let Some(token) = get("ALERTMANAGER_TOKEN") {
            am = am
                .with_bearer_token(&token)
                .map_err(err("ALERTMANAGER_TOKEN"))?;
        }
        if let Some(instance) = get("ALERTMANAGER_INSTANCE") {
            am = am
                .with_instance(&instance)
                .map_err(err("ALERTMANAGER_INSTANCE"))?;
        }
        out.push(reg(ALERTMANAGER, am));
    }
    Ok(out)
}

#[cfg(all(
    test,
    feature = "slack",
    feature = "ntfy",
    feature = "webhook",
    feature = "alertmanager",
    feature = "teams"
))]
mod tests {
    use super::*;
    use piko_obs_notify::NotificationService;

    #[test]
    fn providers_come_from_the_variables_that_are_set() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(providers_from_env(env(&[])).unwrap().is_empty());
        let regs = providers_from_env(env(&[
            ("WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("NTFY_URL", "http://127.0.0.1:9/alerts"),
            ("SLACK_WEBHOOK_URL", " "),
            (
                "ALERTMANAGER_URL",
                "http://127.0.0.1:9, http://127.0.0.1:10/am/",
            ),
            ("ALERTMANAGER_INSTANCE", "pod-1"),
        ]))
        .unwrap();
        let s = NotificationService::default();
        for r in regs {
            r(&s).unwrap();
        }
        assert_eq!(s.providers(), ["alertmanager", "ntfy", "webhook"]);
        let e = match providers_from_env(env(&[
            ("ALERTMANAGER_URL", "http://127.0.0.1:9"),
            ("ALERTMANAGER_TOKEN", "tok\nSECRET"),
        ])) {
            Err(e) => e,
            Ok(_) => panic!("a bad token is an error"),
        };
        assert_eq!(e.variable, "ALERTMANAGER_TOKEN");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = match providers_from_env(env(&[("ALERTMANAGER_URL", " , ")])) {
            Err(e) => e,
            Ok(_) => panic!("an empty list is an error"),
        };
        assert_eq!(e.variable, "ALERTMANAGER_URL");
        let e = match providers_from_env(env(&[
            ("ALERTMANAGER_URL", "https://127.0.0.1:9"),
            ("ALERTMANAGER_CA_FILE", "/nonexistent/ca.pem"),
        ])) {
            Err(e) => e,
            Ok(_) => panic!("a missing CA file is an error"),
        };
        assert_eq!(e.variable, "ALERTMANAGER_CA_FILE");
        let Err(e) = providers_from_env(env(&[("SLACK_WEBHOOK_URL", "not a url/T0/SECRET")]))
        else {
            panic!("a bad URL is an error");
        };
        assert!(
            e.to_string()
                .starts_with("SLACK_WEBHOOK_URL: slack webhook URL:"),
            "{e}"
        );
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = match providers_from_env(env(&[
            ("TEAMS_WEBHOOK_URL", "https://x.example/hook"),
            ("TEAMS_WEBHOOK_FORMAT", "card"),
        ])) {
            Err(e) => e,
            Ok(_) => panic!("a bad format is an error"),
        };
        assert_eq!(e.variable, "TEAMS_WEBHOOK_FORMAT");
    }
}
