//! `tracing` through the facade, against the OTLP receiver: `#[instrument]` spans become
//! OpenTelemetry spans with their parents kept across `.await` and threads, the lines
//! logged inside them carry their ids, events map to piko-obs levels (NOTICE through
//! `piko.level`), and `run_in_span` and `tracing` spans nest both ways in one trace.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::Span;
use piko_obs::logger::{self, JsonOutput, Level};
use piko_obs::otlp::run_in_span;
use piko_obs_testkit::Capture;
use piko_obs_testkit::otlp::OtlpReceiver;
use tracing::instrument;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[instrument]
async fn handle_checkout(order_id: u64) -> u64 {
    tracing::info!(piko.level = "notice", "checkout started");
    // On another thread of the runtime: the child keeps its parent.
    let basket = tokio::spawn(tracing::Instrument::in_current_span(load_basket(order_id)))
        .await
        .expect("the task ran");
    tracing::info!(total = basket, "checkout done");
    basket
}

#[instrument]
async fn load_basket(order_id: u64) -> u64 {
    tracing::debug!("hidden at INFO");
    let items = query_items(order_id).await;
    tracing::warn!(items, "basket loaded");
    items * 10
}

#[instrument(fields(db.system = "postgresql"))]
async fn query_items(order_id: u64) -> u64 {
    tokio::task::yield_now().await;
    tracing::info!(rows = 3_u64, "query ran");
    3
}

fn by_name(spans: &[Span]) -> HashMap<String, Span> {
    spans.iter().map(|s| (s.name.clone(), s.clone())).collect()
}

#[test]
fn instrumented_spans_become_one_trace_and_lines_carry_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = OtlpReceiver::start();
    let guard = piko_obs::builder()
        .with_console_output(false)
        .with_health_enabled(false)
        .with_notification_dead_letter_path(dir.path().join("d.jsonl"))
        .with_otlp_endpoint(receiver.http_endpoint())
        .init()
        .expect("init() with no subscriber installed before");
    let cap = Capture::new();
    logger::add_output(
        "capture",
        Level::INFO,
        JsonOutput::writer(cap.clone()).build().unwrap(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(handle_checkout(42)), 30);

    // Both ways: a `tracing` span inside `run_in_span`, and `run_in_span` inside a
    // `tracing` span.
    let log = logger::get_logger("shop");
    runtime
        .block_on(run_in_span(&log, "outer_run", vec![], |_| async {
            let span = tracing::info_span!("inner_tracing");
            let _entered = span.enter();
            tracing::info!("inside both");
            Ok::<_, std::io::Error>(())
        }))
        .unwrap();
    runtime.block_on(async {
        let span = tracing::info_span!("outer_tracing");
        tracing::Instrument::instrument(
            async {
                run_in_span(&log, "inner_run", vec![], |l| async move {
                    l.info("in run_in_span inside tracing", &[]);
                    Ok::<_, std::io::Error>(())
                })
                .await
                .unwrap();
            },
            span,
        )
        .await;
    });
    drop(runtime);
    logger::hub().flush(Duration::from_secs(5)).unwrap();
    let lines = cap.json_lines();
    guard.shutdown().unwrap();

    let got = receiver.wait_until(Duration::from_secs(10), |r| r.spans().len() >= 7);
    let spans = by_name(&got.spans());
    let (handler, basket, query) = (
        &spans["handle_checkout"],
        &spans["load_basket"],
        &spans["query_items"],
    );
    // One trace, three spans, in parent order.
    assert_eq!(basket.trace_id, handler.trace_id);
    assert_eq!(query.trace_id, handler.trace_id);
    assert!(handler.parent_span_id.is_empty(), "{handler:?}");
    assert_eq!(basket.parent_span_id, handler.span_id);
    assert_eq!(query.parent_span_id, basket.span_id);
    // Fields are typed attributes.
    let attr = |s: &Span, k: &str| {
        s.attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| format!("{:?}", a.value))
    };
    assert!(attr(handler, "order_id").unwrap().contains("IntValue(42)"));
    assert!(attr(query, "db.system").unwrap().contains("\"postgresql\""));

    // Each line carries the ids of the span it was logged in, at its level.
    let line = |msg: &str| {
        lines
            .iter()
            .find(|l| l["msg"] == msg)
            .unwrap_or_else(|| panic!("no line {msg:?} in {lines:#?}"))
            .clone()
    };
    for (msg, span, level) in [
        ("checkout started", handler, "NOTICE"),
        ("checkout done", handler, "INFO"),
        ("basket loaded", basket, "WARN"),
        ("query ran", query, "INFO"),
    ] {
        let l = line(msg);
        assert_eq!(l["trace_id"], hex(&span.trace_id), "{msg}: {l}");
        assert_eq!(l["span_id"], hex(&span.span_id), "{msg}: {l}");
        assert_eq!(l["level"], level, "{msg}: {l}");
    }
    assert!(lines.iter().all(|l| l["msg"] != "hidden at INFO"));
    assert!(lines.iter().all(|l| l.get("piko.level").is_none()));
    assert_eq!(line("basket loaded")["items"], 3);
    assert_eq!(line("checkout done")["total"], 30);

    // Both ways in one trace.
    let (outer_run, inner_tracing) = (&spans["outer_run"], &spans["inner_tracing"]);
    assert_eq!(inner_tracing.parent_span_id, outer_run.span_id);
    assert_eq!(inner_tracing.trace_id, outer_run.trace_id);
    assert_eq!(line("inside both")["span_id"], hex(&inner_tracing.span_id));
    let (outer_tracing, inner_run) = (&spans["outer_tracing"], &spans["inner_run"]);
    assert_eq!(inner_run.parent_span_id, outer_tracing.span_id);
    assert_eq!(inner_run.trace_id, outer_tracing.trace_id);
    assert_eq!(
        line("in run_in_span inside tracing")["span_id"],
        hex(&inner_run.span_id)
    );

    // The lines reach OTLP as log records with their span's ids.
    let records = receiver
        .wait_until(Duration::from_secs(10), |r| {
            r.log_records()
                .iter()
                .any(|l| format!("{:?}", l.body).contains("query ran"))
        })
        .log_records();
    let query_ran = records
        .iter()
        .find(|l| format!("{:?}", l.body).contains("query ran"))
        .unwrap();
    assert_eq!(query_ran.span_id, query.span_id);
    assert_eq!(query_ran.trace_id, query.trace_id);
}
