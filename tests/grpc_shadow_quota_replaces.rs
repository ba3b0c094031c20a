//! Per-rule shadow mode, global shadow mode, quota mode and `replaces`, as upstream decides them.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use support::*;

const RULES: &str = "
domain: rl
descriptors:
  - key: shadowed
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: hard
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: q1
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: q2
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: bar
    value: banned
    rate_limit: {unit: minute, requests_per_unit: 0, name: banned_limit}
  - key: destination_cluster
    value: override
    rate_limit:
      unit: minute
      requests_per_unit: 2
      replaces: [{name: banned_limit}]
  - key: vip
    rate_limit:
      unlimited: true
      replaces: [{name: banned_limit}]
";

async fn server(flags: &[&str]) -> TestServer {
    TestServer::start(&[("rl.yaml", RULES)], flags).await
}

#[tokio::test]
async fn rule_shadow_mode_counts_but_never_denies() {
    let s = server(&[]).await;
    let mut c = s.client().await;
    for _ in 0..3 {
        let r = call(&mut c, req("rl", vec![desc(&[("shadowed", "x")])])).await;
        assert_eq!(overall(&r), Code::Ok);
        assert_eq!(code(&r.statuses[0]), Code::Ok);
    }
    let r = call(&mut c, req("rl", vec![desc(&[("shadowed", "x")])])).await;
    assert_eq!(
        r.statuses[0].limit_remaining, 0,
        "over limit: remaining stays 0"
    );
    // Mixed: a shadowed over-limit plus a real over-limit is OVER_LIMIT.
    call(&mut c, req("rl", vec![desc(&[("hard", "x")])])).await;
    let r = call(
        &mut c,
        req(
            "rl",
            vec![desc(&[("shadowed", "x")]), desc(&[("hard", "x")])],
        ),
    )
    .await;
    assert_eq!(overall(&r), Code::OverLimit);
    assert_eq!(code(&r.statuses[0]), Code::Ok);
    assert_eq!(code(&r.statuses[1]), Code::OverLimit);
    s.stop().await;
}

#[tokio::test]
async fn global_shadow_mode_keeps_statuses_truthful() {
    let s = server(&["--shadow-mode"]).await;
    let mut c = s.client().await;
    call(&mut c, req("rl", vec![desc(&[("hard", "g")])])).await;
    let r = call(&mut c, req("rl", vec![desc(&[("hard", "g")])])).await;
    assert_eq!(overall(&r), Code::Ok);
    assert_eq!(code(&r.statuses[0]), Code::OverLimit);
    s.stop().await;
}

#[tokio::test]
async fn quota_mode_is_over_only_when_all_quotas_are() {
    let s = server(&[]).await;
    let mut c = s.client().await;
    let both = || req("rl", vec![desc(&[("q1", "a")]), desc(&[("q2", "a")])]);
    assert_eq!(
        summary(&call(&mut c, both()).await),
        [(Code::Ok, 0, Some(1)), (Code::Ok, 1, Some(2))]
    );
    let r = call(&mut c, both()).await;
    assert_eq!(code(&r.statuses[0]), Code::OverLimit);
    assert_eq!(overall(&r), Code::Ok, "q2 still has quota");
    let r = call(&mut c, both()).await;
    assert_eq!(
        overall(&r),
        Code::OverLimit,
        "every quota descriptor is over"
    );
    s.stop().await;
}

#[tokio::test]
async fn replaces_drops_the_named_limit_for_that_request() {
    let s = server(&[]).await;
    let mut c = s.client().await;
    let banned = || desc(&[("bar", "banned")]);
    let r = call(&mut c, req("rl", vec![banned()])).await;
    assert_eq!(
        overall(&r),
        Code::OverLimit,
        "0 per minute blocks everything"
    );
    for i in 0..3 {
        let r = call(
            &mut c,
            req(
                "rl",
                vec![banned(), desc(&[("destination_cluster", "override")])],
            ),
        )
        .await;
        assert_eq!(code(&r.statuses[0]), Code::Ok);
        assert!(
            r.statuses[0].current_limit.is_none(),
            "a replaced limit reports no limit"
        );
        let want = if i < 2 { Code::Ok } else { Code::OverLimit };
        assert_eq!(
            overall(&r),
            want,
            "call {i}: the override rule allows 2/min"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn an_unlimited_rule_replaces_too() {
    let s = server(&[]).await;
    let mut c = s.client().await;
    let r = call(
        &mut c,
        req(
            "rl",
            vec![desc(&[("bar", "banned")]), desc(&[("vip", "yes")])],
        ),
    )
    .await;
    assert_eq!(overall(&r), Code::Ok);
    assert_eq!(
        summary(&r),
        [(Code::Ok, 0, None), (Code::Ok, u32::MAX, None)]
    );
    s.stop().await;
}

#[tokio::test]
async fn several_limits_on_one_descriptor_all_apply() {
    let rules = "
domain: multi
descriptors:
  - key: api_key
    rate_limits:
      - {unit: second, requests_per_unit: 3, name: burst}
      - {unit: hour, requests_per_unit: 4, name: hourly}
";
    let s = TestServer::start(&[("m.yaml", rules)], &[]).await;
    let mut c = s.client().await;
    let one = || req("multi", vec![desc(&[("api_key", "k")])]);
    let r = call(&mut c, one()).await;
    // The status reports the limit nearest exhaustion.
    assert_eq!(summary(&r), [(Code::Ok, 2, Some(3))]);
    call(&mut c, one()).await;
    call(&mut c, one()).await;
    let r = call(&mut c, one()).await;
    assert_eq!(overall(&r), Code::OverLimit);
    assert_eq!(
        r.statuses[0]
            .current_limit
            .as_ref()
            .map(|l| l.name.as_str()),
        Some("burst")
    );
    s.clock.advance(std::time::Duration::from_secs(1));
    let r = call(&mut c, one()).await;
    assert_eq!(
        overall(&r),
        Code::OverLimit,
        "4 per hour: the second is new but the hour is not"
    );
    assert_eq!(
        r.statuses[0]
            .current_limit
            .as_ref()
            .map(|l| l.name.as_str()),
        Some("hourly")
    );
    s.stop().await;
}
