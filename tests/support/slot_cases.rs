//! In-flight limits over gRPC, whatever the store: a charge takes a slot, `is_negative_hits`
//! gives it back, a full key answers OVER_LIMIT at once (queue 0) or holds the call until a
//! slot frees (queue > 0); a release frees only the slot its lease id holds. Each case takes
//! the store's flags: `tests/concurrency_slots.rs` runs them on memory, `tests/redis_slots.rs`
//! on a real redis-server.

use super::*;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::time::{Duration, Instant};

/// Per-user slots with lease ids, a queued key, an anonymous key.
pub const RULES: &str = "
domain: slots
descriptors:
  - key: user
    concurrency: {max: 3, lease: 300s, lease_id: request_id}
  - key: queued
    concurrency: {max: 1, queue: 2, queue_timeout: 2s, lease_id: request_id}
  - key: anon
    concurrency: {max: 2}
";

/// A charge of `key=value` by request `id`.
pub fn acquire(key: &str, value: &str, id: &str) -> RateLimitDescriptor {
    desc(&[(key, value), ("request_id", id)])
}

/// The release (Envoy's stream-done call) of `key=value` by request `id`.
pub fn release(key: &str, value: &str, id: &str) -> RateLimitDescriptor {
    RateLimitDescriptor {
        is_negative_hits: true,
        ..desc_hits(&[(key, value), ("request_id", id)], 1)
    }
}

/// Three slots, then OVER_LIMIT (with the earliest lease's end); a stray or repeated release
/// frees nothing, the holder's frees one.
pub async fn three_slots_then_over_limit_and_a_release_frees_one(flags: &[&str]) {
    let mut flags = flags.to_vec();
    flags.extend_from_slice(&["--response-headers", "ratelimit"]);
    let s = TestServer::start(&[("s.yaml", RULES)], &flags).await;
    let mut c = s.client().await;
    for i in 0..3 {
        let r = call(
            &mut c,
            req("slots", vec![acquire("user", "alice", &format!("r{i}"))]),
        )
        .await;
        assert_eq!(overall(&r), Code::Ok, "slot {i}");
        assert_eq!(r.statuses[0].limit_remaining, 2 - i);
        assert_eq!(
            r.statuses[0]
                .current_limit
                .as_ref()
                .map(|l| l.requests_per_unit),
            Some(3)
        );
    }
    let denied = call(&mut c, req("slots", vec![acquire("user", "alice", "r3")])).await;
    assert_eq!(overall(&denied), Code::OverLimit);
    let until = denied.statuses[0]
        .duration_until_reset
        .as_ref()
        .expect("until");
    assert!(until.seconds > 290 && until.seconds <= 300, "{until:?}");
    assert!(denied
        .response_headers_to_add
        .iter()
        .any(|h| h.key == "Retry-After"));
    // Another user is not affected.
    let bob = call(&mut c, req("slots", vec![acquire("user", "bob", "b0")])).await;
    assert_eq!(overall(&bob), Code::Ok);
    // The denied request's release frees nothing; the holder's does.
    let stray = call(&mut c, req("slots", vec![release("user", "alice", "r3")])).await;
    assert_eq!(overall(&stray), Code::Ok);
    let still = call(&mut c, req("slots", vec![acquire("user", "alice", "r4")])).await;
    assert_eq!(
        overall(&still),
        Code::OverLimit,
        "a stray release freed a slot"
    );
    call(&mut c, req("slots", vec![release("user", "alice", "r1")])).await;
    let again = call(&mut c, req("slots", vec![release("user", "alice", "r1")])).await;
    assert_eq!(overall(&again), Code::Ok);
    let next = call(&mut c, req("slots", vec![acquire("user", "alice", "r5")])).await;
    assert_eq!(overall(&next), Code::Ok, "the release freed one slot");
    let full = call(&mut c, req("slots", vec![acquire("user", "alice", "r6")])).await;
    assert_eq!(
        overall(&full),
        Code::OverLimit,
        "a repeated release freed only one"
    );
    let m = s.metrics();
    assert!(
        m.contains("sluice_concurrency_releases_total{rule=\"slots.user\",result=\"stray\"} 2"),
        "{m}"
    );
    s.stop().await;
}

/// A second acquire by a holding id is refused and its release absorbed.
pub async fn a_reused_lease_id_never_buys_a_slot(flags: &[&str]) {
    let s = TestServer::start(&[("s.yaml", RULES)], flags).await;
    let mut c = s.client().await;
    assert_eq!(
        overall(&call(&mut c, req("slots", vec![acquire("user", "eve", "same")])).await),
        Code::Ok
    );
    // The same id again while held: refused, and its release will be absorbed.
    assert_eq!(
        overall(&call(&mut c, req("slots", vec![acquire("user", "eve", "same")])).await),
        Code::OverLimit
    );
    call(&mut c, req("slots", vec![release("user", "eve", "same")])).await;
    // One release absorbed: the slot is still held by the first request (2 left of 3).
    let r = call(&mut c, req("slots", vec![desc_hits(&[("user", "eve")], 0)])).await;
    assert_eq!(r.statuses[0].limit_remaining, 2);
    call(&mut c, req("slots", vec![release("user", "eve", "same")])).await;
    let r = call(&mut c, req("slots", vec![desc_hits(&[("user", "eve")], 0)])).await;
    assert_eq!(r.statuses[0].limit_remaining, 3);
    s.stop().await;
}

/// Releases without a lease id never free slots that were never taken.
pub async fn anonymous_slots_never_go_below_zero(flags: &[&str]) {
    let s = TestServer::start(&[("s.yaml", RULES)], flags).await;
    let mut c = s.client().await;
    let rel = || RateLimitDescriptor {
        is_negative_hits: true,
        ..desc_hits(&[("anon", "x")], 1)
    };
    for _ in 0..3 {
        call(&mut c, req("slots", vec![rel()])).await;
    }
    for i in 0..2 {
        let r = call(&mut c, req("slots", vec![desc(&[("anon", "x")])])).await;
        assert_eq!(overall(&r), Code::Ok, "{i}");
    }
    assert_eq!(
        overall(&call(&mut c, req("slots", vec![desc(&[("anon", "x")])])).await),
        Code::OverLimit
    );
    s.stop().await;
}

/// A full key holds the call until a release, the caller's deadline or `queue_timeout`.
pub async fn a_full_key_holds_the_call_until_a_release(flags: &[&str]) {
    let s = TestServer::start(&[("s.yaml", RULES)], flags).await;
    let mut c = s.client().await;
    assert_eq!(
        overall(&call(&mut c, req("slots", vec![acquire("queued", "q", "a")])).await),
        Code::Ok
    );
    let mut waiter = s.client().await;
    let started = Instant::now();
    let held = tokio::spawn(async move {
        let r = call(&mut waiter, req("slots", vec![acquire("queued", "q", "b")])).await;
        (overall(&r), started.elapsed())
    });
    // The waiter is queued: wait until the metrics say so (no sleeps as assertions).
    wait_for(&s, "sluice_concurrency_queued{rule=\"slots.queued\"} 1").await;
    assert!(!held.is_finished());
    call(&mut c, req("slots", vec![release("queued", "q", "a")])).await;
    let (code, _) = held.await.expect("waiter");
    assert_eq!(code, Code::Ok);
    // b holds the slot now; a third waits and times out at the caller's deadline.
    let mut late = s.client().await;
    let mut request = tonic::Request::new(req("slots", vec![acquire("queued", "q", "c")]));
    request.set_timeout(Duration::from_millis(300));
    let t0 = Instant::now();
    let r = late
        .should_rate_limit(request)
        .await
        .expect("answered before the deadline")
        .into_inner();
    let took = t0.elapsed();
    assert_eq!(overall(&r), Code::OverLimit);
    assert!(took < Duration::from_millis(300), "{took:?}");
    // Without a deadline, queue_timeout (2 s) ends the wait.
    let t0 = Instant::now();
    let r = call(&mut late, req("slots", vec![acquire("queued", "q", "d")])).await;
    assert_eq!(overall(&r), Code::OverLimit);
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t0.elapsed()
    );
    s.stop().await;
}

/// Waits (at most 5 s) until the metrics contain `needle`.
pub async fn wait_for(s: &TestServer, needle: &str) {
    for _ in 0..500 {
        if s.metrics().contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never saw {needle}: {}", s.metrics());
}

/// A charge (or, with `release`, its release) on the pool `gpu` by request `id` of `tenant`.
pub fn pool_slot(tenant: &str, id: &str, release: bool) -> RateLimitDescriptor {
    RateLimitDescriptor {
        is_negative_hits: release,
        ..desc_hits(
            &[("pool", "gpu"), ("tenant", tenant), ("request_id", id)],
            1,
        )
    }
}
