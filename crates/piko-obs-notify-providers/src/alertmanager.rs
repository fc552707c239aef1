//! Prometheus Alertmanager, API v2: each notification an alert, posted to every
//! Alertmanager of a list (the peers of an HA cluster).

use std::time::{Duration, SystemTime};

use piko_obs_notify::{Capabilities, Notification, Notifier, Priority, SendError, alert};
use serde_json::{Map, Value};

use crate::ConfigError;
use crate::http::{HttpClient, basic_auth, json_headers, parse_url, redacted};

/// The provider's name, under which the facade registers it.
pub use piko_obs_notify::provider::ALERTMANAGER;

/// How long a firing alert holds, from the time it is sent, when the notification
/// gives no lease ([`alert::LEASE_SECS`]): 5 minutes, Alertmanager's own
/// `resolve_timeout` default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

/// The path of the alerts endpoint, added to a URL that does not end with it.
const ALERTS_PATH: &str = "api/v2/alerts";

/// The longest description (the message) sent, in characters.
const MAX_DESCRIPTION: usize = 16_384;
/// The longest label or annotation value sent, in characters.
const MAX_VALUE: usize = 4096;

/// Posts each notification as one alert to Alertmanager's API v2
/// (`POST /api/v2/alerts`), to every URL of its list.
///
/// **Labels** (the alert's identity: Alertmanager merges alerts with equal labels and
/// groups them by the labels its route names): `alertname` (the provider option
/// [`alertname`](alert::ALERTNAME), else the title, else the message), `service` (the
/// context's), `environment` (the context's), `severity` (`critical`, `warning`,
/// `info`, `info` for the priorities critical, high, normal, low), `instance` (this
/// process: [`with_instance`](Self::with_instance), by default the host name), the
/// labels given with [`with_label`](Self::with_label), and the notification's fields
/// marked as labels: those named in [`with_label_fields`](Self::with_label_fields) and
/// in the provider option [`alert_labels`](alert::LABELS) (comma-separated). Empty
/// values are left out (Alertmanager drops them).
///
/// **Annotations** (shown, not compared): `summary` (the title), `description` (the
/// message, cut to 16,384 characters), every field not marked as a label, then
/// `priority`, `source` (the context's), `trace_id` and `image_url` when set (as
/// `context_<name>` when a field has the name). Label and annotation names that
/// Alertmanager would refuse (it takes `[a-zA-Z_][a-zA-Z0-9_]*`) have each other
/// character replaced by `_`; a field whose name is taken (by `summary`, say, or a
/// label the provider sets) keeps `field_` before it. Values are cut to 4,096
/// characters.
///
/// **Times**: `startsAt` is the notification's timestamp; a firing alert (the default,
/// or provider option [`alert_status`](alert::STATUS) `firing`) has `endsAt` at the
/// time of sending plus its lease (provider option [`alert_lease_secs`](alert::LEASE_SECS),
/// else [`with_lease`](Self::with_lease), default [`DEFAULT_LEASE`]): a sender that
/// stops sending lets it end by itself. A resolved alert (`alert_status` `resolved`)
/// has `endsAt` at [`alert_ends_at`](alert::ENDS_AT), else the time of sending, so
/// Alertmanager sends its receivers "resolved". `generatorURL` is the provider option
/// [`generator_url`](alert::GENERATOR_URL), else [`with_generator_url`](Self::with_generator_url),
/// else left out.
///
/// **Several Alertmanagers**: the alert is posted to each URL at once, as Prometheus
/// does; the send succeeds when at least one Alertmanager accepted it (a 2xx answer).
/// The peers of a cluster each keep the alerts posted to them (alerts are not
/// gossiped) and share which notifications went out, so one peer that is down costs
/// nothing, and the receivers get one notification, not one per peer. When none
/// accepted it, the send fails: retried (then dead-lettered) if any failure was a
/// connection failure, a timeout, a 5xx or a 429; not retried if all were other 4xx
/// answers (Alertmanager's `400` says what is wrong: a bad label name, no label, a
/// start after the end; the error quotes it).
///
/// **Authentication**: [`with_basic_auth`](Self::with_basic_auth) or
/// [`with_bearer_token`](Self::with_bearer_token) (or `user:password@` in a URL), on
/// every URL. TLS (`https://`) and the timeouts are those of the [`HttpClient`]. No
/// URL, token or password appears in an error or in `Debug`.
#[derive(Clone)]
pub struct AlertmanagerNotifier {
    http: HttpClient,
    urls: Vec<reqwest::Url>,
    auth: Option<http::HeaderValue>,
    /// The token, or `user:password` and the password, masked in an error's excerpt.
    redact: Vec<String>,
    instance: String,
    labels: Vec<(String, String)>,
    label_fields: Vec<String>,
    lease: Duration,
    generator_url: Option<String>,
}

impl std::fmt::Debug for AlertmanagerNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertmanagerNotifier")
            .field(
                "urls",
                &self.urls.iter().map(redacted).collect::<Vec<String>>(),
            )
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("instance", &self.instance)
            .field("labels", &self.labels)
            .field("label_fields", &self.label_fields)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a label name Alertmanager takes: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name` made a valid label name: every other character `_`, and `_` before a leading
/// digit (or for an empty name).
fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// The severity label for a priority.
pub(crate) fn severity(p: Priority) -> &'static str {
    match p {
        Priority::Critical => "critical",
        Priority::High => "warning",
        Priority::Normal | Priority::Low => "info",
    }
}

/// The name of this host: `HOSTNAME`, else the kernel's, else `localhost`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn utc(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl AlertmanagerNotifier {
    /// A notifier posting to each of `urls`: an Alertmanager's address
    /// (`http://alertmanager:9093`, with its route prefix if it has one), to which
    /// `/api/v2/alerts` is added, or the full `.../api/v2/alerts`. At least one URL;
    /// each http or https.
    pub fn new<I, S>(http: &HttpClient, urls: I) -> Result<AlertmanagerNotifier, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parsed = Vec::new();
        for u in urls {
            let mut url = parse_url("alertmanager URL", u.as_ref())?;
            if !url.path().trim_end_matches('/').ends_with("/api/v2/alerts") {
                url.path_segments_mut()
                    .map_err(|()| {
                        ConfigError::new("alertmanager URL", "must be an http:// or https:// URL")
                    })?
                    .pop_if_empty()
                    .extend(ALERTS_PATH.split('/'));
            }
            parsed.push(url);
        }
        if parsed.is_empty() {
            return Err(ConfigError::new(
                "alertmanager URL",
                "give at least one URL, such as http://alertmanager:9093 (for an HA cluster, the URL of each peer)",
            ));
        }
        Ok(AlertmanagerNotifier {
            http: http.clone(),
            urls: parsed,
            auth: None,
            redact: Vec::new(),
            instance: host_name(),
            labels: Vec::new(),
            label_fields: Vec::new(),
            lease: DEFAULT_LEASE,
            generator_url: None,
        })
    }

    /// A notifier from a comma-separated list of URLs (as `ALERTMANAGER_URL` gives
    /// them); empty entries are skipped.
    pub fn from_url_list(
        http: &HttpClient,
        list: &str,
    ) -> Result<AlertmanagerNotifier, ConfigError> {
        AlertmanagerNotifier::new(
            http,
            list.split(',').map(str::trim).filter(|s| !s.is_empty()),
        )
    }

    /// Authenticates with a bearer token.
    pub fn with_bearer_token(mut self, token: &str) -> Result<Self, ConfigError> {
        let token = token.trim();
        let mut v = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .ok()
            .filter(|_| !token.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "alertmanager bearer token",
                    "must be non-empty text without control characters or line breaks",
                )
            })?;
        v.set_sensitive(true);
        self.auth = Some(v);
        self.redact = vec![token.to_string()];
        Ok(self)
    }

    /// Authenticates with a user and password (HTTP basic auth).
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Result<Self, ConfigError> {
        if user.is_empty() || user.contains(':') {
            return Err(ConfigError::new(
                "alertmanager basic auth user",
                "must be non-empty and without ':'",
            ));
        }
        let (v, redact) = basic_auth("alertmanager basic auth", user, password)?;
        self.auth = Some(v);
        self.redact = redact;
        Ok(self)
    }

    /// The `instance` label: what tells this process from the other replicas (default
    /// the host name, the pod's name on Kubernetes). Must not be empty.
    pub fn with_instance(mut self, instance: &str) -> Result<Self, ConfigError> {
        let instance = instance.trim();
        if instance.is_empty() {
            return Err(ConfigError::new(
                "alertmanager instance",
                "must not be empty; give the pod or host name",
            ));
        }
        self.instance = instance.to_string();
        Ok(self)
    }

    /// Adds a label to every alert (`team`, `cluster`). The name must be
    /// `[a-zA-Z_][a-zA-Z0-9_]*` and not one the provider sets; the value not empty.
    pub fn with_label(mut self, name: &str, value: &str) -> Result<Self, ConfigError> {
        if !valid_name(name) || name.starts_with("__") {
            return Err(ConfigError::new(
                "alertmanager label name",
                format!(
                    "{name:?} is not a label name: use letters, digits and '_', not first a digit, not starting with '__'"
                ),
            ));
        }
        if [
            "alertname",
            "service",
            "environment",
            "severity",
            "instance",
        ]
        .contains(&name)
        {
            return Err(ConfigError::new(
                "alertmanager label name",
                format!("{name:?} is set by the provider; choose another name"),
            ));
        }
        if value.trim().is_empty() {
            return Err(ConfigError::new(
                "alertmanager label value",
                format!("the value of {name:?} is empty; Alertmanager would drop the label"),
            ));
        }
        self.labels.retain(|(n, _)| n != name);
        self.labels.push((name.to_string(), value.to_string()));
        Ok(self)
    }

    /// Fields that are labels, on every notification that has them (the provider
    /// option [`alert_labels`](alert::LABELS) adds more per notification).
    pub fn with_label_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.label_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// How long a firing alert holds when the notification gives no lease (default
    /// [`DEFAULT_LEASE`]; at least 1 s).
    pub fn with_lease(mut self, lease: Duration) -> Result<Self, ConfigError> {
        if lease < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "alertmanager lease",
                "must be at least 1s (for example 5m)",
            ));
        }
        self.lease = lease;
        Ok(self)
    }

    /// The `generatorURL` of alerts whose notification gives none (a dashboard, the
    /// service's page). Must be an http or https URL.
    pub fn with_generator_url(mut self, url: &str) -> Result<Self, ConfigError> {
        let u = parse_url("alertmanager generator URL", url)?;
        self.generator_url = Some(u.to_string());
        Ok(self)
    }

    /// How many Alertmanagers each alert is posted to.
    pub fn url_count(&self) -> usize {
        self.urls.len()
    }

    /// The alert for `n`, sent at `now` (the body is an array of these).
    pub fn alert(&self, n: &Notification, now: SystemTime) -> Value {
        let c = &n.context;
        let o = &n.provider_options;
        let cut = |s: &str, max: usize| piko_obs_notify::truncate(s, max).into_owned();
        let mut labels = Map::new();
        let put = |m: &mut Map<String, Value>, k: String, v: &str, max: usize| {
            if !v.trim().is_empty() {
                m.insert(k, cut(v, max).into());
            }
        };
        let name = o
            .get(alert::ALERTNAME)
            .filter(|s| !s.trim().is_empty())
            .or(Some(n.content.title.as_str()).filter(|s| !s.trim().is_empty()))
            .or(Some(n.content.message.as_str()).filter(|s| !s.trim().is_empty()))
            .unwrap_or("Notification");
        put(&mut labels, "alertname".into(), name, MAX_VALUE);
        put(&mut labels, "service".into(), &c.service, MAX_VALUE);
        put(&mut labels, "environment".into(), &c.environment, MAX_VALUE);
        put(
            &mut labels,
            "severity".into(),
            severity(c.priority),
            MAX_VALUE,
        );
        put(&mut labels, "instance".into(), &self.instance, MAX_VALUE);
        for (k, v) in &self.labels {
            put(&mut labels, k.clone(), v, MAX_VALUE);
        }
        let marked: Vec<&str> = self
            .label_fields
            .iter()
            .map(String::as_str)
            .chain(o.get(alert::LABELS).into_iter().flat_map(|l| l.split(',')))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut annotations = Map::new();
        put(
            &mut annotations,
            "summary".into(),
            &n.content.title,
            MAX_VALUE,
        );
        put(
            &mut annotations,
            "description".into(),
            &n.content.message,
            MAX_DESCRIPTION,
        );
        for (k, v) in n.content.fields.iter() {
            let map = if marked.contains(&k) {
                &mut labels
            } else {
                &mut annotations
            };
            let mut name = label_name(k);
            if map.contains_key(&name) {
                name = format!("field_{name}");
            }
            if !map.contains_key(&name) {
                put(map, name, v, MAX_VALUE);
            }
        }
        for (k, v) in [
            ("priority", c.priority.as_str()),
            ("source", c.source.as_str()),
            ("trace_id", c.trace_id.as_str()),
            ("image_url", n.content.image_url.as_str()),
        ] {
            let name = if annotations.contains_key(k) {
                format!("context_{k}")
            } else {
                k.to_string()
            };
            put(&mut annotations, name, v, MAX_VALUE);
        }
        let starts = if c.timestamp == SystemTime::UNIX_EPOCH {
            now
        } else {
            c.timestamp
        };
        let resolved = o.get(alert::STATUS) == Some(alert::RESOLVED);
        let ends = if resolved {
            o.get(alert::ENDS_AT)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(now, SystemTime::from)
        } else {
            let lease = o
                .get(alert::LEASE_SECS)
                .and_then(|s| s.trim().parse::<u64>().ok())
                .filter(|s| *s > 0)
                .map_or(self.lease, Duration::from_secs);
            now.checked_add(lease).unwrap_or(now)
        };
        // Alertmanager refuses a start after the end.
        let starts = starts.min(ends);
        let mut a = Map::new();
        a.insert("labels".into(), labels.into());
        a.insert("annotations".into(), annotations.into());
        a.insert("startsAt".into(), utc(starts).into());
        a.insert("endsAt".into(), utc(ends).into());
        let generator = o
            .get(alert::GENERATOR_URL)
            .and_then(|u| reqwest::Url::parse(u.trim()).ok())
            .map(|u| u.to_string())
            .or_else(|| self.generator_url.clone());
        if let Some(g) = generator {
            a.insert("generatorURL".into(), g.into());
        }
        Value::Object(a)
    }
}

impl Notifier for AlertmanagerNotifier {
    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let body = Value::Array(vec![self.alert(n, SystemTime::now())]);
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| SendError::Rejected(format!("alertmanager: cannot encode: {e}")))?;
        let mut headers = json_headers();
        if let Some(auth) = &self.auth {
            headers.insert(http::header::AUTHORIZATION, auth.clone());
        }
        let posts = self.urls.iter().map(|url| {
            self.http.post(
                ALERTMANAGER,
                url,
                headers.clone(),
                bytes.clone(),
                &self.redact,
            )
        });
        let results = futures_util::future::join_all(posts).await;
        combine(results)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::with_max_message_length(MAX_DESCRIPTION)
    }
}

/// The outcome of posting to every Alertmanager: success when one accepted; else the
/// only error, or one that names each (retried if any of them is).
fn combine(results: Vec<Result<(), SendError>>) -> Result<(), SendError> {
    if results.iter().any(Result::is_ok) {
        return Ok(());
    }
    let mut errors: Vec<SendError> = results.into_iter().filter_map(Result::err).collect();
    if errors.len() <= 1 {
        return match errors.pop() {
            Some(e) => Err(e),
            None => Err(SendError::Rejected(
                "alertmanager: no URL to post to".into(),
            )),
        };
    }
    let retry = errors.iter().any(SendError::is_retryable);
    let text = format!(
        "alertmanager: none of the {} Alertmanagers accepted the alert: {}",
        errors.len(),
        errors
            .iter()
            .enumerate()
            .map(|(i, e)| format!("#{}: {e}", i + 1))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if retry {
        Err(SendError::Other(text))
    } else {
        Err(SendError::Rejected(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid_labels() {
        assert_eq!(label_name("attr.source"), "attr_source");
        assert_eq!(label_name("9lives"), "_9lives");
        assert_eq!(label_name(""), "_");
        assert_eq!(label_name("é-x"), "__x");
        assert!(valid_name("error_group"));
        assert!(!valid_name("alert-name"));
        assert!(!valid_name("1a"));
    }

    #[test]
    fn several_failures_are_retried_if_one_is() {
        let status = |s| SendError::Status {
            provider: ALERTMANAGER,
            status: s,
            retry_after: None,
            detail: None,
        };
        assert!(combine(vec![Err(status(500)), Ok(())]).is_ok());
        let e = combine(vec![Err(status(400)), Err(status(503))]).unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(
            e.to_string()
                .contains("#1: alertmanager returned status 400"),
            "{e}"
        );
        let e = combine(vec![Err(status(400)), Err(status(422))]).unwrap_err();
        assert!(!e.is_retryable(), "{e}");
        let e = combine(vec![Err(status(400))]).unwrap_err();
        assert_eq!(e.status(), Some(400));
    }
}
