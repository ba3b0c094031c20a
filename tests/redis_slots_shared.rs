//! Two sluice replicas sharing one redis-server share a key's slots: 64 clients (32 per
//! replica) taking and giving back slots of a `max: 5` key never hold more than 5 at once and
//! leave every slot free; a waiter on one replica is served as soon as a slot is released
//! through the other (the freed-slot notice; latency printed).

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::redis::RedisServer;
use support::slot_cases::{acquire, release, wait_for};
use support::*;

const RULES: &str = "
domain: shared
descriptors:
  - key: pool
    concurrency: {max: 5, queue: 100, queue_timeout: 10s, lease: 60s, lease_id: request_id}
  - key: one
    concurrency: {max: 1, queue: 1, queue_timeout: 10s, lease: 60s, lease_id: request_id}
";

/// Two replicas on `node` (a generous deadline: this tests sharing, not speed).
async fn replicas(node: &RedisServer) -> (TestServer, TestServer) {
    let url = node.url();
    let flags = [
        "--backend",
        "redis",
        "--redis-nodes",
        url.as_str(),
        "--redis-timeout",
        "1s",
    ];
    let a = TestServer::start(&[("s.yaml", RULES)], &flags).await;
    let b = TestServer::start(&[("s.yaml", RULES)], &flags).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_hold_more_than_max_together() {
    let node = RedisServer::start();
    let (a, b) = replicas(&node).await;
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 8;
    let held = Arc::new(AtomicI64::new(0));
    let most = Arc::new(AtomicI64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let server = if n % 2 == 0 { &a } else { &b };
        let mut c = server.client().await;
        let (held, most, refused) = (held.clone(), most.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut granted = 0;
            let mut attempt = 0;
            while granted < ROUNDS {
                attempt += 1;
                let id = format!("c{n}-{attempt}");
                let r = call(&mut c, req("shared", vec![acquire("pool", "p", &id)])).await;
                if overall(&r) != Code::Ok {
                    refused.fetch_add(1, Ordering::Relaxed);
                    // Its release is stray, as Envoy's would be.
                    call(&mut c, req("shared", vec![release("pool", "p", &id)])).await;
                    continue;
                }
                let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1 + (attempt % 3) as u64)).await;
                // Recorded as given back before the release is even sent.
                held.fetch_sub(1, Ordering::SeqCst);
                let r = call(&mut c, req("shared", vec![release("pool", "p", &id)])).await;
                assert_eq!(overall(&r), Code::Ok);
                granted += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let took = started.elapsed();
    let most = most.load(Ordering::SeqCst);
    println!(
        "{} grants through 2 replicas in {took:?}; at most {most} held at once; {} refused",
        CLIENTS * ROUNDS,
        refused.load(Ordering::Relaxed)
    );
    assert!(most <= 5, "{most} slots held at once");
    assert_eq!(most, 5, "the clients did contend");
    let mut c = a.client().await;
    let peek = call(&mut c, req("shared", vec![desc_hits(&[("pool", "p")], 0)])).await;
    assert_eq!(peek.statuses[0].limit_remaining, 5, "every slot is free");
    for s in [&a, &b] {
        let m = s.metrics();
        assert!(
            !m.contains("sluice_fallback_decisions_total"),
            "decided without Redis: {m}"
        );
        assert!(
            m.contains("sluice_concurrency_granted_total{rule=\"shared.pool\",waited=\"true\"}"),
            "nobody waited: {m}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_one_replica_is_served_by_a_release_on_the_other() {
    let node = RedisServer::start();
    let (a, b) = replicas(&node).await;
    let mut holder = b.client().await;
    let mut latencies = Vec::new();
    for i in 0..20 {
        let value = format!("v{i}");
        let r = call(
            &mut holder,
            req("shared", vec![acquire("one", &value, "h")]),
        )
        .await;
        assert_eq!(overall(&r), Code::Ok);
        let mut waiter = a.client().await;
        let v = value.clone();
        let waiting = tokio::spawn(async move {
            let r = call(&mut waiter, req("shared", vec![acquire("one", &v, "w")])).await;
            (overall(&r), Instant::now())
        });
        wait_for(&a, "sluice_concurrency_queued{rule=\"shared.one\"} 1").await;
        let sent = Instant::now();
        call(
            &mut holder,
            req("shared", vec![release("one", &value, "h")]),
        )
        .await;
        let (code, served) = waiting.await.expect("waiter");
        assert_eq!(code, Code::Ok, "round {i}");
        latencies.push(served.saturating_duration_since(sent));
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    println!(
        "release on B -> grant on A: min {:?}, median {median:?}, max {:?} (20 rounds)",
        latencies[0],
        latencies[latencies.len() - 1]
    );
    assert!(latencies.iter().all(|l| *l < Duration::from_secs(1)));
    // The periodic retry alone (every 1 s) would give a median near 500 ms.
    assert!(median < Duration::from_millis(300), "{median:?}");
    a.stop().await;
    b.stop().await;
}
