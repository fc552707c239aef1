//! ERROR logs forwarded as alerts: an [`Output`] of the piko-obs log hub that groups the
//! records it receives by message and call site over a fixed window and hands one
//! notification per group to the [`NotificationService`].
//!
//! An adapter between two subsystems: it implements the output port of
//! `piko-obs-logger` and sends through the service of `piko-obs-notify`, so that
//! neither of those depends on the other. Whoever composes them (the facade
//! `piko-obs` does) starts it on a runtime and adds it to a log hub under
//! [`ERROR_FORWARDER_OUTPUT`].
//!
//! - [`ErrorForwarderConfig`]: the threshold, the window, the caps, the ignored
//!   loggers, the providers and the quiet time before a resolved alert, checked by
//!   [`validate`](ErrorForwarderConfig::validate) ([`ForwarderConfigError`]);
//! - [`ErrorForwarder`]: the output itself, with its [`ForwarderStats`];
//! - [`priority_for_level`]: the priority an alert of a level gets;
//! - [`setup::ForwarderSetup`]: a process's forwarder from its configuration, checked
//!   before anything starts, and the process-wide forwarder ([`setup::global`]).
//!
//! Inside, `config` holds the configuration, `group` the groups of a window and the
//! alerts made of them; the crate root holds the forwarder, which uses both.
//!
//! The write path only takes a short mutex: it counts a record into its group, or
//! renders the fields of the first record of a new group (outside the lock) and stores
//! them. A task on the runtime given to [`ErrorForwarder::start`] wakes when a window
//! opens, sleeps the window, and sends the groups, at most
//! [`max_alerts_per_minute`](ErrorForwarderConfig::max_alerts_per_minute) per rolling
//! minute. [`Output::flush`] and [`Output::close`] send what is pending in the calling
//! thread, so the facade's shutdown delivers it.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use piko_obs_logger::{FlushError, Output, OutputStats, Record};
use piko_obs_notify::{EnqueueError, Notification, NotificationService, alert};
use tokio::sync::Notify;

mod config;
mod group;
pub mod setup;
pub mod telemetry;

pub use config::{ErrorForwarderConfig, ForwarderConfigError};
pub use group::{ALERT_TITLE_SUFFIX, MAX_ALERT_FIELD_CHARS, MAX_ALERT_FIELDS, priority_for_level};

use group::{Group, Pending, resolved};

/// The name the forwarder gives itself in [`FlushError`]s (the facade adds it to the
/// hub under this name).
pub const ERROR_FORWARDER_OUTPUT: &str = "error-alerts";

/// The [`ErrorForwarder`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwarderStats {
    /// Records counted into a group.
    pub records_grouped: u64,
    /// Alerts handed to the service (queued, dead-lettered by the dispatcher, or, with
    /// no dispatcher, sent by a task).
    pub groups_sent: u64,
    /// Alerts the service refused (the dispatcher's queue and dead-letter queue full).
    pub handoff_failed: u64,
    /// Alerts sent by a task (no dispatcher) whose delivery failed after the retries.
    pub send_failed: u64,
    /// Distinct groups dropped because a window already held `max_groups` groups.
    pub dropped_groups: u64,
    /// Records not grouped: records of dropped groups, and records after `close`.
    pub dropped_records: u64,
    /// Groups not sent because of the rate limit.
    pub rate_limited_groups: u64,
    /// Records below the threshold or from an ignored logger.
    pub ignored: u64,
    /// Resolved alerts handed to the service (groups quiet for `resolve_after`).
    pub resolved_sent: u64,
    /// Sent groups not followed for a resolved alert, because `max_groups` alerts were
    /// already followed (they end by themselves when their lease runs out).
    pub untracked_alerts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    records_grouped: AtomicU64,
    groups_sent: AtomicU64,
    handoff_failed: AtomicU64,
    send_failed: AtomicU64,
    dropped_groups: AtomicU64,
    dropped_records: AtomicU64,
    rate_limited_groups: AtomicU64,
    ignored: AtomicU64,
    resolved_sent: AtomicU64,
    untracked_alerts: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// An alert sent and not yet resolved.
#[derive(Debug)]
struct Active {
    /// The last alert sent for the group.
    firing: Notification,
    /// When it was sent: the group is quiet from then on unless a window has it again.
    sent: Instant,
}

/// The sending side: the rate limit and what the next alert reports.
#[derive(Debug, Default)]
struct Sender {
    /// When the alerts of the last period were sent, oldest first.
    sent_at: VecDeque<Instant>,
    /// Dropped groups not reported yet.
    dropped: u64,
    /// Rate-limited groups not reported yet.
    rate_limited: u64,
}

impl Sender {
    /// Takes a token of the sliding window, if one is free.
    fn admit(&mut self, now: Instant, max: u32, period: Duration) -> bool {
        while let Some(&t) = self.sent_at.front() {
            if now.saturating_duration_since(t) >= period {
                self.sent_at.pop_front();
            } else {
                break;
            }
        }
        if self.sent_at.len() < usize::try_from(max).unwrap_or(usize::MAX) {
            self.sent_at.push_back(now);
            true
        } else {
            false
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Inner {
    config: ErrorForwarderConfig,
    service: NotificationService,
    handle: tokio::runtime::Handle,
    hasher: RandomState,
    /// Lock order: `sender`, then `pending`, then `active`. `write` takes `pending`
    /// only.
    pending: Mutex<Pending>,
    sender: Mutex<Sender>,
    /// The alerts sent and not yet resolved, by group key (at most `max_groups`).
    active: Mutex<HashMap<String, Active>>,
    wake: Arc<Notify>,
    closed: AtomicBool,
    counters: Arc<Counters>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
    }
}

enum Step {
    Done,
    NewGroup,
}

impl Inner {
    /// Counts a record into its group if it has one, or drops it at the cap.
    fn count(&self, hash: u64, r: &Record<'_>) -> Step {
        let src = r.source();
        let mut p = lock(&self.pending);
        if p.closed {
            bump(&self.counters.dropped_records);
            return Step::Done;
        }
        if let Some(g) = p.find_mut(hash, r.msg(), src.file, src.line) {
            g.count += 1;
            g.last_seen = g.last_seen.max(r.time());
            bump(&self.counters.records_grouped);
            return Step::Done;
        }
        if p.groups.len() >= self.config.max_groups {
            if p.drop_group(hash, self.config.max_groups) {
                bump(&self.counters.dropped_groups);
            }
            bump(&self.counters.dropped_records);
            return Step::Done;
        }
        Step::NewGroup
    }

    /// Adds a new group (rendered outside the lock), unless another thread made it or
    /// the cap was reached meanwhile.
    fn add(&self, g: Group) {
        let opened = {
            let mut p = lock(&self.pending);
            if p.closed {
                bump(&self.counters.dropped_records);
                return;
            }
            if let Some(e) = p.find_mut(g.hash, &g.msg, g.file, g.line) {
                e.count += 1;
                e.last_seen = e.last_seen.max(g.last_seen);
                bump(&self.counters.records_grouped);
                return;
            }
            if p.groups.len() >= self.config.max_groups {
                if p.drop_group(g.hash, self.config.max_groups) {
                    bump(&self.counters.dropped_groups);
                }
                bump(&self.counters.dropped_records);
                return;
            }
            p.insert(g);
            bump(&self.counters.records_grouped);
            if p.window_start.is_none() {
                p.window_start = Some(Instant::now());
                true
            } else {
                false
            }
        };
        if opened {
            self.wake.notify_one();
        }
    }

    fn window_start(&self) -> Option<Instant> {
        lock(&self.pending).window_start
    }

    /// Sends the pending groups: those of the window opened at `window` (nothing if
    /// that window was already sent), or whatever is pending when `window` is `None`.
    /// Stops at `deadline` and puts the groups not handed over back; returns how many.
    fn send_pending(&self, window: Option<Instant>, deadline: Option<Instant>) -> usize {
        let mut sender = lock(&self.sender);
        let (groups, dropped) = {
            let mut p = lock(&self.pending);
            if window.is_some() && p.window_start != window {
                return 0;
            }
            p.take()
        };
        sender.dropped += dropped;
        let mut groups = groups.into_iter();
        while let Some(g) = groups.next() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let rest: Vec<Group> = std::iter::once(g).chain(groups).collect();
                let left = rest.len();
                self.restore(rest);
                return left;
            }
            let period = self.config.rate_period;
            if !sender.admit(Instant::now(), self.config.max_alerts_per_minute, period) {
                sender.rate_limited += 1;
                bump(&self.counters.rate_limited_groups);
                continue;
            }
            let mut n =
                g.into_notification(sender.dropped, sender.rate_limited, self.config.lease());
            n.providers.clone_from(&self.config.providers);
            if self.config.resolve_after.is_some() {
                self.follow(&n);
            }
            if self.hand_off(n) {
                sender.dropped = 0;
                sender.rate_limited = 0;
                bump(&self.counters.groups_sent);
            } else {
                bump(&self.counters.handoff_failed);
            }
        }
        0
    }

    /// Follows a firing alert until it is resolved.
    fn follow(&self, n: &Notification) {
        let Some(key) = n.content.fields.get(alert::GROUP_KEY_FIELD) else {
            return;
        };
        let mut active = lock(&self.active);
        let known = active.contains_key(key);
        if !known && active.len() >= self.config.max_groups {
            bump(&self.counters.untracked_alerts);
            return;
        }
        active.insert(
            key.to_string(),
            Active {
                firing: n.clone(),
                sent: Instant::now(),
            },
        );
        drop(active);
        if !known {
            // The flush task may be asleep with no deadline: it has one now.
            self.wake.notify_one();
        }
    }

    /// Sends resolved the alerts whose group has been quiet for `resolve_after` by
    /// `now`; returns when the next one will be.
    fn resolve_quiet(&self, now: Instant) -> Option<Instant> {
        let quiet = self.config.resolve_after?;
        let mut due = Vec::new();
        let next = {
            let mut active = lock(&self.active);
            active.retain(|_, a| {
                let over = now.saturating_duration_since(a.sent) >= quiet;
                if over {
                    due.push(a.firing.clone());
                }
                !over
            });
            active.values().map(|a| a.sent + quiet).min()
        };
        for firing in due {
            if self.hand_off(resolved(firing)) {
                bump(&self.counters.resolved_sent);
            } else {
                bump(&self.counters.handoff_failed);
            }
        }
        next
    }

    /// Puts groups that could not be sent in time back into the current window.
    fn restore(&self, groups: Vec<Group>) {
        let opened = {
            let mut p = lock(&self.pending);
            for g in groups {
                if let Some(e) = p.find_mut(g.hash, &g.msg, g.file, g.line) {
                    e.count += g.count;
                    e.first_seen = e.first_seen.min(g.first_seen);
                    e.last_seen = e.last_seen.max(g.last_seen);
                } else if p.groups.len() < self.config.max_groups {
                    p.insert(g);
                } else if p.drop_group(g.hash, self.config.max_groups) {
                    bump(&self.counters.dropped_groups);
                }
            }
            let open = p.window_start.is_none() && !p.groups.is_empty();
            if open {
                p.window_start = Some(Instant::now());
            }
            open
        };
        if opened {
            self.wake.notify_one();
        }
    }

    /// Hands one alert to the service: to the dispatcher, or, with none attached, to a
    /// task that sends it with the retry policy.
    fn hand_off(&self, n: Notification) -> bool {
        match self.service.enqueue(n.clone()) {
            Ok(_) => true,
            Err(EnqueueError::NoDispatcher) => {
                let service = self.service.clone();
                let counters = self.counters.clone();
                drop(self.handle.spawn(async move {
                    if service.send_with_retries(n).await.is_err() {
                        bump(&counters.send_failed);
                    }
                }));
                true
            }
            Err(_) => false,
        }
    }

    fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let start = Instant::now();
        let left = self.send_pending(None, start.checked_add(timeout));
        if left == 0 {
            Ok(())
        } else {
            Err(FlushError::Timeout {
                output: ERROR_FORWARDER_OUTPUT.into(),
                pending: left as u64,
                waited: start.elapsed(),
            })
        }
    }
}

/// The flush task: waits for a window to open, sleeps until it ends, sends it; and
/// sends resolved the alerts whose group went quiet. Holds the forwarder only while it
/// works, so dropping the last handle ends it.
async fn run(inner: Weak<Inner>, wake: Arc<Notify>, window: Duration) {
    loop {
        let (start, next_resolve) = match inner.upgrade() {
            Some(i) if !i.closed.load(Ordering::Acquire) => {
                (i.window_start(), i.resolve_quiet(Instant::now()))
            }
            _ => return,
        };
        // A window too long to end has no end: only `flush` and `close` send it.
        let end = start.and_then(|s| s.checked_add(window));
        if let (Some(start), Some(end)) = (start, end)
            && Instant::now() >= end
        {
            let Some(i) = inner.upgrade() else { return };
            i.send_pending(Some(start), None);
            continue;
        }
        // A record that opens a window, or an alert newly followed, leaves a permit.
        match end.into_iter().chain(next_resolve).min() {
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                let _woken = tokio::time::timeout_at(at, wake.notified()).await;
            }
            None => wake.notified().await,
        }
    }
}

/// ERROR logs forwarded as alerts: an [`Output`] of the log hub that groups records by
/// message and call site (attributes ignored) over a fixed window, then hands one
/// [`Notification`] per group to the [`NotificationService`].
///
/// Each alert has the title `<LEVEL>: Application Error`, the log message, a priority
/// from the level (see [`priority_for_level`]), the source `logger`, the trace id of
/// the first record (its `trace_id` field) and, in order, the fields `occurrences`,
/// `first_seen`, `last_seen` (RFC 3339, UTC), `source` (`file:line`), `logger`,
/// `error_group` (the group's [key](alert::group_key), the same on every replica), the
/// first record's fields (secret values masked, errors as their chain joined with
/// `: `; a field named like one of the forwarder's is shown as `attr.<name>`), and
/// `dropped_groups` / `rate_limited_groups` when groups were dropped at the cap or held
/// back by the rate limit since the previous alert.
///
/// For an alert manager, each alert also carries the [`alert`] options: the name
/// [`ApplicationError`](alert::FORWARDED_ALERTNAME), `error_group` as a label, the
/// status `firing` and a lease ([`ErrorForwarderConfig::lease`]); and, for PagerDuty,
/// `dedup_key` = the group's key, so that one incident stands for the group on every
/// replica. While the fault goes on, every window that has records of the group sends
/// the alert again, each time renewing its lease, so it cannot expire; once the group
/// has had no record for [`resolve_after`](ErrorForwarderConfig::resolve_after) since
/// its last alert was sent, the forwarder sends it once more as resolved (title
/// `RESOLVED: ...`, status `resolved`, `alert_ends_at` now, PagerDuty's `event_action`
/// `resolve`), not counted in the rate limit. At most `max_groups` alerts are followed
/// so; an alert not followed, or one whose process stopped, ends when its lease runs
/// out.
///
/// Cheap to clone; every clone is the same forwarder.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use piko_obs_logger::{Hub, Level, Output};
/// use piko_obs_error_alerts::{ErrorForwarder, ErrorForwarderConfig};
/// use piko_obs_notify::{NoopNotifier, NotificationService};
///
/// let service = NotificationService::default();
/// service.register("pager", NoopNotifier).unwrap();
/// let forwarder = ErrorForwarder::start(
///     &tokio::runtime::Handle::current(),
///     service,
///     ErrorForwarderConfig::default(),
/// )
/// .unwrap();
/// let hub = Hub::builder().with_error_backtraces(false).build();
/// hub.add_output("error-alerts", Level::ERROR, forwarder.clone()).unwrap();
///
/// let log = hub.get_logger("payments");
/// for _ in 0..3 {
///     log.error("charge failed", &[]);
/// }
/// assert_eq!(forwarder.pending_groups(), 1);
/// forwarder.close(Duration::from_secs(1)).unwrap();
/// assert_eq!(forwarder.stats().groups_sent, 1);
/// # });
/// ```
#[derive(Clone)]
pub struct ErrorForwarder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ErrorForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorForwarder")
            .field("config", &self.inner.config)
            .field("pending_groups", &self.pending_groups())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ErrorForwarder {
    /// Checks `config` and starts the flush task on `handle` (its runtime needs the
    /// time driver). Alerts go to `service`: to its dispatcher when one is attached,
    /// else each is sent by a task on `handle`.
    pub fn start(
        handle: &tokio::runtime::Handle,
        service: NotificationService,
        config: ErrorForwarderConfig,
    ) -> Result<ErrorForwarder, ForwarderConfigError> {
        config.validate()?;
        let wake = Arc::new(Notify::new());
        let window = config.window;
        let inner = Arc::new(Inner {
            config,
            service,
            handle: handle.clone(),
            hasher: RandomState::new(),
            pending: Mutex::new(Pending::default()),
            sender: Mutex::new(Sender::default()),
            active: Mutex::new(HashMap::new()),
            wake: wake.clone(),
            closed: AtomicBool::new(false),
            counters: Arc::new(Counters::default()),
            task: Mutex::new(None),
        });
        let task = handle.spawn(run(Arc::downgrade(&inner), wake, window));
        *lock(&inner.task) = Some(task);
        Ok(ErrorForwarder { inner })
    }

    /// The configuration.
    pub fn config(&self) -> &ErrorForwarderConfig {
        &self.inner.config
    }

    /// The counters.
    pub fn stats(&self) -> ForwarderStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ForwarderStats {
            records_grouped: get(&c.records_grouped),
            groups_sent: get(&c.groups_sent),
            handoff_failed: get(&c.handoff_failed),
            send_failed: get(&c.send_failed),
            dropped_groups: get(&c.dropped_groups),
            dropped_records: get(&c.dropped_records),
            rate_limited_groups: get(&c.rate_limited_groups),
            ignored: get(&c.ignored),
            resolved_sent: get(&c.resolved_sent),
            untracked_alerts: get(&c.untracked_alerts),
        }
    }

    /// Groups waiting for the end of their window.
    pub fn pending_groups(&self) -> usize {
        lock(&self.inner.pending).groups.len()
    }

    /// Whether the flush task has ended (after `close`, or if the runtime stopped).
    #[cfg(test)]
    fn task_finished(&self) -> bool {
        lock(&self.inner.task)
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
    }
}

impl Output for ErrorForwarder {
    /// Counts the record into its group, or starts a group (and, with it, a window).
    /// Records below the threshold or from an ignored logger are only counted.
    fn write(&self, record: &Record<'_>) {
        let inner = &*self.inner;
        if record.level() < inner.config.threshold || inner.config.is_ignored(record.logger()) {
            bump(&inner.counters.ignored);
            return;
        }
        if inner.closed.load(Ordering::Acquire) {
            bump(&inner.counters.dropped_records);
            return;
        }
        let src = record.source();
        let hash = inner.hasher.hash_one((record.msg(), src.file, src.line));
        if let Step::NewGroup = inner.count(hash, record) {
            inner.add(Group::from_record(record, hash));
        }
    }

    /// Hands the pending groups to the service now, whatever their window, within the
    /// rate limit, in the calling thread (no runtime needed; never blocks on one). At
    /// `timeout`, the groups not yet handed over stay pending and the error says how
    /// many.
    fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        self.inner.flush(timeout)
    }

    /// Flushes, then stops the flush task; later records are dropped and counted. A
    /// second call does nothing more.
    fn close(&self, timeout: Duration) -> Result<(), FlushError> {
        let inner = &*self.inner;
        inner.closed.store(true, Ordering::Release);
        lock(&inner.pending).closed = true;
        let result = inner.flush(timeout);
        if let Some(t) = lock(&inner.task).as_ref() {
            t.abort();
        }
        result
    }

    /// `accepted`: records at or above the threshold from loggers not ignored;
    /// `written`: those counted into a group; `dropped`: the others; `write_errors`:
    /// alerts refused by the service or failed when sent without a dispatcher.
    fn stats(&self) -> OutputStats {
        let s = self.stats();
        OutputStats {
            accepted: s.records_grouped + s.dropped_records,
            written: s.records_grouped,
            dropped: s.dropped_records,
            write_errors: s.handoff_failed + s.send_failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use piko_obs_logger::{Hub, Level, REDACTED, SecretKeys, Source, attr};
    use piko_obs_notify::{Notifier, Priority, SendError, alert};

    /// A provider that keeps what it is sent.
    #[derive(Clone, Default)]
    struct Recording(Arc<Mutex<Vec<Notification>>>);

    impl Notifier for Recording {
        async fn send(&self, n: &Notification) -> Result<(), SendError> {
            lock(&self.0).push(n.clone());
            Ok(())
        }
    }

    impl Recording {
        fn got(&self) -> Vec<Notification> {
            lock(&self.0).clone()
        }
        /// Waits (at most 5 s) for `n` notifications.
        async fn wait_for(&self, n: usize) -> Vec<Notification> {
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                let got = self.got();
                if got.len() >= n || Instant::now() >= end {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// A forwarder sending through a recording provider (no dispatcher: each alert is
    /// sent by a task), added to a hub that takes every level.
    fn setup(config: ErrorForwarderConfig) -> (ErrorForwarder, Recording, Hub) {
        let rec = Recording::default();
        let service = NotificationService::default();
        service.register("recording", rec.clone()).unwrap();
        let fwd =
            ErrorForwarder::start(&tokio::runtime::Handle::current(), service, config).unwrap();
        let hub = Hub::builder().with_error_backtraces(false).build();
        hub.add_output(ERROR_FORWARDER_OUTPUT, Level::TRACE, fwd.clone())
            .unwrap();
        (fwd, rec, hub)
    }

    fn field<'a>(n: &'a Notification, name: &str) -> Option<&'a str> {
        n.content.fields.get(name)
    }

    fn flush(fwd: &ErrorForwarder) {
        Output::flush(fwd, Duration::from_secs(1)).unwrap();
    }

    #[tokio::test]
    async fn records_group_by_message_and_call_site_not_by_attributes() {
        let (fwd, rec, hub) = setup(ErrorForwarderConfig::default());
        let log = hub.get_logger("app");
        for i in 0..3 {
            log.error("db down", &[attr::int("attempt", i)]);
        }
        log.error("db down", &[attr::int("attempt", 9)]); // another line: another group
        for m in ["a", "b"] {
            log.error(m, &[]); // another message at one line: one group each
        }
        assert_eq!(fwd.pending_groups(), 4);
        // Another file at the same line is another group too.
        let secrets = SecretKeys::default();
        for file in ["x.rs", "y.rs"] {
            let src = Source {
                file,
                line: 7,
                module: None,
            };
            fwd.write(&Record::new(Level::ERROR, "m", "app", &src, &[], &secrets));
        }
        assert_eq!(fwd.pending_groups(), 6);
        flush(&fwd);
        let got = rec.wait_for(6).await;
        assert_eq!(got.len(), 6);
        let counts: Vec<_> = got.iter().map(|n| field(n, "occurrences")).collect();
        assert_eq!(
            counts,
            [
                Some("3"),
                Some("1"),
                Some("1"),
                Some("1"),
                Some("1"),
                Some("1")
            ]
        );
        // The group keeps the first record's fields.
        assert_eq!(got[0].content.message, "db down");
        assert_eq!(field(&got[0], "attempt"), Some("0"));
        assert_eq!(field(&got[1], "attempt"), Some("9"));
        assert_ne!(field(&got[0], "source"), field(&got[1], "source"));
        assert_eq!(field(&got[4], "source"), Some("x.rs:7"));
        assert_eq!(field(&got[5], "source"), Some("y.rs:7"));
        let s = fwd.stats();
        assert_eq!((s.records_grouped, s.groups_sent, s.ignored), (8, 6, 0));
        assert_eq!(fwd.pending_groups(), 0);
    }

    #[derive(Debug)]
    struct ChargeFailed(std::io::Error);
    impl std::fmt::Display for ChargeFailed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("charge failed")
        }
    }
    impl std::error::Error for ChargeFailed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[tokio::test]
    async fn an_alert_has_the_title_context_and_fields_in_order() {
        let (fwd, rec, hub) = setup(ErrorForwarderConfig::default());
        let log = hub.get_logger("billing").with(&[
            attr::string("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            attr::string("source", "cron"),
        ]);
        let err = ChargeFailed(std::io::Error::other("connection refused"));
        log.error(
            "charge failed",
            &[
                attr::error(&err),
                attr::string("password", "hunter2"),
                attr::duration("took", Duration::from_millis(1500)),
            ],
        );
        flush(&fwd);
        let got = rec.wait_for(1).await;
        let n = &got[0];
        assert_eq!(n.content.title, "ERROR: Application Error");
        assert_eq!(n.content.message, "charge failed");
        assert_eq!(n.context.priority, Priority::Critical);
        assert_eq!(n.context.source, "logger");
        assert_eq!(n.context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let names: Vec<&str> = n.content.fields.iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "occurrences",
                "first_seen",
                "last_seen",
                "source",
                "logger",
                "error_group",
                "trace_id",
                "attr.source",
                "error",
                "password",
                "took"
            ]
        );
        assert_eq!(field(n, "occurrences"), Some("1"));
        assert_eq!(field(n, "logger"), Some("billing"));
        let line: u32 = field(n, "source")
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            field(n, "error_group"),
            Some(alert::group_key("charge failed", file!(), line).as_str())
        );
        let o = &n.provider_options;
        assert_eq!(o.get(alert::ALERTNAME), Some(alert::FORWARDED_ALERTNAME));
        assert_eq!(o.get(alert::LABELS), Some("error_group"));
        assert_eq!(o.get(alert::STATUS), Some(alert::FIRING));
        assert_eq!(o.get("dedup_key"), field(n, "error_group"));
        // 5 min quiet, two windows of 10 s, 1 min margin.
        assert_eq!(o.get(alert::LEASE_SECS), Some("380"));
        assert_eq!(field(n, "attr.source"), Some("cron"));
        assert_eq!(field(n, "error"), Some("charge failed: connection refused"));
        assert_eq!(field(n, "password"), Some(REDACTED));
        assert_eq!(field(n, "took"), Some("1.5s"));
        assert!(
            field(n, "source").is_some_and(|s| s.starts_with(file!())),
            "{:?}",
            field(n, "source")
        );
        let first_seen = field(n, "first_seen").unwrap();
        assert!(first_seen.ends_with('Z'), "{first_seen}");
        assert_eq!(alert::time_text(n.context.timestamp), first_seen);
        assert_eq!(field(n, "last_seen"), Some(first_seen));
    }

    #[test]
    fn priority_follows_the_level() {
        let cases = [
            (Level::new(12), Priority::Critical),
            (Level::ERROR, Priority::Critical),
            (Level::new(7), Priority::High),
            (Level::WARN, Priority::High),
            (Level::NOTICE, Priority::Normal),
            (Level::INFO, Priority::Normal),
            (Level::new(-1), Priority::Low),
            (Level::DEBUG, Priority::Low),
            (Level::TRACE, Priority::Low),
        ];
        for (level, want) in cases {
            assert_eq!(priority_for_level(level), want, "{level}");
        }
    }

    #[tokio::test]
    async fn records_below_the_threshold_are_ignored_and_the_title_names_the_level() {
        let (fwd, rec, hub) = setup(ErrorForwarderConfig::default().with_threshold(Level::WARN));
        let log = hub.get_logger("app");
        log.info("fine", &[]);
        log.notice("still fine", &[]);
        log.warn("disk at 90%", &[]);
        assert_eq!(fwd.stats().ignored, 2);
        flush(&fwd);
        let got = rec.wait_for(1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].content.title, "WARN: Application Error");
        assert_eq!(got[0].context.priority, Priority::High);
    }

    #[tokio::test]
    async fn the_rate_limit_holds_groups_back_and_the_next_alert_reports_them() {
        let period = Duration::from_millis(300);
        let (fwd, rec, hub) = setup(
            ErrorForwarderConfig::default()
                .with_max_alerts_per_minute(2)
                .with_rate_period(period),
        );
        let log = hub.get_logger("app");
        for i in 0..5 {
            log.error(&format!("failure {i}"), &[]);
        }
        flush(&fwd);
        let got = rec.wait_for(2).await;
        assert_eq!(got.len(), 2);
        assert!(
            got.iter()
                .all(|n| field(n, "rate_limited_groups").is_none())
        );
        let s = fwd.stats();
        assert_eq!((s.groups_sent, s.rate_limited_groups), (2, 3));

        // Still within the period: held back too, and counted.
        log.error("one more", &[]);
        flush(&fwd);
        assert_eq!(fwd.stats().rate_limited_groups, 4);

        tokio::time::sleep(period + Duration::from_millis(20)).await;
        log.error("later", &[]);
        log.error("and again", &[]);
        flush(&fwd);
        let got = rec.wait_for(4).await;
        assert_eq!(got.len(), 4);
        assert_eq!(got[2].content.message, "later");
        assert_eq!(field(&got[2], "rate_limited_groups"), Some("4"));
        assert_eq!(field(&got[3], "rate_limited_groups"), None);
        assert_eq!(fwd.stats().groups_sent, 4);
    }

    #[tokio::test]
    async fn groups_past_the_cap_are_dropped_and_reported_in_the_next_alert() {
        let (fwd, rec, hub) = setup(ErrorForwarderConfig::default().with_max_groups(2));
        let log = hub.get_logger("app");
        let error = |msg: &str| log.error(msg, &[]); // one call site
        for i in 0..4 {
            error(&format!("failure {i}"));
        }
        error("failure 2"); // a dropped group seen again is not counted again
        error("failure 0"); // a kept group still counts
        assert_eq!(fwd.pending_groups(), 2);
        let s = fwd.stats();
        assert_eq!(
            (s.records_grouped, s.dropped_groups, s.dropped_records),
            (3, 2, 3)
        );
        flush(&fwd);
        let got = rec.wait_for(2).await;
        assert_eq!(got.len(), 2);
        assert_eq!(field(&got[0], "occurrences"), Some("2"));
        assert_eq!(field(&got[0], "dropped_groups"), Some("2"));
        assert_eq!(field(&got[1], "dropped_groups"), None);

        // A new window starts with room again, and has nothing more to report.
        error("failure 3");
        flush(&fwd);
        let got = rec.wait_for(3).await;
        assert_eq!(got[2].content.message, "failure 3");
        assert_eq!(field(&got[2], "dropped_groups"), None);
        assert_eq!(fwd.stats().dropped_groups, 2);
    }

    #[tokio::test]
    async fn loggers_with_an_ignored_prefix_are_ignored() {
        let (fwd, rec, hub) = setup(ErrorForwarderConfig::default());
        hub.get_logger("piko-obs/notification")
            .error("webhook failed", &[]);
        hub.get_logger("piko-obs-app").error("not ours", &[]);
        assert_eq!(fwd.stats().ignored, 1);
        assert_eq!(fwd.pending_groups(), 1);
        flush(&fwd);
        assert_eq!(rec.wait_for(1).await[0].content.message, "not ours");

        let (fwd, _rec, hub) =
            setup(ErrorForwarderConfig::default().with_ignored_logger_prefixes(["vendor::"]));
        hub.get_logger("vendor::http").error("x", &[]);
        hub.get_logger("piko-obs/notification").error("y", &[]);
        assert_eq!(fwd.stats().ignored, 1);
        assert_eq!(fwd.pending_groups(), 1);
    }

    #[tokio::test]
    async fn invalid_settings_are_refused_naming_the_field() {
        let bad = [
            (
                ErrorForwarderConfig::default().with_window(Duration::ZERO),
                ForwarderConfigError::ZeroWindow,
                "with_window",
            ),
            (
                ErrorForwarderConfig::default().with_max_groups(0),
                ForwarderConfigError::ZeroMaxGroups,
                "with_max_groups",
            ),
            (
                ErrorForwarderConfig::default().with_max_alerts_per_minute(0),
                ForwarderConfigError::ZeroRate,
                "with_max_alerts_per_minute",
            ),
            (
                ErrorForwarderConfig::default().with_ignored_logger_prefix(""),
                ForwarderConfigError::EmptyIgnoredPrefix,
                "ignored_logger_prefixes",
            ),
        ];
        for (config, want, hint) in bad {
            assert_eq!(config.validate(), Err(want.clone()));
            let e = ErrorForwarder::start(
                &tokio::runtime::Handle::current(),
                NotificationService::default(),
                config,
            )
            .unwrap_err();
            assert_eq!(e, want);
            assert!(e.to_string().contains(hint), "{e}");
        }
        let d = ErrorForwarderConfig::default();
        assert!(d.validate().is_ok());
        assert_eq!(
            (d.threshold, d.window, d.max_groups, d.max_alerts_per_minute),
            (Level::ERROR, Duration::from_secs(10), 1000, 30)
        );
        assert_eq!(d.ignored_logger_prefixes, ["piko-obs/"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_window_is_fixed_from_its_first_record() {
        let window = Duration::from_millis(150);
        let (_fwd, rec, hub) = setup(ErrorForwarderConfig::default().with_window(window));
        let log = hub.get_logger("app");
        let start = Instant::now();
        let mut logged = 0u64;
        let mut alert_while_logging = false;
        // Keep logging the same error for three windows: a window that later records
        // extended would not end before the logging stops.
        while start.elapsed() < window * 3 {
            log.error("flapping", &[]);
            logged += 1;
            alert_while_logging |= !rec.got().is_empty();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(alert_while_logging, "no alert within {:?}", start.elapsed());
        let got = rec.wait_for(2).await;
        let first: u64 = field(&got[0], "occurrences").unwrap().parse().unwrap();
        assert!(first < logged, "{first} of {logged}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_sends_what_is_pending_and_then_drops_records() {
        let (fwd, rec, hub) =
            setup(ErrorForwarderConfig::default().with_window(Duration::from_secs(60)));
        let log = hub.get_logger("app");
        log.error("one", &[]);
        log.error("two", &[]);
        assert_eq!(fwd.pending_groups(), 2);
        // From a thread outside the runtime, as the facade's shutdown does.
        let f = fwd.clone();
        std::thread::spawn(move || Output::close(&f, Duration::from_secs(2)))
            .join()
            .unwrap()
            .unwrap();
        let got = rec.wait_for(2).await;
        assert_eq!(got.len(), 2);
        assert_eq!(fwd.pending_groups(), 0);
        log.error("three", &[]);
        assert_eq!(fwd.pending_groups(), 0);
        let s = fwd.stats();
        assert_eq!((s.groups_sent, s.dropped_records), (2, 1));
        Output::close(&fwd, Duration::from_secs(1)).unwrap();
        let end = Instant::now() + Duration::from_secs(2);
        while !fwd.task_finished() && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(fwd.task_finished(), "the flush task still runs");
    }

    #[tokio::test]
    async fn a_flush_out_of_time_keeps_the_groups_pending() {
        let (fwd, rec, hub) =
            setup(ErrorForwarderConfig::default().with_window(Duration::from_secs(60)));
        let log = hub.get_logger("app");
        let error = |msg: &str| log.error(msg, &[]); // one call site
        error("one");
        error("one");
        error("two");
        let e = Output::flush(&fwd, Duration::ZERO).unwrap_err();
        assert!(matches!(e, FlushError::Timeout { pending: 2, .. }), "{e:?}");
        assert_eq!(fwd.pending_groups(), 2);
        error("one"); // merges with the group put back
        flush(&fwd);
        let got = rec.wait_for(2).await;
        assert_eq!(got.len(), 2);
        assert_eq!(field(&got[0], "occurrences"), Some("3"));
        assert_eq!(field(&got[1], "occurrences"), Some("1"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quiet_group_is_resolved_and_a_busy_one_is_not() {
        let window = Duration::from_millis(100);
        let quiet = Duration::from_millis(600);
        let (fwd, rec, hub) = setup(
            ErrorForwarderConfig::default()
                .with_window(window)
                .with_resolve_after(quiet),
        );
        let log = hub.get_logger("app");
        let error = |msg: &str| log.error(msg, &[]); // one call site
        let start = Instant::now();
        // "busy" keeps failing for 1.2 s; "brief" fails once.
        error("brief");
        while start.elapsed() < Duration::from_millis(1200) {
            error("busy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = rec.got();
        let resolved: Vec<&Notification> = got
            .iter()
            .filter(|n| n.provider_options.get(alert::STATUS) == Some(alert::RESOLVED))
            .collect();
        assert_eq!(resolved.len(), 1, "{got:?}");
        let r = resolved[0];
        assert_eq!(r.content.message, "brief");
        assert_eq!(r.content.title, "RESOLVED: ERROR: Application Error");
        let firing = got.iter().find(|n| n.content.message == "brief").unwrap();
        assert_eq!(field(r, "error_group"), field(firing, "error_group"));
        assert_eq!(r.context.priority, firing.context.priority);
        assert_ne!(r.context.id, firing.context.id);
        assert_eq!(r.provider_options.get("event_action"), Some("resolve"));
        assert_eq!(
            r.provider_options.get("dedup_key"),
            field(firing, "error_group")
        );
        let ends = r.provider_options.get(alert::ENDS_AT).unwrap();
        assert!(ends.ends_with('Z'), "{ends}");
        // The busy group was sent once per window, each time renewing its lease, and
        // is not resolved while it goes on.
        let busy = got.iter().filter(|n| n.content.message == "busy").count();
        assert!(busy >= 5, "{busy}");
        assert!(busy <= 14, "{busy}");
        // Once it stops, it is resolved after the quiet time (with a bounded wait).
        let is_resolved =
            |n: &&Notification| n.provider_options.get(alert::STATUS) == Some(alert::RESOLVED);
        let end = Instant::now() + Duration::from_secs(5);
        let mut all = rec.got();
        while all.iter().filter(is_resolved).count() < 2 && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
            all = rec.got();
        }
        let late: Vec<&Notification> = all.iter().filter(is_resolved).collect();
        assert_eq!(late.len(), 2, "{all:?}");
        assert_eq!(late[1].content.message, "busy");
        assert_eq!(fwd.stats().resolved_sent, 2);
        // Nothing more is followed, nothing more is sent.
        tokio::time::sleep(quiet * 2).await;
        assert_eq!(rec.got().len(), all.len());
    }

    #[tokio::test]
    async fn without_resolved_alerts_nothing_is_followed_and_no_lease_is_set() {
        let (fwd, rec, hub) = setup(
            ErrorForwarderConfig::default()
                .with_window(Duration::from_millis(20))
                .without_resolved_alerts(),
        );
        hub.get_logger("app").error("once", &[]);
        flush(&fwd);
        let got = rec.wait_for(1).await;
        assert_eq!(got[0].provider_options.get(alert::LEASE_SECS), None);
        assert!(lock(&fwd.inner.active).is_empty());
        let e = ErrorForwarderConfig::default()
            .with_resolve_after(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert_eq!(e, ForwarderConfigError::ZeroResolveAfter);
        assert!(e.to_string().contains("resolve_after"), "{e}");
    }
}
