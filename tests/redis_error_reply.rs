//! A request whose script call Redis answers with an error (here: `NOPERM`, an ACL forbids its
//! counter key — the script itself never fails on any key's content) fails alone with gRPC
//! `INTERNAL`: the shard's breaker stays closed, and other keys on that shard are still
//! decided by Redis, exactly.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use support::redis::RedisServer;
use support::*;

const RULES: &str = "
domain: err
descriptors:
  - {key: user, rate_limit: {unit: hour, requests_per_unit: 10, algorithm: sliding_window}}
";

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reply_fails_the_request_not_the_shard() {
    let node = RedisServer::start();
    // The default user may touch only the good user's counter and sluice's own keys.
    let acl = node.command("ACL SETUSER default resetkeys ~err_user_good* ~sluice:*");
    assert!(acl.starts_with("+OK"), "{acl}");
    let s = TestServer::start(
        &[("e.yaml", RULES)],
        &[
            "--backend",
            "redis",
            "--redis-nodes",
            &node.url(),
            // A local decision would admit only 10 / 2 = 5: Redis's answers are told apart.
            "--fallback-replicas",
            "2",
        ],
    )
    .await;
    let mut c = s.client().await;

    for _ in 0..3 {
        let err = c
            .should_rate_limit(req("err", vec![desc(&[("user", "bad")])]))
            .await
            .expect_err("Redis refused the script call");
        assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
        assert!(err.message().contains("NoPerm"), "{err:?}");
    }

    let m = s.metrics();
    assert_eq!(metric(&m, "sluice_redis_shard_state"), 0.0, "closed:\n{m}");
    assert_eq!(metric(&m, "sluice_redis_request_errors_total"), 3.0, "{m}");

    // Another key on the same (only) shard: Redis decides, exactly 10 of 12.
    let mut admitted = 0;
    for _ in 0..12 {
        let r = call(&mut c, req("err", vec![desc(&[("user", "good")])])).await;
        admitted += u32::from(overall(&r) == Code::Ok);
    }
    assert_eq!(admitted, 10, "decided by Redis, not the local share of 5");
    let m = s.metrics();
    assert_eq!(
        metric(&m, "sluice_fallback_decisions_total"),
        0.0,
        "nothing fell back:\n{m}"
    );
    assert_eq!(metric(&m, "sluice_redis_shard_state"), 0.0, "still closed");
    assert!(
        node.command("EXISTS err_user_good_#w").starts_with(":1"),
        "counted in Redis"
    );
    s.stop().await;
}
