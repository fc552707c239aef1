//! The exporters of one signal, as `OTEL_<SIGNAL>_EXPORTER` lists them: OTLP, the
//! console (`opentelemetry-stdout`), or both, behind one exporter, so that a signal
//! keeps one bounded processor (or one periodic reader) and one set of counters
//! whatever the list.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// OTLP, the console, or both, for one signal. A batch goes to the console first (it
/// takes no network round trip), then over OTLP; it counts as exported when both took
/// it. The console exporter writes with `println!`, which panics when standard output
/// is a closed pipe: that batch then fails (counted), the console is left out from
/// then on, and the export thread carries on with OTLP.
#[derive(Debug)]
pub(crate) struct Exporters<O, C> {
    otlp: Option<O>,
    console: Option<C>,
    /// Writing to standard output panicked once: the console is left out.
    console_broken: AtomicBool,
}

impl<O, C> Exporters<O, C> {
    /// The exporters of one signal; `None` for one not listed.
    pub(crate) fn new(otlp: Option<O>, console: Option<C>) -> Exporters<O, C> {
        Exporters {
            otlp,
            console,
            console_broken: AtomicBool::new(false),
        }
    }

    /// Runs `export` on the console exporter, if there is one that still works.
    async fn to_console<'a, F: Future<Output = OTelSdkResult> + 'a>(
        &'a self,
        export: impl FnOnce(&'a C) -> F,
    ) -> OTelSdkResult {
        let Some(console) = &self.console else {
            return Ok(());
        };
        if self.console_broken.load(Ordering::Relaxed) {
            return Err(OTelSdkError::InternalFailure(
                "the console exporter stopped: standard output could not be written".into(),
            ));
        }
        match (CatchUnwind(Box::pin(export(console)))).await {
            Ok(r) => r,
            Err(()) => {
                self.console_broken.store(true, Ordering::Relaxed);
                Err(OTelSdkError::InternalFailure(
                    "the console exporter could not write to standard output".into(),
                ))
            }
        }
    }

    /// `f` on each exporter present; the first failure, after every one ran.
    fn each(&self, f: impl Fn(Exporter<'_, O, C>) -> OTelSdkResult) -> OTelSdkResult {
        let console = self.console.as_ref().map(|c| f(Exporter::Console(c)));
        let otlp = self.otlp.as_ref().map(|o| f(Exporter::Otlp(o)));
        otlp.unwrap_or(Ok(())).and(console.unwrap_or(Ok(())))
    }
}

/// One of the exporters, for [`Exporters::each`].
enum Exporter<'a, O, C> {
    Otlp(&'a O),
    Console(&'a C),
}

/// A future that turns a panic while it is polled into `Err(())`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// `shutdown_with_timeout` (each exporter, the first failure) and `set_resource` (each
/// exporter), the same for spans and log records.
macro_rules! shutdown_and_resource {
    () => {
        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.each(|e| match e {
                Exporter::Otlp(o) => o.shutdown_with_timeout(timeout),
                Exporter::Console(c) => c.shutdown_with_timeout(timeout),
            })
        }

        fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
            if let Some(o) = &mut self.otlp {
                o.set_resource(resource);
            }
            if let Some(c) = &mut self.console {
                c.set_resource(resource);
            }
        }
    };
}

/// `force_flush` of each exporter, the first failure, the same for spans and metrics.
macro_rules! force_flush_each {
    () => {
        fn force_flush(&self) -> OTelSdkResult {
            self.each(|e| match e {
                Exporter::Otlp(o) => o.force_flush(),
                Exporter::Console(c) => c.force_flush(),
            })
        }
    };
}

impl<O: SpanExporter, C: SpanExporter> SpanExporter for Exporters<O, C> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let (to_console, to_otlp) = match self.otlp {
            Some(_) if self.console.is_some() => (batch.clone(), batch),
            Some(_) => (Vec::new(), batch),
            None => (batch, Vec::new()),
        };
        let console = self.to_console(|c| c.export(to_console)).await;
        let otlp = match &self.otlp {
            Some(o) => o.export(to_otlp).await,
            None => Ok(()),
        };
        otlp.and(console)
    }

    force_flush_each!();

    shutdown_and_resource!();
}

impl<O: LogExporter, C: LogExporter> LogExporter for Exporters<O, C> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let records: Vec<_> = batch.iter().collect();
        let console = self.to_console(|c| c.export(LogBatch::new(&records))).await;
        let otlp = match &self.otlp {
            Some(o) => o.export(LogBatch::new(&records)).await,
            None => Ok(()),
        };
        otlp.and(console)
    }

    shutdown_and_resource!();
}

impl<O: PushMetricExporter, C: PushMetricExporter> PushMetricExporter for Exporters<O, C> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let console = self.to_console(|c| c.export(metrics)).await;
        let otlp = match &self.otlp {
            Some(o) => o.export(metrics).await,
            None => Ok(()),
        };
        otlp.and(console)
    }

    force_flush_each!();

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.each(|e| match e {
            Exporter::Otlp(o) => o.shutdown_with_timeout(timeout),
            Exporter::Console(c) => c.shutdown_with_timeout(timeout),
        })
    }

    /// Both are built with the temporality of the settings.
    fn temporality(&self) -> Temporality {
        match (&self.otlp, &self.console) {
            (Some(o), _) => o.temporality(),
            (None, Some(c)) => c.temporality(),
            (None, None) => Temporality::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A console exporter whose every write fails as `println!` does on a closed pipe.
    #[derive(Debug, Default)]
    struct ClosedStdout {
        calls: AtomicUsize,
    }

    impl SpanExporter for ClosedStdout {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            self.calls.fetch_add(1, Ordering::Relaxed);
            panic!("failed printing to stdout: Broken pipe (os error 32)");
        }
    }

    /// A console exporter that panics fails its batch once, is left out from then on,
    /// and the exporters carry on.
    #[test]
    fn a_console_that_cannot_write_fails_its_batch_and_is_left_out() {
        let exporters: Exporters<opentelemetry_stdout::SpanExporter, ClosedStdout> =
            Exporters::new(None, Some(ClosedStdout::default()));
        for _ in 0..3 {
            let r = futures_executor::block_on(exporters.export(Vec::new()));
            assert!(
                matches!(&r, Err(OTelSdkError::InternalFailure(m)) if m.contains("standard output")),
                "{r:?}"
            );
        }
        let calls = exporters
            .console
            .as_ref()
            .map(|c| c.calls.load(Ordering::Relaxed));
        assert_eq!(calls, Some(1), "not called again once it panicked");
        assert!(
            exporters
                .shutdown_with_timeout(Duration::from_secs(1))
                .is_ok()
        );
    }
}
