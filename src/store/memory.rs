//! The embedded store: counters in this process, exact under concurrency, bounded in size.
//!
//! Keys are spread over 64 shards, each a mutex-guarded hash table; an op holds its shard's
//! lock only while the algorithm runs (never across an `.await`), so concurrent requests for
//! one key are serialised and none is over-admitted.
//!
//! Bounded in keys and bytes: a cap bounds live counters, and every key is at most
//! [`crate::keys::MAX_KEY_BYTES`] long (long descriptor values are hashed into the key), so a
//! counter costs at most about 300 bytes whatever the request (a `sliding_log` counter adds 16
//! bytes per admitted hit in its window: a rule's choice, not a client's).
//!
//! Eviction never scans a shard: each shard keeps a min-heap of expiry times beside its
//! table. When a full shard needs room, at most [`EVICT_BUDGET`] heap entries are examined
//! (expired counters dropped; a counter whose window was extended is re-queued at its new
//! expiry); if none has expired, the new counter is not stored (counted in
//! `sluice_memory_store_full_total`) and the request is decided on a fresh state. The sweeper
//! drains expired entries from the heaps in small batches, so it never holds a lock long.

use crate::clock::Clock;
use crate::limiter::fixed_window::FixedWindow;
use crate::limiter::once::OnceCall;
use crate::limiter::sliding_log::SlidingLog;
use crate::limiter::sliding_window::SlidingWindow;
use crate::limiter::token_bucket::TokenBucket;
use crate::limiter::{Op, Outcome};
use crate::meter::Meter;
use crate::rules::model::Algorithm;
use crate::store::replay::Replays;
use crate::store::{OverrideMedium, Store, StoreError};
use hashbrown::hash_table::{Entry, HashTable};
use hashbrown::DefaultHashBuilder;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod once;

/// Number of shards (a power of two); enough that two cores rarely contend.
const SHARDS: usize = 64;

/// Most expiry-heap entries a new counter may examine to make room in a full shard.
pub const EVICT_BUDGET: usize = 8;

/// Most expired counters the sweeper drops per lock acquisition.
const SWEEP_BATCH: usize = 1024;

/// One shard: the counters and when each expires.
#[derive(Default)]
struct Shard {
    /// The counters, by key hash.
    table: HashTable<Slot>,
    /// `(expires_ms, key hash)` of every counter, earliest first. Entries go stale when a
    /// counter's window is extended (re-queued when popped) or it is removed (dropped when
    /// popped), so each live counter has at least one entry and stale ones are bounded by
    /// the inserts since.
    expiries: BinaryHeap<Reverse<(u64, u64)>>,
}

impl Shard {
    /// Examines at most `budget` earliest expiries; drops the counters expired by `now_ms`.
    /// Returns how many counters were dropped and how many entries were examined.
    fn evict(&mut self, now_ms: u64, budget: usize) -> (usize, usize) {
        let (mut dropped, mut examined) = (0, 0);
        while examined < budget {
            let Some(&Reverse((at, hash))) = self.expiries.peek() else {
                break;
            };
            if at > now_ms {
                break;
            }
            examined += 1;
            self.expiries.pop();
            match self
                .table
                .find_entry(hash, |s| s.hash == hash && s.expires_ms <= now_ms)
            {
                Ok(entry) => {
                    entry.remove();
                    dropped += 1;
                }
                Err(_) => {
                    // Extended since queued: re-queue it at its expiry. An entry that is not
                    // the slot's own (left by a counter reset and re-created since) is dropped,
                    // so each live counter keeps exactly one entry.
                    if let Some(slot) = self
                        .table
                        .find_mut(hash, |s| s.hash == hash && s.queued_ms == at)
                    {
                        slot.queued_ms = slot.expires_ms;
                        self.expiries.push(Reverse((slot.expires_ms, hash)));
                    }
                }
            }
        }
        (dropped, examined)
    }
}

/// One counter's state, by algorithm.
#[derive(Debug, Clone)]
enum State {
    Fixed(FixedWindow),
    Sliding(SlidingWindow),
    Log(Box<SlidingLog>),
    Bucket(TokenBucket),
}

impl State {
    fn new(algorithm: Algorithm) -> State {
        match algorithm {
            // A calendar window counts as the fixed window; only its window bounds differ.
            Algorithm::FixedWindow | Algorithm::CalendarWindow(_) => {
                State::Fixed(FixedWindow::default())
            }
            Algorithm::SlidingWindow => State::Sliding(SlidingWindow::default()),
            Algorithm::SlidingLog => State::Log(Box::default()),
            Algorithm::TokenBucket => State::Bucket(TokenBucket::default()),
        }
    }

    /// Whether this state is the shape `algorithm` keeps (a fixed-window count serves both
    /// window kinds: a state of another window simply starts afresh at its next decision).
    fn holds(&self, algorithm: Algorithm) -> bool {
        match self {
            State::Fixed(_) => algorithm.is_fixed_window(),
            State::Sliding(_) => algorithm == Algorithm::SlidingWindow,
            State::Log(_) => algorithm == Algorithm::SlidingLog,
            State::Bucket(_) => algorithm == Algorithm::TokenBucket,
        }
    }

    /// Runs the op's algorithm; returns the outcome and when the state expires (ms).
    fn decide(&mut self, now: Duration, op: &Op) -> (Outcome, u64) {
        if !self.holds(op.algorithm) {
            // The rule changed algorithm on reload: start afresh.
            *self = State::new(op.algorithm);
        }
        let (outcome, expires) = match self {
            State::Fixed(s) => (s.decide(now, op), s.expires_at(op)),
            State::Sliding(s) => (s.decide(now, op), s.expires_at(op)),
            State::Log(s) => (s.decide(now, op), s.expires_at(op)),
            State::Bucket(s) => (s.decide(now, op), s.expires_at()),
        };
        (outcome, millis(expires))
    }
}

/// One live counter.
#[derive(Debug)]
struct Slot {
    /// The op's key; boxed to keep the slot small.
    key: Box<str>,
    /// The key's hash: the expiry heap names counters by it (hashbrown's own lookups compare
    /// only a few bits of it, so eviction checks the whole hash).
    hash: u64,
    /// When the state stops mattering (ms since the epoch); the sweeper drops it after.
    expires_ms: u64,
    /// The time of this counter's own entry in the shard's expiry heap (other entries with
    /// its hash are stale leftovers of a reset counter).
    queued_ms: u64,
    /// The algorithm's state.
    state: State,
}

/// Counters held in this process.
pub struct MemoryStore {
    /// Mutex-guarded shards; a key lives in shard `(hash >> 32) % SHARDS`.
    shards: Box<[Mutex<Shard>]>,
    /// Randomly seeded hasher (keys come from requests: no predictable collisions).
    hasher: DefaultHashBuilder,
    /// Where time comes from (injectable for exact tests).
    clock: Arc<dyn Clock>,
    /// Live counters allowed per shard: the configured cap divided among shards.
    shard_cap: usize,
    /// Live counters now, kept up to date for the gauge and tests.
    live: AtomicUsize,
    /// All-or-nothing admission: when any op of a request is denied, charge none of them.
    atomic: bool,
    /// Expiry-heap entries examined to make room, for tests proving the work is bounded.
    examined: AtomicUsize,
    /// `sluice_memory_store_full_total`: new counters refused because a shard was full.
    full: metrics::Counter,
    /// `sluice_memory_store_keys`, set after each sweep.
    keys: metrics::Gauge,
    /// Idempotency records (`idempotency:` rules), bounded by the same cap as counters.
    replays: Replays,
    /// Idempotency keys' ledgers: hits each key still holds reserved on each counter (a
    /// table of its own: it is locked while a record's lock is held).
    ledgers: Replays,
}

impl MemoryStore {
    /// A store with room for about `max_keys` live counters.
    pub fn new(clock: Arc<dyn Clock>, max_keys: usize) -> MemoryStore {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: DefaultHashBuilder::default(),
            clock,
            shard_cap: max_keys.div_ceil(SHARDS).max(1),
            live: AtomicUsize::new(0),
            atomic: false,
            examined: AtomicUsize::new(0),
            full: metrics::Counter::noop(),
            keys: metrics::Gauge::noop(),
            replays: Replays::new(max_keys),
            ledgers: Replays::new(max_keys),
        }
    }

    /// Records `sluice_memory_store_full_total` and `sluice_memory_store_keys` in `meter`
    /// (a store without one — the Redis store's local fallback — records nowhere).
    pub fn with_meter(mut self, meter: &Meter) -> MemoryStore {
        (self.full, self.keys) = meter.record(|| {
            (
                metrics::counter!("sluice_memory_store_full_total"),
                metrics::gauge!("sluice_memory_store_keys"),
            )
        });
        let full = meter.record(|| metrics::counter!("sluice_idempotency_full_total"));
        self.replays.set_full(full.clone());
        self.ledgers.set_full(full);
        self
    }

    /// Makes every request all-or-nothing: if any op is denied, none is charged.
    pub fn all_or_nothing(mut self, atomic: bool) -> MemoryStore {
        self.atomic = atomic;
        self
    }

    /// Live counters (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether no counter is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `ops` at the clock's current time.
    pub fn apply_now(&self, ops: &[Op]) -> Vec<Outcome> {
        let now = self.clock.now();
        if self.atomic {
            // Even a single op: a denied request consumes nothing (fixed window included).
            return self.apply_all_or_nothing(now, ops);
        }
        ops.iter().map(|op| self.apply_one(now, op)).collect()
    }

    /// Live idempotency records (expired ones included until swept).
    pub fn records(&self) -> usize {
        self.replays.len()
    }

    /// All-or-nothing: lock every shard the request touches (in index order, so requests never
    /// deadlock), decide on copies of the states, and write them back only if every op fits.
    /// When one is denied, ops that would have fitted are reported as checks (uncharged).
    fn apply_all_or_nothing(&self, now: Duration, ops: &[Op]) -> Vec<Outcome> {
        let hashes: Vec<u64> = ops
            .iter()
            .map(|op| self.hasher.hash_one(op.key.as_str()))
            .collect();
        let mut order: Vec<usize> = hashes.iter().map(|&h| shard_index(h)).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<_> = order.iter().map(|&i| (i, self.shards[i].lock())).collect();
        let original = |guards: &[(usize, parking_lot::MutexGuard<'_, Shard>)], i: usize| {
            let (_, shard) = guards
                .iter()
                .find(|(s, _)| *s == shard_index(hashes[i]))
                .expect("every touched shard is locked");
            shard
                .table
                .find(hashes[i], |s| *s.key == *ops[i].key)
                .map(|s| s.state.clone())
                .unwrap_or_else(|| State::new(ops[i].algorithm))
        };
        // trial[i]: (state after op i, its expiry) for the first op of each key; later ops on
        // the same key continue from it.
        let mut trial: Vec<Option<(State, u64)>> = Vec::with_capacity(ops.len());
        let mut outcomes = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let first = ops[..i].iter().position(|o| o.key == op.key).unwrap_or(i);
            if first == i {
                let mut state = original(&guards, i);
                let (outcome, expires) = state.decide(now, op);
                trial.push(Some((state, expires)));
                outcomes.push(outcome);
            } else {
                trial.push(None);
                let Some((state, expires)) = trial[first].as_mut() else {
                    unreachable!("the first op of a key always has a trial state");
                };
                let (outcome, e) = state.decide(now, op);
                *expires = e;
                outcomes.push(outcome);
            }
        }
        if outcomes.iter().all(|o| o.allowed) {
            for (i, t) in trial.into_iter().enumerate() {
                if let Some((state, expires_ms)) = t {
                    let table = &mut guards
                        .iter_mut()
                        .find(|(s, _)| *s == shard_index(hashes[i]))
                        .expect("every touched shard is locked")
                        .1;
                    // A new counter is kept if any op of its key charged (not only the first).
                    let op = ops[i..]
                        .iter()
                        .filter(|o| o.key == ops[i].key)
                        .find(|o| o.hits > 0 && !o.refund)
                        .unwrap_or(&ops[i]);
                    self.store_state(table, hashes[i], op, state, expires_ms, now);
                }
            }
            return outcomes;
        }
        for (i, outcome) in outcomes.iter_mut().enumerate() {
            if outcome.allowed {
                let mut check = ops[i].clone();
                check.hits = 0;
                check.refund = false;
                // It fitted: still allowed (a refund, or a charge after a refund of its key,
                // may fit where a bare check of the stored state would not).
                *outcome = Outcome {
                    allowed: true,
                    retry_after: Duration::ZERO,
                    ..original(&guards, i).decide(now, &check).0
                };
            }
        }
        outcomes
    }

    /// Writes a decided state back (inserting it if new and worth keeping).
    fn store_state(
        &self,
        shard: &mut Shard,
        hash: u64,
        op: &Op,
        state: State,
        expires_ms: u64,
        now: Duration,
    ) {
        if let Some(slot) = shard.table.find_mut(hash, |s| *s.key == *op.key) {
            slot.state = state;
            slot.expires_ms = expires_ms;
            return;
        }
        self.insert_new(shard, hash, op, state, expires_ms, now);
    }

    /// Inserts a counter known to be absent, if worth keeping and there is room.
    fn insert_new(
        &self,
        shard: &mut Shard,
        hash: u64,
        op: &Op,
        state: State,
        expires_ms: u64,
        now: Duration,
    ) {
        // A check or a refund of an absent counter leaves nothing worth keeping.
        if op.hits == 0 || op.refund || !self.make_room(shard, now) {
            return;
        }
        let slot = Slot {
            key: op.key.as_str().into(),
            hash,
            expires_ms,
            queued_ms: expires_ms,
            state,
        };
        shard.table.insert_unique(hash, slot, |s| s.hash);
        shard.expiries.push(Reverse((expires_ms, hash)));
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a shard has room for one more counter, evicting expired ones first when full
    /// (at most [`EVICT_BUDGET`] heap entries examined: constant work per insert).
    fn make_room(&self, shard: &mut Shard, now: Duration) -> bool {
        if shard.table.len() < self.shard_cap {
            return true;
        }
        let (dropped, examined) = shard.evict(millis(now), EVICT_BUDGET);
        self.live.fetch_sub(dropped, Ordering::Relaxed);
        self.examined.fetch_add(examined, Ordering::Relaxed);
        if shard.table.len() < self.shard_cap {
            return true;
        }
        self.full.increment(1);
        false
    }

    /// Expiry-heap entries examined so far to make room for new counters (tests: the work
    /// per insert into a full store stays bounded).
    pub fn eviction_work(&self) -> usize {
        self.examined.load(Ordering::Relaxed)
    }

    fn apply_one(&self, now: Duration, op: &Op) -> Outcome {
        let hash = self.hasher.hash_one(op.key.as_str());
        let mut shard = self.shards[shard_index(hash)].lock();
        let entry = shard.table.entry(hash, |s| *s.key == *op.key, |s| s.hash);
        match entry {
            Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                let (outcome, expires) = slot.state.decide(now, op);
                slot.expires_ms = expires;
                outcome
            }
            Entry::Vacant(_) => {
                let mut state = State::new(op.algorithm);
                let (outcome, expires_ms) = state.decide(now, op);
                // Known absent: no second lookup.
                self.insert_new(&mut shard, hash, op, state, expires_ms, now);
                outcome
            }
        }
    }

    /// Deletes the counters of `ops` (the admin API's reset); returns how many existed.
    pub fn remove(&self, ops: &[Op]) -> usize {
        let mut removed = 0;
        for op in ops {
            let hash = self.hasher.hash_one(op.key.as_str());
            let mut shard = self.shards[shard_index(hash)].lock();
            if let Ok(entry) = shard.table.find_entry(hash, |s| *s.key == *op.key) {
                entry.remove();
                removed += 1;
            }
        }
        self.live.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Whether a counter with this key is held (tests).
    pub fn contains(&self, key: &str) -> bool {
        let hash = self.hasher.hash_one(key);
        let shard = self.shards[shard_index(hash)].lock();
        shard.table.find(hash, |s| *s.key == *key).is_some()
    }

    /// Drops every counter whose window has passed; returns how many. Works through each
    /// shard's expiry heap in batches of `SWEEP_BATCH`, releasing the lock in between.
    pub fn sweep(&self) -> usize {
        let now_ms = millis(self.clock.now());
        let mut dropped = 0;
        for shard in self.shards.iter() {
            loop {
                let mut s = shard.lock();
                let (d, examined) = s.evict(now_ms, SWEEP_BATCH);
                dropped += d;
                self.live.fetch_sub(d, Ordering::Relaxed);
                if examined < SWEEP_BATCH {
                    // Stale heap entries of removed counters are bounded by the removals;
                    // a table that shrank a lot gives its memory back.
                    let len = s.table.len();
                    if s.table.capacity() > 4 * len.max(16) {
                        s.table.shrink_to_fit(|slot| slot.hash);
                        s.expiries.shrink_to_fit();
                    }
                    break;
                }
            }
        }
        self.replays.sweep(self.clock.now());
        self.ledgers.sweep(self.clock.now());
        self.keys.set(self.len() as f64);
        dropped
    }

    /// Sweeps every `every` until the returned task is aborted (or the runtime stops).
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                store.sweep();
            }
        })
    }
}

/// In-process only: runtime overrides are not shared (one replica, or each its own).
impl OverrideMedium for MemoryStore {}

impl Store for MemoryStore {
    async fn apply(
        &self,
        ops: &[Op],
        _deadline: Option<tokio::time::Instant>,
    ) -> Result<Vec<Outcome>, StoreError> {
        Ok(self.apply_now(ops))
    }

    async fn apply_once(
        &self,
        ops: &[Op],
        call: &OnceCall<'_>,
        _deadline: Option<tokio::time::Instant>,
    ) -> Result<Vec<Outcome>, StoreError> {
        Ok(self.apply_once_now(ops, call))
    }

    fn live_keys(&self) -> Option<usize> {
        Some(self.len())
    }

    async fn reset(&self, ops: &[Op]) -> Result<(), StoreError> {
        self.remove(ops);
        Ok(())
    }
}

/// The shard of a key hash: bits above those hashbrown uses for buckets and tags' low end.
fn shard_index(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn op(key: &str, limit: u32, period: u64, hits: u32) -> Op {
        Op {
            key: key.into(),
            algorithm: Algorithm::FixedWindow,
            requests_per_unit: limit,
            period_secs: period,
            burst: limit,
            hits,
            refund: false,
        }
    }

    fn store(cap: usize) -> (Arc<ManualClock>, MemoryStore) {
        let clock = Arc::new(ManualClock::new(Duration::from_secs(1_000)));
        let store = MemoryStore::new(clock.clone(), cap);
        (clock, store)
    }

    #[test]
    fn counts_per_key() {
        let (_, s) = store(1000);
        let out = s.apply_now(&[op("a", 2, 60, 1), op("b", 2, 60, 1), op("a", 2, 60, 1)]);
        assert_eq!(
            out.iter().map(|o| o.remaining).collect::<Vec<_>>(),
            [1, 1, 0]
        );
        assert!(!s.apply_now(&[op("a", 2, 60, 1)])[0].allowed);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn expired_windows_are_swept() {
        let (clock, s) = store(1000);
        s.apply_now(&[op("a", 2, 1, 1), op("b", 2, 60, 1)]);
        clock.advance(Duration::from_secs(2));
        assert_eq!(s.sweep(), 1);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn checks_and_refunds_of_absent_keys_store_nothing() {
        let (_, s) = store(1000);
        let mut refund = op("r", 2, 60, 1);
        refund.refund = true;
        let out = s.apply_now(&[op("c", 2, 60, 0), refund]);
        assert!(out.iter().all(|o| o.allowed));
        assert!(s.is_empty());
    }

    #[test]
    fn the_cap_bounds_live_keys() {
        let (clock, s) = store(SHARDS); // one key per shard
        for i in 0..10 * SHARDS {
            s.apply_now(&[op(&format!("k{i}"), 5, 1, 1)]);
        }
        assert!(s.len() <= SHARDS, "{} live keys", s.len());
        // Once windows pass, full shards make room by sweeping.
        clock.advance(Duration::from_secs(5));
        s.apply_now(&[op("fresh", 5, 60, 1)]);
        assert!(s.len() <= SHARDS);
    }

    #[test]
    fn changing_algorithm_starts_afresh() {
        let (_, s) = store(1000);
        s.apply_now(&[op("a", 1, 60, 1)]);
        let mut tb = op("a", 1, 60, 1);
        tb.algorithm = Algorithm::TokenBucket;
        assert!(s.apply_now(&[tb])[0].allowed);
    }

    #[test]
    fn a_full_store_admits_new_keys_with_bounded_work() {
        let (clock, s) = store(SHARDS * 100);
        for i in 0..SHARDS * 200 {
            s.apply_now(&[op(&format!("live{i}"), 5, 3600, 1)]);
        }
        let full = s.len();
        assert!(full <= SHARDS * 100);
        // Every shard is full of live counters: a new key looks at the earliest expiry only.
        for i in 0..10_000 {
            let out = s.apply_now(&[op(&format!("new{i}"), 5, 3600, 1)]);
            assert!(out[0].allowed, "decided on a fresh state");
        }
        assert_eq!(s.eviction_work(), 0, "nothing expired: no entry examined");
        assert_eq!(s.len(), full);
        // Windows pass: each new key evicts at most EVICT_BUDGET expired counters.
        clock.advance(Duration::from_secs(3601));
        for i in 0..1_000 {
            s.apply_now(&[op(&format!("later{i}"), 5, 60, 1)]);
        }
        assert!(s.eviction_work() <= 1_000 * EVICT_BUDGET);
        assert!(s.len() <= SHARDS * 100);
        assert!(
            (0..1_000).all(|i| s.contains(&format!("later{i}"))),
            "expired counters made room"
        );
    }

    #[test]
    fn extended_windows_are_requeued_not_evicted() {
        let (clock, s) = store(SHARDS); // one key per shard
        let mut sliding = op("kept", 5, 10, 1);
        sliding.algorithm = Algorithm::SlidingWindow;
        s.apply_now(std::slice::from_ref(&sliding));
        // Used again later: its expiry moves past the first queued one.
        clock.advance(Duration::from_secs(15));
        s.apply_now(std::slice::from_ref(&sliding));
        clock.advance(Duration::from_secs(10));
        assert_eq!(s.sweep(), 0, "still live: re-queued at its new expiry");
        assert!(s.contains("kept"));
        clock.advance(Duration::from_secs(60));
        assert_eq!(s.sweep(), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn resets_leave_no_heap_entries_behind() {
        let (clock, s) = store(1000);
        let mut sliding = op("reset-me", 5, 10, 1);
        sliding.algorithm = Algorithm::SlidingWindow;
        for _ in 0..100 {
            s.apply_now(std::slice::from_ref(&sliding));
            s.remove(std::slice::from_ref(&sliding));
            clock.advance(Duration::from_secs(1));
        }
        s.apply_now(std::slice::from_ref(&sliding));
        // Every stale entry is popped by the time the live counter's own would be, and dropped.
        clock.advance(Duration::from_secs(25));
        s.apply_now(std::slice::from_ref(&sliding));
        s.sweep();
        let entries: usize = s.shards.iter().map(|sh| sh.lock().expiries.len()).sum();
        assert_eq!(entries, 1, "one entry for the one live counter");
        assert!(s.contains("reset-me"));
    }
}
