//! The local fallback (a dead shard's keys decided in memory) honours atomic admission — a
//! request with one op denied charges none — and drops its expired counters by itself.

mod support;

use sluice::clock::ManualClock;
use sluice::limiter::Op;
use sluice::rules::model::Algorithm;
use sluice::store::fallback::State;
use sluice::store::redis::{RedisConfig, RedisStore};
use sluice::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::redis::RedisServer;

fn op(key: &str, limit: u32) -> Op {
    Op {
        key: key.into(),
        algorithm: Algorithm::FixedWindow,
        requests_per_unit: limit,
        period_secs: 60,
        burst: limit,
        hits: 1,
        refund: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_fallback_is_all_or_nothing_and_swept() {
    let mut node = RedisServer::start();
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_000_000)));
    let store = RedisStore::connect(RedisConfig {
        atomic: true,
        clock: Some(clock.clone()),
        local_max_keys: 1_000, // local, one replica: the full limits
        ..RedisConfig::new(vec![node.url()])
    })
    .await
    .expect("connect");

    // Kill the node and open its breaker with calls on a key of their own.
    node.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.shard_state(0) != Some(State::Open) {
        assert!(Instant::now() < deadline, "the breaker never opened");
        store
            .apply(&[op("trip", 1_000_000)], None)
            .await
            .expect("never an error");
    }
    // Start from a clean local store (the tripping calls may have charged `trip`).
    clock.advance(Duration::from_secs(120));
    wait_for(&store, 0).await;

    let one = store.apply(&[op("a", 1)], None).await.expect("answered");
    assert!(one[0].allowed && one[0].fallback);
    let both = store
        .apply(&[op("a", 1), op("b", 5)], None)
        .await
        .expect("answered");
    assert!(both.iter().all(|o| o.fallback));
    assert!(!both[0].allowed, "a is full");
    // All or nothing: b was not charged, so all 5 of its hits are still there.
    let mut admitted = 0;
    for _ in 0..7 {
        let out = store.apply(&[op("b", 5)], None).await.expect("answered");
        assert!(out[0].fallback);
        admitted += u32::from(out[0].allowed);
    }
    assert_eq!(admitted, 5, "b was not charged by the refused request");
    assert_eq!(store.local_keys(), 2, "a and b live locally");

    // Their windows pass: the sweeper drops them without any further call.
    clock.advance(Duration::from_secs(120));
    wait_for(&store, 0).await;
}

/// Waits (at most 5 s: the sweeper runs every second) until the local fallback holds `n`
/// counters.
async fn wait_for(store: &RedisStore, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.local_keys() != n {
        assert!(
            Instant::now() < deadline,
            "{} local counters, expected {n}",
            store.local_keys()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
