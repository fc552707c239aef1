//! The dead-letter port: [`DeadLetter`], the entry kept for a notification that could
//! not be delivered, and [`DeadLetterStore`], where such entries go (the providers
//! crate has a JSON-lines file with fsync). Depends on the model only.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::model::Notification;

/// One notification that could not be delivered, as kept by a [`DeadLetterStore`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// A unique id.
    pub id: String,
    /// The notification.
    pub notification: Notification,
    /// The providers that did not take it.
    pub providers: Vec<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The first attempt (or when it was handed over, if never attempted).
    #[serde(with = "crate::model::rfc3339")]
    pub first_attempt: SystemTime,
    /// The last attempt.
    #[serde(with = "crate::model::rfc3339")]
    pub last_attempt: SystemTime,
    /// The last error of each provider.
    pub last_error: String,
}

impl DeadLetter {
    /// An entry for `notification`, failed at `providers`.
    pub fn new(
        notification: Notification,
        providers: Vec<String>,
        attempts: u32,
        first_attempt: SystemTime,
        last_error: String,
    ) -> DeadLetter {
        DeadLetter {
            id: unique_id(),
            notification,
            providers,
            attempts,
            first_attempt,
            last_attempt: SystemTime::now(),
            last_error,
        }
    }
}

/// An id unique in this process and, with the time and process id in it, across
/// restarts: for dead letters and for webhook message ids.
pub fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Asked of the system once, not for every id.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    format!(
        "{nanos:x}-{:x}-{:x}",
        PID.get_or_init(std::process::id),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
/// What a dead-letter store read back for a replay.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DeadLetterBatch {
    /// The entries.
    pub entries: Vec<DeadLetter>,
    /// Lines that could not be read (truncated or corrupt), skipped.
    pub skipped: usize,
}

/// Where undeliverable notifications go: the port a durable store implements (the
/// providers crate has a JSON-lines file with fsync).
///
/// Contract: `append` and `append_all` return only once the entries are durable. The
/// dispatcher calls them, and `end_replay`, from its dead-letter writer thread (a
/// blocking one, never an async worker); `begin_replay`, `take_all`, and the
/// `append_all` of the replayed entries that find the queue full, run on the thread
/// that calls [`Dispatcher::replay`](crate::Dispatcher::replay). Implementations must be safe to call from
/// several threads at once. Unreadable entries are counted and skipped, not fatal.
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Keeps one entry durably.
    fn append(&self, entry: &DeadLetter) -> io::Result<()>;
    /// Keeps several entries durably; the default appends them one by one. A store
    /// that syncs should write them all, then sync once (group commit).
    fn append_all(&self, entries: &[DeadLetter]) -> io::Result<()> {
        entries.iter().try_for_each(|e| self.append(e))
    }
    /// Reads and removes every entry at once (not crash-safe: what is read is only in
    /// memory until it is delivered; a replay uses `begin_replay`).
    fn take_all(&self) -> io::Result<DeadLetterBatch>;
    /// Starts a crash-safe replay: sets the current entries aside (new entries go to a
    /// fresh store), and returns them, with those set aside by earlier replays that
    /// never ended (a crash), and a token for [`end_replay`](Self::end_replay). The
    /// entries set aside stay durable until `end_replay(token, true)`. The default
    /// is [`take_all`](Self::take_all), which is not crash-safe.
    fn begin_replay(&self) -> io::Result<(DeadLetterBatch, u64)> {
        Ok((self.take_all()?, 0))
    }
    /// Ends the replay `token`. `complete`: every entry it returned was delivered or
    /// appended again, so the set-aside copy is removed; otherwise it is kept for the
    /// next replay (at least once). The default does nothing.
    fn end_replay(&self, token: u64, complete: bool) -> io::Result<()> {
        let _ = (token, complete);
        Ok(())
    }
}
