//! Scrubbing: values under secret-looking keys are replaced before an event or a
//! breadcrumb leaves the process, whatever produced it (a log record, a panic, a direct
//! `capture_event`).

use piko_obs_logger::{REDACTED, SecretKeys};
use sentry_core::protocol::{Breadcrumb, Context, Event, Map, Value};

/// Replaces secret values in an event: extra data, tags, the request's headers, cookies,
/// query string and environment, every breadcrumb's data, and custom contexts.
pub fn scrub_event(mut event: Event<'static>, secrets: &SecretKeys) -> Event<'static> {
    scrub_map(&mut event.extra, secrets);
    for (k, v) in event.tags.iter_mut() {
        if secrets.is_secret(k) {
            *v = REDACTED.to_string();
        }
    }
    if let Some(req) = event.request.as_mut() {
        for (k, v) in req.headers.iter_mut() {
            if secrets.is_secret(k) || k.eq_ignore_ascii_case("authorization") {
                *v = REDACTED.to_string();
            }
        }
        for (k, v) in req.env.iter_mut() {
            if secrets.is_secret(k) {
                *v = REDACTED.to_string();
            }
        }
        if req.cookies.is_some() {
            req.cookies = Some(REDACTED.to_string());
        }
        if let Some(q) = req.query_string.as_mut() {
            *q = scrub_query(q, secrets);
        }
    }
    for b in event.breadcrumbs.values.iter_mut() {
        scrub_map(&mut b.data, secrets);
    }
    for (_, ctx) in event.contexts.iter_mut() {
        if let Context::Other(map) = ctx {
            scrub_map(map, secrets);
        }
    }
    event
}

/// Replaces secret values in a breadcrumb's data.
pub fn scrub_breadcrumb(mut b: Breadcrumb, secrets: &SecretKeys) -> Breadcrumb {
    scrub_map(&mut b.data, secrets);
    b
}

fn scrub_map(map: &mut Map<String, Value>, secrets: &SecretKeys) {
    for (k, v) in map.iter_mut() {
        if secrets.is_secret(k) {
            *v = Value::String(REDACTED.to_string());
        } else {
            scrub_value(v, secrets);
        }
    }
}

fn scrub_value(v: &mut Value, secrets: &SecretKeys) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if secrets.is_secret(k) {
                    *v = Value::String(REDACTED.to_string());
                } else {
                    scrub_value(v, secrets);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| scrub_value(i, secrets)),
        _ => {}
    }
}

fn scrub_query(q: &str, secrets: &SecretKeys) -> String {
    q.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if secrets.is_secret(k) => format!("{k}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentry_core::protocol::Request;

    #[test]
    fn secret_keys_are_replaced_everywhere() {
        let secrets = SecretKeys::new(["password", "token"]);
        let mut event = Event::default();
        event.extra.insert("password".into(), "hunter2".into());
        event.extra.insert(
            "nested".into(),
            serde_json::json!({"api_token": "t0k", "ok": 1}),
        );
        event.tags.insert("token".into(), "abc".into());
        event.request = Some(Request {
            headers: [("Authorization".to_string(), "Bearer x".to_string())]
                .into_iter()
                .collect(),
            query_string: Some("a=1&token=zzz".into()),
            cookies: Some("sid=1".into()),
            ..Default::default()
        });
        let mut b = Breadcrumb::default();
        b.data.insert("password".into(), "pw".into());
        event.breadcrumbs.values.push(b);

        let e = scrub_event(event, &secrets);
        let text = serde_json::to_string(&e).unwrap();
        for secret in [
            "hunter2", "t0k", "abc", "Bearer x", "zzz", "sid=1", "\"pw\"",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(e.extra["nested"]["ok"], 1);
        assert_eq!(
            e.request.unwrap().query_string,
            Some(format!("a=1&token={REDACTED}"))
        );
    }
}
