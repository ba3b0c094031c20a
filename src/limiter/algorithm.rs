//! The counting algorithms a limit may use, by name.

use crate::limiter::calendar::Calendar;
use std::fmt;

/// How a limit counts. `fixed_window` is envoyproxy/ratelimit's algorithm and the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// One counter per window `floor(now / unit)`; a denied hit still counts (as upstream).
    FixedWindow,
    /// The fixed window on civil boundaries (`calendar: true`): a UTC calendar month or year,
    /// or a day from local midnight at the calendar's UTC offset ([`crate::limiter::calendar`]).
    /// Counts exactly as [`Algorithm::FixedWindow`]; only where windows start differs, so it
    /// has a counter key of its own ([`crate::keys`]) and never inherits a 30-day count.
    CalendarWindow(Calendar),
    /// Two counters (previous and current window), the previous weighted by its overlap.
    SlidingWindow,
    /// One timestamp per admitted hit; exact, costs memory per hit.
    SlidingLog,
    /// GCRA: one "theoretical arrival time" per key, smooth refill, `burst` capacity.
    TokenBucket,
}

impl Algorithm {
    /// Every algorithm a rule can name with `algorithm:` (the calendar window is
    /// `fixed_window` with `calendar: true`), for parsing and error messages.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
        Algorithm::SlidingLog,
        Algorithm::TokenBucket,
    ];

    /// The name used in rule files (a calendar window is a `fixed_window`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::FixedWindow | Algorithm::CalendarWindow(_) => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::SlidingLog => "sliding_log",
            Algorithm::TokenBucket => "token_bucket",
        }
    }

    /// Parses a rule file's `algorithm` (exact, lower case).
    pub fn parse(s: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Whether it counts with the fixed window (on epoch or calendar boundaries).
    pub fn is_fixed_window(self) -> bool {
        matches!(self, Algorithm::FixedWindow | Algorithm::CalendarWindow(_))
    }

    /// The calendar of a calendar window.
    pub fn calendar(self) -> Option<Calendar> {
        match self {
            Algorithm::CalendarWindow(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
