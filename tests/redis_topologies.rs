//! The Redis store against a real Redis Cluster (hash-tagged keys, one script call per slot)
//! and a Sentinel-managed primary, over gRPC.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use support::redis::{RedisCluster, RedisSentinel};
use support::*;

const RULES: &str = "
domain: topo
descriptors:
  - {key: user, rate_limit: {unit: day, requests_per_unit: 3}}
  - {key: tb, rate_limit: {unit: day, requests_per_unit: 3, algorithm: token_bucket}}
  - {key: log, rate_limit: {unit: day, requests_per_unit: 3, algorithm: sliding_log}}
";

/// Four requests of three descriptors each: the fourth is over on every one.
async fn exercise(s: &TestServer) {
    let mut c = s.client().await;
    let all = || {
        req(
            "topo",
            vec![
                desc(&[("user", "u1")]),
                desc(&[("tb", "u1")]),
                desc(&[("log", "u1")]),
            ],
        )
    };
    for i in 0..3u32 {
        let r = call(&mut c, all()).await;
        assert_eq!(overall(&r), Code::Ok, "call {i}");
        assert!(
            r.statuses.iter().all(|st| st.limit_remaining == 2 - i),
            "call {i}: {r:?}"
        );
    }
    let r = call(&mut c, all()).await;
    assert!(
        r.statuses.iter().all(|st| code(st) == Code::OverLimit),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster() {
    let cluster = RedisCluster::start();
    let nodes = cluster.urls().join(",");
    let s = TestServer::start(
        &[("t.yaml", RULES)],
        &[
            "--backend",
            "redis_cluster",
            "--redis-nodes",
            &nodes,
            "--redis-timeout",
            "2s",
        ],
    )
    .await;
    for n in &cluster.nodes {
        n.command("CONFIG RESETSTAT");
    }
    exercise(&s).await;
    // Keys are hash-tagged by counter: a fixed-window key is `{topo_user_u1}_<window>`.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let key = format!("{{topo_user_u1}}_{}", now - now % 86_400);
    let found = cluster
        .nodes
        .iter()
        .filter(|n| n.command(&format!("EXISTS {key}")).starts_with(":1"))
        .count();
    assert_eq!(found, 1, "one fixed-window key, hash-tagged");
    // Exactly one script call per slot touched per request (NOSCRIPT retries aside).
    let mut slots: Vec<String> = ["{topo_user_u1}", "{topo_tb_u1}", "{topo_log_u1}"]
        .iter()
        .map(|k| cluster.nodes[0].command(&format!("CLUSTER KEYSLOT {k}")))
        .collect();
    slots.sort();
    slots.dedup();
    let calls: u64 = cluster.nodes.iter().map(|n| n.calls("evalsha")).sum();
    let noscript: u64 = cluster
        .nodes
        .iter()
        .map(|n| n.failed_calls("evalsha"))
        .sum();
    assert!(
        noscript <= slots.len() as u64,
        "{noscript} NOSCRIPT retries"
    );
    assert_eq!(
        calls - noscript,
        4 * slots.len() as u64,
        "{calls} EVALSHA, {noscript} NOSCRIPT"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel() {
    let rs = RedisSentinel::start();
    let sentinel = rs.sentinel.url();
    let s = TestServer::start(
        &[("t.yaml", RULES)],
        &[
            "--backend",
            "redis_sentinel",
            "--redis-nodes",
            &sentinel,
            "--redis-sentinel-master",
            "mymaster",
            "--redis-timeout",
            "2s",
        ],
    )
    .await;
    rs.primary.command("CONFIG RESETSTAT");
    exercise(&s).await;
    // The first call meets NOSCRIPT once (a failed EVALSHA), then SCRIPT LOAD and retries.
    let noscript = rs.primary.failed_calls("evalsha");
    assert_eq!(
        rs.primary.calls("evalsha") - noscript,
        4,
        "one call per request, on the primary"
    );
    s.stop().await;
}
