//! Idempotent charging: a request carrying an idempotency key (a domain's `idempotency:` rule)
//! is charged once per key; a repeat within the rule's `ttl` charges nothing and gets the
//! first attempt's outcomes again.
//!
//! **What is a repeat.** A *record* names the key and the shape of what a store call runs: the
//! counters (their keys, in order) and, per op, whether it charges, refunds or only checks —
//! not its hits. So a retry is a repeat even when its `hits_addend` differs (the first charge
//! stands), while Envoy's stream-done call of the same request (other ops: a settlement) is
//! a record of its own, and a retry's stream-done call repeats the first one's. The record's
//! name is a SHA-256 digest ([`Once::digest`]) of the length-prefixed key and shape, so no key
//! value can be chosen to land on another request's record.
//!
//! **Where records live.** Next to the counters they answer for, written in the same atomic
//! step: the memory store holds a bounded table ([`crate::store::replay`]) and decides a
//! request's ops while holding the record's lock; Redis keeps one record per script call
//! (per shard, or per Cluster slot) under the call's first counter key plus `_#r<digest>`,
//! claimed and written by the very script that charges that shard's counters. Each shard is
//! therefore charged at most once per record however many attempts race, and no extra round
//! trip is made.
//!
//! **What a repeat answers.** The first attempt's outcomes exactly (allowed, remaining, used),
//! with `reset_after` and `retry_after` shortened by the time since, and
//! [`crate::limiter::Outcome::replayed`] set.

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
}

/// What an op does, as a record tells attempts apart.
fn kind(op: &Op) -> u8 {
    match (op.hits, op.refund) {
        (0, _) => 0,
        (_, false) => 1,
        (_, true) => 2,
    }
}

impl Once<'_> {
    /// The record's name for a call running `ops` (all of them, or one shard's): 16 bytes of
    /// SHA-256 over the key and the ops' counter keys and kinds, each length-prefixed.
    pub fn digest<'o>(&self, ops: impl IntoIterator<Item = &'o Op>) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"sluice-once-v1");
        h.update((self.key.len() as u64).to_le_bytes());
        h.update(self.key.as_bytes());
        for op in ops {
            h.update((op.key.len() as u64).to_le_bytes());
            h.update(op.key.as_bytes());
            h.update([kind(op)]);
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

/// A stored outcome answered again `elapsed` after it was decided.
pub fn replay(o: &Outcome, elapsed: Duration) -> Outcome {
    Outcome {
        reset_after: o.reset_after.saturating_sub(elapsed),
        retry_after: o.retry_after.saturating_sub(elapsed),
        fallback: false,
        replayed: true,
        ..*o
    }
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
        }
    }

    #[test]
    fn hits_do_not_change_the_record_but_kinds_and_keys_do() {
        let a = once("k").digest(&[op("d_t_a", 1, false)]);
        assert_eq!(a, once("k").digest(&[op("d_t_a", 7, false)]));
        assert_ne!(a, once("k").digest(&[op("d_t_a", 1, true)]));
        assert_ne!(a, once("k").digest(&[op("d_t_a", 0, false)]));
        assert_ne!(a, once("k").digest(&[op("d_t_b", 1, false)]));
        assert_ne!(a, once("k2").digest(&[op("d_t_a", 1, false)]));
        assert_ne!(
            a,
            once("k").digest(&[op("d_t_a", 1, false), op("d_t_a", 0, false)])
        );
    }

    #[test]
    fn boundaries_between_key_and_counters_cannot_be_shifted() {
        // Without length prefixes "ab" + "c" and "a" + "bc" would hash alike.
        assert_ne!(
            once("ab").digest(&[op("c", 1, false)]),
            once("a").digest(&[op("bc", 1, false)])
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
        assert_eq!(r.retry_after, Duration::ZERO);
        assert!(r.replayed && !r.fallback && !r.allowed);
        assert_eq!((r.used_before, r.used_after), (10, 11));
    }

    #[test]
    fn ttl_is_bounded() {
        let long = Once {
            key: "k",
            ttl: Duration::from_secs(1 << 40),
        };
        assert_eq!(long.ttl_ms(), 86_400_000);
        let zero = Once {
            key: "k",
            ttl: Duration::ZERO,
        };
        assert_eq!(zero.ttl_ms(), 1);
    }
}
