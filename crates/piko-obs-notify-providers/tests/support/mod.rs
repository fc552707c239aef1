//! What the providers' suites share: a dispatcher whose dead letters go to a file.

use std::sync::Arc;

/// A dispatcher for `service` (started on the current tokio runtime) whose dead letters
/// go to a JSON-lines file at `path`, attached to `service`; and the file store.
pub fn attach_file_dispatcher(
    service: &piko_obs_notify::NotificationService,
    path: &std::path::Path,
    config: piko_obs_notify::DispatcherConfig,
) -> (
    piko_obs_notify::Dispatcher,
    Arc<piko_obs_notify_providers::FileDeadLetterStore>,
) {
    let store = Arc::new(
        piko_obs_notify_providers::FileDeadLetterStore::open(path).expect("dead-letter file"),
    );
    let d = piko_obs_notify::Dispatcher::start(
        &tokio::runtime::Handle::current(),
        service,
        store.clone(),
        config,
    )
    .expect("dispatcher");
    service.attach_dispatcher(d.clone()).expect("attach");
    (d, store)
}
