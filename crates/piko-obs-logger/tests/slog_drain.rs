//! Any slog drain is an output: it sees the nearest slog level, the exact piko level in
//! the tag, the logger name and bound fields, and masked secrets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use piko_obs_logger::{Hub, Level, attr};
use piko_obs_testkit::Capture;
use slog::Drain;

#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<String>>>);

struct Recorder(Seen);

impl slog::Drain for Recorder {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, r: &slog::Record<'_>, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        struct Pairs(Vec<String>);
        impl slog::Serializer for Pairs {
            fn emit_arguments(
                &mut self,
                key: slog::Key,
                val: &std::fmt::Arguments<'_>,
            ) -> slog::Result {
                self.0.push(format!("{key}={val}"));
                Ok(())
            }
        }
        let mut pairs = Pairs(Vec::new());
        slog::KV::serialize(values, r, &mut pairs).unwrap();
        slog::KV::serialize(&r.kv(), r, &mut pairs).unwrap();
        pairs.0.sort();
        self.0.0.lock().unwrap().push(format!(
            "{:?} {} {} {} [{}]",
            r.level(),
            r.tag(),
            r.msg(),
            r.module(),
            pairs.0.join(" ")
        ));
        Ok(())
    }
}

#[test]
fn slog_drains_see_exact_levels_names_fields_and_masked_secrets() {
    let hub = Hub::default();
    let seen = Seen::default();
    hub.add_drain("recorder", Level::TRACE, Recorder(seen.clone()))
        .unwrap();
    let log = hub
        .get_logger("shop/db")
        .with(&[attr::string("db_password", "pw")]);
    log.notice("pool ready", &[attr::int("size", 8)]);
    piko_obs_logger::internal!(log, "cache warm", attr::bool("hit", true));
    let got = seen.0.lock().unwrap().clone();
    assert_eq!(
        got,
        [
            "Info NOTICE pool ready  [db_password=[REDACTED] logger=shop/db size=8]",
            "Debug INTERNAL cache warm slog_drain [db_password=[REDACTED] hit=true logger=shop/db]",
        ]
    );
}

#[test]
fn slog_json_works_as_an_output() {
    let hub = Hub::default();
    let cap = Capture::new();
    let json = slog_json::Json::new(cap.clone()).add_default_keys().build();
    hub.add_drain("slog-json", Level::INFO, Mutex::new(json).fuse())
        .unwrap();
    hub.get_logger("api")
        .with(&[attr::string("region", "eu")])
        .warn("slow", &[attr::int("ms", 900)]);
    hub.flush(Duration::from_secs(1)).unwrap();
    let line = &cap.json_lines()[0];
    assert_eq!(line["msg"], "slow");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["logger"], "api");
    assert_eq!(line["region"], "eu");
    assert_eq!(line["ms"], 900);
}
