//! Edges where the Redis script and the memory store used to part: counters that grow without
//! bound, products above 2⁵³ (Lua counts in doubles), the same counter twice in one atomic
//! request, and a key left in another algorithm's Redis type. Each runs on a real redis-server
//! with time passed from the same manual clock as the memory store's.

#[path = "support/redis.rs"]
mod redis_support;

use redis_support::{both, RedisServer};
use sluice::clock::{Clock, ManualClock};
use sluice::limiter::fixed_window::FixedWindow;
use sluice::limiter::{Op, COUNTER_CAP};
use sluice::rules::model::Algorithm;
use sluice::store::memory::MemoryStore;
use sluice::store::redis::{RedisConfig, RedisStore};
use sluice::store::redis_conn::Topology;
use sluice::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Noon on 2026-01-01 plus 0.25 s.
const T0: Duration = Duration::from_millis(1_767_268_800_250);
const YEAR: u64 = 31_536_000;
const MONTH: u64 = 2_592_000;

async fn redis(nodes: &[&RedisServer], clock: &Arc<ManualClock>, atomic: bool) -> RedisStore {
    RedisStore::connect(RedisConfig {
        nodes: nodes.iter().map(|n| n.url()).collect(),
        topology: Topology::Shards,
        tls_ca: None,
        tls_client: None,
        key_prefix: "x:".into(),
        timeout: Duration::from_secs(2),
        clock: Some(clock.clone()),
        atomic,
        fallback: Default::default(),
        local_max_keys: 1_000_000,
    })
    .await
    .expect("connect")
}

fn op(key: &str, algorithm: Algorithm, limit: u32, period: u64, hits: u32) -> Op {
    Op {
        key: key.into(),
        algorithm,
        requests_per_unit: limit,
        period_secs: period,
        burst: limit,
        hits,
        refund: false,
    }
}

#[tokio::test]
async fn max_hits_in_a_year_window_saturate_alike_and_never_fail() {
    let server = RedisServer::start();
    let clock = Arc::new(ManualClock::new(T0));
    let memory = MemoryStore::new(clock.clone(), 1_000);
    let remote = redis(&[&server], &clock, false).await;
    let max = op("fw", Algorithm::FixedWindow, u32::MAX, YEAR, u32::MAX);
    for n in 1..=16u64 {
        let o = both(&memory, &remote, std::slice::from_ref(&max)).await;
        assert_eq!(o[0].used_after, n * u64::from(u32::MAX));
        assert_eq!(o[0].allowed, n == 1);
    }
    // A counter that max-hit requests drove far up (as `INCRBY` would, until it overflows at
    // 2⁶³ and fails): the script and the memory store's algorithm both saturate at the cap.
    let now_s = T0.as_secs();
    let window = now_s - now_s % YEAR;
    for stored in [i64::MAX as u64, COUNTER_CAP - 3] {
        server.command(&format!("SET x:fw_{window} {stored}"));
        let o = remote
            .apply(std::slice::from_ref(&max), None)
            .await
            .expect("redis");
        let mut algorithm = FixedWindow {
            window,
            count: stored,
        };
        let want = algorithm.decide(clock.now(), &max);
        assert_eq!(o[0], want, "stored {stored}");
        assert_eq!(
            (o[0].allowed, o[0].used_after),
            (false, COUNTER_CAP),
            "stored {stored}"
        );
        if stored < COUNTER_CAP {
            let kept = server.command(&format!("GET x:fw_{window}"));
            assert_eq!(
                kept.trim(),
                COUNTER_CAP.to_string(),
                "saturated, not beyond"
            );
        }
    }
}

#[tokio::test]
async fn a_monthly_sliding_window_is_exact_at_its_last_microsecond() {
    let server = RedisServer::start();
    let p = MONTH * 1_000_000;
    // The start of the month window after T0's.
    let start = (T0.as_micros() as u64 / p + 1) * p;
    let clock = Arc::new(ManualClock::new(Duration::from_micros(start - 1_000)));
    let memory = MemoryStore::new(clock.clone(), 1_000);
    let remote = redis(&[&server], &clock, false).await;
    let sw = |hits| op("sw", Algorithm::SlidingWindow, 5_000, MONTH, hits);
    assert!(both(&memory, &remote, &[sw(1)]).await[0].allowed);
    clock.set(Duration::from_micros(start));
    assert!(both(&memory, &remote, &[sw(4_998)]).await[0].allowed);
    // One microsecond before the window ends the previous hit still weighs a millionth:
    // 4998 + 2 + 10⁻⁶ > 5000. (With doubles, 4998·P + 1 rounds to 4998·P and it passed.)
    clock.set(Duration::from_micros(start + p - 1));
    let o = both(&memory, &remote, &[sw(2)]).await;
    assert!(!o[0].allowed, "{o:?}");
    assert_eq!((o[0].used_before, o[0].used_after), (4_999, 4_999));
    assert_eq!(o[0].retry_after, Duration::from_micros(1));
    let o = both(&memory, &remote, &[sw(1)]).await;
    assert!(o[0].allowed, "{o:?}");
    assert_eq!((o[0].remaining, o[0].used_after), (0, 5_000));
}

#[tokio::test]
async fn the_same_counter_twice_in_one_atomic_request_decides_alike() {
    let one = RedisServer::start();
    let two = [RedisServer::start(), RedisServer::start()];
    for nodes in [vec![&one], two.iter().collect()] {
        for algorithm in Algorithm::ALL {
            let clock = Arc::new(ManualClock::new(T0));
            let memory = MemoryStore::new(clock.clone(), 1_000).all_or_nothing(true);
            let remote = redis(&nodes, &clock, true).await;
            let key = format!("twice_{}_{}", nodes.len(), algorithm.name());
            // On two shards, a second counter elsewhere makes the store probe first.
            let other = (0..)
                .map(|i| format!("{key}_other{i}"))
                .find(|k| nodes.len() == 1 || remote.shard_of(k) != remote.shard_of(&key))
                .expect("some key lands elsewhere");
            let k = |hits| op(&key, algorithm, 5, 60, hits);
            let elsewhere = op(&other, algorithm, 5, 60, 1);
            // 3 fits, 3 more on top does not: nothing is charged, the first is reported as
            // fitting (uncharged).
            let o = both(&memory, &remote, &[k(3), k(3), elsewhere.clone()]).await;
            assert!(o[0].allowed && !o[1].allowed, "{algorithm}: {o:?}");
            assert_eq!((o[0].remaining, o[0].used_after), (5, 0), "{algorithm}");
            // 2 then 3 fit together: both charged, on the state the first left.
            let o = both(&memory, &remote, &[k(0), k(2), k(3)]).await;
            assert!(o.iter().all(|o| o.allowed), "{algorithm}: {o:?}");
            assert_eq!((o[1].used_after, o[2].remaining), (2, 0), "{algorithm}");
            let o = both(&memory, &remote, &[k(1)]).await;
            assert!(!o[0].allowed, "{algorithm}: the counter is full: {o:?}");
        }
    }
}

#[tokio::test]
async fn a_key_left_by_another_algorithm_starts_afresh() {
    let server = RedisServer::start();
    for atomic in [false, true] {
        let clock = Arc::new(ManualClock::new(T0));
        let memory = MemoryStore::new(clock.clone(), 1_000).all_or_nothing(atomic);
        let remote = redis(&[&server], &clock, atomic).await;
        let key = format!("switch_{atomic}");
        // The Redis types alternate: hash, string, sorted set, hash, string.
        for algorithm in [
            Algorithm::SlidingWindow,
            Algorithm::TokenBucket,
            Algorithm::SlidingLog,
            Algorithm::SlidingWindow,
            Algorithm::TokenBucket,
            Algorithm::SlidingLog,
        ] {
            let o = both(&memory, &remote, &[op(&key, algorithm, 3, 60, 2)]).await;
            assert!(o[0].allowed, "{algorithm} starts afresh: {o:?}");
            let o = both(&memory, &remote, &[op(&key, algorithm, 3, 60, 2)]).await;
            assert!(!o[0].allowed, "{algorithm} counts: {o:?}");
            clock.advance(Duration::from_millis(10));
        }
    }
}
