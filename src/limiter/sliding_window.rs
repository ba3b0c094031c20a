//! Sliding window counter: the current window's count plus the previous window's count
//! weighted by how much of it still overlaps the sliding window.
//!
//! `estimate = prev × weight / S + cur` with `S` = [`WEIGHT_STEPS`] (10⁶) and `weight = S −
//! floor(elapsed_µs / period_s)`: the overlap in millionths of the period, rounded up (never
//! under-counted), so time moves in steps of `period / 10⁶` (1 µs for a second, 2.592 s for 30
//! days). A request of `n` hits passes iff `cur + n ≤ limit` and `prev × weight + (cur + n) × S
//! ≤ limit × S`; a denied request consumes nothing. Counts are at most `u32::MAX` (a count grows
//! only while it fits a limit), so every product and sum stays below 2⁵³: integers, exact in
//! the Lua script's doubles too, identical in both stores.

use crate::limiter::{now_micros, period_secs, Op, Outcome, WEIGHT_STEPS};
use std::time::Duration;

/// The stored state of one sliding-window counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingWindow {
    /// Index of the current window (`floor(now / P)`): which window `cur` counts.
    pub window: u64,
    /// Hits admitted in the previous window: they decay as the current window advances.
    pub prev: u64,
    /// Hits admitted in the current window.
    pub cur: u64,
}

const MICROS: u64 = 1_000_000;
const S: u64 = WEIGHT_STEPS;

impl SlidingWindow {
    /// Charges (or checks, or refunds) `op.hits` at `now`.
    pub fn decide(&mut self, now: Duration, op: &Op) -> Outcome {
        let period = period_secs(op);
        let p = period * MICROS;
        let now_us = now_micros(now);
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
        let elapsed = now_us - window * p;
        let weight = S - elapsed / period;
        let limit = u64::from(op.requests_per_unit);
        let hits = u64::from(op.hits);
        // The estimate scaled by S.
        let scaled = |cur: u64| self.prev * weight + cur * S;
        let before = scaled(self.cur);
        let allowed = op.refund || (self.cur + hits <= limit && before + hits * S <= limit * S);
        if op.refund {
            self.cur -= self.cur.min(hits);
        } else if allowed {
            self.cur += hits;
        }
        let after = scaled(self.cur);
        let remaining = if allowed {
            u32::try_from((limit * S - (limit * S).min(after)) / S).unwrap_or(u32::MAX)
        } else {
            0
        };
        let retry_after = if allowed {
            0
        } else {
            self.wait_for(limit, hits, period, elapsed)
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
            retry_after: Duration::from_micros(retry_after),
            used_before: before.div_ceil(S),
            used_after: after.div_ceil(S),
            fallback: false,
            replayed: false,
        }
    }

    /// Microseconds until `hits` would fit, the previous windows decaying step by step.
    fn wait_for(&self, limit: u64, hits: u64, period: u64, elapsed: u64) -> u64 {
        let p = period * MICROS;
        // Later in this window: prev × weight + (cur + hits) × S ≤ limit × S.
        if self.prev > 0 && self.cur + hits <= limit {
            // weight ≤ keep  ⇔  elapsed / period ≥ S − keep.
            let keep = (limit - self.cur - hits) * S / self.prev;
            let e_needed = (S - S.min(keep)) * period;
            return e_needed.saturating_sub(elapsed).max(1);
        }
        // In the next window the current count decays: cur × weight + hits × S ≤ limit × S.
        let to_next = p - elapsed;
        if hits > limit {
            return to_next + p;
        }
        // No current hits: the next window starts empty.
        let e_needed = match ((limit - hits) * S).checked_div(self.cur) {
            Some(keep) => (S - S.min(keep)) * period,
            None => 0,
        };
        to_next + e_needed
    }

    /// When this state stops mattering: two windows after the current one starts.
    pub fn expires_at(&self, op: &Op) -> Duration {
        let p = op.period_secs.max(1);
        Duration::from_secs(self.window.saturating_add(2).saturating_mul(p))
    }
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
    fn the_previous_window_weighs_in_millionths_of_the_period() {
        // A minute: steps of 60 µs. 7 hits last minute, limit 7: one more fits once the old
        // ones weigh ≤ 6/7, i.e. after ceil(10⁶ / 7) = 142858 steps (8.57148 s), not before.
        let mut s = SlidingWindow::default();
        assert!(s.decide(Duration::from_secs(60), &op(7, 60, 7)).allowed);
        let o = s.decide(Duration::from_micros(128_571_479), &op(7, 60, 1));
        assert!(!o.allowed);
        assert_eq!(o.retry_after, Duration::from_micros(1));
        assert!(
            s.decide(Duration::from_micros(128_571_480), &op(7, 60, 1))
                .allowed
        );
    }

    #[test]
    fn largest_counts_stay_exact() {
        let mut s = SlidingWindow::default();
        let year = 31_536_000;
        assert!(
            s.decide(Duration::ZERO, &op(u32::MAX, year, u32::MAX))
                .allowed
        );
        // The last microsecond of the next window: the old hits weigh one millionth.
        let o = s.decide(
            Duration::from_secs(2 * year) - Duration::from_micros(1),
            &op(u32::MAX, year, 0),
        );
        assert_eq!((o.used_before, o.remaining), (4_295, 4_294_963_000));
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
