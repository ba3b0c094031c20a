//! A call that misses its deadline on a healthy node (a request too big for it) neither opens
//! the node's breaker nor is charged twice: the script still runs on Redis, so nothing is
//! charged locally (Redis count + local count = hits sent, exactly).

mod support;

use sluice::clock::ManualClock;
use sluice::limiter::Op;
use sluice::rules::model::Algorithm;
use sluice::store::fallback::State;
use sluice::store::redis::{RedisConfig, RedisStore};
use sluice::store::redis_conn::Topology;
use sluice::store::Store;
use std::sync::Arc;
use std::time::Duration;
use support::redis::RedisServer;

/// Ops per request, all on one key (so the general script decides them one after another in
/// Lua): far more work than the 1 ms deadline allows (a few ms), far less than the confirming
/// PING's 100 ms, and a request small enough to be sent well within the deadline.
const OPS: usize = 3_000;
const PERIOD: u64 = 3_600;
/// 1 000 000 s since the epoch: the fixed window's key is `hot_<window>`.
const NOW: u64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_on_a_healthy_node_is_neither_a_failure_nor_charged_twice() {
    let node = RedisServer::start();
    // Load the script beforehand: a call abandoned at its deadline must not be one that only
    // met NOSCRIPT (that one would never run).
    let loaded = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &node.port.to_string(),
            "SCRIPT",
            "LOAD",
            sluice::store::redis::SCRIPT,
        ])
        .output()
        .expect("redis-cli");
    assert!(loaded.status.success());
    let store = RedisStore::connect(RedisConfig {
        nodes: vec![node.url()],
        topology: Topology::Shards,
        tls_ca: None,
        tls_client: None,
        key_prefix: String::new(),
        timeout: Duration::from_millis(1),
        atomic: false,
        clock: Some(Arc::new(ManualClock::new(Duration::from_secs(NOW)))),
        fallback: Default::default(),
        local_max_keys: 1_000,
    })
    .await
    .expect("connect");
    let op = Op {
        key: "hot".into(),
        algorithm: Algorithm::FixedWindow,
        requests_per_unit: 1_000_000,
        period_secs: PERIOD,
        burst: 1_000_000,
        hits: 1,
        refund: false,
    };
    let ops = vec![op; OPS];

    // More timeouts than the breaker's threshold (3), each on an idle node.
    let rounds = 4;
    for _ in 0..rounds {
        let out = store.apply(&ops, None).await.expect("answered");
        assert!(
            out.iter().all(|o| o.fallback && o.allowed),
            "the call missed its deadline and was decided without Redis"
        );
        // The script still runs; wait for it (a command queues behind it on the node).
        assert!(node.command("PING").starts_with("+PONG"));
    }
    // Let the confirming PINGs finish (each has 100 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.shard_state(0), Some(State::Closed), "healthy node");

    // A call abandoned before it was flushed never runs; one that was sent runs whole.
    let key = format!("GET hot_{}", NOW - NOW % PERIOD);
    let in_redis: usize = node.command(&key).trim().parse().unwrap_or(0);
    let sent = rounds * OPS;
    eprintln!(
        "hits sent {sent}, counted by Redis {in_redis}, local counters {}",
        store.local_keys()
    );
    assert!(in_redis <= sent);
    assert_eq!(in_redis % OPS, 0, "each call ran whole or not at all");
    assert_eq!(store.local_keys(), 0, "so nothing was charged locally");
}
