//! The dead-letter store of last resort, for a process that has no writable place for
//! the dead-letter file (a read-only root file system, a read-only `HOME`).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use piko_obs_notify::{DeadLetter, DeadLetterBatch, DeadLetterStore};

/// How many entries a [`MemoryDeadLetterStore`] keeps by default: 1000.
pub const DEFAULT_MEMORY_ENTRIES: NonZeroUsize = NonZeroUsize::new(1000).expect("not zero");

/// Dead letters kept in memory, bounded, each one also printed to stderr.
///
/// Used by the facade when the default dead-letter file cannot be opened: the service
/// starts, and no dead letter is lost silently. Each entry is written to stderr as one
/// line, `piko-obs: notify.dead_letter.in_memory: <the entry as JSON>` (so it reaches the
/// container's logs, which outlive the process), and kept in memory for a replay
/// (`Dispatcher::replay`) while the process runs. Past `capacity` entries the oldest
/// is let go from memory (it is in the logs) and counted in [`evicted`](Self::evicted).
/// Nothing survives a restart but the log lines: give the service a writable path
/// (`PIKO_NOTIFICATION_DEAD_LETTER_PATH` on a volume) to keep them.
#[derive(Debug)]
pub struct MemoryDeadLetterStore {
    entries: Mutex<VecDeque<DeadLetter>>,
    capacity: NonZeroUsize,
    evicted: AtomicU64,
}

impl MemoryDeadLetterStore {
    /// A store of at most `capacity` entries.
    pub fn new(capacity: NonZeroUsize) -> MemoryDeadLetterStore {
        MemoryDeadLetterStore {
            entries: Mutex::new(VecDeque::new()),
            capacity,
            evicted: AtomicU64::new(0),
        }
    }

    /// The entries held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Entries let go from memory to make room (each is in stderr's log).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<DeadLetter>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DeadLetterStore for MemoryDeadLetterStore {
    fn append(&self, entry: &DeadLetter) -> io::Result<()> {
        self.append_all(std::slice::from_ref(entry))
    }

    fn append_all(&self, entries: &[DeadLetter]) -> io::Result<()> {
        // The log line first: it is the copy that outlives the process.
        let mut text = Vec::new();
        for e in entries {
            text.extend_from_slice(b"piko-obs: notify.dead_letter.in_memory: ");
            serde_json::to_writer(&mut text, e)?;
            text.push(b'\n');
        }
        io::stderr().lock().write_all(&text)?;
        let mut held = self.lock();
        for e in entries {
            if held.len() == self.capacity.get() {
                held.pop_front();
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
            held.push_back(e.clone());
        }
        Ok(())
    }

    fn take_all(&self) -> io::Result<DeadLetterBatch> {
        let entries: Vec<DeadLetter> = self.lock().drain(..).collect();
        let mut batch = DeadLetterBatch::default();
        batch.entries = entries;
        Ok(batch)
    }
}

impl MemoryDeadLetterStore {
    /// Describes the series [`record_metrics`](Self::record_metrics) sets.
    pub fn describe_metrics() {
        metrics::describe_gauge!(
            "piko_obs_notifications_dead_letter_in_memory",
            "Dead letters held in memory (and printed to stderr) because the default dead-letter file is not writable."
        );
        metrics::describe_counter!(
            "piko_obs_notifications_dead_letter_memory_evicted_total",
            "Dead letters let go from memory to make room (each was printed to stderr)."
        );
    }

    /// Records how many dead letters the store holds and how many it let go.
    pub fn record_metrics(&self) {
        metrics::gauge!("piko_obs_notifications_dead_letter_in_memory").set(self.len() as f64);
        metrics::counter!("piko_obs_notifications_dead_letter_memory_evicted_total")
            .absolute(self.evicted());
    }
}
