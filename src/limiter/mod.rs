//! Limiting: what one counter must do ([`Op`]), what it answered ([`Outcome`]), the pure
//! algorithms that decide (the fixed window on epoch or [`calendar`] bounds), and the [`plan`]
//! that turns a request into ops.
//!
//! Algorithms are pure functions of `(state, now, limit, hits)`: the memory store calls them
//! directly and the Redis scripts mirror them line by line, so both stores agree.

pub mod algorithm;
pub mod calendar;
pub mod fixed_window;
pub mod once;
pub mod plan;
pub mod sliding_log;
pub mod sliding_window;
pub mod token_bucket;
pub mod unit;

pub use algorithm::Algorithm;
use std::time::Duration;

/// The most hits one descriptor may ask for (`hits_addend` above it is `INVALID_ARGUMENT`):
/// no limit can admit more, and it keeps every store's arithmetic exact (Lua uses doubles).
pub const MAX_HITS: u64 = u32::MAX as u64;

/// One counter to charge (or check) for one limit of one descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Counter identity: `domain_k1_v1_…` (plus `_#i` for a descriptor's i-th extra limit).
    pub key: String,
    /// How to count.
    pub algorithm: Algorithm,
    /// Hits admitted per period.
    pub requests_per_unit: u32,
    /// The window (or refill period) in seconds: the unit's length. A calendar window reads
    /// the month's and the year's lengths as the civil month and year
    /// ([`calendar::Calendar::window`]).
    pub period_secs: u64,
    /// Token-bucket capacity (ignored by the other algorithms).
    pub burst: u32,
    /// Hits to charge; 0 only checks. A `u32`: no request can ask for more than
    /// [`MAX_HITS`], so both stores count with the same, exactly representable numbers.
    pub hits: u32,
    /// Give `hits` back instead of charging them (`is_negative_hits`); never denied.
    pub refund: bool,
}

/// What one counter answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Whether the hits fit (a refund is always allowed).
    pub allowed: bool,
    /// Hits still available after this request, 0 when denied.
    pub remaining: u32,
    /// Until the counter is back to its full limit (fixed window: the end of the window).
    pub reset_after: Duration,
    /// Until a request of the same size could pass; zero when allowed.
    pub retry_after: Duration,
    /// Hits counted in the window before this request (for near-limit accounting).
    pub used_before: u64,
    /// Hits counted after this request (fixed window counts denied hits too, as upstream).
    pub used_after: u64,
    /// Decided by the failure policy because the counter's Redis shard was unavailable.
    pub fallback: bool,
    /// A repeat of an idempotent request: the first attempt's outcome answered again, nothing
    /// charged ([`once`]).
    pub replayed: bool,
}

/// Whole seconds in `d`, rounded up, for headers such as `Retry-After`.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

// Bounds that keep every step of every algorithm exact in both stores. `lua/limiter.lua`
// computes with doubles (integers exact up to 2⁵³), so both stores clamp and saturate at the
// same documented points and then compute the very same integers.

/// A fixed-window count saturates here (2⁵²): denied hits are counted too, so a count could
/// otherwise grow without bound (and Redis `INCRBY` fails at 2⁶³); far above any limit.
pub const COUNTER_CAP: u64 = 1 << 52;

/// Time is clamped to 2⁵² µs since the epoch (the year 2112): sums of a time and a period,
/// backlog or retry stay below 2⁵³, exact in a double.
pub const NOW_CAP_US: u64 = 1 << 52;

/// A token bucket's backlog (its tolerance `T × burst`) and a denied request's wait are capped
/// at 2⁵⁰ µs (about 35.7 years): `T × burst` and `T × hits` can reach 10²³.
pub const TIME_CAP_US: u64 = 1 << 50;

/// The sliding window weights the previous window in steps of 1/10⁶ of the period (1 µs for
/// a second, 2.592 s for 30 days): `prev × weight + cur × 10⁶` stays below 2⁵³.
pub const WEIGHT_STEPS: u64 = 1_000_000;

/// The longest period a rule can have (a 365-day year); longer ones are clamped to it, in
/// both stores, so that `period × 10⁶ µs` and its products stay exact.
pub const MAX_PERIOD_SECS: u64 = 31_536_000;

/// An op's period in seconds, within `1..=`[`MAX_PERIOD_SECS`] as both stores count it.
pub fn period_secs(op: &Op) -> u64 {
    op.period_secs.clamp(1, MAX_PERIOD_SECS)
}

/// `now` in whole microseconds, clamped to [`NOW_CAP_US`] as both stores do.
pub fn now_micros(now: Duration) -> u64 {
    u64::try_from(now.as_micros())
        .unwrap_or(u64::MAX)
        .min(NOW_CAP_US)
}
