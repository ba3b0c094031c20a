//! Sliding window log: the time of every admitted request, kept for one period.
//!
//! Exact — a request passes iff the hits admitted in the last `P` plus its own fit the limit —
//! but it stores one entry per admitted request (16 bytes here; a sorted-set member in Redis),
//! so it suits small limits. A denied request consumes nothing.
//!
//! Exact in both stores: the hits in a log never exceed the largest limit (`u32::MAX`), times
//! and periods stay below 2⁵³ µs (time is clamped by [`now_micros`]).

use crate::limiter::{now_micros, period_secs, Op, Outcome};
use std::collections::VecDeque;
use std::time::Duration;

/// The stored state of one sliding-log counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlidingLog {
    /// `(admitted at, hits)` in microseconds since the epoch, oldest first.
    pub entries: VecDeque<(u64, u64)>,
    /// Sum of the hits in `entries`, kept so a decision does not walk the log.
    pub total: u64,
}

impl SlidingLog {
    /// Charges (or checks, or refunds) `op.hits` at `now`.
    pub fn decide(&mut self, now: Duration, op: &Op) -> Outcome {
        let p = period_secs(op) * 1_000_000;
        let now_us = now_micros(now);
        while let Some(&(at, hits)) = self.entries.front() {
            if at.saturating_add(p) > now_us {
                break;
            }
            self.entries.pop_front();
            self.total -= hits;
        }
        let before = self.total;
        let limit = u64::from(op.requests_per_unit);
        let allowed = op.refund || before.saturating_add(u64::from(op.hits)) <= limit;
        if op.refund {
            self.take_back(u64::from(op.hits));
        } else if allowed && op.hits > 0 {
            self.entries.push_back((now_us, u64::from(op.hits)));
            self.total += u64::from(op.hits);
        }
        let reset_after = self
            .entries
            .back()
            .map_or(0, |&(at, _)| at.saturating_add(p).saturating_sub(now_us));
        Outcome {
            allowed,
            remaining: if allowed {
                u32::try_from(limit.saturating_sub(self.total)).unwrap_or(u32::MAX)
            } else {
                0
            },
            reset_after: Duration::from_micros(reset_after),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                Duration::from_micros(self.wait_for(
                    u64::from(op.hits),
                    limit,
                    p,
                    now_us,
                    reset_after,
                ))
            },
            used_before: before,
            used_after: self.total,
            fallback: false,
            replayed: false,
        }
    }

    /// Microseconds until enough old entries expire for `hits` to fit.
    fn wait_for(&self, hits: u64, limit: u64, p: u64, now_us: u64, reset_after: u64) -> u64 {
        if hits > limit {
            return reset_after.max(1);
        }
        let mut left = self.total;
        for &(at, n) in &self.entries {
            left -= n;
            if left + hits <= limit {
                return at.saturating_add(p).saturating_sub(now_us).max(1);
            }
        }
        reset_after.max(1)
    }

    /// Removes the newest `hits` (a refund), never below empty.
    fn take_back(&mut self, mut hits: u64) {
        while hits > 0 {
            let Some(last) = self.entries.back_mut() else {
                return;
            };
            let n = last.1.min(hits);
            last.1 -= n;
            self.total -= n;
            hits -= n;
            if last.1 == 0 {
                self.entries.pop_back();
            }
        }
    }

    /// When this state stops mattering: one period after the newest entry.
    pub fn expires_at(&self, op: &Op) -> Duration {
        let newest = self.entries.back().map_or(0, |&(at, _)| at);
        Duration::from_micros(
            newest.saturating_add(op.period_secs.max(1).saturating_mul(1_000_000)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::Algorithm;

    fn op(limit: u32, period: u64, hits: u32) -> Op {
        Op {
            key: "k".into(),
            algorithm: Algorithm::SlidingLog,
            requests_per_unit: limit,
            period_secs: period,
            burst: limit,
            hits,
            refund: false,
        }
    }

    #[test]
    fn exact_over_any_period() {
        let mut s = SlidingLog::default();
        let ms = Duration::from_millis;
        assert!(s.decide(ms(0), &op(2, 1, 1)).allowed);
        assert!(s.decide(ms(600), &op(2, 1, 1)).allowed);
        let o = s.decide(ms(900), &op(2, 1, 1));
        assert!(!o.allowed);
        assert_eq!(o.retry_after, ms(100), "the first entry leaves at 1000 ms");
        assert!(s.decide(ms(1000), &op(2, 1, 1)).allowed);
        assert!(!s.decide(ms(1500), &op(2, 1, 1)).allowed);
        assert_eq!(s.entries.len(), 2, "denied requests are not logged");
    }

    #[test]
    fn multi_hit_requests_fit_whole_or_not_at_all() {
        let mut s = SlidingLog::default();
        let t = Duration::from_secs(5);
        assert!(s.decide(t, &op(10, 60, 7)).allowed);
        let o = s.decide(t, &op(10, 60, 4));
        assert!(!o.allowed);
        assert_eq!(s.total, 7);
        let o = s.decide(t, &op(10, 60, 3));
        assert!(o.allowed);
        assert_eq!(o.remaining, 0);
    }

    #[test]
    fn refund_removes_newest_hits() {
        let mut s = SlidingLog::default();
        let t = Duration::from_secs(5);
        s.decide(t, &op(10, 60, 4));
        s.decide(t, &op(10, 60, 3));
        let mut r = op(10, 60, 5);
        r.refund = true;
        let o = s.decide(t, &r);
        assert_eq!((o.remaining, s.total, s.entries.len()), (8, 2, 1));
    }
}
