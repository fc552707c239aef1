//! Operations in spans with `piko_obs::otlp::run_in_span`: each runs in its own span,
//! and the logger it is handed writes lines that carry the span's `trace_id` and
//! `span_id`.
//!
//! It runs two operations:
//! - `checkout` (attribute `order.id`), which runs `charge card` (attribute
//!   `amount.cents`) inside it: `charge card` is a child span of `checkout`, so both
//!   have the same trace id. Lines in `checkout`: `Checkout started`, `Checkout
//!   completed`; in `charge card`: `Charging card`, `Card charged`. The caller then logs
//!   `Checkout paid` (outside any span);
//! - `refund`, which fails: inside it, `Refund requested`; its error (`card issuer
//!   declined the refund`) is recorded on the span as an `exception` event with status
//!   ERROR, and returned unchanged; the caller logs it as the WARN line `Refund failed`
//!   (outside the span, so without span ids).
//!
//! It prints JSON log lines on stdout (`RunMode::Prod`) and ends with `Done`. With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set (the facade reads the standard `OTEL_*` variables
//! itself), the three spans and every log line are exported over OTLP (gRPC by default)
//! and flushed by the shutdown; without it no span is recorded, and the lines carry no
//! ids.
//!
//! ```sh
//! cargo run -p piko-obs --example run_in_span
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run -p piko-obs --example run_in_span
//! ```
//!
//! The probe server runs on a free loopback port. Exit: it ends by itself, within a
//! second without a collector, and within the shutdown's bound (10 s) when the collector
//! does not answer; 0 when the shutdown went well, 1 otherwise, 2 when piko-obs cannot
//! start (a bad `OTEL_*` value, say).

use std::process::ExitCode;
use std::time::Duration;

use piko_obs::RunMode;
use piko_obs::logger::{self, Logger, attr};
use piko_obs::otlp::{opentelemetry_kv as kv, run_in_span};

/// Why a payment operation failed.
#[derive(Debug)]
struct PaymentError(&'static str);

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for PaymentError {}

/// The order paid for by `checkout`.
const ORDER_ID: i64 = 42;

/// The amount `charge card` charges, in cents.
const AMOUNT_CENTS: u64 = 4200;

/// `checkout`, with `charge card` nested in it: returns the amount charged.
async fn checkout(log: &Logger) -> Result<u64, PaymentError> {
    run_in_span(
        log,
        "checkout",
        vec![kv("order.id", ORDER_ID)],
        |log| async move {
            log.info("Checkout started", &[attr::int("order_id", ORDER_ID)]);
            let charged = run_in_span(
                &log,
                "charge card",
                vec![kv("amount.cents", AMOUNT_CENTS as i64)],
                |log| async move {
                    log.info("Charging card", &[attr::uint("amount_cents", AMOUNT_CENTS)]);
                    // The payment provider's round trip.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    log.info("Card charged", &[attr::uint("amount_cents", AMOUNT_CENTS)]);
                    Ok::<_, PaymentError>(AMOUNT_CENTS)
                },
            )
            .await?;
            log.info("Checkout completed", &[attr::uint("amount_cents", charged)]);
            Ok(charged)
        },
    )
    .await
}

/// `refund`, which the card issuer declines: the error is recorded on its span.
async fn refund(log: &Logger) -> Result<(), PaymentError> {
    run_in_span(
        log,
        "refund",
        vec![kv("order.id", ORDER_ID)],
        |log| async move {
            log.info("Refund requested", &[attr::int("order_id", ORDER_ID)]);
            Err(PaymentError("card issuer declined the refund"))
        },
    )
    .await
}

fn main() -> ExitCode {
    let guard = match piko_obs::builder()
        .with_run_mode(RunMode::Prod)
        .with_service_name("run_in_span")
        .with_health_probe_port(0)
        .with_shutdown_drain_delay(Duration::ZERO)
        .init()
    {
        Ok(g) => g,
        Err(e) => {
            eprintln!("run_in_span: {e}");
            return ExitCode::from(2);
        }
    };
    let log = logger::get_logger("run_in_span");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        match checkout(&log).await {
            Ok(cents) => log.info("Checkout paid", &[attr::uint("amount_cents", cents)]),
            Err(e) => log.warn("Checkout failed", &[attr::error(&e)]),
        }
        if let Err(e) = refund(&log).await {
            log.warn("Refund failed", &[attr::error(&e)]);
        }
    });
    log.info("Done", &[]);
    if let Err(e) = guard.shutdown() {
        eprintln!("run_in_span: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
