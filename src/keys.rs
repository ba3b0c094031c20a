//! Every counter key, built in one place, with an encoding no descriptor value can forge.
//!
//! A counter key is `domain_key1_value1_…_keyN_valueN`, envoyproxy/ratelimit's cache-key shape
//! (Redis appends `_<window start>` for the fixed window). Upstream's keys are ambiguous: the
//! domain `a` with the entry `b_c = d` and the entry `b = c_d` share `a_b_c_d`, and a value
//! `alice_#1` could name the counter of alice's second limit. Here each component is
//! percent-escaped — `%`, `_`, `#`, `:`, `{` and `}` become `%25`, `%5F`, `%23`, `%3A`, `%7B`,
//! `%7D` — so a component never contains the separator, and components with none of those bytes
//! keep upstream's exact form. What sluice adds after the entries are *markers*, components
//! that start with `#` (which no escaped component can):
//!
//! - `#2`, `#3`, …: a descriptor's second, third, … limit (`rate_limits:`);
//! - `#o`: a runtime override that counts on its own counter (another unit or algorithm);
//! - `#w`, `#l`, `#b`: the sliding window, sliding log and token bucket (the fixed window has
//!   none, keeping upstream's key), so a rule that changes algorithm starts a fresh counter
//!   instead of reading another algorithm's state;
//! - `#cal` (UTC) or `#cal+HHMM` / `#cal-HHMM`: a calendar window (`calendar: true`), so a rule
//!   switched from upstream's 30-day month to calendar months (or to another offset) never
//!   inherits the old count. Redis appends the window's start as for every fixed window
//!   (`…_#cal_<start of the month>`), so two months never share a counter either.
//! - `#c` (after the entries): a concurrency rule's slot table;
//! - `#r<digest>` (Redis only, after a whole counter key): an idempotency record of one script
//!   call ([`crate::limiter::once`]), stored beside the call's first counter (its Cluster slot).
//!
//! A key longer than [`MAX_KEY_BYTES`] is replaced by `<domain>_#h<SHA-256 of the full key>`
//! (or `#h<…>` alone when the domain itself is long), so a counter costs a bounded number of
//! bytes in memory and in Redis whatever the values' length. Derived Redis keys
//! (`…_<window>`, `…:seq`) cannot collide with a counter key either: a window is all digits
//! where a counter key has an escaped key or a marker, and `:` is always escaped.

use crate::rules::model::Algorithm;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Longest counter key kept verbatim; longer ones are hashed (see the module docs).
pub const MAX_KEY_BYTES: usize = 192;

/// Longest domain kept in front of a hashed key (for readable keys in `redis-cli`).
const MAX_DOMAIN_PREFIX: usize = 64;

/// Whether a byte must be escaped inside a component.
fn special(b: u8) -> bool {
    matches!(b, b'%' | b'_' | b'#' | b':' | b'{' | b'}')
}

/// Appends `text` as one escaped component.
fn push_component(out: &mut String, text: &str) {
    if !text.bytes().any(special) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        if c.is_ascii() && special(c as u8) {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{:02X}", c as u8);
        } else {
            out.push(c);
        }
    }
}

/// The key of a descriptor's counters before the limit is chosen: the escaped domain and
/// entries. Built while the descriptor is matched, finished by [`CounterBase::counter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterBase {
    /// `domain_k1_v1_…`, every component escaped.
    text: String,
    /// Bytes of `text` taken by the escaped domain (kept in front of hashed keys).
    domain_len: usize,
}

/// Which of a descriptor's counters a limit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterSlot {
    /// Position of the limit among the descriptor's limits (0: the first).
    pub index: usize,
    /// A runtime override that must not share the rule's counter.
    pub own_override: bool,
    /// How the counter counts (its state's shape differs per algorithm).
    pub algorithm: Algorithm,
}

impl CounterBase {
    /// The base for `domain`, with no entry yet.
    pub fn new(domain: &str) -> CounterBase {
        let mut text = String::with_capacity(64);
        push_component(&mut text, domain);
        let domain_len = text.len();
        CounterBase { text, domain_len }
    }

    /// Appends one descriptor entry.
    pub fn push_entry(&mut self, key: &str, value: &str) {
        self.text.push('_');
        push_component(&mut self.text, key);
        self.text.push('_');
        push_component(&mut self.text, value);
    }

    /// The base followed by every entry of `entries`.
    pub fn with_entries<'e>(
        domain: &str,
        entries: impl IntoIterator<Item = (&'e str, &'e str)>,
    ) -> CounterBase {
        let mut base = CounterBase::new(domain);
        for (k, v) in entries {
            base.push_entry(k, v);
        }
        base
    }

    /// The counter key of one limit.
    pub fn counter(&self, slot: CounterSlot) -> String {
        let mut key = String::with_capacity(self.text.len() + 8);
        key.push_str(&self.text);
        finish(key, self.domain_len, slot)
    }

    /// [`CounterBase::counter`] reusing the base's buffer (for its last, or only, limit).
    pub fn into_counter(self, slot: CounterSlot) -> String {
        finish(self.text, self.domain_len, slot)
    }

    /// The key of the descriptor's concurrency slots: the base and `_#c`, never a rate
    /// counter's key (no algorithm marks `#c`), bounded like every counter key.
    pub fn into_slots_key(self) -> String {
        let mut key = self.text;
        key.push_str("_#c");
        bound(key, self.domain_len)
    }

    /// The escaped text so far (tests and logs).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Appends the markers of `slot` to `key` (a base: escaped domain, then entries) and bounds
/// its length; `domain_len` bytes of `key` are the escaped domain.
fn finish(mut key: String, domain_len: usize, slot: CounterSlot) -> String {
    if slot.index > 0 {
        let _ = write!(key, "_#{}", slot.index + 1);
    }
    if slot.own_override {
        key.push_str("_#o");
    }
    match slot.algorithm {
        Algorithm::FixedWindow => {}
        Algorithm::CalendarWindow(calendar) => {
            key.push_str("_#cal");
            let minutes = calendar.offset_minutes();
            if minutes != 0 {
                let sign = if minutes < 0 { '-' } else { '+' };
                let m = minutes.unsigned_abs();
                let _ = write!(key, "{sign}{:02}{:02}", m / 60, m % 60);
            }
        }
        Algorithm::SlidingWindow => key.push_str("_#w"),
        Algorithm::SlidingLog => key.push_str("_#l"),
        Algorithm::TokenBucket => key.push_str("_#b"),
    }
    bound(key, domain_len)
}

/// A lease id as slot tables store it: bounded in size. An id of at most
/// [`MAX_LEASE_ID_BYTES`] not starting with `#` is kept verbatim; any other becomes
/// `#h<sha256 hex>` — no verbatim id starts with `#`, so no id can pose as another's hash.
pub fn lease_member(id: &str) -> std::borrow::Cow<'_, str> {
    if id.len() <= MAX_LEASE_ID_BYTES && !id.starts_with('#') {
        return std::borrow::Cow::Borrowed(id);
    }
    let digest = Sha256::digest(id.as_bytes());
    let mut hashed = String::with_capacity(66);
    hashed.push_str("#h");
    for b in digest {
        let _ = write!(hashed, "{b:02x}");
    }
    std::borrow::Cow::Owned(hashed)
}

/// The longest lease id kept verbatim in a slot table.
pub const MAX_LEASE_ID_BYTES: usize = 64;

/// Hashes `key` to a bounded length when it is longer than [`MAX_KEY_BYTES`], keeping its
/// escaped domain (`domain_len` bytes) in front when short.
fn bound(key: String, domain_len: usize) -> String {
    if key.len() <= MAX_KEY_BYTES {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut hashed = String::with_capacity(MAX_DOMAIN_PREFIX + 68);
    if domain_len <= MAX_DOMAIN_PREFIX {
        hashed.push_str(&key[..domain_len]);
        hashed.push('_');
    }
    hashed.push_str("#h");
    for b in digest {
        let _ = write!(hashed, "{b:02x}");
    }
    hashed
}

/// The stats key of a `detailed_metric` rule for one request: `domain.k1_v1.k2_v2` with every
/// runtime value (upstream's shape), values sanitized as upstream does for stat names (`.`,
/// `:` and `|` become `_`; a dot would also split the labels) and cut to 64 bytes each.
pub fn detailed_stats_key<'e>(
    stats_key: &str,
    entries: impl Iterator<Item = (&'e str, &'e str)>,
) -> String {
    let domain = stats_key.split('.').next().unwrap_or_default();
    let mut key = domain.to_owned();
    for (k, v) in entries {
        key.push('.');
        key.push_str(k);
        key.push('_');
        let mut taken = 0;
        for c in v.chars() {
            taken += c.len_utf8();
            if taken > 64 {
                break;
            }
            key.push(if matches!(c, '.' | ':' | '|') { '_' } else { c });
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::calendar::Calendar;

    fn slot(index: usize) -> CounterSlot {
        CounterSlot {
            index,
            own_override: false,
            algorithm: Algorithm::FixedWindow,
        }
    }

    fn key(domain: &str, entries: &[(&str, &str)], s: CounterSlot) -> String {
        CounterBase::with_entries(domain, entries.iter().copied()).counter(s)
    }

    #[test]
    fn plain_values_keep_upstreams_format() {
        assert_eq!(
            key("api", &[("tenant", "acme"), ("path", "/v1/*")], slot(0)),
            "api_tenant_acme_path_/v1/*"
        );
    }

    #[test]
    fn separators_in_values_cannot_forge_another_counter() {
        let a = key("a", &[("b_c", "d")], slot(0));
        let b = key("a", &[("b", "c_d")], slot(0));
        assert_ne!(a, b);
        let second = key("d", &[("user", "alice")], slot(1));
        let forged = key("d", &[("user", "alice_#2")], slot(0));
        assert_ne!(second, forged);
        let mut own = slot(0);
        own.own_override = true;
        assert_ne!(
            key("d", &[("user", "alice")], own),
            key("d", &[("user", "alice_#o")], slot(0))
        );
    }

    #[test]
    fn algorithms_get_their_own_counters() {
        let mut s = slot(0);
        let fixed = key("d", &[("k", "v")], s);
        s.algorithm = Algorithm::TokenBucket;
        assert_ne!(fixed, key("d", &[("k", "v")], s));
        assert_eq!(key("d", &[("k", "v")], s), "d_k_v_#b");
    }

    #[test]
    fn calendar_windows_get_their_own_counters() {
        let calendar = |minutes| Algorithm::CalendarWindow(Calendar::new(minutes).expect("offset"));
        let mut s = slot(0);
        let fixed = key("d", &[("k", "v")], s);
        s.algorithm = calendar(0);
        assert_eq!(key("d", &[("k", "v")], s), "d_k_v_#cal");
        assert_ne!(fixed, key("d", &[("k", "v")], s));
        s.algorithm = calendar(120);
        assert_eq!(key("d", &[("k", "v")], s), "d_k_v_#cal+0200");
        s.algorithm = calendar(-330);
        assert_eq!(key("d", &[("k", "v")], s), "d_k_v_#cal-0530");
        s.index = 1;
        assert_eq!(key("d", &[("k", "v")], s), "d_k_v_#2_#cal-0530");
        assert_ne!(
            key("d", &[("k", "v")], s),
            key("d", &[("k", "v_#2_#cal-0530")], slot(0)),
            "a value cannot pose as a calendar counter"
        );
    }

    #[test]
    fn long_keys_are_hashed_to_a_bounded_size() {
        let long = "x".repeat(100_000);
        let k = key("d", &[("k", &long)], slot(0));
        assert!(k.len() <= MAX_KEY_BYTES, "{}", k.len());
        assert!(k.starts_with("d_#h"));
        let other = key("d", &[("k", &format!("{long}y"))], slot(0));
        assert_ne!(k, other);
        let long_domain = "z".repeat(1_000);
        assert!(key(&long_domain, &[("k", "v")], slot(0)).starts_with("#h"));
    }

    fn component() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex("[a-c_#%:{}2obl+035-]{0,6}").expect("regex")
    }

    type Input = (String, Vec<(String, String)>, usize, bool, u8);

    /// The algorithms the property test draws from: the four by name and calendar windows at
    /// three offsets (UTC, east, west).
    fn algorithm_of(n: u8) -> Algorithm {
        match n % 7 {
            i @ 0..=3 => Algorithm::ALL[usize::from(i)],
            4 => Algorithm::CalendarWindow(Calendar::UTC),
            5 => Algorithm::CalendarWindow(Calendar::new(120).expect("offset")),
            _ => Algorithm::CalendarWindow(Calendar::new(-330).expect("offset")),
        }
    }

    fn encode((domain, entries, index, own, algorithm): &Input) -> String {
        let algorithm = algorithm_of(*algorithm);
        CounterBase::with_entries(
            domain,
            entries.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .counter(CounterSlot {
            index: *index,
            own_override: *own,
            algorithm,
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, failure_persistence: None, ..Default::default() })]

        /// Adversarial components built from the separator and marker alphabet: two different
        /// counters never share a key.
        #[test]
        fn different_counters_never_share_a_key(
            a in (component(), proptest::collection::vec((component(), component()), 1..4), 0usize..3, proptest::bool::ANY, 0u8..7),
            b in (component(), proptest::collection::vec((component(), component()), 1..4), 0usize..3, proptest::bool::ANY, 0u8..7),
        ) {
            let (ka, kb) = (encode(&a), encode(&b));
            let same_input = a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && a.3 == b.3 && a.4 % 7 == b.4 % 7;
            proptest::prop_assert_eq!(ka == kb, same_input, "{} vs {}", ka, kb);
        }
    }
}
