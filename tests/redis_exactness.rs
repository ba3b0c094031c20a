//! Two sluice servers sharing three Redis shards: 64 concurrent clients split between them get
//! exactly N admitted for an N/day limit, for every algorithm (one atomic script per shard).

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use support::redis::RedisServer;
use support::*;

const RULES: &str = "
domain: shared
descriptors:
  - {key: fixed_window, rate_limit: {unit: day, requests_per_unit: 100}}
  - {key: sliding_window, rate_limit: {unit: day, requests_per_unit: 100, algorithm: sliding_window}}
  - {key: sliding_log, rate_limit: {unit: day, requests_per_unit: 100, algorithm: sliding_log}}
  - {key: token_bucket, rate_limit: {unit: day, requests_per_unit: 100, algorithm: token_bucket}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_admit_exactly_the_limit() {
    let nodes = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let urls = nodes
        .iter()
        .map(RedisServer::url)
        .collect::<Vec<_>>()
        .join(",");
    let flags = [
        "--backend",
        "redis",
        "--redis-nodes",
        &urls,
        "--redis-timeout",
        "2s",
    ];
    let a = TestServer::start(&[("s.yaml", RULES)], &flags).await;
    let b = TestServer::start(&[("s.yaml", RULES)], &flags).await;
    for key in [
        "fixed_window",
        "sliding_window",
        "sliding_log",
        "token_bucket",
    ] {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let mut c = if i % 2 == 0 {
                a.client().await
            } else {
                b.client().await
            };
            tasks.spawn(async move {
                let mut ok = 0u32;
                for _ in 0..4 {
                    let r = call(&mut c, req("shared", vec![desc(&[(key, "tenant-1")])])).await;
                    ok += u32::from(overall(&r) == Code::Ok);
                }
                ok
            });
        }
        let mut ok = 0;
        while let Some(n) = tasks.join_next().await {
            ok += n.expect("client task");
        }
        assert_eq!(ok, 100, "{key}: 256 requests against 100/day");
    }
    a.stop().await;
    b.stop().await;
}
