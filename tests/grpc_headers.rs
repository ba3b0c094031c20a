//! Optional response headers: upstream's RateLimit-Limit/-Remaining/-Reset, IETF draft-10
//! RateLimit-Policy/RateLimit, and Retry-After on OVER_LIMIT.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use support::*;

const RULES: &str = "
domain: h
descriptors:
  - {key: minute, rate_limit: {unit: minute, requests_per_unit: 10, name: per-minute}}
  - {key: hour, rate_limit: {unit: hour, requests_per_unit: 3}}
";

fn headers(r: &RateLimitResponse) -> Vec<(String, String)> {
    r.response_headers_to_add
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn off_by_default() {
    let s = TestServer::start(&[("h.yaml", RULES)], &[]).await;
    let mut c = s.client().await;
    let r = call(&mut c, req("h", vec![desc(&[("minute", "a")])])).await;
    assert!(r.response_headers_to_add.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn ratelimit_headers_describe_the_descriptor_nearest_its_limit() {
    let s = TestServer::start(&[("h.yaml", RULES)], &["--response-headers", "ratelimit"]).await;
    let mut c = s.client().await;
    let both = || req("h", vec![desc(&[("minute", "a")]), desc(&[("hour", "a")])]);
    let r = call(&mut c, both()).await;
    // T0 is 1 s into the minute and hour: minute resets in 59 s, hour in 3599 s.
    assert_eq!(
        headers(&r),
        pairs(&[
            ("RateLimit-Limit", "3"),
            ("RateLimit-Remaining", "2"),
            ("RateLimit-Reset", "3599")
        ])
    );
    call(&mut c, both()).await;
    call(&mut c, both()).await;
    let r = call(&mut c, both()).await;
    assert_eq!(
        headers(&r),
        pairs(&[
            ("RateLimit-Limit", "3"),
            ("RateLimit-Remaining", "0"),
            ("RateLimit-Reset", "3599"),
            ("Retry-After", "3599"),
        ])
    );
    s.stop().await;
}

#[tokio::test]
async fn draft10_headers_cover_every_limited_descriptor() {
    let s = TestServer::start(&[("h.yaml", RULES)], &["--response-headers", "draft10"]).await;
    let mut c = s.client().await;
    let r = call(
        &mut c,
        req(
            "h",
            vec![
                desc(&[("minute", "a")]),
                desc(&[("unmatched", "x")]),
                desc(&[("hour", "a")]),
            ],
        ),
    )
    .await;
    assert_eq!(
        headers(&r),
        pairs(&[
            (
                "RateLimit-Policy",
                "\"per-minute\";q=10;w=60, \"h.hour\";q=3;w=3600"
            ),
            (
                "RateLimit",
                "\"per-minute\";r=9;t=59, \"h.hour\";r=2;t=3599"
            ),
        ])
    );
    s.stop().await;
}

#[tokio::test]
async fn all_adds_both_sets() {
    let s = TestServer::start(&[("h.yaml", RULES)], &["--response-headers", "all"]).await;
    let mut c = s.client().await;
    let r = call(&mut c, req("h", vec![desc(&[("minute", "b")])])).await;
    let keys: Vec<String> = headers(&r).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "RateLimit-Policy",
            "RateLimit"
        ]
    );
    s.stop().await;
}
