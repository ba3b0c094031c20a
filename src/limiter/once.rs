//! Idempotent charging: a request carrying an idempotency key (a domain's `idempotency:` rule)
//! is charged once per key; a repeat within the rule's `ttl` is not charged again and gets the
//! first attempt's outcomes.
//!
//! **Two kinds of calls.** A call that only charges or checks (Envoy's request-time call) is a
//! [`Kind::Decision`]: its first attempt is decided and recorded, a repeat is answered from the
//! record and charges nothing. A call that refunds (Envoy's stream-done call of a token budget:
//! the tokens used, and the reservation given back) is a [`Kind::Settlement`]: it is never
//! answered from a record — each attempt's charges (the tokens it really used) apply — but its
//! refunds on a counter are capped by what the key still has *reserved* there: the hits its
//! decisions charged on that counter minus what its settlements already gave back (the key's
//! *ledger* on the counter, kept for the ttl). So a retried model call is not reserved again,
//! no reservation is returned twice or returned when it was never made, whatever the order,
//! the timing or the `x-max-tokens` of the attempts, and every attempt pays what it used.
//!
//! **What is a repeat.** A decision record is named by the key and the call's counters (their
//! keys, sorted, each once) — not by hits: a retry that asks for more gets the first decision.
//! The name is a SHA-256 digest ([`Once::digest`]) of those, length-prefixed, so no key value
//! can be chosen to land on another request's record, and the counter keys scope a record to
//! the caller's own counters. A repeat whose ops do not line up with its record (the same
//! counters charged twice in one call, say) charges nothing: its ops only check. A rule's
//! `max_repeats` caps how many repeats one record answers; past it the call is a first attempt
//! again (charged, recorded afresh, and its charge reserved in the ledger).
//!
//! **Where records live.** Next to the counters they answer for, written in the same atomic
//! step: the memory store holds bounded tables ([`crate::store::replay`]) and decides a call's
//! ops while holding its record's lock; Redis keeps one record per script call (per shard, or
//! per Cluster slot) under the call's first counter key plus `_#r<digest>`, and a ledger per
//! counter under its key plus `_#rl<digest of the key>`, read and written by the very script
//! that charges that shard's counters. Each shard is therefore charged at most once per record
//! however many attempts race, and no extra round trip is made.
//!
//! **What a repeat answers.** The first attempt's outcomes exactly (allowed, remaining, used),
//! with `reset_after` shortened by the time since, and [`crate::limiter::Outcome::replayed`]
//! set.

use crate::limiter::{Op, Outcome};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The longest record time-to-live a rule may ask for.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The idempotency of one request: its key and how long its record lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Once<'r> {
    /// The request's idempotency key (the value of its idempotency descriptor); bounded by
    /// the request's value-size limit, and only ever hashed.
    pub key: &'r str,
    /// How long a repeat is recognised (the rule's `ttl`, at most [`MAX_TTL`]).
    pub ttl: Duration,
    /// How many repeats of a decision one record answers; past that the key is charged as a
    /// new request (and recorded afresh). 0: every repeat within the ttl.
    pub max_repeats: u32,
}

/// One idempotent store call: the request's key, what the call does, and for a settlement
/// the hits each op charges and refunds before netting ([`crate::limiter::plan::gross`],
/// same positions as the call's ops).
#[derive(Debug, Clone, Copy)]
pub struct OnceCall<'a> {
    /// The key and ttl.
    pub once: Once<'a>,
    /// Decision or settlement.
    pub kind: Kind,
    /// A settlement's `(charged, refunded)` per op (empty for a decision).
    pub gross: &'a [(u32, u32)],
}

/// What a call does, as its record tells it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Charges and checks only: a repeat is answered from the record, charged nothing.
    Decision,
    /// Refunds (a settlement): charges apply, refunds are capped by the key's ledger.
    Settlement,
}

impl Kind {
    /// The kind of a call running `ops`.
    pub fn of<'o>(ops: impl IntoIterator<Item = &'o Op>) -> Kind {
        if ops.into_iter().any(|o| o.refund && o.hits > 0) {
            Kind::Settlement
        } else {
            Kind::Decision
        }
    }
}

impl Once<'_> {
    /// The record's name for a call of `kind` running `ops` (all of them, or one shard's): 16
    /// bytes of SHA-256 over the key, the kind and the ops' counter keys (sorted, each once),
    /// each length-prefixed.
    pub fn digest<'o>(&self, kind: Kind, ops: impl IntoIterator<Item = &'o Op>) -> [u8; 16] {
        let mut keys: Vec<&str> = ops.into_iter().map(|o| o.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut h = Sha256::new();
        h.update(b"sluice-once-v2");
        h.update([kind as u8]);
        h.update((self.key.len() as u64).to_le_bytes());
        h.update(self.key.as_bytes());
        for key in keys {
            h.update((key.len() as u64).to_le_bytes());
            h.update(key.as_bytes());
        }
        let full = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The name of this key's ledger on counter `counter` (memory store): 16 bytes of SHA-256
    /// over both, length-prefixed.
    pub fn ledger(&self, counter: &str) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"sluice-ledger-v1");
        h.update((self.key.len() as u64).to_le_bytes());
        h.update(self.key.as_bytes());
        h.update((counter.len() as u64).to_le_bytes());
        h.update(counter.as_bytes());
        first16(&h.finalize())
    }

    /// The digest naming this key's ledgers in Redis (appended to each counter's key).
    pub fn ledger_tag(&self) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"sluice-ledger-v1");
        h.update((self.key.len() as u64).to_le_bytes());
        h.update(self.key.as_bytes());
        first16(&h.finalize())
    }

    /// The record's time-to-live in whole milliseconds (at least 1).
    pub fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.min(MAX_TTL).as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// `digest` in lower-case hex (the Redis record's suffix).
pub fn hex(digest: &[u8; 16]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(32);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A stored outcome answered again `elapsed` after it was decided. A denial keeps its
/// `retry_after`: the record denies every repeat until it expires, so a wait shortened to zero
/// would only invite a tight retry loop.
pub fn replay(o: &Outcome, elapsed: Duration) -> Outcome {
    Outcome {
        reset_after: o.reset_after.saturating_sub(elapsed),
        fallback: false,
        replayed: true,
        ..*o
    }
}

/// The first 16 bytes of a digest.
fn first16(full: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The hits a decision's op reserved in its key's ledger: its charge if the store counted it
/// (admitted, or a fixed or calendar window, which counts denied hits as upstream does).
pub fn reserved(op: &Op, outcome: &Outcome) -> u64 {
    if op.refund || op.hits == 0 {
        return 0;
    }
    if outcome.allowed || op.algorithm.is_fixed_window() {
        u64::from(op.hits)
    } else {
        0
    }
}

/// A settlement's op once its refund is capped to `refund` (of its gross `charged`): the net,
/// a charge, a refund, or a check when they cancel out.
pub fn netted(op: &Op, charged: u32, refund: u32) -> Op {
    let mut o = op.clone();
    if charged >= refund {
        o.hits = charged - refund;
        o.refund = false;
    } else {
        o.hits = refund - charged;
        o.refund = true;
    }
    o
}

/// `op` as a repeat that cannot be replayed runs it: a check.
pub fn as_check(op: &Op) -> Op {
    let mut o = op.clone();
    o.hits = 0;
    o.refund = false;
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::Algorithm;

    fn op(key: &str, hits: u32, refund: bool) -> Op {
        Op {
            key: key.into(),
            algorithm: Algorithm::FixedWindow,
            requests_per_unit: 10,
            period_secs: 60,
            burst: 10,
            hits,
            refund,
        }
    }

    fn once(key: &str) -> Once<'_> {
        Once {
            key,
            ttl: Duration::from_secs(600),
            max_repeats: 0,
        }
    }

    #[test]
    fn records_are_named_by_key_kind_and_counters_not_hits_or_order() {
        let d = |key: &str, kind: Kind, ops: &[Op]| once(key).digest(kind, ops);
        let a = d("k", Kind::Decision, &[op("d_t_a", 1, false)]);
        assert_eq!(a, d("k", Kind::Decision, &[op("d_t_a", 7, false)]));
        assert_eq!(
            d("k", Kind::Settlement, &[op("d_t_a", 1, true)]),
            d(
                "k",
                Kind::Settlement,
                &[op("d_t_a", 300, false), op("d_t_a", 0, false)]
            ),
            "a refund-only settlement and a netted one are one record"
        );
        assert_ne!(a, d("k", Kind::Settlement, &[op("d_t_a", 1, false)]));
        assert_ne!(a, d("k", Kind::Decision, &[op("d_t_b", 1, false)]));
        assert_ne!(a, d("k2", Kind::Decision, &[op("d_t_a", 1, false)]));
        assert_eq!(
            d("k", Kind::Decision, &[op("x", 1, false), op("y", 1, false)]),
            d("k", Kind::Decision, &[op("y", 1, false), op("x", 1, false)])
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(Kind::of(&[op("a", 1, false)]), Kind::Decision);
        assert_eq!(
            Kind::of(&[op("a", 1, false), op("a", 5, true)]),
            Kind::Settlement
        );
        assert_eq!(Kind::of(&[op("a", 0, true)]), Kind::Decision);
    }

    #[test]
    fn boundaries_between_key_and_counters_cannot_be_shifted() {
        // Without length prefixes "ab" + "c" and "a" + "bc" would hash alike.
        assert_ne!(
            once("ab").digest(Kind::Decision, &[op("c", 1, false)]),
            once("a").digest(Kind::Decision, &[op("bc", 1, false)])
        );
        assert_ne!(
            once("k").digest(Kind::Decision, &[op("ab", 1, false), op("c", 1, false)]),
            once("k").digest(Kind::Decision, &[op("a", 1, false), op("bc", 1, false)])
        );
    }

    #[test]
    fn a_replay_shortens_waits_and_says_so() {
        let o = Outcome {
            allowed: false,
            remaining: 0,
            reset_after: Duration::from_secs(30),
            retry_after: Duration::from_secs(5),
            used_before: 10,
            used_after: 11,
            fallback: true,
            replayed: false,
        };
        let r = replay(&o, Duration::from_secs(10));
        assert_eq!(r.reset_after, Duration::from_secs(20));
        assert_eq!(
            r.retry_after,
            Duration::from_secs(5),
            "a denial's wait stays"
        );
        assert!(r.replayed && !r.fallback && !r.allowed);
        assert_eq!((r.used_before, r.used_after), (10, 11));
    }

    #[test]
    fn ttl_is_bounded() {
        let long = Once {
            key: "k",
            ttl: Duration::from_secs(1 << 40),
            max_repeats: 0,
        };
        assert_eq!(long.ttl_ms(), 86_400_000);
        let zero = Once {
            key: "k",
            ttl: Duration::ZERO,
            max_repeats: 0,
        };
        assert_eq!(zero.ttl_ms(), 1);
    }
}
