//! Token bucket as GCRA (generic cell rate algorithm): one stored "theoretical arrival time".
//!
//! Tokens refill at `requests_per_unit` per unit, one every `T = unit / requests_per_unit`; the
//! bucket holds `burst` tokens. A request of `n` hits passes iff `max(tat, now) + n·T − burst·T
//! ≤ now`; then `tat` moves forward by `n·T`. A denied request consumes nothing.

use crate::limiter::{Op, Outcome};
use std::time::Duration;

/// The stored state of one token bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Theoretical arrival time, in microseconds since the epoch: when the bucket will be full.
    pub tat: u64,
}

impl TokenBucket {
    /// Charges (or checks, or refunds) `op.hits` at `now`.
    pub fn decide(&mut self, now: Duration, op: &Op) -> Outcome {
        // Microseconds, as the Redis script counts (exact in a Lua double).
        let now_us = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
        let period_us = op.period_secs.max(1).saturating_mul(1_000_000);
        if op.requests_per_unit == 0 {
            return Outcome {
                allowed: op.refund,
                remaining: 0,
                reset_after: Duration::ZERO,
                retry_after: Duration::from_micros(period_us),
                used_before: 0,
                used_after: 0,
                fallback: false,
            };
        }
        // Emission interval; at least 1 µs (so at most 10⁶ tokens per second per key).
        let t = (period_us / u64::from(op.requests_per_unit)).max(1);
        let tolerance = t.saturating_mul(u64::from(op.burst));
        let tat = self.tat.max(now_us);
        let burst = u64::from(op.burst);
        let used_before = used(tat - now_us, t, burst);
        let cost = t.saturating_mul(u64::from(op.hits));
        let (allowed, retry_after) = if op.refund {
            self.tat = tat.saturating_sub(cost).max(now_us);
            (true, 0)
        } else {
            let new_tat = tat.saturating_add(cost);
            let allow_at = new_tat.saturating_sub(tolerance);
            if now_us < allow_at {
                (false, allow_at - now_us)
            } else {
                self.tat = new_tat;
                (true, 0)
            }
        };
        let backlog = self.tat.saturating_sub(now_us);
        let remaining = if allowed {
            u32::try_from(tolerance.saturating_sub(backlog) / t).unwrap_or(u32::MAX)
        } else {
            0
        };
        Outcome {
            allowed,
            remaining,
            reset_after: Duration::from_micros(backlog),
            retry_after: Duration::from_micros(retry_after),
            used_before,
            used_after: used(backlog, t, burst),
            fallback: false,
        }
    }

    /// When this state stops mattering: once the bucket is full again.
    pub fn expires_at(&self) -> Duration {
        Duration::from_micros(self.tat)
    }
}

/// Tokens in use given the backlog `tat − now`.
fn used(backlog: u64, t: u64, burst: u64) -> u64 {
    backlog.div_ceil(t).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::Algorithm;

    fn op(rate: u32, period: u64, burst: u32, hits: u32) -> Op {
        Op {
            key: "k".into(),
            algorithm: Algorithm::TokenBucket,
            requests_per_unit: rate,
            period_secs: period,
            burst,
            hits,
            refund: false,
        }
    }

    #[test]
    fn burst_then_steady_refill() {
        let mut s = TokenBucket::default();
        let t0 = Duration::from_secs(100);
        for i in 1..=5u32 {
            let o = s.decide(t0, &op(10, 1, 5, 1));
            assert!(o.allowed);
            assert_eq!(o.remaining, 5 - i);
        }
        let o = s.decide(t0, &op(10, 1, 5, 1));
        assert!(!o.allowed);
        assert_eq!(
            o.retry_after,
            Duration::from_millis(100),
            "one token per 100 ms"
        );
        assert!(
            s.decide(t0 + Duration::from_millis(100), &op(10, 1, 5, 1))
                .allowed
        );
        assert!(
            !s.decide(t0 + Duration::from_millis(150), &op(10, 1, 5, 1))
                .allowed
        );
    }

    #[test]
    fn a_request_needs_all_its_tokens() {
        let mut s = TokenBucket::default();
        let t0 = Duration::from_secs(100);
        assert!(s.decide(t0, &op(10, 1, 10, 8)).allowed);
        let o = s.decide(t0, &op(10, 1, 10, 3));
        assert!(!o.allowed);
        assert_eq!(o.retry_after, Duration::from_millis(100));
        let o = s.decide(t0, &op(10, 1, 10, 2));
        assert!(o.allowed);
        assert_eq!(o.remaining, 0);
        assert_eq!(
            o.reset_after,
            Duration::from_secs(1),
            "full again after 10 tokens"
        );
    }

    #[test]
    fn refund_returns_tokens() {
        let mut s = TokenBucket::default();
        let t0 = Duration::from_secs(100);
        s.decide(t0, &op(10, 1, 10, 10));
        let mut r = op(10, 1, 10, 4);
        r.refund = true;
        assert_eq!(s.decide(t0, &r).remaining, 4);
    }

    #[test]
    fn zero_rate_denies() {
        let mut s = TokenBucket::default();
        assert!(!s.decide(Duration::from_secs(1), &op(0, 1, 0, 1)).allowed);
    }
}
