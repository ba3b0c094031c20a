//! Sliding window counter: the current window's count plus the previous window's count
//! weighted by how much of it still overlaps the sliding window.
//!
//! `estimate = prev × (P − elapsed) / P + cur`; a request of `n` hits passes iff
//! `estimate + n ≤ limit`, and a denied request consumes nothing. Arithmetic is exact (scaled
//! integers, microseconds), so results do not depend on floating point.

use crate::limiter::{Op, Outcome};
use std::time::Duration;

/// The stored state of one sliding-window counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingWindow {
    /// Index of the current window (`floor(now / P)`).
    pub window: u64,
    /// Hits admitted in the previous window.
    pub prev: u64,
    /// Hits admitted in the current window.
    pub cur: u64,
}

const MICROS: u64 = 1_000_000;

impl SlidingWindow {
    /// Charges (or checks, or refunds) `op.hits` at `now`.
    pub fn decide(&mut self, now: Duration, op: &Op) -> Outcome {
        let p = op.period_secs.max(1).saturating_mul(MICROS);
        let now_us = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
        let window = now_us / p;
        if self.window != window {
            let prev = if self.window.checked_add(1) == Some(window) {
                self.cur
            } else {
                0
            };
            *self = SlidingWindow {
                window,
                prev,
                cur: 0,
            };
        }
        let start = window * p;
        let elapsed = now_us - start;
        let limit = u128::from(op.requests_per_unit) * u128::from(p);
        // Scaled by P: estimate × P.
        let scaled = |cur: u64| {
            u128::from(self.prev) * u128::from(p - elapsed) + u128::from(cur) * u128::from(p)
        };
        let before = scaled(self.cur);
        let used_before = ceil_div(before, u128::from(p));
        let allowed = op.refund || before + u128::from(op.hits) * u128::from(p) <= limit;
        if op.refund {
            self.cur = self.cur.saturating_sub(u64::from(op.hits));
        } else if allowed {
            self.cur += u64::from(op.hits);
        }
        let after = scaled(self.cur);
        let remaining = if allowed {
            u32::try_from(limit.saturating_sub(after) / u128::from(p)).unwrap_or(u32::MAX)
        } else {
            0
        };
        let retry_after = if allowed {
            Duration::ZERO
        } else {
            self.wait_for(op, p, elapsed)
        };
        let reset_after = if self.cur > 0 {
            2 * p - elapsed
        } else if self.prev > 0 {
            p - elapsed
        } else {
            0
        };
        Outcome {
            allowed,
            remaining,
            reset_after: Duration::from_micros(reset_after),
            retry_after,
            used_before,
            used_after: ceil_div(after, u128::from(p)),
            fallback: false,
        }
    }

    /// How long until `op.hits` would fit, the previous windows decaying linearly.
    fn wait_for(&self, op: &Op, p: u64, elapsed: u64) -> Duration {
        let limit = u64::from(op.requests_per_unit);
        let hits = u64::from(op.hits);
        // Later in this window: prev × (P − e) / P + cur + hits ≤ limit.
        if self.prev > 0 && self.cur.saturating_add(hits) <= limit {
            let room = u128::from(limit - self.cur - hits) * u128::from(p);
            // prev × (P − e) ≤ room  ⇔  P − e ≤ floor(room / prev)  (e an integer).
            let keep = room / u128::from(self.prev);
            let e_needed = u64::try_from(u128::from(p).saturating_sub(keep)).unwrap_or(p);
            return Duration::from_micros(e_needed.saturating_sub(elapsed).max(1));
        }
        // In the next window the current count decays: cur × (P − e) / P + hits ≤ limit.
        let to_next = p - elapsed;
        if hits > limit {
            return Duration::from_micros(to_next + p);
        }
        let e_needed = if self.cur == 0 {
            0
        } else {
            let keep = u128::from(limit - hits) * u128::from(p) / u128::from(self.cur);
            u64::try_from(u128::from(p).saturating_sub(keep)).unwrap_or(p)
        };
        Duration::from_micros(to_next + e_needed)
    }

    /// When this state stops mattering: two windows after the current one starts.
    pub fn expires_at(&self, op: &Op) -> Duration {
        let p = op.period_secs.max(1);
        Duration::from_secs(self.window.saturating_add(2).saturating_mul(p))
    }
}

fn ceil_div(a: u128, b: u128) -> u64 {
    u64::try_from(a.div_ceil(b)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::Algorithm;

    fn op(limit: u32, period: u64, hits: u32) -> Op {
        Op {
            key: "k".into(),
            algorithm: Algorithm::SlidingWindow,
            requests_per_unit: limit,
            period_secs: period,
            burst: limit,
            hits,
            refund: false,
        }
    }

    #[test]
    fn previous_window_is_weighted_by_overlap() {
        // Cloudflare's example: 50/min, 42 in the previous minute, 18 now, 15 s in → 49.5.
        let mut s = SlidingWindow::default();
        let t0 = Duration::from_secs(600);
        assert!(s.decide(t0, &op(50, 60, 42)).allowed);
        let t = Duration::from_secs(675);
        let o = s.decide(t, &op(50, 60, 18));
        assert!(o.allowed);
        assert_eq!(o.remaining, 0, "50 - 49.5 rounds down");
        assert!(!s.decide(t, &op(50, 60, 1)).allowed, "49.5 + 1 > 50");
        assert_eq!(s.cur, 18, "a denied request consumes nothing");
    }

    #[test]
    fn denied_request_learns_when_it_fits() {
        let mut s = SlidingWindow::default();
        assert!(s.decide(Duration::from_secs(0), &op(10, 10, 10)).allowed);
        let o = s.decide(Duration::from_secs(5), &op(10, 10, 1));
        assert!(!o.allowed);
        // Next window starts at 10 s; 10 × (10 − e)/10 + 1 ≤ 10 ⇔ e ≥ 1 s → 6 s from now.
        assert_eq!(o.retry_after, Duration::from_secs(6));
        assert!(
            !s.decide(Duration::from_millis(10_999), &op(10, 10, 1))
                .allowed
        );
        assert!(s.decide(Duration::from_secs(11), &op(10, 10, 1)).allowed);
    }

    #[test]
    fn an_idle_window_forgets_everything() {
        let mut s = SlidingWindow::default();
        s.decide(Duration::from_secs(0), &op(3, 1, 3));
        let o = s.decide(Duration::from_secs(5), &op(3, 1, 3));
        assert!(o.allowed);
        assert_eq!(o.remaining, 0);
    }
}
