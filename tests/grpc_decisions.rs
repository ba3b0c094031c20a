//! ShouldRateLimit decides as envoyproxy/ratelimit does (its integration sequence, over gRPC).

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::time::Duration;
use support::*;

const BASIC: &str = "
domain: basic
descriptors:
  - key: key1
    rate_limit: {unit: second, requests_per_unit: 50}
  - key: one_per_minute
    rate_limit: {unit: minute, requests_per_unit: 1}
";

const ANOTHER: &str = "
domain: another
descriptors:
  - {key: key2, rate_limit: {unit: minute, requests_per_unit: 20}}
  - {key: key3, rate_limit: {unit: hour, requests_per_unit: 10, name: hourly}}
  - {key: key4, rate_limit: {unit: day, requests_per_unit: 20}}
  - {key: free, value: pass}
  - {key: key6, rate_limit: {unlimited: true}}
";

async fn server() -> TestServer {
    TestServer::start(&[("basic.yaml", BASIC), ("another.yaml", ANOTHER)], &[]).await
}

#[tokio::test]
async fn unknown_domain_is_ok_without_a_limit() {
    let s = server().await;
    let mut c = s.client().await;
    let r = call(&mut c, req("foo", vec![desc(&[("hello", "world")])])).await;
    assert_eq!(overall(&r), Code::Ok);
    assert_eq!(summary(&r), [(Code::Ok, 0, None)]);
    assert!(r.statuses[0].duration_until_reset.is_none());
    s.stop().await;
}

#[tokio::test]
async fn first_hit_reports_limit_remaining_and_reset() {
    let s = server().await;
    let mut c = s.client().await;
    let r = call(&mut c, req("basic", vec![desc(&[("key1", "foo")])])).await;
    let st = &r.statuses[0];
    assert_eq!(summary(&r), [(Code::Ok, 49, Some(50))]);
    assert_eq!(
        st.current_limit.as_ref().map(|l| l.unit),
        Some(Unit::Second as i32)
    );
    let reset = st.duration_until_reset.expect("reset set");
    assert_eq!((reset.seconds, reset.nanos), (1, 0));
    s.stop().await;
}

#[tokio::test]
async fn crossing_the_limit() {
    let s = server().await;
    let mut c = s.client().await;
    for i in 0..25u32 {
        let r = call(&mut c, req("another", vec![desc(&[("key2", "crossing")])])).await;
        if i < 20 {
            assert_eq!(
                summary(&r),
                [(Code::Ok, 20 - (i + 1), Some(20))],
                "call {i}"
            );
            assert_eq!(overall(&r), Code::Ok);
        } else {
            assert_eq!(summary(&r), [(Code::OverLimit, 0, Some(20))], "call {i}");
            assert_eq!(overall(&r), Code::OverLimit);
        }
    }
    // Defaults count per value: another value has its own counter.
    let r = call(&mut c, req("another", vec![desc(&[("key2", "other")])])).await;
    assert_eq!(summary(&r), [(Code::Ok, 19, Some(20))]);
    s.stop().await;
}

#[tokio::test]
async fn two_descriptors_are_decided_independently_in_order() {
    let s = server().await;
    let mut c = s.client().await;
    for i in 0..15u32 {
        let r = call(
            &mut c,
            req(
                "another",
                vec![desc(&[("key2", "two")]), desc(&[("key3", "two")])],
            ),
        )
        .await;
        assert_eq!(r.statuses[0].limit_remaining, 20 - (i + 1), "call {i}");
        if i >= 10 {
            assert_eq!(code(&r.statuses[1]), Code::OverLimit, "call {i}");
            assert_eq!(overall(&r), Code::OverLimit);
            assert_eq!(
                r.statuses[1]
                    .current_limit
                    .as_ref()
                    .map(|l| l.name.as_str()),
                Some("hourly")
            );
        } else {
            assert_eq!(overall(&r), Code::Ok, "call {i}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn windows_reset_with_time() {
    let s = server().await;
    let mut c = s.client().await;
    let one = || req("basic", vec![desc(&[("one_per_minute", "x")])]);
    assert_eq!(overall(&call(&mut c, one()).await), Code::Ok);
    let r = call(&mut c, one()).await;
    assert_eq!(overall(&r), Code::OverLimit);
    // T0 is one second into its minute.
    assert_eq!(
        r.statuses[0].duration_until_reset.map(|d| d.seconds),
        Some(59)
    );
    s.clock.advance(Duration::from_secs(30));
    let r = call(&mut c, one()).await;
    assert_eq!(
        r.statuses[0].duration_until_reset.map(|d| d.seconds),
        Some(29)
    );
    s.clock.advance(Duration::from_secs(29));
    assert_eq!(overall(&call(&mut c, one()).await), Code::Ok);
    s.stop().await;
}

#[tokio::test]
async fn whitelist_and_unlimited() {
    let s = server().await;
    let mut c = s.client().await;
    let r = call(
        &mut c,
        req(
            "another",
            vec![
                desc(&[("free", "pass")]),
                desc(&[("key6", "any")]),
                desc(&[("key2", "a"), ("deeper", "b")]),
            ],
        ),
    )
    .await;
    assert_eq!(
        summary(&r),
        [
            (Code::Ok, 0, None),
            (Code::Ok, u32::MAX, None),
            (Code::Ok, 0, None)
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn hits_addend_request_and_descriptor_level() {
    let s = server().await;
    let mut c = s.client().await;
    // Request-level 5 charges 5; a descriptor's own hits_addend overrides it.
    let mut r = req(
        "another",
        vec![desc(&[("key4", "h")]), desc_hits(&[("key2", "h")], 2)],
    );
    r.hits_addend = 5;
    let resp = call(&mut c, r).await;
    assert_eq!(
        summary(&resp),
        [(Code::Ok, 15, Some(20)), (Code::Ok, 18, Some(20))]
    );
    // hits_addend 0 on a descriptor only checks.
    let resp = call(&mut c, req("another", vec![desc_hits(&[("key4", "h")], 0)])).await;
    assert_eq!(summary(&resp), [(Code::Ok, 15, Some(20))]);
    // A request that would overshoot is over limit (and, as upstream, counted).
    let resp = call(
        &mut c,
        req("another", vec![desc_hits(&[("key4", "h")], 16)]),
    )
    .await;
    assert_eq!(summary(&resp), [(Code::OverLimit, 0, Some(20))]);
    let resp = call(&mut c, req("another", vec![desc_hits(&[("key4", "h")], 0)])).await;
    assert_eq!(overall(&resp), Code::OverLimit, "the check sees 31 > 20");
    s.stop().await;
}

#[tokio::test]
async fn negative_hits_refund() {
    let s = server().await;
    let mut c = s.client().await;
    call(
        &mut c,
        req("another", vec![desc_hits(&[("key4", "refund")], 20)]),
    )
    .await;
    let mut refund = desc_hits(&[("key4", "refund")], 5);
    refund.is_negative_hits = true;
    let r = call(&mut c, req("another", vec![refund])).await;
    assert_eq!(summary(&r), [(Code::Ok, 5, Some(20))]);
    s.stop().await;
}

#[tokio::test]
async fn limit_override_replaces_the_rule() {
    let s = server().await;
    let mut c = s.client().await;
    // HOUR = 3 in envoy.type.v3.RateLimitUnit; matches no rule, still limited.
    let o = || {
        req(
            "another",
            vec![desc_override(&[("nothing", "configured")], 2, 3)],
        )
    };
    assert_eq!(summary(&call(&mut c, o()).await), [(Code::Ok, 1, Some(2))]);
    assert_eq!(summary(&call(&mut c, o()).await), [(Code::Ok, 0, Some(2))]);
    let r = call(&mut c, o()).await;
    assert_eq!(summary(&r), [(Code::OverLimit, 0, Some(2))]);
    assert_eq!(
        r.statuses[0].current_limit.as_ref().map(|l| l.unit),
        Some(Unit::Hour as i32)
    );
    // An override in an unknown domain is not limited.
    let r = call(
        &mut c,
        req("nope", vec![desc_override(&[("a", "b")], 0, 1)]),
    )
    .await;
    assert_eq!(summary(&r), [(Code::Ok, 0, None)]);
    s.stop().await;
}
