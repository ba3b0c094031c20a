//! The memory store's idempotency records ([`crate::limiter::once`]): per record digest, the
//! first attempt's outcomes and when they were decided, until the rule's `ttl` passes.
//!
//! Bounded like the counters, in bytes as well as in number: 64 mutex-guarded shards, each
//! with a budget of *units* (a record costs one unit plus one per stored outcome, so a record
//! of a 100-descriptor request weighs 101) and a min-heap of expiry times; a full shard evicts
//! expired records (at most [`EVICT_BUDGET`] heap entries examined) and otherwise records
//! nothing new (the request is charged as usual and counted in `sluice_idempotency_full_total`:
//! forgetting a record can only charge a retry again, never admit more than the limit). A unit
//! is about 56 bytes, plus the map's own overhead per record.
//!
//! [`Replays::with`] holds a record's shard lock while the caller decides the ops, so
//! concurrent attempts with one key are serialised: the first decides and records, the others
//! read its record. Lock order is always record shard, then counter shards (counters never
//! take a record lock), so no two requests can deadlock.

use crate::limiter::Outcome;
use hashbrown::HashMap;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Number of shards (a power of two).
const SHARDS: usize = 64;

/// Most expiry-heap entries a new record may examine to make room in a full shard.
pub const EVICT_BUDGET: usize = 8;

/// One record.
struct Record {
    /// When the first attempt was decided.
    at: Duration,
    /// When the record stops counting (ms since the epoch).
    expires_ms: u64,
    /// The first attempt's outcomes, one per op (empty for a settlement's mark).
    outcomes: Box<[Outcome]>,
    /// Repeats answered so far (for a rule's `max_repeats`).
    repeats: u32,
    /// A ledger's hits still reserved (ledger tables only).
    hits: u64,
}

/// One shard of records.
#[derive(Default)]
struct Shard {
    /// Records by digest.
    map: HashMap<[u8; 16], Record>,
    /// Units held by the records (see the module docs).
    units: usize,
    /// `(expires_ms, digest)`, earliest first: a record is never extended, so its entry is
    /// due when it is; an entry left by a replaced record no longer matches and is dropped.
    expiries: BinaryHeap<Reverse<(u64, [u8; 16])>>,
}

impl Shard {
    /// Drops records expired by `now_ms`, examining at most `budget` heap entries; returns
    /// (dropped, examined).
    fn evict(&mut self, now_ms: u64, budget: usize) -> (usize, usize) {
        let (mut dropped, mut examined) = (0, 0);
        while examined < budget {
            match self.expiries.peek() {
                Some(&Reverse((at, _))) if at <= now_ms => {}
                _ => break,
            }
            examined += 1;
            if let Some(Reverse((at, digest))) = self.expiries.pop() {
                if self.map.get(&digest).is_some_and(|r| r.expires_ms == at) {
                    if let Some(r) = self.map.remove(&digest) {
                        self.units -= units(&r.outcomes);
                    }
                    dropped += 1;
                }
            }
        }
        (dropped, examined)
    }
}

/// A live record, as the caller sees it.
pub struct Live<'a> {
    /// The first attempt's outcomes (empty for a settlement's mark).
    pub stored: &'a [Outcome],
    /// Since they were decided.
    pub elapsed: Duration,
    /// Repeats the record has answered.
    pub repeats: u32,
    /// A ledger's hits still reserved.
    pub hits: u64,
}

/// What the caller does with a record's shard locked.
pub enum Step {
    /// Answer with these outcomes; the record (if any) stays as it is.
    Answer(Vec<Outcome>),
    /// Answer with these outcomes as one more repeat of the live record.
    Repeat(Vec<Outcome>),
    /// Answer with these outcomes and record them for replays.
    Record(Vec<Outcome>),
    /// A ledger: set its hits (a fresh entry, or the live one, for `ttl` from now).
    Ledger(u64),
}

/// The units a record holding `outcomes` costs.
fn units(outcomes: &[Outcome]) -> usize {
    1 + outcomes.len()
}

/// The memory store's idempotency records.
pub struct Replays {
    /// Mutex-guarded shards; a digest lives in shard `digest[0] % SHARDS`.
    shards: Box<[Mutex<Shard>]>,
    /// Units allowed per shard (the store's key cap divided among shards).
    shard_cap: usize,
    /// Live records, for the gauge and tests.
    live: AtomicUsize,
    /// `sluice_idempotency_full_total`: records not kept because a shard was full.
    full: metrics::Counter,
}

impl Replays {
    /// Room for about `max` records.
    pub fn new(max: usize) -> Replays {
        Replays {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_cap: max.div_ceil(SHARDS).max(1),
            live: AtomicUsize::new(0),
            full: metrics::Counter::noop(),
        }
    }

    /// Counts records refused for want of room in `full`.
    pub fn set_full(&mut self, full: metrics::Counter) {
        self.full = full;
    }

    /// Live records (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether no record is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` with record `digest` locked: `f` sees the live record (`None` when there is
    /// none) and says what to answer and whether to count a repeat or record afresh for
    /// `ttl`. `f` must not take a record lock itself.
    pub fn with(
        &self,
        digest: [u8; 16],
        now: Duration,
        ttl: Duration,
        f: impl FnOnce(Option<Live<'_>>) -> Step,
    ) -> Vec<Outcome> {
        let now_ms = millis(now);
        let mut shard = self.shards[usize::from(digest[0]) % SHARDS].lock();
        let live = shard
            .map
            .get(&digest)
            .filter(|r| r.expires_ms > now_ms)
            .map(|r| Live {
                stored: &r.outcomes,
                elapsed: now.saturating_sub(r.at),
                repeats: r.repeats,
                hits: r.hits,
            });
        let (outcomes, hits) = match f(live) {
            Step::Answer(outcomes) => return outcomes,
            Step::Ledger(hits) => (Vec::new(), hits),
            Step::Repeat(outcomes) => {
                if let Some(r) = shard.map.get_mut(&digest) {
                    r.repeats = r.repeats.saturating_add(1);
                }
                return outcomes;
            }
            Step::Record(outcomes) => (outcomes, 0),
        };
        let expires_ms = now_ms.saturating_add(millis(ttl));
        let stored: Box<[Outcome]> = outcomes.clone().into_boxed_slice();
        let cost = units(&stored);
        if let Some(old) = shard.map.remove(&digest) {
            // Expired: replaced, with a fresh heap entry (the old one no longer matches and
            // is dropped when popped).
            shard.units -= units(&old.outcomes);
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        if shard.units + cost > self.shard_cap {
            let (dropped, _) = shard.evict(now_ms, EVICT_BUDGET);
            self.live.fetch_sub(dropped, Ordering::Relaxed);
            if shard.units + cost > self.shard_cap {
                self.full.increment(1);
                return outcomes;
            }
        }
        let record = Record {
            at: now,
            expires_ms,
            outcomes: stored,
            repeats: 0,
            hits,
        };
        shard.units += cost;
        shard.map.insert(digest, record);
        shard.expiries.push(Reverse((expires_ms, digest)));
        self.live.fetch_add(1, Ordering::Relaxed);
        outcomes
    }

    /// Adds `hits` to ledger `id` (created if absent), live for `ttl` from `now`.
    pub fn credit(&self, id: [u8; 16], hits: u64, now: Duration, ttl: Duration) {
        if hits > 0 {
            self.with(id, now, ttl, |live| {
                Step::Ledger(live.map_or(0, |l| l.hits).saturating_add(hits))
            });
        }
    }

    /// Takes up to `want` hits from ledger `id` at `now`; returns what it took (0 without a
    /// live ledger).
    pub fn debit(&self, id: [u8; 16], want: u64, now: Duration, ttl: Duration) -> u64 {
        let mut took = 0;
        self.with(id, now, ttl, |live| match live {
            Some(l) if l.hits > 0 && want > 0 => {
                took = want.min(l.hits);
                Step::Ledger(l.hits - took)
            }
            _ => Step::Answer(Vec::new()),
        });
        took
    }

    /// Drops every record expired at `now`, a batch per lock acquisition; returns how many.
    pub fn sweep(&self, now: Duration) -> usize {
        let now_ms = millis(now);
        let mut dropped = 0;
        for shard in self.shards.iter() {
            loop {
                let mut s = shard.lock();
                let (d, examined) = s.evict(now_ms, 1024);
                dropped += d;
                self.live.fetch_sub(d, Ordering::Relaxed);
                if examined < 1024 {
                    if s.map.capacity() > 4 * s.map.len().max(16) {
                        s.map.shrink_to_fit();
                        s.expiries.shrink_to_fit();
                    }
                    break;
                }
            }
        }
        dropped
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(remaining: u32) -> Vec<Outcome> {
        vec![Outcome {
            allowed: true,
            remaining,
            reset_after: Duration::from_secs(60),
            ..Outcome::default()
        }]
    }

    const TTL: Duration = Duration::from_secs(600);

    /// The memory store's use: replay a live record of one outcome, else decide and record.
    fn once(
        r: &Replays,
        d: [u8; 16],
        now: Duration,
        decide: impl FnOnce() -> Vec<Outcome>,
    ) -> Vec<Outcome> {
        r.with(d, now, TTL, |live| match live {
            Some(l) if l.stored.len() == 1 => Step::Repeat(
                l.stored
                    .iter()
                    .map(|o| crate::limiter::once::replay(o, l.elapsed))
                    .collect(),
            ),
            _ => Step::Record(decide()),
        })
    }

    #[test]
    fn a_repeat_replays_without_deciding() {
        let r = Replays::new(1000);
        let t = Duration::from_secs(1000);
        let first = once(&r, [1; 16], t, || allowed(9));
        assert!(!first[0].replayed);
        let again = once(&r, [1; 16], t + Duration::from_secs(10), || {
            panic!("a repeat must not decide")
        });
        assert!(again[0].replayed);
        assert_eq!(again[0].remaining, 9);
        assert_eq!(again[0].reset_after, Duration::from_secs(50));
    }

    #[test]
    fn records_expire_after_their_ttl() {
        let r = Replays::new(1000);
        let t = Duration::from_secs(1000);
        once(&r, [2; 16], t, || allowed(9));
        let later = once(&r, [2; 16], t + TTL, || allowed(8));
        assert!(!later[0].replayed, "decided afresh once the ttl passed");
        assert_eq!(later[0].remaining, 8);
        assert_eq!(r.len(), 1);
        assert_eq!(r.sweep(t + TTL + TTL), 1);
        assert!(r.is_empty());
    }

    #[test]
    fn the_cap_bounds_records_and_a_full_table_still_decides() {
        let r = Replays::new(SHARDS * 2); // two units per shard: one record of one outcome
        let t = Duration::from_secs(1000);
        for i in 0..10 * SHARDS {
            let mut d = [0u8; 16];
            d[0] = (i % 256) as u8;
            d[1] = (i / 256) as u8;
            let out = once(&r, d, t, || allowed(1));
            assert!(!out[0].replayed);
        }
        assert!(r.len() <= SHARDS, "{}", r.len());
        // Once records expire, a full shard makes room.
        let out = once(&r, [9; 16], t + TTL, || allowed(1));
        assert!(!out[0].replayed);
        assert!(r.len() <= SHARDS);
    }

    #[test]
    fn big_records_cost_more() {
        let r = Replays::new(SHARDS * 10); // ten units per shard
        let t = Duration::from_secs(1000);
        let big = || vec![Outcome::default(); 20];
        let out = r.with([5; 16], t, TTL, |_| Step::Record(big()));
        assert_eq!(out.len(), 20, "still answered");
        assert!(r.is_empty(), "too big to keep");
        r.credit([5; 16], 1000, t, TTL);
        assert_eq!(r.len(), 1, "a bare mark costs one unit");
    }
}
