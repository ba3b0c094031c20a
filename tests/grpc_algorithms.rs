//! Per-limit algorithms over gRPC, on the server's manual clock: token bucket refills
//! smoothly, the sliding window remembers the previous window, the sliding log is exact.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::time::Duration;
use support::*;

const RULES: &str = "
domain: algo
descriptors:
  - key: tb
    rate_limit: {unit: second, requests_per_unit: 10, algorithm: token_bucket, burst: 5}
  - key: sw
    rate_limit: {unit: minute, requests_per_unit: 10, algorithm: sliding_window}
  - key: log
    rate_limit: {unit: second, requests_per_unit: 2, algorithm: sliding_log}
";

#[tokio::test]
async fn token_bucket_bursts_then_refills() {
    let s = TestServer::start(&[("a.yaml", RULES)], &["--response-headers", "all"]).await;
    let mut c = s.client().await;
    let one = || req("algo", vec![desc(&[("tb", "x")])]);
    for i in 0..5u32 {
        assert_eq!(
            summary(&call(&mut c, one()).await),
            [(Code::Ok, 4 - i, Some(10))]
        );
    }
    let r = call(&mut c, one()).await;
    assert_eq!(overall(&r), Code::OverLimit);
    let d = r.statuses[0].duration_until_reset.expect("retry time");
    assert_eq!(
        (d.seconds, d.nanos),
        (0, 100_000_000),
        "next token in 100 ms"
    );
    assert!(r
        .response_headers_to_add
        .iter()
        .any(|h| h.key == "Retry-After" && h.value == "1"));
    s.clock.advance(Duration::from_millis(100));
    assert_eq!(overall(&call(&mut c, one()).await), Code::Ok);
    s.stop().await;
}

#[tokio::test]
async fn sliding_window_weighs_the_previous_window() {
    let s = TestServer::start(&[("a.yaml", RULES)], &[]).await;
    let mut c = s.client().await;
    let hits = |n| req("algo", vec![desc_hits(&[("sw", "x")], n)]);
    assert_eq!(overall(&call(&mut c, hits(10)).await), Code::Ok);
    // Next minute, 30 s in (T0 is 1 s into its minute): estimate 10 × 0.5 = 5.
    s.clock.advance(Duration::from_secs(89));
    assert_eq!(
        summary(&call(&mut c, hits(5)).await),
        [(Code::Ok, 0, Some(10))]
    );
    assert_eq!(overall(&call(&mut c, hits(1)).await), Code::OverLimit);
    s.stop().await;
}

#[tokio::test]
async fn sliding_log_is_exact() {
    let s = TestServer::start(&[("a.yaml", RULES)], &[]).await;
    let mut c = s.client().await;
    let one = || req("algo", vec![desc(&[("log", "x")])]);
    assert_eq!(overall(&call(&mut c, one()).await), Code::Ok);
    s.clock.advance(Duration::from_millis(600));
    assert_eq!(overall(&call(&mut c, one()).await), Code::Ok);
    s.clock.advance(Duration::from_millis(300));
    assert_eq!(overall(&call(&mut c, one()).await), Code::OverLimit);
    s.clock.advance(Duration::from_millis(100));
    assert_eq!(overall(&call(&mut c, one()).await), Code::Ok);
    s.stop().await;
}
