//! `--atomic-admission`: when any descriptor of a request is over its limit, none of the
//! request's counters is charged (envoyproxy/ratelimit#1060); without it, upstream's behaviour.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use support::*;

const RULES: &str = "
domain: aon
descriptors:
  - key: tenant
    rate_limit: {unit: hour, requests_per_unit: 10}
    descriptors:
      - key: user
        rate_limit: {unit: hour, requests_per_unit: 1}
";

async fn broad_remaining_after_denials(flags: &[&str]) -> u32 {
    let s = TestServer::start(&[("a.yaml", RULES)], flags).await;
    let mut c = s.client().await;
    let both = || {
        req(
            "aon",
            vec![
                desc(&[("tenant", "t")]),
                desc(&[("tenant", "t"), ("user", "u")]),
            ],
        )
    };
    assert_eq!(overall(&call(&mut c, both()).await), Code::Ok);
    for _ in 0..3 {
        assert_eq!(overall(&call(&mut c, both()).await), Code::OverLimit);
    }
    let r = call(&mut c, req("aon", vec![desc_hits(&[("tenant", "t")], 0)])).await;
    s.stop().await;
    r.statuses[0].limit_remaining
}

#[tokio::test]
async fn denied_requests_drain_the_broad_counter_by_default() {
    assert_eq!(broad_remaining_after_denials(&[]).await, 6);
}

#[tokio::test]
async fn atomic_admission_charges_nothing_for_denied_requests() {
    assert_eq!(
        broad_remaining_after_denials(&["--atomic-admission"]).await,
        9
    );
}

#[tokio::test]
async fn atomic_admission_makes_a_denied_fixed_window_hit_free() {
    let s = TestServer::start(&[("a.yaml", RULES)], &["--atomic-admission"]).await;
    let mut c = s.client().await;
    let big = || req("aon", vec![desc_hits(&[("tenant", "solo")], 8)]);
    assert_eq!(overall(&call(&mut c, big()).await), Code::Ok);
    assert_eq!(overall(&call(&mut c, big()).await), Code::OverLimit);
    let r = call(
        &mut c,
        req("aon", vec![desc_hits(&[("tenant", "solo")], 2)]),
    )
    .await;
    assert_eq!(
        summary(&r),
        [(Code::Ok, 0, Some(10))],
        "the denied 8 were not counted"
    );
    s.stop().await;
}
