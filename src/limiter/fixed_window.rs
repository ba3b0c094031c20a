//! envoyproxy/ratelimit's fixed window: one counter per `floor(now / unit)` window.
//!
//! Every hit is counted, denied or not (as upstream: `INCRBY` runs before the comparison), and
//! a request is OVER_LIMIT iff the count after adding its hits exceeds the limit. The reset time
//! is whole seconds to the end of the window, as upstream computes it.
//!
//! With `calendar: true` ([`Algorithm::CalendarWindow`]) the windows are civil months, years or
//! days at a UTC offset ([`crate::limiter::calendar`]); everything else is the same, and the
//! reset is whole seconds to the next calendar boundary.
//!
//! The count saturates at [`COUNTER_CAP`] (2⁵²), in both stores: max-hit requests in a
//! year-long window can neither overflow Redis (`INCRBY` fails at 2⁶³; the script uses `SET`)
//! nor leave the range where a Lua double counts exactly. Time is clamped by [`now_micros`].

use crate::limiter::{now_micros, period_secs, Algorithm, Op, Outcome, COUNTER_CAP};
use std::time::Duration;

/// The window of `op` holding `now_s` (seconds since the epoch): `(start, end)`, with
/// `start <= now_s < end`. Upstream's `floor(now / unit)` windows, or calendar ones.
pub fn window_of(op: &Op, now_s: u64) -> (u64, u64) {
    let period = period_secs(op);
    match op.algorithm {
        Algorithm::CalendarWindow(calendar) => calendar.window(period, now_s),
        _ => {
            let start = now_s - now_s % period;
            (start, start + period)
        }
    }
}

/// The stored state of one fixed-window counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixedWindow {
    /// Start of the window the count belongs to, in seconds since the epoch.
    pub window: u64,
    /// Hits counted in that window.
    pub count: u64,
}

impl FixedWindow {
    /// Charges (or checks, or refunds) `op.hits` at `now`.
    pub fn decide(&mut self, now: Duration, op: &Op) -> Outcome {
        let now_s = now_micros(now) / 1_000_000;
        let (window, end) = window_of(op, now_s);
        if self.window != window {
            *self = FixedWindow { window, count: 0 };
        }
        // A count is never above the cap (a state from elsewhere is clamped like Redis's).
        let before = self.count.min(COUNTER_CAP);
        self.count = if op.refund {
            before.saturating_sub(u64::from(op.hits))
        } else {
            before.saturating_add(u64::from(op.hits)).min(COUNTER_CAP)
        };
        let limit = u64::from(op.requests_per_unit);
        let allowed = op.refund || self.count <= limit;
        let reset_after = Duration::from_secs(end - now_s);
        Outcome {
            allowed,
            remaining: remaining(limit, self.count, allowed),
            reset_after,
            retry_after: if allowed { Duration::ZERO } else { reset_after },
            used_before: before,
            used_after: self.count,
            fallback: false,
            replayed: false,
        }
    }

    /// When this state stops mattering: the end of its window.
    pub fn expires_at(&self, op: &Op) -> Duration {
        Duration::from_secs(window_of(op, self.window).1)
    }
}

fn remaining(limit: u64, count: u64, allowed: bool) -> u32 {
    if !allowed {
        return 0;
    }
    u32::try_from(limit.saturating_sub(count)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::calendar::{days_from_civil, Calendar, MONTH_SECS};

    fn op(limit: u32, period: u64, hits: u32) -> Op {
        Op {
            key: "k".into(),
            algorithm: Algorithm::FixedWindow,
            requests_per_unit: limit,
            period_secs: period,
            burst: limit,
            hits,
            refund: false,
        }
    }

    #[test]
    fn over_limit_iff_count_exceeds_limit() {
        let mut s = FixedWindow::default();
        let now = Duration::from_secs(1234);
        for i in 1..=10 {
            let o = s.decide(now, &op(10, 1, 1));
            assert!(o.allowed);
            assert_eq!(o.remaining, 10 - i);
        }
        let o = s.decide(now, &op(10, 1, 1));
        assert!(!o.allowed);
        assert_eq!(o.remaining, 0);
        assert_eq!(o.used_after, 11, "denied hits still count, as upstream");
    }

    #[test]
    fn reset_is_whole_seconds_to_window_end() {
        let mut s = FixedWindow::default();
        let o = s.decide(Duration::from_millis(2_222_700), &op(10, 60, 1));
        assert_eq!(o.reset_after, Duration::from_secs(58));
        assert_eq!(s.window, 2220);
        assert_eq!(s.expires_at(&op(10, 60, 1)), Duration::from_secs(2280));
    }

    #[test]
    fn new_window_starts_from_zero() {
        let mut s = FixedWindow::default();
        let o = s.decide(Duration::from_secs(59), &op(1, 60, 2));
        assert!(!o.allowed);
        let o = s.decide(Duration::from_secs(60), &op(1, 60, 1));
        assert!(o.allowed);
        assert_eq!(o.remaining, 0);
    }

    #[test]
    fn zero_hits_checks_without_counting() {
        let mut s = FixedWindow::default();
        let now = Duration::from_secs(10);
        s.decide(now, &op(2, 60, 2));
        let o = s.decide(now, &op(2, 60, 0));
        assert!(o.allowed);
        assert_eq!((o.remaining, s.count), (0, 2));
        s.decide(now, &op(2, 60, 1));
        let o = s.decide(now, &op(2, 60, 0));
        assert!(!o.allowed, "a check of an over-limit counter is over limit");
    }

    #[test]
    fn refund_gives_hits_back() {
        let mut s = FixedWindow::default();
        let now = Duration::from_secs(10);
        s.decide(now, &op(5, 60, 5));
        let mut refund = op(5, 60, 3);
        refund.refund = true;
        let o = s.decide(now, &refund);
        assert!(o.allowed);
        assert_eq!(o.remaining, 3);
        let o = s.decide(now, &refund);
        assert_eq!((o.remaining, s.count), (5, 0), "never below zero");
    }

    #[test]
    fn the_count_saturates_at_the_cap() {
        let mut s = FixedWindow::default();
        let now = Duration::from_secs(10);
        let big = op(u32::MAX, 31_536_000, u32::MAX);
        let mut last = 0;
        for _ in 0..3 {
            last = s.decide(now, &big).used_after;
        }
        assert_eq!(last, 3 * u64::from(u32::MAX));
        s.count = COUNTER_CAP - 1;
        let o = s.decide(now, &big);
        assert_eq!(
            (o.used_before, o.used_after),
            (COUNTER_CAP - 1, COUNTER_CAP)
        );
        assert_eq!(s.decide(now, &big).used_after, COUNTER_CAP);
    }

    fn calendar_op(limit: u32, period: u64, offset_minutes: i16, hits: u32) -> Op {
        Op {
            algorithm: Algorithm::CalendarWindow(Calendar::new(offset_minutes).expect("offset")),
            ..op(limit, period, hits)
        }
    }

    fn midnight(y: i64, m: u32, d: u32) -> u64 {
        u64::try_from(days_from_civil(y, m, d)).expect("after 1970") * 86_400
    }

    #[test]
    fn a_calendar_month_resets_exactly_on_the_first() {
        let mut s = FixedWindow::default();
        let feb1 = midnight(2026, 2, 1);
        let month = calendar_op(3, MONTH_SECS, 0, 3);
        let o = s.decide(Duration::from_millis(feb1 * 1000 - 1_500), &month);
        assert!(o.allowed);
        assert_eq!(
            o.reset_after,
            Duration::from_secs(2),
            "whole seconds, as upstream"
        );
        assert_eq!(s.window, midnight(2026, 1, 1));
        assert_eq!(s.expires_at(&month), Duration::from_secs(feb1));
        let o = s.decide(
            Duration::from_millis(feb1 * 1000 - 1),
            &calendar_op(3, MONTH_SECS, 0, 1),
        );
        assert!(!o.allowed);
        assert_eq!(o.reset_after, Duration::from_secs(1));
        let o = s.decide(Duration::from_secs(feb1), &month);
        assert!(o.allowed, "a new month starts from zero");
        assert_eq!((o.used_before, o.remaining), (0, 0));
        assert_eq!(o.reset_after, Duration::from_secs(28 * 86_400));
        assert_eq!(
            s.expires_at(&month),
            Duration::from_secs(midnight(2026, 3, 1))
        );
    }

    #[test]
    fn a_calendar_day_starts_at_local_midnight() {
        let mut s = FixedWindow::default();
        // 23:59:59 at +05:30 is 18:29:59 UTC.
        let local_midnight = midnight(2026, 3, 2) - 5 * 3_600 - 1_800;
        let day = calendar_op(1, 86_400, 330, 1);
        let o = s.decide(Duration::from_secs(local_midnight - 1), &day);
        assert_eq!((o.allowed, o.reset_after), (true, Duration::from_secs(1)));
        let o = s.decide(Duration::from_secs(local_midnight), &day);
        assert_eq!(
            (o.allowed, o.reset_after),
            (true, Duration::from_secs(86_400))
        );
        assert_eq!(s.window, local_midnight);
    }

    #[test]
    fn the_default_month_stays_thirty_days_from_the_epoch() {
        let mut s = FixedWindow::default();
        let now = midnight(2026, 2, 1);
        let o = s.decide(Duration::from_secs(now), &op(1, MONTH_SECS, 1));
        assert_eq!(s.window, now - now % MONTH_SECS);
        assert_eq!(
            o.reset_after,
            Duration::from_secs(MONTH_SECS - now % MONTH_SECS)
        );
    }

    #[test]
    fn zero_limit_blocks_everything() {
        let mut s = FixedWindow::default();
        assert!(!s.decide(Duration::from_secs(1), &op(0, 1, 1)).allowed);
    }
}
