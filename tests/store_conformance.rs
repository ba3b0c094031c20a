//! One behavioural suite, two stores: every algorithm runs the same scripted timelines on the
//! memory store and on a real redis-server (time passed to the script from the same manual
//! clock), and the outcomes must be identical step by step.

#[path = "support/redis.rs"]
mod redis_support;

use redis_support::RedisServer;
use sluice::clock::ManualClock;
use sluice::limiter::{Op, Outcome};
use sluice::rules::model::Algorithm;
use sluice::store::memory::MemoryStore;
use sluice::store::redis::{RedisConfig, RedisStore};
use sluice::store::redis_conn::Topology;
use sluice::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Noon on 2026-01-01 plus 0.25 s: inside windows of every unit.
const T0: Duration = Duration::from_millis(1_767_268_800_250);

/// One step: advance the clock, then charge `hits` (or refund them) on `key`.
struct Step {
    advance_ms: u64,
    key: &'static str,
    hits: u32,
    refund: bool,
}

fn step(advance_ms: u64, key: &'static str, hits: u32) -> Step {
    Step {
        advance_ms,
        key,
        hits,
        refund: false,
    }
}

fn refund(advance_ms: u64, key: &'static str, hits: u32) -> Step {
    Step {
        advance_ms,
        key,
        hits,
        refund: true,
    }
}

/// A timeline that exercises bursts, denials, checks, refunds, window edges and idleness.
fn timeline() -> Vec<Step> {
    vec![
        step(0, "a", 1),
        step(0, "a", 3),
        step(100, "a", 2),
        step(0, "a", 0),
        step(250, "a", 1),
        step(400, "a", 5),
        refund(0, "a", 2),
        step(0, "b", 4),
        step(600, "a", 1),
        step(999, "a", 2),
        step(1, "a", 1),
        step(0, "b", 10),
        step(1500, "a", 4),
        step(2500, "b", 1),
        step(0, "a", 0),
        step(5000, "a", 5),
        step(0, "a", 1),
    ]
}

fn op(key: &str, algorithm: Algorithm, hits: u32, refund: bool) -> Op {
    Op {
        key: format!("conf_{key}_{}", algorithm.name()),
        algorithm,
        requests_per_unit: 5,
        period_secs: 2,
        burst: 4,
        hits,
        refund,
    }
}

async fn run(store: &impl Store, clock: &ManualClock, algorithm: Algorithm) -> Vec<Outcome> {
    clock.set(T0);
    let mut out = Vec::new();
    for s in timeline() {
        clock.advance(Duration::from_millis(s.advance_ms));
        let mut o = store
            .apply(&[op(s.key, algorithm, s.hits, s.refund)], None)
            .await
            .expect("store answers");
        out.push(o.remove(0));
    }
    out
}

#[tokio::test]
async fn memory_and_redis_agree_for_every_algorithm() {
    let redis = RedisServer::start();
    for algorithm in Algorithm::ALL {
        let clock = Arc::new(ManualClock::new(T0));
        let memory = MemoryStore::new(clock.clone(), 1_000);
        let remote = RedisStore::connect(RedisConfig {
            nodes: vec![redis.url()],
            topology: Topology::Shards,
            tls_ca: None,
            tls_client: None,
            key_prefix: "t:".into(),
            timeout: Duration::from_secs(2),
            clock: Some(clock.clone()),
            atomic: false,
            fallback: Default::default(),
            local_max_keys: 1_000_000,
        })
        .await
        .expect("connect");
        let a = run(&memory, &clock, algorithm).await;
        let b = run(&remote, &clock, algorithm).await;
        for (i, (m, r)) in a.iter().zip(&b).enumerate() {
            assert_eq!(m, r, "{algorithm}: step {i} differs (memory vs redis)");
        }
        // The timeline must exercise both answers.
        assert!(
            a.iter().any(|o| o.allowed) && a.iter().any(|o| !o.allowed),
            "{algorithm}: {a:?}"
        );
    }
}

#[tokio::test]
async fn one_script_call_per_shard_touched() {
    let nodes = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let store = RedisStore::connect(RedisConfig {
        nodes: nodes.iter().map(RedisServer::url).collect(),
        topology: Topology::Shards,
        tls_ca: None,
        tls_client: None,
        key_prefix: String::new(),
        timeout: Duration::from_secs(2),
        clock: None,
        atomic: false,
        fallback: Default::default(),
        local_max_keys: 1_000_000,
    })
    .await
    .expect("connect");
    // Five keys: pick them so they land on exactly two shards.
    let mut keys: Vec<String> = Vec::new();
    let mut shards = std::collections::BTreeSet::new();
    for i in 0.. {
        let key = format!("multi_k_{i}");
        let s = store.shard_of(&key);
        if shards.len() < 2 || shards.contains(&s) {
            shards.insert(s);
            keys.push(key);
        }
        if keys.len() == 5 && shards.len() == 2 {
            break;
        }
    }
    let ops: Vec<Op> = keys
        .iter()
        .map(|k| Op {
            key: k.clone(),
            ..op("x", Algorithm::FixedWindow, 1, false)
        })
        .collect();
    store
        .apply(&ops, None)
        .await
        .expect("warm-up loads the script");
    for n in &nodes {
        n.command("CONFIG RESETSTAT");
    }
    let out = store.apply(&ops, None).await.expect("apply");
    assert!(
        out.iter().all(|o| o.allowed && o.used_after == 2),
        "{out:?}"
    );
    let calls: Vec<u64> = nodes.iter().map(|n| n.calls("evalsha")).collect();
    assert_eq!(calls.iter().sum::<u64>(), 2, "{calls:?}");
    for (i, n) in nodes.iter().enumerate() {
        let want = u64::from(shards.contains(&i));
        assert_eq!(n.calls("evalsha"), want, "shard {i}");
        assert_eq!(
            n.calls("script|load"),
            0,
            "script stays loaded on shard {i}"
        );
    }
}

/// The request of envoyproxy/ratelimit#1060: a broad counter (5) and a granular one (1).
async fn all_or_nothing_sequence(store: &impl Store, broad: &str, granular: &str) {
    let pair = |hits| {
        let mut b = op("x", Algorithm::FixedWindow, hits, false);
        b.key = broad.to_owned();
        b.period_secs = 3_600;
        let mut g = b.clone();
        g.key = granular.to_owned();
        g.requests_per_unit = 1;
        vec![b, g]
    };
    let first = store.apply(&pair(1), None).await.expect("apply");
    assert!(first.iter().all(|o| o.allowed), "{first:?}");
    assert_eq!((first[0].remaining, first[1].remaining), (4, 0));
    for _ in 0..3 {
        let denied = store.apply(&pair(1), None).await.expect("apply");
        assert!(!denied[1].allowed, "granular is over: {denied:?}");
        assert!(denied[0].allowed, "broad alone would fit: {denied:?}");
        assert_eq!(denied[0].remaining, 4, "broad reported uncharged");
        assert_eq!(denied[0].used_after, 1, "broad not charged");
    }
    let mut broad_only = pair(1);
    broad_only.truncate(1);
    let out = store.apply(&broad_only, None).await.expect("apply");
    assert_eq!(
        out[0].remaining, 3,
        "only the one admitted request was charged"
    );
}

#[tokio::test]
async fn all_or_nothing_charges_nothing_when_any_is_denied() {
    let clock = Arc::new(ManualClock::new(T0));
    let memory = MemoryStore::new(clock.clone(), 1_000).all_or_nothing(true);
    all_or_nothing_sequence(&memory, "aon_broad", "aon_user").await;

    let one = RedisServer::start();
    let three = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    for nodes in [
        vec![one.url()],
        three.iter().map(RedisServer::url).collect(),
    ] {
        let store = RedisStore::connect(RedisConfig {
            nodes,
            topology: Topology::Shards,
            tls_ca: None,
            tls_client: None,
            key_prefix: String::new(),
            timeout: Duration::from_secs(2),
            clock: Some(clock.clone()),
            atomic: true,
            fallback: Default::default(),
            local_max_keys: 1_000_000,
        })
        .await
        .expect("connect");
        // On three shards, pick keys that live on different shards.
        let broad = "aon_broad".to_owned();
        let granular = (0..)
            .map(|i| format!("aon_user_{i}"))
            .find(|k| store.len() == 1 || store.shard_of(k) != store.shard_of(&broad))
            .expect("some key lands elsewhere");
        all_or_nothing_sequence(&store, &broad, &granular).await;
    }
}
