//! Slots shared by two replicas on a Redis Cluster (hash-tagged slot keys, one script call per
//! cluster slot, notices published on one node reaching a subscriber on any) and on a
//! Sentinel-managed primary.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::time::{Duration, Instant};
use support::redis::{RedisCluster, RedisSentinel};
use support::slot_cases::{acquire, release, wait_for};
use support::*;

const RULES: &str = "
domain: topo
descriptors:
  - key: pool
    concurrency: {max: 1, queue: 1, queue_timeout: 10s, lease: 60s, lease_id: request_id}
  - key: other
    concurrency: {max: 1, lease: 60s, lease_id: request_id}
";

/// Both keys taken in one request through A; a waiter on A is served by B's release.
async fn exercise(a: &TestServer, b: &TestServer) {
    let mut ca = a.client().await;
    let r = call(
        &mut ca,
        req(
            "topo",
            vec![acquire("pool", "p", "h"), acquire("other", "o", "h")],
        ),
    )
    .await;
    assert_eq!(overall(&r), Code::Ok, "{r:?}");
    let mut cb = b.client().await;
    let r = call(&mut cb, req("topo", vec![acquire("other", "o", "x")])).await;
    assert_eq!(overall(&r), Code::OverLimit, "B sees A's slot");
    let mut waiter = a.client().await;
    let waiting = tokio::spawn(async move {
        let r = call(&mut waiter, req("topo", vec![acquire("pool", "p", "w")])).await;
        (overall(&r), Instant::now())
    });
    wait_for(a, "sluice_concurrency_queued{rule=\"topo.pool\"} 1").await;
    let sent = Instant::now();
    call(&mut cb, req("topo", vec![release("pool", "p", "h")])).await;
    let (code, served) = waiting.await.expect("waiter");
    assert_eq!(code, Code::Ok);
    let latency = served.saturating_duration_since(sent);
    println!("release on B -> grant on A: {latency:?}");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
}

/// Two replicas with `flags`.
async fn replicas(flags: &[&str]) -> (TestServer, TestServer) {
    let a = TestServer::start(&[("t.yaml", RULES)], flags).await;
    let b = TestServer::start(&[("t.yaml", RULES)], flags).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let nodes = cluster.urls().join(",");
    let (a, b) = replicas(&[
        "--backend",
        "redis_cluster",
        "--redis-nodes",
        &nodes,
        "--redis-timeout",
        "2s",
    ])
    .await;
    exercise(&a, &b).await;
    for key in ["{topo_pool_p_#c}:ids", "{topo_other_o_#c}:ids"] {
        let found = cluster
            .nodes
            .iter()
            .filter(|n| n.command(&format!("EXISTS {key}")).starts_with(":1"))
            .count();
        assert_eq!(found, 1, "{key}: hash-tagged, on one node");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_on_a_sentinel_primary() {
    let rs = RedisSentinel::start();
    let sentinel = rs.sentinel.url();
    let (a, b) = replicas(&[
        "--backend",
        "redis_sentinel",
        "--redis-nodes",
        &sentinel,
        "--redis-sentinel-master",
        "mymaster",
        "--redis-timeout",
        "2s",
    ])
    .await;
    exercise(&a, &b).await;
    assert!(rs
        .primary
        .command("EXISTS topo_other_o_#c:ids")
        .starts_with(":1"));
    a.stop().await;
    b.stop().await;
}
