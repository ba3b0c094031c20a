//! Slots in this process: exact, shared by every request of this replica (the memory store's
//! concurrency side, and the local fallback of the Redis store).
//!
//! Per key a [`Table`] holds named leases (by lease id) and anonymous ones, each ordered by
//! expiry so the oldest is found in O(log n). Tables are sharded by key hash behind short
//! `parking_lot` locks (never held across an `.await`); a table is dropped as soon as it holds
//! nothing, and at most `max_keys` tables — and `max_keys` leases in all — exist at once (a new
//! key or lease beyond that is refused as [`SlotResult::NoRoom`]: refusing is safe, forgetting a held slot would over-admit).

use crate::clock::Clock;
use crate::concurrency::slots::{SlotAction, SlotBackend, SlotOp, SlotOutcome, SlotResult};
use crate::keys::lease_member;
use crate::store::StoreError;
use futures_util::future::BoxFuture;
use hashbrown::HashMap;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Lock shards: enough that two cores rarely meet on one lock.
const SHARDS: usize = 16;

/// A named lease.
#[derive(Debug, Clone, Copy)]
struct Named {
    /// When it ends without a release (ms since the epoch) and its tie-breaking sequence: its
    /// key in [`Table::order`].
    at: (u64, u64),
    /// Releases still to absorb: duplicates of this id that were refused (`InUse`).
    absorb: u32,
}

/// One key's leases.
#[derive(Debug)]
struct Table {
    /// The rule the key belongs to (labels the expiries a sweep finds).
    rule: Arc<str>,
    /// Named leases by id.
    named: HashMap<Box<str>, Named>,
    /// Every lease by `(expiry ms, sequence)`: the named one's id, or `None` for anonymous.
    order: BTreeMap<(u64, u64), Option<Box<str>>>,
    /// Anonymous leases by `(expiry ms, sequence)` (the oldest is released first).
    anonymous: BTreeMap<(u64, u64), ()>,
}

impl Table {
    /// Slots held.
    fn held(&self) -> u32 {
        u32::try_from(self.order.len()).unwrap_or(u32::MAX)
    }

    /// Drops the leases ended by `now_ms`; how many.
    fn expire(&mut self, now_ms: u64) -> u32 {
        let mut n = 0;
        while let Some(entry) = self.order.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let (at, id) = entry.remove_entry();
            match id {
                Some(id) => {
                    self.named.remove(&id);
                }
                None => {
                    self.anonymous.remove(&at);
                }
            }
            n += 1;
        }
        n
    }

    /// Until the earliest lease ends.
    fn next_expiry(&self, now_ms: u64) -> Option<Duration> {
        self.order
            .first_key_value()
            .map(|((at, _), _)| Duration::from_millis(at.saturating_sub(now_ms)))
    }
}

/// Slots in this process.
pub struct MemorySlots {
    /// Reads wall-clock time for lease expiry (a manual clock in tests).
    clock: Arc<dyn Clock>,
    /// Tables by key, in [`SHARDS`] lock shards.
    shards: Vec<Mutex<HashMap<String, Table>>>,
    /// Picks a key's shard.
    hasher: hashbrown::DefaultHashBuilder,
    /// Tables alive, bounded by `max_keys`.
    keys: AtomicUsize,
    /// Leases held in all tables, bounded by `max_keys` too: many keys of a few slots each
    /// (one per user) cannot grow memory beyond the bound either.
    leases: AtomicUsize,
    /// The most tables at once (memory bound).
    max_keys: usize,
    /// Lease sequence numbers: leases taken in one millisecond keep their order.
    seq: std::sync::atomic::AtomicU64,
}

impl MemorySlots {
    /// An empty table set reading `clock`, holding at most `max_keys` keys.
    pub fn new(clock: Arc<dyn Clock>, max_keys: usize) -> MemorySlots {
        MemorySlots {
            clock,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            keys: AtomicUsize::new(0),
            leases: AtomicUsize::new(0),
            max_keys: max_keys.max(1),
            seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// Keys holding at least one lease.
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    /// Whether no key holds a lease.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots held by `key` now (expired leases not counted).
    pub fn held(&self, key: &str) -> u32 {
        let now = self.now_ms();
        let shard = self.shard(key).lock();
        shard.get(key).map_or(0, |t| {
            t.order
                .range((now + 1, 0)..)
                .count()
                .try_into()
                .unwrap_or(u32::MAX)
        })
    }

    /// Whether `key` holds a named lease for `id` (the Redis store's fallback asks before
    /// sending a release to Redis).
    pub fn holds(&self, key: &str, id: Option<&str>) -> bool {
        let shard = self.shard(key).lock();
        shard.get(key).is_some_and(|t| match id {
            Some(id) => t.named.contains_key(lease_member(id).as_ref()),
            None => !t.anonymous.is_empty(),
        })
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Table>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[i]
    }

    /// Runs `ops` now, in order.
    pub fn run_now(&self, ops: &[SlotOp]) -> Vec<SlotOutcome> {
        let now = self.now_ms();
        ops.iter().map(|op| self.one(op, now)).collect()
    }

    /// Drops every expired lease; how many, per rule (the sweeper's work, between requests).
    pub fn sweep_now(&self) -> Vec<(Arc<str>, u64)> {
        let now = self.now_ms();
        let mut out: Vec<(Arc<str>, u64)> = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock();
            let (keys, mut dropped) = (map.len(), 0usize);
            map.retain(|_, t| {
                let n = t.expire(now);
                dropped += n as usize;
                if n > 0 {
                    match out.iter_mut().find(|(r, _)| *r == t.rule) {
                        Some((_, total)) => *total += u64::from(n),
                        None => out.push((t.rule.clone(), u64::from(n))),
                    }
                }
                !t.order.is_empty()
            });
            // Exact deltas, under the shard's lock: the totals never drift.
            self.keys.fetch_sub(keys - map.len(), Ordering::Relaxed);
            self.leases.fetch_sub(dropped, Ordering::Relaxed);
        }
        out
    }

    fn one(&self, op: &SlotOp, now: u64) -> SlotOutcome {
        let mut map = self.shard(&op.key).lock();
        let member = op.lease.as_deref().map(lease_member);
        if !map.contains_key(op.key.as_str()) {
            // Nothing held: a release is stray, a peek or note sees zero.
            let result = match op.action {
                SlotAction::Acquire => None,
                SlotAction::Release => Some(SlotResult::Stray),
                SlotAction::Peek | SlotAction::Note => Some(SlotResult::Unchanged),
            };
            if let Some(result) = result {
                return SlotOutcome::new(result, 0);
            }
            if self.keys.load(Ordering::Relaxed) >= self.max_keys {
                return SlotOutcome::new(SlotResult::NoRoom, 0);
            }
            self.keys.fetch_add(1, Ordering::Relaxed);
            map.insert(
                op.key.clone(),
                Table {
                    rule: op.rule.clone(),
                    named: HashMap::new(),
                    order: BTreeMap::new(),
                    anonymous: BTreeMap::new(),
                },
            );
        }
        let Some(table) = map.get_mut(op.key.as_str()) else {
            return SlotOutcome::new(SlotResult::Unchanged, 0);
        };
        let before = table.order.len();
        let expired = table.expire(now);
        // A new lease needs room in the whole set, not only in its key.
        let room = self
            .leases
            .load(Ordering::Relaxed)
            .saturating_sub(before - table.order.len())
            < self.max_keys;
        let result = match (op.action, member) {
            (SlotAction::Acquire, Some(id))
                if !room && !table.named.contains_key(id.as_ref()) && table.held() < op.max =>
            {
                SlotResult::NoRoom
            }
            (SlotAction::Acquire, None) if !room && table.held() < op.max => SlotResult::NoRoom,
            (SlotAction::Acquire, Some(id)) => {
                if let Some(lease) = table.named.get_mut(id.as_ref()) {
                    lease.absorb = lease.absorb.saturating_add(1);
                    SlotResult::InUse
                } else if table.held() < op.max {
                    let at = (now.saturating_add(op.lease_ms), self.next_seq());
                    let id: Box<str> = id.into();
                    table.order.insert(at, Some(id.clone()));
                    table.named.insert(id, Named { at, absorb: 0 });
                    SlotResult::Granted
                } else {
                    SlotResult::Full
                }
            }
            (SlotAction::Acquire, None) => {
                if table.held() < op.max {
                    let at = (now.saturating_add(op.lease_ms), self.next_seq());
                    table.order.insert(at, None);
                    table.anonymous.insert(at, ());
                    SlotResult::Granted
                } else {
                    SlotResult::Full
                }
            }
            (SlotAction::Release, Some(id)) => match table.named.get_mut(id.as_ref()) {
                Some(lease) if lease.absorb > 0 => {
                    lease.absorb -= 1;
                    SlotResult::Absorbed
                }
                Some(lease) => {
                    let at = lease.at;
                    table.named.remove(id.as_ref());
                    table.order.remove(&at);
                    SlotResult::Released
                }
                None => SlotResult::Stray,
            },
            (SlotAction::Release, None) => match table.anonymous.pop_first() {
                Some((at, ())) => {
                    table.order.remove(&at);
                    SlotResult::Released
                }
                None => SlotResult::Stray,
            },
            (SlotAction::Note, Some(id)) => {
                if let Some(lease) = table.named.get_mut(id.as_ref()) {
                    lease.absorb = lease.absorb.saturating_add(1);
                }
                SlotResult::Unchanged
            }
            (SlotAction::Note, None) | (SlotAction::Peek, _) => SlotResult::Unchanged,
        };
        let after = table.order.len();
        if after >= before {
            self.leases.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.leases.fetch_sub(before - after, Ordering::Relaxed);
        }
        let outcome = SlotOutcome {
            result,
            held: table.held(),
            next_expiry: table.next_expiry(now),
            expired,
            fallback: false,
        };
        if table.order.is_empty() {
            map.remove(op.key.as_str());
            self.keys.fetch_sub(1, Ordering::Relaxed);
        }
        outcome
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
}

impl SlotBackend for MemorySlots {
    fn run<'a>(
        &'a self,
        ops: &'a [SlotOp],
        _deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Vec<SlotOutcome>, StoreError>> {
        let out = self.run_now(ops);
        Box::pin(async move { Ok(out) })
    }

    fn sweep(&self) -> Vec<(Arc<str>, u64)> {
        self.sweep_now()
    }
}

#[cfg(test)]
mod tests;
