//! A held call the client gives up on leaves the queue and never takes a slot; the admin
//! API shows a descriptor's in-flight and queued requests; `/rlconfig` lists the rule.

mod support;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::time::Duration;
use support::http::{http_get, request};
use support::*;

const RULES: &str = "
domain: c
descriptors:
  - key: user
    concurrency: {max: 1, queue: 5, queue_timeout: 30s, lease: 60s, fair_by: tenant, lease_id: request_id}
";

fn slot(id: &str, tenant: &str, release: bool) -> RateLimitDescriptor {
    RateLimitDescriptor {
        is_negative_hits: release,
        ..desc_hits(&[("user", "u"), ("tenant", tenant), ("request_id", id)], 1)
    }
}

async fn wait_metric(s: &TestServer, needle: &str) {
    for _ in 0..1000 {
        if s.metrics().contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never saw {needle}: {}", s.metrics());
}

const TARGET: &str = r#"{"domain":"c","descriptor":[{"key":"user","value":"u"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_waiter_leaves_and_the_admin_api_shows_the_room() {
    let s = TestServer::start(&[("c.yaml", RULES)], &[]).await;
    let mut c = s.client().await;
    assert_eq!(
        overall(&call(&mut c, req("c", vec![slot("holder", "t0", false)])).await),
        Code::Ok
    );
    let mut w1 = s.client().await;
    let gone =
        tokio::spawn(async move { call(&mut w1, req("c", vec![slot("gone", "t1", false)])).await });
    wait_metric(&s, "sluice_concurrency_queued{rule=\"c.user\"} 1\n").await;
    let mut w2 = s.client().await;
    let stays =
        tokio::spawn(
            async move { call(&mut w2, req("c", vec![slot("stays", "t2", false)])).await },
        );
    wait_metric(&s, "sluice_concurrency_queued{rule=\"c.user\"} 2\n").await;

    let u = request(s.http, "POST", "/admin/usage", None, Some(TARGET)).await;
    assert_eq!(u.status, 200, "{u:?}");
    let body = u.json();
    assert_eq!(body["status"], "limited");
    assert_eq!(body["concurrency"]["max"], 1);
    assert_eq!(body["concurrency"]["in_flight"], 1);
    assert_eq!(body["concurrency"]["queued"], 2);
    assert_eq!(body["concurrency"]["queued_by_flow"][0]["flow"], "t1");
    assert_eq!(body["concurrency"]["next_expiry_seconds"], 60);

    // The first waiter's caller gives up: its call is dropped.
    gone.abort();
    let _ = gone.await;
    wait_metric(
        &s,
        "sluice_concurrency_cancelled_total{rule=\"c.user\"} 1\n",
    )
    .await;
    wait_metric(&s, "sluice_concurrency_queued{rule=\"c.user\"} 1\n").await;
    // The holder's release goes to the waiter that stayed, not to the one that left.
    call(&mut c, req("c", vec![slot("holder", "t0", true)])).await;
    let r = tokio::time::timeout(Duration::from_secs(10), stays)
        .await
        .expect("served")
        .expect("task");
    assert_eq!(overall(&r), Code::Ok);
    let u = request(s.http, "POST", "/admin/usage", None, Some(TARGET))
        .await
        .json();
    assert_eq!(
        (
            u["concurrency"]["in_flight"].as_u64(),
            u["concurrency"]["queued"].as_u64()
        ),
        (Some(1), Some(0))
    );
    call(&mut c, req("c", vec![slot("stays", "t2", true)])).await;
    let u = request(s.http, "POST", "/admin/usage", None, Some(TARGET))
        .await
        .json();
    assert_eq!(
        u["concurrency"]["in_flight"], 0,
        "the cancelled waiter took a slot: {u}"
    );

    let rl = http_get(s.http, "/rlconfig", &[]).await.expect("rlconfig");
    assert!(rl.body.contains("c.user: concurrency max=1 queue=5 queue_timeout=30000ms lease=60s fair_by=tenant lease_id=request_id"), "{}", rl.body);
    s.stop().await;
}
