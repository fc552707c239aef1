//! Carrying a logger through code, synchronous or async (Piko's `WithLogger`, `From`,
//! `MustFrom` and `HasLogger`), without depending on any async runtime.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::hub::Logger;

thread_local! {
    static CURRENT: RefCell<Option<Logger>> = const { RefCell::new(None) };
}

/// Puts `logger` in place for the duration of `f`, restoring the previous one after,
/// even if `f` panics.
pub fn in_scope<R>(logger: &Logger, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Logger>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| c.borrow_mut().replace(logger.clone()));
    let _restore = Restore(prev);
    f()
}

/// A future that has `logger` in place while it runs (Piko's `WithLogger`).
///
/// ```
/// use piko_obs_logger::{Hub, context};
/// let hub = Hub::default();
/// let log = hub.get_logger("req").with(&[piko_obs_logger::attr::string("request_id", "r-1")]);
/// let fut = context::with_logger(log, async {
///     assert!(context::has_logger());
///     context::expect_current().name().to_string()
/// });
/// # let name = futures_lite_block_on(fut);
/// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     use std::task::{Context, Poll, Waker};
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// assert_eq!(name, "req");
/// assert!(!context::has_logger());
/// ```
pub fn with_logger<F: Future>(logger: Logger, fut: F) -> WithLogger<F> {
    WithLogger {
        logger,
        fut: Box::pin(fut),
    }
}

/// The future returned by [`with_logger`].
#[must_use = "futures do nothing unless polled"]
pub struct WithLogger<F> {
    logger: Logger,
    fut: Pin<Box<F>>,
}

impl<F> std::fmt::Debug for WithLogger<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithLogger")
            .field("logger", &self.logger)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for WithLogger<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let fut = &mut this.fut;
        in_scope(&this.logger, || fut.as_mut().poll(cx))
    }
}

/// The logger in place, if any.
pub fn current() -> Option<Logger> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The logger in place, or `fallback` (Piko's `From`).
pub fn from_context(fallback: &Logger) -> Logger {
    current().unwrap_or_else(|| fallback.clone())
}

/// The logger in place; panics when there is none (Piko's `MustFrom`).
///
/// # Panics
/// With the message `logger: no logger in context - wrap the task with with_logger`.
pub fn expect_current() -> Logger {
    current().expect("logger: no logger in context - wrap the task with with_logger")
}

/// Whether a logger is in place (Piko's `HasLogger`).
pub fn has_logger() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}
