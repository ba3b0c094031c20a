//! 64 concurrent clients on separate connections acquire and release one `max: 5` key (memory
//! store): never more than 5 hold a slot at once, waiters are served, and once everyone has
//! released, all 5 slots are free again — none lost, none leaked.

mod support;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const RULES: &str = "
domain: hammer
descriptors:
  - key: now
    concurrency: {max: 5, lease_id: request_id}
  - key: wait
    concurrency: {max: 5, queue: 64, queue_timeout: 20s, lease_id: request_id}
";

fn slot(key: &str, id: &str, release: bool) -> RateLimitDescriptor {
    RateLimitDescriptor {
        is_negative_hits: release,
        ..desc_hits(&[(key, "k"), ("request_id", id)], 1)
    }
}

async fn hammer(s: &TestServer, key: &'static str, rounds: u32) -> (u32, u32, i64) {
    let held = Arc::new(AtomicI64::new(0));
    let peak = Arc::new(AtomicI64::new(0));
    let granted = Arc::new(AtomicU32::new(0));
    let denied = Arc::new(AtomicU32::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..64 {
        let mut client = s.client().await;
        let (held, peak, granted, denied) =
            (held.clone(), peak.clone(), granted.clone(), denied.clone());
        tasks.spawn(async move {
            for r in 0..rounds {
                let id = format!("{c}-{r}");
                let resp = call(&mut client, req("hammer", vec![slot(key, &id, false)])).await;
                if overall(&resp) == Code::Ok {
                    granted.fetch_add(1, Ordering::SeqCst);
                    let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    held.fetch_sub(1, Ordering::SeqCst);
                } else {
                    denied.fetch_add(1, Ordering::SeqCst);
                }
                // Envoy releases every request, denied ones too.
                call(&mut client, req("hammer", vec![slot(key, &id, true)])).await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("client");
    }
    (
        granted.load(Ordering::SeqCst),
        denied.load(Ordering::SeqCst),
        peak.load(Ordering::SeqCst),
    )
}

async fn remaining(s: &TestServer, key: &str) -> u32 {
    let mut c = s.client().await;
    let r = call(&mut c, req("hammer", vec![desc_hits(&[(key, "k")], 0)])).await;
    r.statuses[0].limit_remaining
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_max_and_none_lost() {
    let s = TestServer::start(&[("h.yaml", RULES)], &[]).await;
    let (granted, denied, peak) = hammer(&s, "now", 10).await;
    assert!(peak <= 5, "peak {peak} held at once");
    assert_eq!(granted + denied, 640);
    assert!(granted >= 5, "{granted}");
    assert_eq!(remaining(&s, "now").await, 5, "slots leaked");
    // With a queue, everyone is eventually served.
    let (granted, denied, peak) = hammer(&s, "wait", 5).await;
    assert!(peak <= 5, "peak {peak} held at once");
    assert_eq!((granted, denied), (320, 0));
    assert_eq!(remaining(&s, "wait").await, 5, "slots leaked");
    let m = s.metrics();
    assert!(
        m.contains("sluice_concurrency_in_flight{rule=\"hammer.wait\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("sluice_concurrency_queued{rule=\"hammer.wait\"} 0"),
        "{m}"
    );
    s.stop().await;
}
