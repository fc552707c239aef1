//! A bounded set of strings kept for the life of the process: log messages, logger
//! names and field names seen again and again. A string that was seen before is found
//! without copying it, and one that is kept has a `&'static str` (what attribute keys
//! need). Most messages of a structured log are constants (what varies goes in
//! attributes), and field names are, so a small set covers them; a string that does not
//! fit (too long, or the set is full) is not kept, and the caller copies it instead.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{LazyLock, RwLock};

/// The most strings kept.
pub const MAX_ENTRIES: usize = 1024;
/// The longest string kept, in bytes.
pub const MAX_LEN: usize = 128;
/// Slots in each thread's cache of recent lookups.
const SLOTS: usize = 64;

static SET: LazyLock<RwLock<HashSet<&'static str>>> =
    LazyLock::new(|| RwLock::new(HashSet::with_capacity(MAX_ENTRIES)));

thread_local! {
    /// Recent lookups, by the address and length of the string looked up: a constant
    /// message is found here without a lock or a hash.
    static RECENT: [Cell<Option<&'static str>>; SLOTS] =
        const { [const { Cell::new(None) }; SLOTS] };
}

/// The kept copy of `s`, kept now if there is room; `None` when `s` is longer than
/// [`MAX_LEN`] or the set is full. Never panics (a poisoned lock is used as it is).
pub fn intern(s: &str) -> Option<&'static str> {
    if s.len() > MAX_LEN {
        return None;
    }
    let slot = ((s.as_ptr() as usize >> 3) ^ s.len()) % SLOTS;
    let hit = RECENT
        .try_with(|r| r[slot].get().filter(|kept| *kept == s))
        .ok()
        .flatten();
    if hit.is_some() {
        return hit;
    }
    let found = SET
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(s)
        .copied();
    let kept = match found {
        Some(k) => k,
        None => {
            let mut set = SET.write().unwrap_or_else(|p| p.into_inner());
            match set.get(s) {
                Some(k) => k,
                None if set.len() < MAX_ENTRIES => {
                    let k: &'static str = Box::leak(Box::from(s));
                    set.insert(k);
                    k
                }
                None => return None,
            }
        }
    };
    let _ = RECENT.try_with(|r| r[slot].set(Some(kept)));
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy_long_ones_and_those_past_the_bound_are_not_kept() {
        let a = String::from("order placed");
        let b = String::from("order placed");
        let (ka, kb) = (intern(&a).expect("kept"), intern(&b).expect("kept"));
        assert_eq!(ka, "order placed");
        assert!(std::ptr::eq(ka, kb), "one copy");
        // A buffer reused for another message is not taken for the old one.
        let mut buf = String::from("first message");
        assert_eq!(intern(&buf), Some("first message"));
        buf.clear();
        buf.push_str("other message");
        assert_eq!(intern(&buf), Some("other message"));
        assert_eq!(intern(&"x".repeat(MAX_LEN + 1)), None);
        assert!(intern(&"y".repeat(MAX_LEN)).is_some());

        // The set stops growing at its bound (one test: the set is the process's).
        for i in 0..MAX_ENTRIES + 10 {
            let _ = intern(&format!("bounded message {i}"));
        }
        let n = SET.read().unwrap_or_else(|p| p.into_inner()).len();
        assert_eq!(n, MAX_ENTRIES);
        // What is kept is still found; what is new is not kept.
        assert_eq!(intern("bounded message 0"), Some("bounded message 0"));
        assert_eq!(intern("order placed"), Some("order placed"));
        assert_eq!(intern("a message never seen before the set was full"), None);
    }
}
