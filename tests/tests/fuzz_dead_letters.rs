//! Fuzzing by property tests of the dead-letter file: entries of arbitrary text are
//! written, the file is then damaged (cut at any byte, bytes and lines inserted,
//! bytes overwritten, invalid UTF-8), reopened, written to again and replayed.
//! `take_all` must not fail, must give back every entry whose line is intact and every
//! entry written after the damage, and must count the lines it could not read.
//!
//! Each property runs `PIKO_FUZZ_CASES` cases (default 256); see `tests/src/fuzz.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use piko_obs_notify::{DeadLetter, DeadLetterStore, Notification, Priority};
use piko_obs_notify_providers::FileDeadLetterStore;
use piko_obs_tests::fuzz::fuzz;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

/// A scratch folder in memory (`/dev/shm`) where there is one, so that the fsyncs of the
/// store cost nothing and a long run measures the store, not the disk; else the usual
/// temporary folder.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("piko-fuzz-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

fn text() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        2 => any::<char>(),
        1 => prop::sample::select(&['\n', '\r', '"', '\\', '{', '}', '\u{2028}', '\0'][..]),
        3 => prop::char::range('a', 'z'),
    ];
    prop::collection::vec(c, 0..24).prop_map(String::from_iter)
}

fn a_time() -> impl Strategy<Value = SystemTime> {
    (0u64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(s, n)| UNIX_EPOCH + Duration::new(s, n))
}

fn entry() -> impl Strategy<Value = DeadLetter> {
    (
        (
            text(),
            text(),
            prop::collection::vec((text(), text()), 0..3),
        ),
        (text(), a_time(), 0usize..4),
        (
            prop::collection::vec("[a-z]{1,8}", 1..3),
            any::<u32>(),
            a_time(),
            text(),
        ),
    )
        .prop_map(
            |(
                (title, message, fields),
                (source, at, priority),
                (providers, attempts, first, error),
            )| {
                let mut n = Notification::new(title, message);
                for (k, v) in fields {
                    n.content.fields.insert(k, v);
                }
                n.context.source = source;
                n.context.timestamp = at;
                n.context.priority = [
                    Priority::Low,
                    Priority::Normal,
                    Priority::High,
                    Priority::Critical,
                ][priority];
                DeadLetter::new(n, providers, attempts, first, error)
            },
        )
}

/// One way to damage the file.
#[derive(Debug, Clone)]
enum Damage {
    /// Cut the file at this point (a crash mid-write).
    Truncate(Index),
    /// Insert bytes (any, invalid UTF-8 included) at this point.
    Insert(Index, Vec<u8>),
    /// Insert a whole line of bytes at the start of a line.
    InsertLine(Index, Vec<u8>),
    /// Replace one byte.
    Overwrite(Index, u8),
    /// Remove a run of bytes.
    Remove(Index, usize),
}

/// Bytes that damage JSON lines in the usual ways.
const SNIPPETS: &[&[u8]] = &[
    b"{",
    b"}",
    b"\"",
    b"\xff\xfe",
    b"\xc3",
    b"\n",
    b"\r\n",
    b"\0",
    b"{\"id\":\"x\",\"notif",
    b"null",
    b"[]",
    b"{}",
];

fn damage() -> impl Strategy<Value = Damage> {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..12),
        prop::sample::select(SNIPPETS).prop_map(<[u8]>::to_vec),
    ];
    prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), bytes.clone()).prop_map(|(i, b)| Damage::Insert(i, b)),
        (any::<Index>(), bytes).prop_map(|(i, b)| Damage::InsertLine(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Overwrite(i, b)),
        (any::<Index>(), 1usize..40).prop_map(|(i, n)| Damage::Remove(i, n)),
    ]
}

fn apply(file: &mut Vec<u8>, d: &Damage) {
    let at = |i: &Index, len: usize| i.index(len + 1);
    match d {
        Damage::Truncate(i) => file.truncate(at(i, file.len())),
        Damage::Insert(i, b) => {
            let p = at(i, file.len());
            file.splice(p..p, b.iter().copied());
        }
        Damage::InsertLine(i, b) => {
            let starts: Vec<usize> = std::iter::once(0)
                .chain(
                    file.iter()
                        .enumerate()
                        .filter(|(_, c)| **c == b'\n')
                        .map(|(p, _)| p + 1),
                )
                .collect();
            let p = starts[i.index(starts.len())];
            let mut line = b.clone();
            line.push(b'\n');
            file.splice(p..p, line);
        }
        Damage::Overwrite(i, b) => {
            if !file.is_empty() {
                let p = i.index(file.len());
                file[p] = *b;
            }
        }
        Damage::Remove(i, n) => {
            let p = at(i, file.len());
            file.drain(p..(p + n).min(file.len()));
        }
    }
}

/// The lines of `bytes` as the store reads them: split at `\n`, the last one possibly
/// without it.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out
}

fn check(
    entries: &[DeadLetter],
    damages: &[Damage],
    later: &DeadLetter,
) -> Result<(), TestCaseError> {
    let dir = scratch();
    let path = dir.path().join("dead.jsonl");
    let store = FileDeadLetterStore::open(&path).unwrap();
    store.append_all(entries).unwrap();
    drop(store);

    let mut bytes = std::fs::read(&path).unwrap();
    // Every entry is one line that reads back as itself.
    let written: Vec<Vec<u8>> = lines(&bytes).iter().map(|l| l.to_vec()).collect();
    prop_assert_eq!(written.len(), entries.len());
    for d in damages {
        apply(&mut bytes, d);
    }
    std::fs::write(&path, &bytes).unwrap();

    // What a correct reader must find: each original line still whole is its entry;
    // every other line that is not blank is either some entry or counted as skipped.
    let damaged = lines(&bytes);
    let mut must_have: Vec<&DeadLetter> = Vec::new();
    let mut non_blank = 0;
    for l in &damaged {
        if String::from_utf8_lossy(l).trim().is_empty() {
            continue;
        }
        non_blank += 1;
        if let Some(i) = written.iter().position(|w| w.as_slice() == *l) {
            must_have.push(&entries[i]);
        }
    }

    // Reopen (as after a restart), add one entry, replay.
    let store = FileDeadLetterStore::open(&path).unwrap();
    store.append(later).unwrap();
    let batch = store
        .take_all()
        .map_err(|e| TestCaseError::fail(format!("take_all failed: {e}")))?;
    prop_assert!(
        batch.entries.contains(later),
        "the entry written after the damage is lost; file: {:?}",
        String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default())
    );
    let mut found = batch.entries.clone();
    for e in must_have {
        let pos = found.iter().position(|f| f == e);
        prop_assert!(pos.is_some(), "an intact entry is missing: {:?}", e.id);
        if let Some(p) = pos {
            found.remove(p);
        }
    }
    prop_assert_eq!(
        batch.entries.len() + batch.skipped,
        non_blank + 1,
        "every line is an entry or counted as skipped ({} entries, {} skipped)",
        batch.entries.len(),
        batch.skipped
    );
    // The replay emptied the store.
    let after = store.read_all().unwrap();
    prop_assert!(after.entries.is_empty() && after.skipped == 0);
    Ok(())
}

#[test]
fn fuzz_dead_letter_replay_survives_damage() {
    fuzz(
        "dead_letter_replay_survives_damage",
        (
            prop::collection::vec(entry(), 1..6),
            prop::collection::vec(damage(), 0..4),
            entry(),
        ),
        |(entries, damages, later)| check(&entries, &damages, &later),
    );
}

#[test]
fn fuzz_dead_letter_round_trips_arbitrary_text() {
    let dir = scratch();
    let store = FileDeadLetterStore::open(dir.path().join("dead.jsonl")).unwrap();
    fuzz(
        "dead_letter_round_trips_arbitrary_text",
        prop::collection::vec(entry(), 1..6),
        |entries| {
            store.append_all(&entries).unwrap();
            let batch = store.take_all().unwrap();
            prop_assert_eq!(batch.skipped, 0);
            prop_assert_eq!(batch.entries, entries);
            Ok(())
        },
    );
}

// ----------------------------------------------------------------------------------------
// Regressions: failures the properties found, kept as plain tests.

/// `dead_letter_replay_survives_damage`: after a crash cut the last line, the next entry
/// was appended to the cut line and lost with it at the replay.
#[test]
fn regression_entry_appended_after_a_cut_line_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let entry = |t: &str| {
        DeadLetter::new(
            Notification::new(t, "m"),
            vec!["slack".into()],
            3,
            UNIX_EPOCH,
            "slack returned status 500".into(),
        )
    };
    let (first, cut, later) = (entry("first"), entry("cut"), entry("later"));
    let store = FileDeadLetterStore::open(&path).unwrap();
    store.append_all(&[first.clone(), cut]).unwrap();
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();

    let store = FileDeadLetterStore::open(&path).unwrap();
    store.append(&later).unwrap();
    let batch = store.take_all().unwrap();
    assert_eq!(batch.entries, [first, later]);
    assert_eq!(batch.skipped, 1);
}
