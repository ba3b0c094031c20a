//! The counting algorithms a limit may use, by name.

use std::fmt;

/// How a limit counts. `fixed_window` is envoyproxy/ratelimit's algorithm and the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// One counter per window `floor(now / unit)`; a denied hit still counts (as upstream).
    FixedWindow,
    /// Two counters (previous and current window), the previous weighted by its overlap.
    SlidingWindow,
    /// One timestamp per admitted hit; exact, costs memory per hit.
    SlidingLog,
    /// GCRA: one "theoretical arrival time" per key, smooth refill, `burst` capacity.
    TokenBucket,
}

impl Algorithm {
    /// Every algorithm, for error messages.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
        Algorithm::SlidingLog,
        Algorithm::TokenBucket,
    ];

    /// The name used in rule files.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::SlidingLog => "sliding_log",
            Algorithm::TokenBucket => "token_bucket",
        }
    }

    /// Parses a rule file's `algorithm` (exact, lower case).
    pub fn parse(s: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == s)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
