//! A slot whose release never comes is freed after its `lease` (memory store): the key takes
//! requests again, a waiter is served when the lease ends, and the expiry is counted.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::time::{Duration, Instant};
use support::*;

const RULES: &str = "
domain: l
descriptors:
  - key: job
    concurrency: {max: 1, queue: 1, queue_timeout: 10s, lease: 1s, lease_id: request_id}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreleased_slot_frees_after_its_lease() {
    let s = TestServer::start(&[("l.yaml", RULES)], &[]).await;
    let mut c = s.client().await;
    let acquire = |id: &str| req("l", vec![desc(&[("job", "j"), ("request_id", id)])]);
    assert_eq!(overall(&call(&mut c, acquire("lost")).await), Code::Ok);
    // A waiter is served when the lost request's lease ends (on the server's clock, which
    // the test moves), with no release.
    let mut w = s.client().await;
    let waiter = tokio::spawn(async move {
        let r = call(
            &mut w,
            req("l", vec![desc(&[("job", "j"), ("request_id", "next")])]),
        )
        .await;
        overall(&r)
    });
    for _ in 0..400 {
        if s.metrics()
            .contains("sluice_concurrency_queued{rule=\"l.job\"} 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.clock.advance(Duration::from_millis(999));
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!waiter.is_finished(), "served before the lease ended");
    s.clock.advance(Duration::from_millis(1));
    let code = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("served")
        .expect("task");
    assert_eq!(code, Code::Ok);
    assert!(t0.elapsed() < Duration::from_secs(5));
    s.clock.advance(Duration::from_secs(1));
    // "next" is never released either: the sweeper frees it and counts it.
    let mut seen = String::new();
    for _ in 0..400 {
        seen = s.metrics();
        if seen.contains("sluice_concurrency_leases_expired_total{rule=\"l.job\"} 2")
            && seen.contains("sluice_concurrency_in_flight{rule=\"l.job\"} 0")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        seen.contains("sluice_concurrency_leases_expired_total{rule=\"l.job\"} 2"),
        "{seen}"
    );
    assert!(
        seen.contains("sluice_concurrency_in_flight{rule=\"l.job\"} 0"),
        "{seen}"
    );
    s.stop().await;
}
