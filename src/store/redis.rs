//! The Redis store: counters shared by every replica, spread over independent Redis nodes by
//! consistent hashing. All ops of one request that land on one shard go in **one** `EVALSHA`
//! of `lua/limiter.lua` (atomic on that shard); calls to different shards run concurrently.
//!
//! Time is read inside the script from Redis `TIME`, so replicas' clocks need not agree. Each
//! shard is one multiplexed connection (redis-rs `ConnectionManager`): concurrent requests
//! share it and Redis sees them pipelined; it reconnects by itself after a failure. Every call
//! has a deadline, so a stalled node is an error, never a slow answer.
//!
//! When a call fails (see `store::shard` for how failures are told apart):
//! - the node failed, or its breaker is open: the ops are decided by the failure policy
//!   (`local`: charged to the local fallback, each limit divided among the replicas);
//! - the call missed its deadline: it may still run on Redis, so its ops are decided by the
//!   policy **without charging anything locally** (`local`: a check of the local counters —
//!   admitted if the hits would fit, nothing written);
//! - Redis answered with an error: the request fails with [`StoreError::Rejected`] (gRPC
//!   `INTERNAL`; Envoy applies `failure_mode_deny`) and no breaker counts it. Calls of the same
//!   request to other shards complete normally (they may have been charged).
//!
//! Every outcome decided without Redis has `Outcome::fallback` set.
//!
//! Concurrency slots live on the same shards, breakers and failure policy: `store::redis_slots`.

use crate::clock::{Clock, SystemClock};
use crate::limiter::once::{hex, Kind, OnceCall};
use crate::limiter::{Op, Outcome};
use crate::meter::Meter;
use crate::rules::model::Algorithm;
use crate::store::fallback::{BreakerConfig, FailurePolicy, Fallback, Route, State};
use crate::store::memory::MemoryStore;
use crate::store::redis_conn::{self, Conn, Topology};
use crate::store::redis_slots::RedisSlots;
use crate::store::ring::ShardRing;
use crate::store::shard::{self, classify, Fault, Shard};
use crate::store::{OverrideMedium, Store, StoreError};
use redis::cluster_routing::Slot;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The batch script, compiled into the binary.
pub const SCRIPT: &str = include_str!("../../lua/limiter.lua");

/// The common call alone (every op a fixed-window charge on its own key, mode each): the
/// same results as [`SCRIPT`] without its per-call setup.
pub const FIXED_SCRIPT: &str = include_str!("../../lua/fixed.lua");

/// Integers the script returns per key.
const FIELDS: usize = 6;

/// One script call's idempotency record ([`crate::limiter::once`]).
struct Record {
    /// Its Redis key (prefixed and, in a Cluster, in the call's slot).
    key: String,
    /// How long it lasts (the rule's `ttl`).
    ttl_ms: u64,
    /// Decision or settlement.
    kind: Kind,
    /// The rule's `max_repeats` (0: unbounded).
    max_repeats: u32,
    /// The key's ledger tag: a counter's ledger is its key, `_#rl` and this.
    ledger: String,
    /// A settlement: per op of the call, `(charged, refunded)` before netting.
    gross: Vec<(u32, u32)>,
}

/// How to reach and use the Redis shards.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:pass@]host:port/db`, `rediss://…` or `redis+unix://…`: one per shard, or
    /// the cluster's seed nodes, or the sentinels.
    pub nodes: Vec<String>,
    /// How the nodes are deployed.
    pub topology: Topology,
    /// PEM CA certificate(s) to trust for `rediss://` instead of the system roots.
    pub tls_ca: Option<Vec<u8>>,
    /// PEM client certificate chain and key for `rediss://` servers that verify clients.
    pub tls_client: Option<(Vec<u8>, Vec<u8>)>,
    /// Prepended to every counter key (share a Redis between deployments).
    pub key_prefix: String,
    /// Deadline of one script call (and of connecting).
    pub timeout: Duration,
    /// All-or-nothing admission: when any op of a request is denied, charge none of them.
    pub atomic: bool,
    /// Tests only: pass this clock's time to the script instead of Redis `TIME`, so memory and
    /// Redis can be compared on identical, exact timelines.
    pub clock: Option<Arc<dyn Clock>>,
    /// What to do while a shard is unavailable.
    pub fallback: FallbackConfig,
    /// Room of the local fallback (live counters), like the memory store's `memory_max_keys`.
    pub local_max_keys: usize,
}

impl RedisConfig {
    /// The TLS material, borrowed.
    pub fn tls(&self) -> redis_conn::TlsPem<'_> {
        redis_conn::TlsPem {
            ca: self.tls_ca.as_deref(),
            client: self
                .tls_client
                .as_ref()
                .map(|(c, k)| (c.as_slice(), k.as_slice())),
        }
    }

    /// Independent shards at `nodes` with the service's defaults: no TLS CA, no key prefix,
    /// a 10 ms deadline, upstream's admission, Redis `TIME`, the local fallback with default
    /// breaker thresholds, 1 000 000 local counters. Change fields with struct update syntax.
    pub fn new(nodes: Vec<String>) -> RedisConfig {
        RedisConfig {
            nodes,
            topology: Topology::Shards,
            tls_ca: None,
            tls_client: None,
            key_prefix: String::new(),
            timeout: Duration::from_millis(10),
            atomic: false,
            clock: None,
            fallback: FallbackConfig::default(),
            local_max_keys: 1_000_000,
        }
    }
}

/// The failure policy and the breaker thresholds.
#[derive(Debug, Clone, Copy)]
pub struct FallbackConfig {
    /// Local (default), allow or deny.
    pub policy: FailurePolicy,
    /// Live replicas sharing each limit while deciding locally (limit / replicas, rounded up).
    pub replicas: u32,
    /// When a shard counts as down, and how often it is probed.
    pub breaker: BreakerConfig,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            policy: FailurePolicy::Local,
            replicas: 1,
            breaker: BreakerConfig::default(),
        }
    }
}

/// Counters in Redis.
pub struct RedisStore {
    /// The nodes, in configured order (`ring` returns indexes into it); shared with their
    /// background health tasks.
    shards: Vec<Arc<Shard>>,
    /// Key → shard.
    ring: ShardRing,
    /// `EVALSHA`, falling back to `SCRIPT LOAD` on `NOSCRIPT` (after a Redis restart).
    script: redis::Script,
    /// [`FIXED_SCRIPT`], for calls it covers (upstream's plain fixed-window charges).
    fixed_script: redis::Script,
    /// See [`RedisConfig::key_prefix`].
    prefix: String,
    /// See [`RedisConfig::timeout`].
    timeout: Duration,
    /// See [`RedisConfig::clock`].
    clock: Option<Arc<dyn Clock>>,
    /// See [`RedisConfig::atomic`].
    atomic: bool,
    /// In a Redis Cluster counter keys carry a `{hash tag}` and calls are grouped by slot.
    cluster: bool,
    /// Decides for shards that cannot be asked (the policy and the local counters, swept by
    /// one of `tasks`).
    fallback: Arc<Fallback>,
    /// Each shard's prober and the local fallback's sweeper; aborted when the store is dropped.
    tasks: Vec<JoinHandle<()>>,
    /// Concurrency slots over the same shards (shared with the waiting room).
    slots: Arc<RedisSlots>,
}

/// How often the local fallback drops expired counters (only while it holds any).
const LOCAL_SWEEP: Duration = Duration::from_secs(1);

/// What a script call does with its keys (`ARGV[2]` of `lua/limiter.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Charge each key on its own (upstream's behaviour).
    Each = 0,
    /// Charge every key only if all fit.
    AllOrNothing = 1,
    /// Write nothing; report keys that would fit as a check.
    Probe = 3,
    /// Delete the keys' state (admin reset); the script returns nothing.
    Reset = 4,
}

/// Deadline of an admin call (reset, overrides): not on Envoy's path, so more generous than
/// `--redis-timeout`.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Deletes a runtime override only if it still holds the expected document.
const EXPIRE_OVERRIDE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return { redis.call('HDEL', KEYS[1], ARGV[1]) }
end
return { 0 }
";

impl RedisStore {
    /// The concurrency slots of this store: in Redis, on the same shards, breakers and
    /// failure policy as the counters (`store::redis_slots`).
    pub fn slots(&self) -> Arc<dyn crate::concurrency::SlotBackend> {
        Arc::clone(&self.slots) as Arc<dyn crate::concurrency::SlotBackend>
    }

    /// Connects to every node (each within the timeout).
    pub async fn connect(config: RedisConfig) -> Result<RedisStore, StoreError> {
        RedisStore::connect_with_meter(config, &Meter::default()).await
    }

    /// [`RedisStore::connect`], recording shard, breaker and fallback metrics in `meter`.
    pub async fn connect_with_meter(
        config: RedisConfig,
        meter: &Meter,
    ) -> Result<RedisStore, StoreError> {
        if config.nodes.is_empty() {
            return Err(StoreError::Unavailable("no Redis node configured".into()));
        }
        let mut shards = Vec::with_capacity(config.nodes.len());
        match &config.topology {
            Topology::Shards => {
                for url in &config.nodes {
                    let (name, conn) = redis_conn::node(url, config.timeout, config.tls()).await?;
                    shards.push(shard(name, conn, &config, meter));
                }
            }
            Topology::Cluster => {
                let (name, conn) =
                    redis_conn::cluster(&config.nodes, config.timeout, config.tls()).await?;
                shards.push(shard(name, conn, &config, meter));
            }
            Topology::Sentinel { master } => {
                let (name, conn) =
                    redis_conn::sentinel(&config.nodes, master, config.timeout).await?;
                shards.push(shard(name, conn, &config, meter));
            }
        }
        let ring = ShardRing::new(&shards.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
        let shards: Vec<Arc<Shard>> = shards.into_iter().map(Arc::new).collect();
        let local = MemoryStore::new(
            config
                .clock
                .clone()
                .unwrap_or_else(|| Arc::new(SystemClock)),
            config.local_max_keys,
        )
        .all_or_nothing(config.atomic);
        let fallback = Arc::new(Fallback::new(
            config.fallback.policy,
            config.fallback.replicas,
            local,
            meter.clone(),
        ));
        let mut tasks: Vec<JoinHandle<()>> = shards
            .iter()
            .map(|s| tokio::spawn(shard::watch(Arc::clone(s))))
            .collect();
        tasks.push(tokio::spawn(Arc::clone(&fallback).sweep(LOCAL_SWEEP)));
        let slots = RedisSlots::new(&config, shards.clone(), ring.clone(), meter)?;
        Ok(RedisStore {
            slots: Arc::new(slots),
            shards,
            ring,
            script: redis::Script::new(SCRIPT),
            fixed_script: redis::Script::new(FIXED_SCRIPT),
            prefix: config.key_prefix,
            timeout: config.timeout,
            clock: config.clock.clone(),
            atomic: config.atomic,
            cluster: config.topology == Topology::Cluster,
            fallback,
            tasks,
        })
    }

    /// The breaker state of shard `i` (`None` past the last shard).
    pub fn shard_state(&self, i: usize) -> Option<State> {
        self.shards.get(i).map(|s| s.breaker.state())
    }

    /// Live counters in the local fallback (expired ones included until swept).
    pub fn local_keys(&self) -> usize {
        self.fallback.local_keys()
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there is no shard (never: `connect` refuses an empty list).
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The Redis key of counter `key`: prefixed and, in a cluster, hash-tagged so the keys a
    /// script derives from it (`…_<window>`, `…:seq`) share its slot.
    fn redis_key(&self, key: &str) -> String {
        if self.cluster {
            format!("{}{{{}}}", self.prefix, key)
        } else {
            format!("{}{}", self.prefix, key)
        }
    }

    /// The shard owning counter `key` (without prefix).
    pub fn shard_of(&self, key: &str) -> usize {
        self.ring.shard_of(key)
    }

    /// Runs the ops `idx` (all on `shard`) in one script call — or, when the shard's breaker
    /// is open or the call fails or misses its deadline, by the failure policy. Only an error
    /// reply from Redis (the request's own fault) is an error.
    async fn call(
        &self,
        shard: usize,
        ops: &[Op],
        idx: &[usize],
        mode: Mode,
        record: Option<&Record>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let s = &self.shards[shard];
        let route = s.breaker.route();
        // Keep a little of the caller's time for the fallback and the answer.
        let budget = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .saturating_sub(Duration::from_millis(2))
                .min(self.timeout),
            None => self.timeout,
        };
        if route == Route::Fallback || budget.is_zero() {
            return Ok(self.fall_back(s, ops, idx, mode, true));
        }
        let started = std::time::Instant::now();
        let result = self.invoke(s, ops, idx, mode, record, budget).await;
        s.latency.record(started.elapsed().as_secs_f64());
        s.settle("counters", result, |charge| {
            self.fall_back(s, ops, idx, mode, charge)
        })
    }

    /// Decides ops of a shard that cannot be asked; `charge` false when the call may still
    /// run on Redis (see [`Fallback::decide`]).
    fn fall_back(
        &self,
        s: &Shard,
        ops: &[Op],
        idx: &[usize],
        mode: Mode,
        charge: bool,
    ) -> Vec<Outcome> {
        self.fallback
            .decide(&s.name, ops, idx, mode == Mode::Probe, charge)
    }

    /// One script call to one shard within `budget`; with `record`, the call claims or
    /// replays that idempotency record in the same script run.
    async fn invoke(
        &self,
        s: &Shard,
        ops: &[Op],
        idx: &[usize],
        mode: Mode,
        record: Option<&Record>,
        budget: Duration,
    ) -> Result<Vec<Outcome>, Fault> {
        let now = self.clock.as_ref().map_or(0, |c| {
            u64::try_from(c.now().as_micros()).unwrap_or(u64::MAX)
        });
        // Calendar windows take the general script (their bounds are computed there only).
        let plain = mode == Mode::Each
            && record.is_none()
            && idx.iter().enumerate().all(|(n, &i)| {
                let op = &ops[i];
                op.algorithm == Algorithm::FixedWindow
                    && !op.refund
                    && op.hits > 0
                    && idx[..n].iter().all(|&j| ops[j].key != op.key)
            });
        let script = if plain {
            &self.fixed_script
        } else {
            &self.script
        };
        let mut inv = script.prepare_invoke();
        // A call with a record says so in its mode (+10): its last key is the record.
        inv.arg(now)
            .arg(mode as u8 + if record.is_some() { 10 } else { 0 });
        for &i in idx {
            let op = &ops[i];
            inv.key(self.redis_key(&op.key))
                .arg(algorithm_code(op.algorithm))
                .arg(op.requests_per_unit)
                .arg(op.period_secs.max(1))
                .arg(op.burst)
                .arg(op.hits)
                .arg(u8::from(op.refund))
                .arg(op.algorithm.calendar().map_or(0, |c| c.offset_secs()));
        }
        if let Some(r) = record {
            let kind: u8 = match r.kind {
                Kind::Decision => 1,
                Kind::Settlement => 2,
            };
            inv.key(&r.key)
                .arg(r.ttl_ms)
                .arg(kind)
                .arg(r.max_repeats)
                .arg(&r.ledger);
            for (c, refunded) in &r.gross {
                inv.arg(*c).arg(*refunded);
            }
        }
        let values: Vec<i64> = tokio::time::timeout(budget, s.conn.invoke(&inv))
            .await
            .map_err(|_| Fault::Timeout(format!("redis {}: no answer within {budget:?}", s.name)))?
            .map_err(|e| classify(&s.name, &e))?;
        if mode == Mode::Reset {
            return Ok(Vec::new());
        }
        let flag = usize::from(record.is_some());
        if values.len() != idx.len() * FIELDS + flag {
            return Err(Fault::Request(format!(
                "redis {}: script returned {} values for {} keys",
                s.name,
                values.len(),
                idx.len()
            )));
        }
        let replayed = flag == 1 && values.last() == Some(&1);
        Ok(values[..idx.len() * FIELDS]
            .chunks_exact(FIELDS)
            .map(|v| Outcome {
                replayed,
                ..outcome(v)
            })
            .collect())
    }
}

impl RedisStore {
    /// Op indexes per script call: per shard, or in a cluster per slot.
    fn groups(&self, ops: &[Op]) -> Vec<(usize, Vec<usize>)> {
        if self.cluster {
            let mut slots: Vec<(Slot, Vec<usize>)> = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                let slot = Slot::for_key(self.redis_key(&op.key));
                match slots.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, idx)) => idx.push(i),
                    None => slots.push((slot, vec![i])),
                }
            }
            return slots.into_iter().map(|(_, idx)| (0, idx)).collect();
        }
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); self.shards.len()];
        for (i, op) in ops.iter().enumerate() {
            by_shard[self.ring.shard_of(&op.key)].push(i);
        }
        by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, idx)| !idx.is_empty())
            .collect()
    }

    /// Runs `groups` (op indexes per call) concurrently in `mode`, in op order; with `once`,
    /// each call claims or replays its own record.
    async fn run(
        &self,
        ops: &[Op],
        groups: &[(usize, Vec<usize>)],
        mode: Mode,
        once: Option<&OnceCall<'_>>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let calls = groups.iter().map(|(shard, idx)| async move {
            let record = once.map(|o| self.record(o, ops, idx));
            let outcomes = self
                .call(*shard, ops, idx, mode, record.as_ref(), deadline)
                .await;
            (idx, outcomes)
        });
        let answers = futures_util::future::join_all(calls).await;
        let mut out = vec![Outcome::default(); ops.len()];
        for (idx, outcomes) in answers {
            for (&i, o) in idx.iter().zip(outcomes?) {
                out[i] = o;
            }
        }
        Ok(out)
    }
}

impl RedisStore {
    /// The shard holding the shared runtime overrides, and their hash's key.
    fn overrides_home(&self) -> (&Shard, String) {
        let key = format!("{}sluice:overrides", self.prefix);
        let shard = if self.cluster {
            0
        } else {
            self.ring.shard_of("sluice:overrides")
        };
        (&self.shards[shard], key)
    }

    /// Runs one admin command on the overrides' shard.
    async fn admin_command(&self, cmd: &redis::Cmd) -> Result<redis::Value, StoreError> {
        let (s, _) = self.overrides_home();
        tokio::time::timeout(ADMIN_TIMEOUT.max(self.timeout), s.conn.command(cmd))
            .await
            .map_err(|_| StoreError::Unavailable(format!("redis {}: no answer in time", s.name)))?
            .map_err(|e| classify(&s.name, &e).into())
    }
}

impl RedisStore {
    /// The idempotency record of the call running ops `idx`: beside the call's first counter
    /// (so in a Cluster it shares the call's slot), `_#r` and the digest of the key and those
    /// ops — a marker no counter key or derived key can take (see [`crate::keys`]).
    fn record(&self, call: &OnceCall<'_>, ops: &[Op], idx: &[usize]) -> Record {
        let digest = call.once.digest(call.kind, idx.iter().map(|&i| &ops[i]));
        let first = idx.first().map_or("", |&i| ops[i].key.as_str());
        let gross = match call.kind {
            Kind::Decision => Vec::new(),
            Kind::Settlement => idx
                .iter()
                .map(|&i| call.gross.get(i).copied().unwrap_or((0, 0)))
                .collect(),
        };
        Record {
            key: format!("{}_#r{}", self.redis_key(first), hex(&digest)),
            ttl_ms: call.once.ttl_ms(),
            kind: call.kind,
            max_repeats: call.once.max_repeats,
            ledger: hex(&call.once.ledger_tag()),
            gross,
        }
    }

    /// [`Store::apply`], and [`Store::apply_once`] with `once`.
    async fn apply_with(
        &self,
        ops: &[Op],
        once: Option<&OnceCall<'_>>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let each = if self.atomic {
            Mode::AllOrNothing
        } else {
            Mode::Each
        };
        if self.shards.len() == 1 && !self.cluster {
            let all: Vec<usize> = (0..ops.len()).collect();
            let record = once.map(|o| self.record(o, ops, &all));
            return self
                .call(0, ops, &all, each, record.as_ref(), deadline)
                .await;
        }
        let groups = self.groups(ops);
        if self.atomic && groups.len() > 1 {
            // Across shards: probe everywhere first; charge only if every op fits. A request
            // racing between the two round trips can still be refused by one shard's own
            // all-or-nothing check after another shard was charged.
            let probe = self.run(ops, &groups, Mode::Probe, once, deadline).await?;
            if probe.iter().any(|o| !o.allowed) {
                return Ok(probe);
            }
        }
        self.run(ops, &groups, each, once, deadline).await
    }
}

impl Store for RedisStore {
    async fn apply(
        &self,
        ops: &[Op],
        deadline: Option<Instant>,
    ) -> Result<Vec<Outcome>, StoreError> {
        self.apply_with(ops, None, deadline).await
    }

    async fn apply_once(
        &self,
        ops: &[Op],
        call: &OnceCall<'_>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Outcome>, StoreError> {
        self.apply_with(ops, Some(call), deadline).await
    }

    async fn reset(&self, ops: &[Op]) -> Result<(), StoreError> {
        self.fallback.remove(ops);
        let groups = if self.shards.len() == 1 && !self.cluster {
            vec![(0, (0..ops.len()).collect())]
        } else {
            self.groups(ops)
        };
        for (shard, idx) in &groups {
            let budget = ADMIN_TIMEOUT.max(self.timeout);
            self.invoke(&self.shards[*shard], ops, idx, Mode::Reset, None, budget)
                .await?;
        }
        Ok(())
    }
}

impl OverrideMedium for RedisStore {
    async fn overrides_load(&self) -> Result<Option<Vec<(String, String)>>, StoreError> {
        let (_, key) = self.overrides_home();
        let value = self.admin_command(redis::cmd("HGETALL").arg(&key)).await?;
        let docs: std::collections::HashMap<String, String> = redis::from_redis_value(value)
            .map_err(|e| StoreError::Unavailable(format!("redis HGETALL {key}: {e}")))?;
        Ok(Some(docs.into_iter().collect()))
    }

    async fn overrides_save(&self, id: &str, doc: Option<&str>) -> Result<(), StoreError> {
        let (_, key) = self.overrides_home();
        let cmd = match doc {
            Some(doc) => redis::cmd("HSET").arg(&key).arg(id).arg(doc).clone(),
            None => redis::cmd("HDEL").arg(&key).arg(id).clone(),
        };
        self.admin_command(&cmd).await.map(|_| ())
    }

    async fn overrides_expire(&self, id: &str, doc: &str) -> Result<(), StoreError> {
        let (s, key) = self.overrides_home();
        let script = redis::Script::new(EXPIRE_OVERRIDE);
        let mut inv = script.prepare_invoke();
        inv.key(&key).arg(id).arg(doc);
        tokio::time::timeout(ADMIN_TIMEOUT.max(self.timeout), s.conn.invoke(&inv))
            .await
            .map_err(|_| StoreError::Unavailable(format!("redis {}: no answer in time", s.name)))?
            .map_err(|e| StoreError::from(classify(&s.name, &e)))
            .map(|_| ())
    }
}

fn shard(name: String, conn: Conn, config: &RedisConfig, meter: &Meter) -> Shard {
    Shard::new(
        name,
        conn,
        config.fallback.breaker,
        redis_conn::health_deadline(config.timeout),
        meter,
    )
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The script's algorithm number (a calendar window is 5: the fixed window with calendar
/// bounds; its UTC offset travels as the op's seventh argument).
fn algorithm_code(a: Algorithm) -> u8 {
    match a {
        Algorithm::FixedWindow => 1,
        Algorithm::CalendarWindow(_) => 5,
        Algorithm::SlidingWindow => 2,
        Algorithm::SlidingLog => 3,
        Algorithm::TokenBucket => 4,
    }
}

fn outcome(v: &[i64]) -> Outcome {
    let us = |x: i64| Duration::from_micros(u64::try_from(x).unwrap_or(0));
    let count = |x: i64| u64::try_from(x).unwrap_or(0);
    Outcome {
        allowed: v[0] == 1,
        remaining: u32::try_from(v[1].max(0)).unwrap_or(u32::MAX),
        reset_after: us(v[2]),
        retry_after: us(v[3]),
        used_before: count(v[4]),
        used_after: count(v[5]),
        fallback: false,
        replayed: false,
    }
}
