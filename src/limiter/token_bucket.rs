//! Token bucket as GCRA (generic cell rate algorithm): one stored "theoretical arrival time".
//!
//! Tokens refill at `requests_per_unit` per unit, one every `T = max(1, floor(unit_µs /
//! requests_per_unit))` µs; the bucket holds `burst` tokens. With `backlog = max(tat − now,
//! 0)` and `tolerance = T × burst`, a request of `n` hits passes iff `backlog + n·T ≤
//! tolerance`; then `tat = now + backlog + n·T`. A denied request consumes nothing.
//!
//! Exact in both stores (the Redis script counts in doubles): the tolerance, the backlog and a
//! denied request's wait are capped at [`TIME_CAP_US`] (2⁵⁰ µs, about 35.7 years: a bucket
//! never holds more than that much refill), products are only formed once known to be below
//! the cap (`n·T ≤ x ⇔ n ≤ floor(x / T)`), and time is clamped by [`now_micros`].

use crate::limiter::{now_micros, period_secs, Op, Outcome, TIME_CAP_US};
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
        let now_us = now_micros(now);
        let period_us = period_secs(op) * 1_000_000;
        if op.requests_per_unit == 0 {
            return Outcome {
                allowed: op.refund,
                remaining: 0,
                reset_after: Duration::ZERO,
                retry_after: Duration::from_micros(period_us),
                used_before: 0,
                used_after: 0,
                fallback: false,
                replayed: false,
            };
        }
        // Emission interval; at least 1 µs (so at most 10⁶ tokens per second per key).
        let t = (period_us / u64::from(op.requests_per_unit)).max(1);
        let burst = u64::from(op.burst);
        let tolerance = if burst > TIME_CAP_US / t {
            TIME_CAP_US
        } else {
            t * burst
        };
        // A backlog is never above the cap (a state from elsewhere is clamped like Redis's).
        let backlog = self.tat.max(now_us).min(now_us + TIME_CAP_US) - now_us;
        let hits = u64::from(op.hits);
        let (allowed, retry_after, left) = if op.refund {
            let left = if hits > backlog / t {
                0
            } else {
                backlog - t * hits
            };
            (true, 0, left)
        } else if backlog <= tolerance && hits <= (tolerance - backlog) / t {
            (true, 0, backlog + t * hits)
        } else if hits > (TIME_CAP_US + tolerance - backlog) / t {
            (false, TIME_CAP_US, backlog)
        } else {
            (false, backlog + t * hits - tolerance, backlog)
        };
        if allowed {
            self.tat = now_us + left;
        }
        let remaining = if allowed {
            u32::try_from((tolerance - tolerance.min(left)) / t).unwrap_or(u32::MAX)
        } else {
            0
        };
        Outcome {
            allowed,
            remaining,
            reset_after: Duration::from_micros(left),
            retry_after: Duration::from_micros(retry_after),
            used_before: used(backlog, t, burst),
            used_after: used(left, t, burst),
            fallback: false,
            replayed: false,
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
    fn a_bucket_holds_at_most_the_time_cap() {
        // One token a year: T × burst would be 1.35·10²³ µs; the bucket holds 2⁵⁰ µs (35
        // tokens), and a wait beyond the cap is reported as the cap.
        let year = 31_536_000;
        let mut s = TokenBucket::default();
        let t0 = Duration::from_secs(100);
        let o = s.decide(t0, &op(1, year, u32::MAX, 35));
        assert!(o.allowed);
        assert_eq!((o.remaining, o.used_after), (0, 35));
        let o = s.decide(t0, &op(1, year, u32::MAX, 1));
        assert!(!o.allowed);
        assert_eq!(
            o.retry_after,
            Duration::from_micros(35 * year * 1_000_000 + year * 1_000_000 - TIME_CAP_US)
        );
        let o = s.decide(t0, &op(1, year, u32::MAX, u32::MAX));
        assert_eq!(o.retry_after, Duration::from_micros(TIME_CAP_US));
    }

    #[test]
    fn zero_rate_denies() {
        let mut s = TokenBucket::default();
        assert!(!s.decide(Duration::from_secs(1), &op(0, 1, 0, 1)).allowed);
    }
}
