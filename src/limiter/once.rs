//! Idempotent charging: a request carrying an idempotency key (a domain's `idempotency:` rule)
//! is charged once per key; a repeat within the rule's `ttl` charges nothing and gets the
//! first attempt's outcomes again.
//!
//! **Two kinds of calls.** A call that only charges or checks (Envoy's request-time call) is a
//! [`Kind::Decision`]: its first attempt is decided and recorded, a repeat is answered from the
//! record and charges nothing. A call that refunds (Envoy's stream-done call of a token budget:
//! the tokens used, the reservation given back) is a [`Kind::Settlement`]: its refunds are
//! applied once per key, its charges every time. So a retried model call is not reserved again
//! and its reservation is not returned twice, while the tokens each attempt really used are
//! charged: a client cannot earn budget by aborting a first attempt and retrying, nor by
//! retrying a finished one.
//!
//! **What is a repeat.** A record is named by the key, the kind and the call's counters (their
//! keys, sorted, each once) — not by hits: a retry that asks for more gets the first decision.
//! The name is a SHA-256 digest ([`Once::digest`]) of those, length-prefixed, so no key value
//! can be chosen to land on another request's record, and the counter keys scope a record to
//! the caller's own counters. A repeat whose ops do not line up with its record (the same
//! counters charged twice in one call, say) charges nothing: its ops only check.
//!
//! **Where records live.** Next to the counters they answer for, written in the same atomic
//! step: the memory store holds a bounded table ([`crate::store::replay`]) and decides a
//! request's ops while holding the record's lock; Redis keeps one record per script call
//! (per shard, or per Cluster slot) under the call's first counter key plus `_#r<digest>`,
//! read and written by the very script that charges that shard's counters. Each shard is
//! therefore charged at most once per record however many attempts race, and no extra round
//! trip is made.
//!
//! **Bounded repeats.** A rule's `max_repeats` caps how many repeats of a decision one record
//! answers (a client reusing one key for every request gets at most that many free); past it
//! the call is decided and charged as a first attempt, and its record replaces the old one.
//! Settlements need no cap: their repeats still pay their charges.
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

/// One idempotent store call: the request's key, what the call does, and the ops a repeat of
/// a settlement runs instead ([`without_refund`] of each, same positions as the call's ops).
#[derive(Debug, Clone, Copy)]
pub struct OnceCall<'a> {
    /// The key and ttl.
    pub once: Once<'a>,
    /// Decision or settlement.
    pub kind: Kind,
    /// A settlement repeat's ops (empty for a decision).
    pub repeat: &'a [Op],
}

/// What a call does, as its record tells it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Charges and checks only: a repeat is answered from the record, charged nothing.
    Decision,
    /// Refunds (a settlement): a repeat's refunds are dropped, its charges still apply.
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

/// `op` as a repeat of a settlement runs it: refunds dropped (they become checks), charges
/// kept.
pub fn without_refund(op: &Op) -> Op {
    let mut o = op.clone();
    if o.refund {
        o.hits = 0;
        o.refund = false;
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
