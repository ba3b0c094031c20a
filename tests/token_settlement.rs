//! Token budgets with reservations: at request time a descriptor reserves `max_tokens`
//! (`hits_addend` 1000); at stream done one call carries the same descriptor twice, charging the
//! tokens used (300) and giving the reservation back (`is_negative_hits`, 1000). Checked with
//! exact remaining figures for every algorithm, in the memory store (one by one and
//! all-or-nothing) and in Redis (an independent node, all-or-nothing, and a Cluster), over gRPC.
//!
//! Budgets are per month (10 000 tokens), so the few seconds of real time Redis counts on
//! change no figure (a token bucket refills one token per 259.2 s).

mod support;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use support::redis::{RedisCluster, RedisServer};
use support::*;
use tonic::transport::Channel;

const BUDGET: u32 = 10_000;

const RULES: &str = r#"
domain: tokens
descriptors:
  - key: tenant
    descriptors:
      - {key: budget, value: fixed, rate_limit: {unit: month, requests_per_unit: 10000}}
      - {key: budget, value: calendar, rate_limit: {unit: month, requests_per_unit: 10000, calendar: true}}
      - {key: budget, value: sliding, rate_limit: {unit: month, requests_per_unit: 10000, algorithm: sliding_window}}
      - {key: budget, value: log, rate_limit: {unit: month, requests_per_unit: 10000, algorithm: sliding_log}}
      - {key: budget, value: bucket, rate_limit: {unit: month, requests_per_unit: 10000, algorithm: token_bucket, burst: 10000}}
"#;

const ALGORITHMS: [&str; 5] = ["fixed", "calendar", "sliding", "log", "bucket"];

type Client = RateLimitServiceClient<Channel>;

fn budget(tenant: &str, algo: &str, hits: u64) -> RateLimitDescriptor {
    desc_hits(&[("tenant", tenant), ("budget", algo)], hits)
}

fn refund(tenant: &str, algo: &str, hits: u64) -> RateLimitDescriptor {
    RateLimitDescriptor {
        is_negative_hits: true,
        ..budget(tenant, algo, hits)
    }
}

fn first(r: &RateLimitResponse) -> (Code, u32) {
    let s = &r.statuses[0];
    (code(s), s.limit_remaining)
}

/// Request time: reserve `max_tokens`.
async fn reserve(c: &mut Client, tenant: &str, algo: &str, max_tokens: u64) -> (Code, u32) {
    first(&call(c, req("tokens", vec![budget(tenant, algo, max_tokens)])).await)
}

/// Stream done: charge `used` and give `max_tokens` back, in one call, in either order.
async fn settle(
    c: &mut Client,
    tenant: &str,
    algo: &str,
    used: u64,
    max_tokens: u64,
    refund_first: bool,
) -> RateLimitResponse {
    let mut ds = vec![budget(tenant, algo, used), refund(tenant, algo, max_tokens)];
    if refund_first {
        ds.reverse();
    }
    call(c, req("tokens", ds)).await
}

/// What is left, without charging.
async fn remaining(c: &mut Client, tenant: &str, algo: &str) -> u32 {
    first(&call(c, req("tokens", vec![budget(tenant, algo, 0)])).await).1
}

/// Every exact figure of the brief, for every algorithm, against one running sluice.
async fn settlement_is_exact(flags: &[&str], label: &str) {
    let s = TestServer::start(&[("t.yaml", RULES)], flags).await;
    let mut c = s.client().await;
    // Tenants are unique per run: a Redis node outlives nothing, but keep runs apart anyway.
    let run = std::process::id();
    for algo in ALGORITHMS {
        for refund_first in [false, true] {
            let tenant = format!("{label}-{run}-{refund_first}");
            let t = tenant.as_str();
            // One request: reserve 1000, settle 300 used.
            assert_eq!(
                reserve(&mut c, t, algo, 1000).await,
                (Code::Ok, 9000),
                "{label} {algo}"
            );
            let r = settle(&mut c, t, algo, 300, 1000, refund_first).await;
            assert_eq!(r.overall_code, Code::Ok as i32, "{label} {algo}: {r:?}");
            assert_eq!(
                remaining(&mut c, t, algo).await,
                BUDGET - 300,
                "{label} {algo}"
            );

            // The budget fully reserved: settling must not be denied before its own refund.
            let t2 = format!("{tenant}-full");
            let t2 = t2.as_str();
            for i in 0..10 {
                let want = BUDGET - 1000 * (i + 1);
                assert_eq!(
                    reserve(&mut c, t2, algo, 1000).await,
                    (Code::Ok, want),
                    "{label} {algo}"
                );
            }
            for _ in 0..10 {
                settle(&mut c, t2, algo, 300, 1000, refund_first).await;
            }
            assert_eq!(
                remaining(&mut c, t2, algo).await,
                BUDGET - 3000,
                "{label} {algo} refund_first={refund_first}: ten settled requests of 300"
            );

            // A refund never frees more than was charged: settling with no reservation
            // held (say, reserved last window) leaves the counter at zero, not below.
            let t3 = format!("{tenant}-none");
            let t3 = t3.as_str();
            settle(&mut c, t3, algo, 300, 1000, refund_first).await;
            assert_eq!(remaining(&mut c, t3, algo).await, BUDGET, "{label} {algo}");
            assert_eq!(
                reserve(&mut c, t3, algo, 1000).await,
                (Code::Ok, 9000),
                "{label} {algo}: not below zero"
            );
        }
    }
    s.stop().await;
}

/// A reservation that does not fit is denied. The fixed window (as envoyproxy/ratelimit)
/// still counts the denied hits, and the refund Envoy sends at stream done for the denied
/// request gives them back: net zero. The other algorithms charge nothing when they deny,
/// so that refund frees tokens the request never held (by at most its reservation).
async fn denied_reservations(flags: &[&str], label: &str) {
    let s = TestServer::start(&[("t.yaml", RULES)], flags).await;
    let mut c = s.client().await;
    let run = std::process::id();
    for algo in ALGORITHMS {
        let tenant = format!("{label}-{run}-denied");
        let t = tenant.as_str();
        assert_eq!(reserve(&mut c, t, algo, 9500).await, (Code::Ok, 500));
        assert_eq!(
            reserve(&mut c, t, algo, 1000).await,
            (Code::OverLimit, 0),
            "{label} {algo}"
        );
        let counted = matches!(algo, "fixed" | "calendar");
        let after_denial = remaining(&mut c, t, algo).await;
        assert_eq!(
            after_denial,
            if counted { 0 } else { 500 },
            "{label} {algo}"
        );
        // Envoy's stream-done call of the denied request: no usage header (nothing used),
        // the reservation given back.
        call(&mut c, req("tokens", vec![refund(t, algo, 1000)])).await;
        let after_refund = remaining(&mut c, t, algo).await;
        assert_eq!(
            after_refund,
            if counted { 500 } else { 1500 },
            "{label} {algo}"
        );
    }
    s.stop().await;
}

/// Twenty concurrent reservations of 1000 against 10 000: exactly ten pass, whatever the
/// algorithm (each store decides one counter at a time).
async fn concurrent_reservations(flags: &[&str], label: &str) {
    let s = TestServer::start(&[("t.yaml", RULES)], flags).await;
    let run = std::process::id();
    for algo in ALGORITHMS {
        let tenant = format!("{label}-{run}-conc");
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let mut c = s.client().await;
            let (t, a) = (tenant.clone(), algo);
            tasks.push(tokio::spawn(
                async move { reserve(&mut c, &t, a, 1000).await.0 },
            ));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await.expect("task") == Code::Ok {
                ok += 1;
            }
        }
        assert_eq!(ok, 10, "{label} {algo}: reservations admitted");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_settles_exactly() {
    settlement_is_exact(&[], "mem").await;
    settlement_is_exact(&["--atomic-admission"], "mematomic").await;
    denied_reservations(&[], "mem").await;
    concurrent_reservations(&[], "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_settles_exactly() {
    let node = RedisServer::start();
    let url = node.url();
    let flags = ["--backend", "redis", "--redis-nodes", url.as_str()];
    settlement_is_exact(&flags, "redis").await;
    let atomic = [&flags[..], &["--atomic-admission"]].concat();
    settlement_is_exact(&atomic, "redisatomic").await;
    denied_reservations(&flags, "redis").await;
    concurrent_reservations(&flags, "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_settles_exactly() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls().join(",");
    let flags = ["--backend", "redis_cluster", "--redis-nodes", urls.as_str()];
    settlement_is_exact(&flags, "cluster").await;
    denied_reservations(&flags, "cluster").await;
}
