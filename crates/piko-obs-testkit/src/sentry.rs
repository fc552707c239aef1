//! Sentry envelopes as a Sentry endpoint receives them, parsed with Sentry's own types.

use sentry_core::Envelope;
use sentry_core::protocol::{EnvelopeItem, Event};

use crate::sink::Recorded;

/// The events in the envelopes posted to a sink, in arrival order. Requests that are not
/// envelopes are skipped.
pub fn events(requests: &[Recorded]) -> Vec<Event<'static>> {
    requests
        .iter()
        .filter_map(|r| Envelope::from_slice(&r.body).ok())
        .flat_map(|envelope| {
            envelope
                .items()
                .filter_map(|item| match item {
                    EnvelopeItem::Event(e) => Some((**e).clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect()
}
