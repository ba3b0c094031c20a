//! Concurrency slots in Redis, shared by every replica: the Redis store's [`SlotBackend`].
//!
//! A call's ops are grouped like counters (per shard by the store's ring; per slot in a
//! cluster) and each group runs in **one** `EVALSHA` of `lua/slots.lua`, atomic on its node,
//! the groups concurrently, each within `--redis-timeout` (and the caller's deadline). The
//! script mirrors [`MemorySlots`] exactly (see its header for the key layout); time comes from
//! Redis `TIME`, or from [`RedisConfig::clock`] in tests.
//!
//! A freed slot is announced to the other replicas (`store::redis_notify`), so their waiters
//! are served within a notice's delivery time; a periodic retry ([`RETRY_EVERY`]) covers lost
//! notices. Failures are classified as for counters (`store::shard`):
//! - the node failed, or its breaker is open: the failure policy decides, with `fallback` set
//!   (`store::slots_fallback`): `local` runs the ops on this replica's [`MemorySlots`] with
//!   `max / replicas` slots (rounded up, at least 1); `allow` grants, `deny` refuses;
//! - the call missed its deadline: it may still run on Redis, so nothing is taken locally:
//!   `local` grants an acquire only if a local slot is free (a check), and its release later
//!   goes to Redis;
//! - Redis answered with an error: [`StoreError::Rejected`], and no breaker counts it.
//!
//! A release of a lease the local fallback holds (taken while Redis was away) is decided
//! locally, outage or not. A release of a lease held in Redis while its shard is away frees
//! nothing: that slot stays taken in Redis until its lease ends (`lease` of the rule).

use crate::clock::Clock;
use crate::concurrency::memory::MemorySlots;
use crate::concurrency::slots::{SlotAction, SlotBackend, SlotOp, SlotOutcome, SlotResult};
use crate::keys::lease_member;
use crate::meter::Meter;
use crate::store::fallback::Route;
use crate::store::redis::RedisConfig;
use crate::store::redis_notify::{self, Notices, Source};
use crate::store::ring::ShardRing;
use crate::store::shard::{classify, Fault, Shard};
use crate::store::slots_fallback::SlotFallback;
use crate::store::StoreError;
use futures_util::future::BoxFuture;
use redis::cluster_routing::Slot;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The slot script, compiled into the binary.
pub const SLOTS_SCRIPT: &str = include_str!("../../lua/slots.lua");

/// How often waiters retry without a notice: notices are lost while a subscription is being
/// re-made (≤ 2 s of backoff) and never sent for leases that expire unseen. One script call
/// per waiting key per replica per second is negligible next to the calls the waiters
/// themselves cause, and bounds the extra wait of a lost notice to a second.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Notices buffered per waiting room; a room that falls behind retries every key (`Lagged`).
const NOTICES: usize = 4096;

/// Integers the script returns per op.
const FIELDS: usize = 4;

/// Slots in Redis.
pub struct RedisSlots {
    /// The store's nodes (shared: one breaker and connection per node for counters and slots).
    shards: Vec<Arc<Shard>>,
    /// Key → shard: the store's own ring (a slot key lives where a counter of that key
    /// would).
    ring: ShardRing,
    /// `EVALSHA` of [`SLOTS_SCRIPT`], reloaded on `NOSCRIPT`.
    script: redis::Script,
    /// Prepended to every key and to the notice channel (deployments sharing a Redis).
    prefix: String,
    /// In a Redis Cluster keys carry a `{hash tag}` and calls are grouped by slot.
    cluster: bool,
    /// Deadline of one script call (`--redis-timeout`).
    timeout: Duration,
    /// Tests only: the script's time (ms) comes from this clock instead of Redis `TIME`.
    clock: Option<Arc<dyn Clock>>,
    /// Decides for shards that cannot be asked; holds the leases taken meanwhile.
    fallback: SlotFallback,
    /// This replica's id (16 hex digits): leads its notices and its anonymous lease tokens.
    origin: String,
    /// Numbers anonymous lease tokens, so one replica's tokens sort in the order taken.
    tokens: AtomicU64,
    /// `<prefix>sluice:slots:freed`.
    channel: String,
    /// Keys freed on other replicas, for this replica's waiting room.
    freed: broadcast::Sender<Arc<str>>,
    /// What to subscribe to for notices (one listener each).
    sources: Vec<Source>,
    /// Whether the listeners run: started when a waiting room first asks for notices
    /// ([`SlotBackend::freed_elsewhere`]), so a store used without one (tools, counter tests)
    /// keeps no subscription.
    listening: AtomicBool,
    /// The listeners; aborted when the backend is dropped.
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl RedisSlots {
    /// Slots over the store's `shards` (in its order) and `ring`, configured like the store
    /// by `config`.
    pub fn new(
        config: &RedisConfig,
        shards: Vec<Arc<Shard>>,
        ring: ShardRing,
        meter: &Meter,
    ) -> Result<RedisSlots, StoreError> {
        let local_clock = config
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(crate::clock::SystemClock));
        Ok(RedisSlots {
            shards,
            ring,
            script: redis::Script::new(SLOTS_SCRIPT),
            prefix: config.key_prefix.clone(),
            cluster: config.topology == crate::store::redis_conn::Topology::Cluster,
            timeout: config.timeout,
            clock: config.clock.clone(),
            fallback: SlotFallback::new(
                config.fallback.policy,
                config.fallback.replicas,
                MemorySlots::new(local_clock, config.local_max_keys),
                meter.clone(),
            ),
            origin: origin(),
            tokens: AtomicU64::new(0),
            channel: format!("{}sluice:slots:freed", config.key_prefix),
            freed: broadcast::channel(NOTICES).0,
            sources: redis_notify::sources(config)?,
            listening: AtomicBool::new(false),
            tasks: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// Starts the notice listeners, once (only from within a tokio runtime).
    fn listen(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.listening.load(Ordering::Acquire) || self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let notices = Notices {
            channel: self.channel.clone(),
            origin: self.origin.clone(),
            tx: self.freed.clone(),
            timeout: self.timeout,
        };
        let mut tasks = self.tasks.lock();
        for source in &self.sources {
            tasks.push(runtime.spawn(redis_notify::listen(source.clone(), notices.clone())));
        }
    }

    /// The Redis key of slot key `key` (before its `:ids`/`:anon`/`:absorb` suffix).
    fn redis_key(&self, key: &str) -> String {
        if self.cluster {
            format!("{}{{{}}}", self.prefix, key)
        } else {
            format!("{}{}", self.prefix, key)
        }
    }

    /// A fresh anonymous lease token: the origin and a sequence number, fixed-width hex.
    fn token(&self) -> String {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:016x}", self.origin)
    }

    /// Op indexes per script call: per shard, or in a cluster per slot.
    fn groups(&self, ops: &[SlotOp], idx: Vec<usize>) -> Vec<(usize, Vec<usize>)> {
        if !self.cluster && self.shards.len() == 1 {
            return vec![(0, idx)];
        }
        let mut groups: Vec<(usize, Option<Slot>, Vec<usize>)> = Vec::new();
        for i in idx {
            let (shard, slot) = if self.cluster {
                let k = format!("{}:ids", self.redis_key(&ops[i].key));
                (0, Some(Slot::for_key(&k)))
            } else {
                (self.ring.shard_of(&ops[i].key), None)
            };
            match groups
                .iter_mut()
                .find(|(s, t, _)| *s == shard && *t == slot)
            {
                Some((_, _, g)) => g.push(i),
                None => groups.push((shard, slot, vec![i])),
            }
        }
        groups.into_iter().map(|(s, _, g)| (s, g)).collect()
    }

    /// Runs `ops` (see [`SlotBackend::run`]).
    async fn run_all(
        &self,
        ops: &[SlotOp],
        deadline: Option<Instant>,
    ) -> Result<Vec<SlotOutcome>, StoreError> {
        let mut out = vec![SlotOutcome::new(SlotResult::Unchanged, 0); ops.len()];
        let mut remote = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            if let Some(o) = self.fallback.release_held(op) {
                out[i] = o;
            } else {
                remote.push(i);
            }
        }
        if remote.is_empty() {
            return Ok(out);
        }
        let groups = self.groups(ops, remote);
        let calls = groups
            .iter()
            .map(|(shard, idx)| async move { (idx, self.call(*shard, ops, idx, deadline).await) });
        for (idx, outcomes) in futures_util::future::join_all(calls).await {
            for (&i, o) in idx.iter().zip(outcomes?) {
                out[i] = o;
            }
        }
        Ok(out)
    }

    /// Runs `ops[idx]` (all on `shard`) in one script call, or by the failure policy.
    async fn call(
        &self,
        shard: usize,
        ops: &[SlotOp],
        idx: &[usize],
        deadline: Option<Instant>,
    ) -> Result<Vec<SlotOutcome>, StoreError> {
        let s = &self.shards[shard];
        // Keep a little of the caller's time for the fallback and the answer.
        let budget = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .saturating_sub(Duration::from_millis(2))
                .min(self.timeout),
            None => self.timeout,
        };
        if s.breaker.route() == Route::Fallback || budget.is_zero() {
            return Ok(self.fallback.decide(&s.name, ops, idx, true));
        }
        let started = std::time::Instant::now();
        let result = self.invoke(s, ops, idx, budget).await;
        s.latency.record(started.elapsed().as_secs_f64());
        s.settle("slots", result, |take| {
            self.fallback.decide(&s.name, ops, idx, take)
        })
    }

    /// One script call to one shard within `budget`.
    async fn invoke(
        &self,
        s: &Shard,
        ops: &[SlotOp],
        idx: &[usize],
        budget: Duration,
    ) -> Result<Vec<SlotOutcome>, Fault> {
        let now = self.clock.as_ref().map_or(0, |c| {
            u64::try_from(c.now().as_millis()).unwrap_or(u64::MAX)
        });
        let mut inv = self.script.prepare_invoke();
        inv.arg(now).arg(&self.channel).arg(&self.origin);
        for &i in idx {
            let op = &ops[i];
            let k = self.redis_key(&op.key);
            inv.key(format!("{k}:ids"))
                .key(format!("{k}:anon"))
                .key(format!("{k}:absorb"));
            let (named, who) = match (&op.lease, op.action) {
                (Some(id), _) => (1u8, lease_member(id).into_owned()),
                (None, SlotAction::Acquire) => (0, self.token()),
                (None, _) => (0, String::new()),
            };
            inv.arg(action_code(op.action))
                .arg(op.max)
                .arg(op.lease_ms)
                .arg(named)
                .arg(who)
                .arg(&op.key);
        }
        let values: Vec<i64> = tokio::time::timeout(budget, s.conn.invoke(&inv))
            .await
            .map_err(|_| Fault::Timeout(format!("redis {}: no answer within {budget:?}", s.name)))?
            .map_err(|e| classify(&s.name, &e))?;
        if values.len() != idx.len() * FIELDS {
            return Err(Fault::Request(format!(
                "redis {}: slot script returned {} values for {} ops",
                s.name,
                values.len(),
                idx.len()
            )));
        }
        values
            .chunks_exact(FIELDS)
            .map(|v| {
                outcome(v).ok_or_else(|| {
                    Fault::Request(format!("redis {}: unknown slot result {}", s.name, v[0]))
                })
            })
            .collect()
    }
}

impl SlotBackend for RedisSlots {
    fn run<'a>(
        &'a self,
        ops: &'a [SlotOp],
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Vec<SlotOutcome>, StoreError>> {
        Box::pin(self.run_all(ops, deadline))
    }

    fn freed_elsewhere(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        let rx = self.freed.subscribe();
        self.listen();
        Some(rx)
    }

    /// Sweeps the local fallback's leases (Redis expires its own).
    fn sweep(&self) -> Vec<(Arc<str>, u64)> {
        self.fallback.sweep()
    }

    fn retry_every(&self) -> Option<Duration> {
        Some(RETRY_EVERY)
    }
}

impl Drop for RedisSlots {
    fn drop(&mut self) {
        for t in self.tasks.lock().iter() {
            t.abort();
        }
    }
}

/// An id for this replica, random enough that replicas never share one: 64 bits from the
/// process's randomly seeded hasher over the pid and the time.
fn origin() -> String {
    use std::hash::BuildHasher;
    let seed = std::collections::hash_map::RandomState::new();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:016x}", seed.hash_one((std::process::id(), at)))
}

fn action_code(a: SlotAction) -> u8 {
    match a {
        SlotAction::Acquire => 1,
        SlotAction::Release => 2,
        SlotAction::Peek => 3,
        SlotAction::Note => 4,
    }
}

/// One op's answer from the script's four integers; `None` for an unknown result code.
fn outcome(v: &[i64]) -> Option<SlotOutcome> {
    let result = match v[0] {
        1 => SlotResult::Granted,
        2 => SlotResult::Full,
        3 => SlotResult::InUse,
        4 => SlotResult::Released,
        5 => SlotResult::Absorbed,
        6 => SlotResult::Stray,
        7 => SlotResult::Unchanged,
        _ => return None,
    };
    let count = |x: i64| u32::try_from(x.max(0)).unwrap_or(u32::MAX);
    Some(SlotOutcome {
        result,
        held: count(v[1]),
        next_expiry: u64::try_from(v[2]).ok().map(Duration::from_millis),
        expired: count(v[3]),
        fallback: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_differ_and_codes_round_trip() {
        assert_ne!(origin(), origin());
        assert_eq!(origin().len(), 16);
        let o = outcome(&[4, 2, -1, 1]).expect("known");
        assert_eq!(o.result, SlotResult::Released);
        assert_eq!((o.held, o.next_expiry, o.expired), (2, None, 1));
        assert_eq!(
            outcome(&[1, 1, 1500, 0]).and_then(|o| o.next_expiry),
            Some(Duration::from_millis(1500))
        );
        assert!(outcome(&[9, 0, 0, 0]).is_none());
    }
}
