//! Typed attributes (`string`, `int`, `error`, `any`, ...) and the standard field keys.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Standard field keys, with the exact strings Piko uses.
pub mod keys {
    /// Record time.
    pub const TIME: &str = "time";
    /// Level name.
    pub const LEVEL: &str = "level";
    /// Message.
    pub const MSG: &str = "msg";
    /// The name given to `get_logger`.
    pub const LOGGER: &str = "logger";
    /// Source location object (`file`, `line`, `module`).
    pub const SOURCE: &str = "source";
    /// An error and its source chain.
    pub const ERROR: &str = "error";
    /// Stack frames of an ERROR record.
    pub const STACK_TRACE: &str = "stack_trace";
    /// Trace id of the current span (32 hex digits).
    pub const TRACE_ID: &str = "trace_id";
    /// Span id of the current span (16 hex digits).
    pub const SPAN_ID: &str = "span_id";
    /// Piko's caller-package key (`FieldStrContext`).
    pub const CTX: &str = "ctx";
    /// Piko's caller-method key (`KeyMethod`).
    pub const MTD: &str = "mtd";
    /// Piko's `FieldStrMethod` (note: not `mtd`).
    pub const METHOD: &str = "method";
    /// Piko's `FieldStrComponent`.
    pub const COMPONENT: &str = "component";
    /// Piko's `FieldStrAdapter`.
    pub const ADAPTER: &str = "adapter";
    /// Piko's `FieldStrService`.
    pub const SERVICE: &str = "service";
    /// Piko's `FieldStrPath`.
    pub const PATH: &str = "path";
    /// Piko's `FieldStrFile`.
    pub const FILE: &str = "file";
    /// Piko's `FieldStrDir`.
    pub const DIR: &str = "dir";
    /// Request id of the current request.
    pub const REQUEST_ID: &str = "request_id";
    /// Client address of the current request.
    pub const CLIENT_IP: &str = "client_ip";
    /// Run mode of the service (`dev`, `prod`).
    pub const MODE: &str = "mode";
}

/// A borrowed list of strings: a slice of `&str` or of `String`.
#[derive(Clone, Copy, Debug)]
pub enum StrList<'a> {
    /// A slice of string slices.
    Strs(&'a [&'a str]),
    /// A slice of owned strings.
    Strings(&'a [String]),
}

impl<'a> StrList<'a> {
    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            StrList::Strs(l) => l.len(),
            StrList::Strings(l) => l.len(),
        }
    }
    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Item `i`.
    pub fn get(&self, i: usize) -> &'a str {
        match self {
            StrList::Strs(l) => l[i],
            StrList::Strings(l) => &l[i],
        }
    }
    /// The items.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl<'a> From<&'a [&'a str]> for StrList<'a> {
    fn from(l: &'a [&'a str]) -> Self {
        StrList::Strs(l)
    }
}
impl<'a, const N: usize> From<&'a [&'a str; N]> for StrList<'a> {
    fn from(l: &'a [&'a str; N]) -> Self {
        StrList::Strs(l)
    }
}
impl<'a> From<&'a [String]> for StrList<'a> {
    fn from(l: &'a [String]) -> Self {
        StrList::Strings(l)
    }
}
impl<'a> From<&'a Vec<String>> for StrList<'a> {
    fn from(l: &'a Vec<String>) -> Self {
        StrList::Strings(l)
    }
}

/// The value of an attribute. Borrowed, so building attributes does not allocate.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum Value<'a> {
    /// Text.
    Str(&'a str),
    /// A list of strings (a JSON array).
    Strings(StrList<'a>),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A point in time (RFC 3339 in JSON).
    Time(SystemTime),
    /// A duration (integer nanoseconds in JSON, `1.5ms` in pretty output).
    Duration(Duration),
    /// An error and its `source()` chain.
    Error(&'a (dyn StdError + 'static)),
    /// An error already rendered: its message then the messages of its sources.
    ErrorChain(&'a [String]),
    /// Anything with `Display`, rendered as text.
    Display(&'a (dyn fmt::Display + Sync)),
    /// Any serde value, encoded as JSON.
    Any(&'a (dyn erased_serde::Serialize + Sync)),
    /// No value (JSON `null`).
    Null,
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "Str({s:?})"),
            Value::Strings(l) => f.debug_list().entries(l.iter()).finish(),
            Value::Int(v) => write!(f, "Int({v})"),
            Value::Uint(v) => write!(f, "Uint({v})"),
            Value::Float(v) => write!(f, "Float({v})"),
            Value::Bool(v) => write!(f, "Bool({v})"),
            Value::Time(t) => write!(f, "Time({t:?})"),
            Value::Duration(d) => write!(f, "Duration({d:?})"),
            Value::Error(e) => write!(f, "Error({e})"),
            Value::ErrorChain(c) => write!(f, "ErrorChain({c:?})"),
            Value::Display(d) => write!(f, "Display({d})"),
            Value::Any(_) => f.write_str("Any(..)"),
            Value::Null => f.write_str("Null"),
        }
    }
}

/// A key and a typed value, attached to one record or bound to a logger with `with`.
///
/// Keys are `&'static str`, as in slog and tracing: field names are part of the code.
///
/// ```
/// use piko_obs_logger::attr::{self, Value};
/// let a = attr::int("status", 200);
/// assert_eq!(a.key(), "status");
/// assert!(matches!(a.value(), Value::Int(200)));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Attr<'a> {
    key: &'static str,
    value: Value<'a>,
}

impl<'a> Attr<'a> {
    /// An attribute from a key and a value.
    pub const fn new(key: &'static str, value: Value<'a>) -> Attr<'a> {
        Attr { key, value }
    }
    /// The key.
    pub fn key(&self) -> &'static str {
        self.key
    }
    /// The value.
    pub fn value(&self) -> Value<'a> {
        self.value
    }
}

/// A text attribute.
pub fn string<'a>(key: &'static str, value: &'a str) -> Attr<'a> {
    Attr::new(key, Value::Str(value))
}
/// A list-of-strings attribute (a JSON array, `a,b` in pretty output).
pub fn strings<'a>(key: &'static str, values: impl Into<StrList<'a>>) -> Attr<'a> {
    Attr::new(key, Value::Strings(values.into()))
}
/// A signed integer attribute.
pub fn int(key: &'static str, value: i64) -> Attr<'static> {
    Attr::new(key, Value::Int(value))
}
/// An unsigned integer attribute.
pub fn uint(key: &'static str, value: u64) -> Attr<'static> {
    Attr::new(key, Value::Uint(value))
}
/// A float attribute.
pub fn float(key: &'static str, value: f64) -> Attr<'static> {
    Attr::new(key, Value::Float(value))
}
/// A boolean attribute.
pub fn bool(key: &'static str, value: bool) -> Attr<'static> {
    Attr::new(key, Value::Bool(value))
}
/// A time attribute (RFC 3339, UTC, nanoseconds).
pub fn time(key: &'static str, value: SystemTime) -> Attr<'static> {
    Attr::new(key, Value::Time(value))
}
/// A duration attribute (integer nanoseconds in JSON).
pub fn duration(key: &'static str, value: Duration) -> Attr<'static> {
    Attr::new(key, Value::Duration(value))
}
/// The error attribute, under the key `error`, keeping the error and its `source()` chain.
pub fn error<'a>(err: &'a (dyn StdError + 'static)) -> Attr<'a> {
    Attr::new(keys::ERROR, Value::Error(err))
}
/// An error under another key than `error`.
pub fn error_at<'a>(key: &'static str, err: &'a (dyn StdError + 'static)) -> Attr<'a> {
    Attr::new(key, Value::Error(err))
}
/// Any value with `Display`, rendered as text.
pub fn display<'a>(key: &'static str, value: &'a (dyn fmt::Display + Sync)) -> Attr<'a> {
    Attr::new(key, Value::Display(value))
}
/// Any serde value, encoded as JSON (objects stay objects).
pub fn any<'a, T: serde::Serialize + Sync>(key: &'static str, value: &'a T) -> Attr<'a> {
    Attr::new(key, Value::Any(value))
}
/// A key with no value (JSON `null`).
pub fn null(key: &'static str) -> Attr<'static> {
    Attr::new(key, Value::Null)
}

/// An attribute that owns its value: what `with` keeps for a child logger.
#[derive(Clone, Debug)]
pub struct OwnedAttr {
    key: &'static str,
    value: OwnedValue,
}

#[derive(Clone, Debug)]
enum OwnedValue {
    Str(String),
    Strings(Vec<String>),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Time(SystemTime),
    Duration(Duration),
    ErrorChain(Vec<String>),
    Json(serde_json::Value),
    Null,
}

impl OwnedAttr {
    /// Copies a borrowed attribute.
    pub fn from_attr(a: &Attr<'_>) -> OwnedAttr {
        let value = match a.value {
            Value::Str(s) => OwnedValue::Str(s.to_string()),
            Value::Strings(l) => OwnedValue::Strings(l.iter().map(str::to_string).collect()),
            Value::Int(v) => OwnedValue::Int(v),
            Value::Uint(v) => OwnedValue::Uint(v),
            Value::Float(v) => OwnedValue::Float(v),
            Value::Bool(v) => OwnedValue::Bool(v),
            Value::Time(v) => OwnedValue::Time(v),
            Value::Duration(v) => OwnedValue::Duration(v),
            Value::Error(e) => OwnedValue::ErrorChain(error_chain(e)),
            Value::ErrorChain(c) => OwnedValue::ErrorChain(c.to_vec()),
            Value::Display(d) => OwnedValue::Str(d.to_string()),
            Value::Any(v) => OwnedValue::Json(
                serde_json::to_value(v)
                    .unwrap_or_else(|e| serde_json::Value::String(format!("!serialize: {e}"))),
            ),
            Value::Null => OwnedValue::Null,
        };
        OwnedAttr { key: a.key, value }
    }

    /// The key.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// A borrowed view, as formatters take it.
    pub fn as_attr(&self) -> Attr<'_> {
        let value = match &self.value {
            OwnedValue::Str(s) => Value::Str(s),
            OwnedValue::Strings(l) => Value::Strings(StrList::Strings(l)),
            OwnedValue::Int(v) => Value::Int(*v),
            OwnedValue::Uint(v) => Value::Uint(*v),
            OwnedValue::Float(v) => Value::Float(*v),
            OwnedValue::Bool(v) => Value::Bool(*v),
            OwnedValue::Time(v) => Value::Time(*v),
            OwnedValue::Duration(v) => Value::Duration(*v),
            OwnedValue::ErrorChain(c) => Value::ErrorChain(c),
            OwnedValue::Json(j) => Value::Any(j),
            OwnedValue::Null => Value::Null,
        };
        Attr::new(self.key, value)
    }
}

/// The messages of an error and of each of its sources, outermost first.
pub fn error_chain(err: &(dyn StdError + 'static)) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push(e.to_string());
        cur = e.source();
        if out.len() >= 64 {
            break;
        }
    }
    out
}

/// Keys whose values are secret and are masked in every output.
///
/// A key is secret when, lower-cased with `-` read as `_`, it contains one of the
/// patterns. The default patterns are `authorization`, `password`, `passwd`, `token`,
/// `secret`, `dsn`, `api_key`, `apikey`, `cookie`, `private_key` and `credential`.
///
/// ```
/// use piko_obs_logger::SecretKeys;
/// let s = SecretKeys::default();
/// assert!(s.is_secret("Authorization"));
/// assert!(s.is_secret("x-api-key"));
/// assert!(s.is_secret("db_password"));
/// assert!(!s.is_secret("path"));
/// ```
#[derive(Clone)]
pub struct SecretKeys {
    /// Shared: every logger made with `with` keeps a copy, so cloning must be cheap.
    inner: std::sync::Arc<SecretPatterns>,
}

struct SecretPatterns {
    patterns: Vec<Vec<u8>>,
    /// `first[b]` is set when some pattern starts with byte `b`.
    first: [bool; 256],
    /// Distinguishes pattern sets in the per-thread cache of answers.
    id: u64,
}

static NEXT_SECRETS_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The longest JSON member prefix (`,"key":`, the key escaped) a key cache slot holds.
const KEY_JSON_MAX: usize = 32;

/// What the per-thread key cache knows of one static key: its address and length, the
/// pattern set that decided whether it is secret, that answer, and the key's JSON member
/// prefix `,"key":` (`json_len` 0 when it does not fit).
#[derive(Clone, Copy)]
pub(crate) struct KeySlot {
    addr: usize,
    len: usize,
    secrets: u64,
    secret: bool,
    json_len: u8,
    json: [u8; KEY_JSON_MAX],
}

const EMPTY_KEY_SLOT: KeySlot = KeySlot {
    addr: 0,
    len: 0,
    secrets: 0,
    secret: false,
    json_len: 0,
    json: [0; KEY_JSON_MAX],
};

/// Slots in the per-thread key cache (a power of two).
const KEY_SLOTS: usize = 128;

thread_local! {
    static KEY_CACHE: std::cell::RefCell<[KeySlot; KEY_SLOTS]> =
        const { std::cell::RefCell::new([EMPTY_KEY_SLOT; KEY_SLOTS]) };
}

impl KeySlot {
    /// Decides and encodes `key` for the pattern set `secrets`.
    fn new(key: &'static str, secrets: &SecretKeys) -> KeySlot {
        let mut json = Vec::with_capacity(key.len() + 4);
        json.push(b',');
        crate::json::write_str(&mut json, key);
        json.push(b':');
        let mut slot = KeySlot {
            addr: key.as_ptr() as usize,
            len: key.len(),
            secrets: secrets.inner.id,
            secret: secrets.is_secret(key),
            json_len: 0,
            json: [0; KEY_JSON_MAX],
        };
        if let Some(dst) = slot.json.get_mut(..json.len()) {
            dst.copy_from_slice(&json);
            slot.json_len = json.len() as u8;
        }
        slot
    }

    /// The key's JSON member prefix `,"key":`, or `None` when it is too long to cache.
    #[inline]
    fn json(&self) -> Option<&[u8]> {
        self.json
            .get(..usize::from(self.json_len))
            .filter(|j| !j.is_empty())
    }
}

/// Runs `f` on the per-thread cache slot of the static `key` under `secrets`, filling it
/// first when the key is missing: a `&'static str` is never freed, so its address always
/// names the same text. `f` reads the slot in place (no copy of it on the way), and the
/// cache is written only when a key is first seen. A nested call (a value's `Display`
/// that logs) finds the cache in use and runs `f` on a fresh slot.
#[inline]
fn with_cached_key<R>(
    key: &'static str,
    secrets: &SecretKeys,
    mut f: impl FnMut(&KeySlot) -> R,
) -> R {
    let addr = key.as_ptr() as usize;
    let id = secrets.inner.id;
    // Fibonacci hashing of the address; two neighbouring slots make collisions between
    // the few keys of a hot call site unlikely to thrash.
    let h = (((addr ^ key.len()) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57) as usize;
    let second = (h + 1) & (KEY_SLOTS - 1);
    let hit = |e: &&KeySlot| e.addr == addr && e.len == key.len() && e.secrets == id;
    let cached = KEY_CACHE.try_with(|c| {
        let mut cache = c.try_borrow_mut().ok()?;
        if let Some(e) = cache.get(h).filter(hit) {
            return Some(f(e));
        }
        if let Some(e) = cache.get(second).filter(hit) {
            return Some(f(e));
        }
        // Fill the first slot, moving its entry to the second.
        let old = cache.get(h).copied()?;
        *cache.get_mut(second)? = old;
        let e = cache.get_mut(h)?;
        *e = KeySlot::new(key, secrets);
        Some(f(e))
    });
    match cached {
        Ok(Some(r)) => r,
        _ => f(&KeySlot::new(key, secrets)),
    }
}

/// Appends the JSON member prefix `,"key":` of the static `key` to `buf` and returns
/// whether its values are masked under `secrets`, both from the per-thread key cache.
#[inline]
pub(crate) fn write_cached_key(buf: &mut Vec<u8>, key: &'static str, secrets: &SecretKeys) -> bool {
    with_cached_key(key, secrets, |e| {
        match e.json() {
            Some(prefix) => buf.extend_from_slice(prefix),
            None => {
                buf.push(b',');
                crate::json::write_str(buf, key);
                buf.push(b':');
            }
        }
        e.secret
    })
}

/// What a secret value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

impl SecretKeys {
    /// The default patterns.
    pub const DEFAULT_PATTERNS: [&'static str; 11] = [
        "authorization",
        "password",
        "passwd",
        "token",
        "secret",
        "dsn",
        "api_key",
        "apikey",
        "cookie",
        "private_key",
        "credential",
    ];

    /// Secret keys from these patterns (matched case-insensitively as substrings).
    pub fn new<I, S>(patterns: I) -> SecretKeys
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut s = SecretPatterns {
            patterns: Vec::new(),
            first: [false; 256],
            id: NEXT_SECRETS_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        for p in patterns {
            let p: Vec<u8> = p.as_ref().bytes().map(normalise).collect();
            if let Some(&b) = p.first() {
                s.first[usize::from(b)] = true;
                s.patterns.push(p);
            }
        }
        SecretKeys {
            inner: std::sync::Arc::new(s),
        }
    }

    /// No key is secret.
    pub fn none() -> SecretKeys {
        SecretKeys::new(std::iter::empty::<&str>())
    }

    /// Whether values under the static `key` must be masked. Answers are cached per
    /// thread by the key's address: a `&'static str` is never freed, so its address
    /// always names the same text.
    #[inline]
    pub fn is_secret_static(&self, key: &'static str) -> bool {
        if self.inner.patterns.is_empty() {
            return false;
        }
        with_cached_key(key, self, |e| e.secret)
    }

    /// Whether values under `key` must be masked.
    #[inline]
    pub fn is_secret(&self, key: &str) -> bool {
        let k = key.as_bytes();
        for i in 0..k.len() {
            if !self.inner.first[usize::from(normalise(k[i]))] {
                continue;
            }
            let rest = &k[i..];
            for p in &self.inner.patterns {
                if p.len() <= rest.len() && p.iter().zip(rest).all(|(a, b)| *a == normalise(*b)) {
                    return true;
                }
            }
        }
        false
    }
}

#[inline]
fn normalise(b: u8) -> u8 {
    if b == b'-' {
        b'_'
    } else {
        b.to_ascii_lowercase()
    }
}

impl Default for SecretKeys {
    fn default() -> Self {
        SecretKeys::new(SecretKeys::DEFAULT_PATTERNS)
    }
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.inner
                    .patterns
                    .iter()
                    .map(|p| String::from_utf8_lossy(p)),
            )
            .finish()
    }
}

/// `bytes` as lower-case hex written into `out` (which must be twice as long), without
/// the formatting machinery: how `trace_id` and `span_id` fields are written.
///
/// ```
/// let mut out = [0u8; 4];
/// assert_eq!(piko_obs_logger::attr::hex(&[0x0a, 0xff], &mut out), "0aff");
/// ```
pub fn hex<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    std::str::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(Inner);
    #[derive(Debug)]
    struct Inner;
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("query failed")
        }
    }
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("connection reset")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }
    impl StdError for Inner {}

    #[test]
    fn error_attribute_keeps_the_chain() {
        let e = Outer(Inner);
        let a = error(&e);
        assert_eq!(a.key(), "error");
        let owned = OwnedAttr::from_attr(&a);
        match owned.as_attr().value() {
            Value::ErrorChain(c) => assert_eq!(c, ["query failed", "connection reset"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn secret_patterns_match_case_and_dash_insensitively() {
        let s = SecretKeys::default();
        for k in [
            "authorization",
            "AUTHORIZATION",
            "proxy-authorization",
            "password",
            "access_token",
            "client_secret",
            "sentry_dsn",
            "X-Api-Key",
            "apikey",
            "session_cookie",
        ] {
            assert!(s.is_secret(k), "{k}");
        }
        for k in [
            "path",
            "status",
            "latency_ms",
            "user",
            "trace_id",
            "dns_name",
        ] {
            assert!(!s.is_secret(k), "{k}");
        }
        let custom = SecretKeys::new(["pin"]);
        assert!(custom.is_secret("card_PIN"));
        assert!(!custom.is_secret("password"));
        assert!(!SecretKeys::none().is_secret("password"));
    }

    /// The per-thread key cache gives the escaped member prefix and the answer of the
    /// pattern set asked, on a miss and on a hit alike, and keys too long for a slot
    /// are encoded in place.
    #[test]
    fn cached_keys_give_the_member_prefix_and_follow_the_pattern_set() {
        let default = SecretKeys::default();
        let none = SecretKeys::none();
        let long = "a_key_far_longer_than_a_cache_slot_holds";
        let mut expected = Vec::new();
        for round in 0..2 {
            let mut buf = Vec::new();
            assert!(
                write_cached_key(&mut buf, "db_password", &default),
                "{round}"
            );
            assert!(!write_cached_key(&mut buf, "db_password", &none), "{round}");
            assert!(!write_cached_key(&mut buf, "quo\"te", &default), "{round}");
            assert!(!write_cached_key(&mut buf, long, &default), "{round}");
            assert!(default.is_secret_static("db_password"));
            assert!(!none.is_secret_static("db_password"));
            if round == 0 {
                expected = buf;
            } else {
                assert_eq!(buf, expected);
            }
        }
        assert_eq!(
            String::from_utf8(expected).unwrap(),
            format!(r#","db_password":,"db_password":,"quo\"te":,"{long}":"#)
        );
    }

    #[test]
    fn owned_copies_keep_every_kind() {
        let list = ["a", "b"];
        let when = SystemTime::UNIX_EPOCH;
        let shown = 42u8;
        let obj = serde_json::json!({"k": 1});
        let attrs = [
            string("s", "x"),
            strings("l", &list),
            int("i", -1),
            uint("u", 1),
            float("f", 1.5),
            bool("b", true),
            time("t", when),
            duration("d", Duration::from_millis(3)),
            display("disp", &shown),
            any("obj", &obj),
            null("n"),
        ];
        let owned: Vec<OwnedAttr> = attrs.iter().map(OwnedAttr::from_attr).collect();
        let rendered: Vec<String> = owned
            .iter()
            .map(|o| format!("{}={:?}", o.key(), o.as_attr().value()))
            .collect();
        assert_eq!(
            rendered,
            [
                "s=Str(\"x\")",
                "l=[\"a\", \"b\"]",
                "i=Int(-1)",
                "u=Uint(1)",
                "f=Float(1.5)",
                "b=Bool(true)",
                "t=Time(SystemTime { tv_sec: 0, tv_nsec: 0 })",
                "d=Duration(3ms)",
                "disp=Str(\"42\")",
                "obj=Any(..)",
                "n=Null",
            ]
        );
    }
}
