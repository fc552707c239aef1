//! `run_in_span` against the OTLP receiver: the span's logger names the span, an error
//! becomes an exception event and status ERROR and is returned unchanged, a panic ends
//! the span with the panic recorded and goes on, log lines become span events, and
//! spans nest.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use piko_obs_logger::{Hub, Level};
use piko_obs_logger_drains::JsonOutput;
use piko_obs_otlp::{OtelLogOutput, OtlpConfig, Pipeline, Protocol, run_in_span};
use piko_obs_testkit::Capture;
use piko_obs_testkit::otlp::OtlpReceiver;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A span named `msg` whose operation panics with `msg`.
async fn explode_in(
    log: &piko_obs_logger::Logger,
    msg: &'static str,
) -> Result<(), std::io::Error> {
    run_in_span(log, msg, vec![], move |_| async move {
        if std::hint::black_box(true) {
            panic!("{msg}");
        }
        Ok(())
    })
    .await
}

fn event_names(s: &Span) -> Vec<String> {
    s.events.iter().map(|e| e.name.clone()).collect()
}

#[test]
fn run_in_span_records_errors_panics_log_lines_and_nesting() {
    let receiver = OtlpReceiver::start();
    let mut config = OtlpConfig::new();
    config.endpoint = Some(receiver.grpc_endpoint());
    config.protocol = Some(Protocol::Grpc);
    let settings = config.resolve(|_| None, "spans-test").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pipeline = {
        let _in = runtime.enter();
        Pipeline::start(&settings).unwrap()
    };
    opentelemetry::global::set_tracer_provider(pipeline.tracer_provider.clone());
    let hub = Hub::default();
    let cap = Capture::new();
    hub.add_output(
        "capture",
        Level::INFO,
        JsonOutput::writer(cap.clone()).build().unwrap(),
    )
    .unwrap();
    hub.add_output(
        "otlp",
        Level::INFO,
        OtelLogOutput::new(&pipeline.logger_provider),
    )
    .unwrap();
    let log = hub.get_logger("payments");

    // An error: recorded, status ERROR, returned unchanged.
    let err = runtime.block_on(run_in_span(
        &log,
        "charge",
        vec![
            KeyValue::new("order.id", 7),
            KeyValue::new("tenant", "acme"),
            KeyValue::new("express", true),
        ],
        |l| async move {
            l.info("charging", &[]);
            l.error("declined", &[]);
            Err::<(), _>(std::io::Error::other("card declined"))
        },
    ));
    assert_eq!(err.unwrap_err().to_string(), "card declined");
    // The span's attributes are on the lines its logger writes too, with their types,
    // beside the span's ids.
    hub.flush(Duration::from_secs(5)).unwrap();
    let lines = cap.json_lines();
    let charging = lines
        .iter()
        .find(|l| l["msg"] == "charging")
        .expect("the span's line");
    assert_eq!(charging["order.id"], 7, "{charging}");
    assert_eq!(charging["tenant"], "acme", "{charging}");
    assert_eq!(charging["express"], true, "{charging}");
    assert_eq!(charging["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(charging["span_id"].as_str().map(str::len), Some(16));

    // Nesting and success.
    let nested = runtime.block_on(run_in_span(&log, "outer", vec![], |l| async move {
        // The span starts when `run_in_span` is called, so a future handed to another
        // task (which has no current span) is still a child of this one; it borrows
        // nothing, so it can be spawned.
        let task = tokio::spawn(run_in_span(&l, "spawned", vec![], |_| async {
            Ok::<_, std::io::Error>(())
        }));
        task.await.expect("the task ran")?;
        let outer_log = l.clone();
        run_in_span(&l, "inner", vec![], |l| async move {
            l.info("inside", &[]);
            // The outer span's logger, where the inner span is current.
            outer_log.info("outer logger inside", &[]);
            Ok::<_, std::io::Error>(5)
        })
        .await
    }));
    assert_eq!(nested.unwrap(), 5);

    // A panic: the span ends with it recorded, and the panic goes on. Without a hook
    // that calls `note_panic`, the message is unknown.
    let explode = |name: &'static str, msg: &'static str| {
        let l = log.clone();
        async move {
            run_in_span(&l, name, vec![], move |_| async move {
                if !msg.is_empty() {
                    panic!("{msg}");
                }
                Ok::<(), std::io::Error>(())
            })
            .await
        }
    };
    let quiet = explode("quiet", "hush");
    let joined = runtime.block_on(async move { tokio::spawn(quiet).await });
    assert!(joined.unwrap_err().is_panic());
    // With the hook (the facade installs it), under tokio, and under another executor.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        piko_obs_otlp::note_panic(info);
        previous(info)
    }));
    let boom = explode("explode", "boom");
    let joined = runtime.block_on(async move { tokio::spawn(boom).await });
    assert!(joined.unwrap_err().is_panic());
    let bang = explode("bang", "bang");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        futures_executor::block_on(bang)
    }));
    let payload = caught.unwrap_err();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("bang")
    );
    // Nested: the panic ends both spans, each with its message.
    let l = log.clone();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        futures_executor::block_on(run_in_span(&l, "outer_of_deep", vec![], |l| async move {
            explode_in(&l, "deep").await
        }))
    }));
    assert!(caught.is_err());
    // A panic the hook does not see (`resume_unwind`) on this thread, where "bang" and
    // "deep" were noted: no message rather than an old one.
    let l = log.clone();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        futures_executor::block_on(run_in_span(&l, "resumed", vec![], |_| async {
            if std::hint::black_box(true) {
                std::panic::resume_unwind(Box::new("unseen"));
            }
            Ok::<(), std::io::Error>(())
        }))
    }));
    assert!(caught.is_err());
    // Dropped before it finished (a caller's timeout): ended, not an error.
    let l = log.clone();
    let abandoned = runtime.block_on(async move {
        tokio::time::timeout(
            Duration::from_millis(20),
            run_in_span(&l, "abandoned", vec![], |_| async {
                std::future::pending::<()>().await;
                Ok::<(), std::io::Error>(())
            }),
        )
        .await
    });
    assert!(abandoned.is_err());

    hub.flush(Duration::from_secs(5)).unwrap();
    let failures = pipeline.shutdown(Duration::from_secs(5));
    assert!(failures.is_empty(), "{failures:?}");
    let got = receiver.wait_until(Duration::from_secs(10), |r| r.spans().len() >= 11);
    let spans = got.spans();
    let find = |n: &str| {
        spans
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("no span {n}"))
    };

    let charge = find("charge");
    // The ERROR line set the status first; the returned error is the exception event.
    let status = charge.status.clone().unwrap();
    assert_eq!(status.code, 2);
    assert_eq!(status.message, "declined");
    let events = event_names(charge);
    assert!(events.contains(&"exception".to_string()), "{events:?}");
    assert!(
        events.contains(&"charging".to_string()),
        "log lines as span events: {events:?}"
    );
    assert!(events.contains(&"declined".to_string()), "{events:?}");
    let exception = charge
        .events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap();
    assert!(format!("{:?}", exception.attributes).contains("card declined"));
    // An event carries the line's level, except INFO's (the level of an event without
    // one), and the line's time.
    let event = |n: &str| charge.events.iter().find(|e| e.name == n).unwrap();
    assert!(
        event("charging").attributes.is_empty(),
        "{:?}",
        event("charging")
    );
    let declined = event("declined");
    assert_eq!(declined.attributes.len(), 1, "{declined:?}");
    assert_eq!(declined.attributes[0].key, "level");
    assert!(format!("{:?}", declined.attributes[0].value).contains("\"ERROR\""));
    // The log records of the span's lines carry its ids as their trace context, not
    // again as attributes, and the same time as the events.
    let got = receiver.wait_until(Duration::from_secs(10), |r| {
        r.log_records()
            .iter()
            .any(|l| format!("{:?}", l.body).contains("declined"))
    });
    let records = got.log_records();
    for (line, ev) in [("charging", event("charging")), ("declined", declined)] {
        let rec = records
            .iter()
            .find(|l| format!("{:?}", l.body).contains(&format!("\"{line}\"")))
            .unwrap_or_else(|| panic!("no log record {line}"));
        assert_eq!(rec.trace_id, charge.trace_id, "{line}");
        assert_eq!(rec.span_id, charge.span_id, "{line}");
        assert_eq!(rec.time_unix_nano, ev.time_unix_nano, "{line}");
        assert_eq!(rec.observed_time_unix_nano, rec.time_unix_nano, "{line}");
        let keys: Vec<&str> = rec.attributes.iter().map(|a| a.key.as_str()).collect();
        assert!(
            !keys.contains(&"trace_id") && !keys.contains(&"span_id"),
            "{line}: {keys:?}"
        );
        assert!(keys.contains(&"logger"), "{line}: {keys:?}");
    }

    let (outer, inner) = (find("outer"), find("inner"));
    assert_eq!(inner.parent_span_id, outer.span_id);
    assert_eq!(inner.trace_id, outer.trace_id);
    assert_ne!(outer.status.clone().map_or(0, |s| s.code), 2);
    let spawned = find("spawned");
    assert_eq!(spawned.parent_span_id, outer.span_id);
    assert_eq!(spawned.trace_id, outer.trace_id);

    for (name, message) in [
        ("quiet", "panic"),
        ("explode", "panic: boom"),
        ("bang", "panic: bang"),
        ("deep", "panic: deep"),
        ("outer_of_deep", "panic: deep"),
        ("resumed", "panic"),
    ] {
        let span = find(name);
        let status = span.status.clone().unwrap();
        assert_eq!(status.code, 2, "{name}");
        assert_eq!(status.message, message, "{name}");
        let exceptions: Vec<_> = span
            .events
            .iter()
            .filter(|e| e.name == "exception")
            .collect();
        assert_eq!(exceptions.len(), 1, "{name}: one exception event");
        let attributes = format!("{:?}", exceptions[0].attributes);
        assert!(attributes.contains("exception.type"), "{attributes}");
        assert_eq!(
            attributes.contains("exception.message"),
            !["quiet", "resumed"].contains(&name),
            "{name}: {attributes}"
        );
    }
    let (outer, deep) = (find("outer_of_deep"), find("deep"));
    assert_eq!(deep.parent_span_id, outer.span_id);
    let abandoned = find("abandoned");
    assert_ne!(abandoned.status.clone().map_or(0, |s| s.code), 2);
    assert!(abandoned.events.iter().all(|e| e.name != "exception"));

    // The span's logger names the span on every line.
    let lines = cap.json_lines();
    let charging = lines.iter().find(|l| l["msg"] == "charging").unwrap();
    assert_eq!(charging["trace_id"], hex(&charge.trace_id).as_str());
    assert_eq!(charging["span_id"], hex(&charge.span_id).as_str());
    let inside = lines.iter().find(|l| l["msg"] == "inside").unwrap();
    assert_eq!(inside["span_id"], hex(&inner.span_id).as_str());
    // And its exported record carries the ids.
    let records = got.log_records();
    let exported = records
        .iter()
        .find(|r| format!("{:?}", r.body).contains("charging"))
        .unwrap();
    assert_eq!(exported.trace_id, charge.trace_id);
    assert_eq!(exported.span_id, charge.span_id);
    // A logger's span ids that differ from the current span's stay as attributes: the
    // record's context is the current (inner) span, its `span_id` field the outer one.
    let crossed = records
        .iter()
        .find(|r| format!("{:?}", r.body).contains("outer logger inside"))
        .unwrap();
    assert_eq!(crossed.span_id, inner.span_id);
    let field = |k: &str| {
        crossed
            .attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| format!("{:?}", a.value))
    };
    assert!(
        field("span_id").is_some_and(|v| v.contains(&hex(&find("outer").span_id))),
        "{:?}",
        crossed.attributes
    );
    assert_eq!(field("trace_id"), None, "the same trace: not repeated");
    drop(runtime);
}

/// `traced` puts the current span's `traceparent` on an outgoing reqwest request: a real
/// server on loopback reads it back and finds the same trace, the span as parent.
#[test]
fn an_outgoing_request_carries_the_span_it_was_made_in() {
    use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
    use warp::Filter as _;

    let _ = rustls::crypto::ring::default_provider().install_default();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(tx));
    let route = warp::header::optional::<String>("traceparent").map(move |tp: Option<String>| {
        let _ = tx.lock().unwrap().send(tp);
        "ok"
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(warp::serve(route).incoming(listener).run());

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("client");
    let client = reqwest::Client::builder().build().unwrap();
    let (trace_id, span_id) = rt.block_on(async {
        let cx = opentelemetry::Context::current().with_span(tracer.start("call stock"));
        let sc = cx.span().span_context().clone();
        let answer = piko_obs_otlp::traced_with(&cx, client.get(format!("http://{addr}/")))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
        (sc.trace_id().to_string(), sc.span_id().to_string())
    });
    let tp = rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("a traceparent header");
    assert_eq!(tp, format!("00-{trace_id}-{span_id}-01"));
}
