//! The values a service fills into every notification's context that leaves them
//! empty (source, environment, service, trace id). Shared by the service, the
//! dispatcher's workers and the dead-letter writer; depends on the model only.

use std::sync::Arc;

use crate::model::Notification;

/// Gives the trace id of the caller's current span, if any.
pub(crate) type TraceIdSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Values filled into every notification's context when it leaves them empty.
#[derive(Clone, Default)]
pub(crate) struct Defaults {
    pub(crate) source: String,
    pub(crate) environment: String,
    pub(crate) service: String,
    /// Where the trace id of a notification without one comes from.
    pub(crate) trace_id: Option<TraceIdSource>,
}

impl Defaults {
    /// Fills the context's source, environment and service where they are empty
    /// (for a queued notification, on the worker's or the writer's thread).
    pub(crate) fn fill(&self, n: &mut Notification) {
        let c = &mut n.context;
        for (field, default) in [
            (&mut c.source, &self.source),
            (&mut c.environment, &self.environment),
            (&mut c.service, &self.service),
        ] {
            if field.is_empty() {
                field.clone_from(default);
            }
        }
    }
}
