//! A node killed, kept down for 6 s and restarted on the same port is used again within one
//! probe interval (`breaker_open_ms`, 500 ms by default): its keys are decided by Redis again
//! well within 1 s of it accepting connections, however long it was down.

mod support;

use sluice::limiter::Op;
use sluice::rules::model::Algorithm;
use sluice::store::fallback::State;
use sluice::store::redis::{RedisConfig, RedisStore};
use sluice::store::Store;
use std::time::{Duration, Instant};
use support::redis::RedisServer;

fn op() -> Op {
    Op {
        key: "k".into(),
        algorithm: Algorithm::FixedWindow,
        requests_per_unit: 1_000_000,
        period_secs: 3_600,
        burst: 1_000_000,
        hits: 1,
        refund: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_used_again_within_one_probe_interval() {
    let mut node = RedisServer::start();
    let store = RedisStore::connect(RedisConfig {
        local_max_keys: 1_000, // breaker: 3 failures, probes every 500 ms
        ..RedisConfig::new(vec![node.url()])
    })
    .await
    .expect("connect");
    let ops = [op()];
    let out = store.apply(&ops, None).await.expect("answered");
    assert!(!out[0].fallback, "Redis decides while up");

    node.kill();
    // Traffic while it is down: the breaker opens and stays open for 6 s.
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(6) {
        let out = store.apply(&ops, None).await.expect("never an error");
        assert!(out[0].allowed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(store.shard_state(0), Some(State::Closed), "open while down");

    node.restart(); // returns once the new server answers PING
    let back = Instant::now();
    let served_after = loop {
        let out = store.apply(&ops, None).await.expect("never an error");
        if !out[0].fallback {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "still on the fallback 5 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("served by Redis again {served_after:?} after the restart");
    assert!(
        served_after < Duration::from_secs(1),
        "back after {served_after:?}, not within one probe interval"
    );
    assert!(node.calls("evalsha") > 0, "the new node ran the script");
}
