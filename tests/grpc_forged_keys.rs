//! Counter keys cannot be forged: a descriptor value that spells another counter's suffix
//! (`_#1`, `_#2`, `_#o`, separators) lands on a counter of its own, in memory and in Redis.
//!
//! Before keys were escaped, the value `alice_#1` hit the counter of alice's second limit.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use support::redis::RedisServer;
use support::*;

/// Two limits in the same unit: alice's second limit (2/hour) is the one a forger aims at.
const RULES: &str = "
domain: forge
descriptors:
  - key: user
    rate_limits:
      - {unit: hour, requests_per_unit: 100}
      - {unit: hour, requests_per_unit: 2}
  - key: a_b
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: a
    rate_limit: {unit: hour, requests_per_unit: 1}
";

async fn forgers_cannot_touch_other_counters(flags: &[&str]) {
    let s = TestServer::start(&[("f.yaml", RULES)], flags).await;
    let mut c = s.client().await;
    let user = |v: &str| req("forge", vec![desc(&[("user", v)])]);
    for forged in [
        "alice_#1",
        "alice_#2",
        "alice_#o",
        "alice%5F%231",
        "alice_#2_#b",
    ] {
        for _ in 0..2 {
            assert_eq!(
                overall(&call(&mut c, user(forged)).await),
                Code::Ok,
                "{forged}"
            );
        }
    }
    // Alice's own counters are untouched: two requests pass, the third is over her 2/hour.
    assert_eq!(overall(&call(&mut c, user("alice")).await), Code::Ok);
    assert_eq!(overall(&call(&mut c, user("alice")).await), Code::Ok);
    assert_eq!(overall(&call(&mut c, user("alice")).await), Code::OverLimit);
    // Separators in keys and values: `a_b = x` and `a = b_x` (both `forge_a_b_x` upstream)
    // stay apart.
    let ab = req("forge", vec![desc(&[("a_b", "x")])]);
    assert_eq!(overall(&call(&mut c, ab.clone()).await), Code::Ok);
    let a = req("forge", vec![desc(&[("a", "b_x")])]);
    assert_eq!(overall(&call(&mut c, a.clone()).await), Code::Ok);
    assert_eq!(overall(&call(&mut c, ab).await), Code::OverLimit);
    assert_eq!(overall(&call(&mut c, a).await), Code::OverLimit);
    s.stop().await;
}

#[tokio::test]
async fn in_memory() {
    forgers_cannot_touch_other_counters(&[]).await;
}

#[tokio::test]
async fn in_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    forgers_cannot_touch_other_counters(&["--backend", "redis", "--redis-nodes", &url]).await;
    // The forged value has its own escaped key (plus the fixed window's `_<window start>`).
    let count = |pattern: &str| {
        redis.command(&format!(
            "EVAL \"return #redis.call('KEYS', ARGV[1])\" 0 {pattern}"
        ))
    };
    assert_eq!(count("forge_user_alice%5F%231_[0-9]*").trim(), ":1");
    assert_eq!(count("forge_user_alice_#2_[0-9]*").trim(), ":1");
}
