//! How fair the waiting room is across replicas sharing slots through Redis: each replica
//! serves its own waiters fairly, and replicas race for a freed slot. A pool of 4 slots,
//! tenant A's 40 waiters on replica 1, B's and C's 10 each on replica 2, weights 1:1:1; slots
//! freed one at a time, alternately through each replica. The shares are printed (README and
//! BENCHMARKS.md quote them) and checked loosely: every tenant is served, none starves.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::collections::HashMap;
use std::time::Duration;
use support::redis::RedisServer;
use support::slot_cases::{pool_slot, wait_for};
use support::*;

const RULES: &str = "
domain: fair
descriptors:
  - key: pool
    concurrency: {max: 4, queue: 100, queue_timeout: 60s, fair_by: tenant, lease_id: request_id}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_pool_approximately_fairly() {
    let redis = RedisServer::start();
    let url = redis.url();
    let flags = [
        "--backend",
        "redis",
        "--redis-nodes",
        &url,
        "--redis-timeout",
        "2s",
    ];
    let one = TestServer::start(&[("f.yaml", RULES)], &flags).await;
    let two = TestServer::start(&[("f.yaml", RULES)], &flags).await;
    let mut c1 = one.client().await;
    let mut c2 = two.client().await;
    for i in 0..4 {
        let r = call(
            &mut c1,
            req("fair", vec![pool_slot("holder", &format!("h{i}"), false)]),
        )
        .await;
        assert_eq!(overall(&r), Code::Ok);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    for (server, waiters) in [(&one, vec![("A", 40)]), (&two, vec![("B", 10), ("C", 10)])] {
        let mut queued = 0;
        for (tenant, n) in waiters {
            for i in 0..n {
                let mut client = server.client().await;
                let tx = tx.clone();
                let (tenant, id) = (tenant.to_owned(), format!("{tenant}{i}"));
                tokio::spawn(async move {
                    let r = call(
                        &mut client,
                        req("fair", vec![pool_slot(&tenant, &id, false)]),
                    )
                    .await;
                    if overall(&r) == Code::Ok {
                        let _ = tx.send((tenant, id));
                    }
                });
                queued += 1;
                wait_for(
                    server,
                    &format!("sluice_concurrency_queued{{rule=\"fair.pool\"}} {queued}\n"),
                )
                .await;
            }
        }
    }
    let mut holders: Vec<(String, String)> = (0..4)
        .map(|i| ("holder".to_owned(), format!("h{i}")))
        .collect();
    let mut got: HashMap<String, usize> = HashMap::new();
    let grants = 30;
    for n in 0..grants {
        let (tenant, id) = holders.remove(0);
        let via = if n % 2 == 0 { &mut c1 } else { &mut c2 };
        call(via, req("fair", vec![pool_slot(&tenant, &id, true)])).await;
        let granted = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a waiter is served after a release")
            .expect("channel");
        *got.entry(granted.0.clone()).or_default() += 1;
        holders.push(granted);
    }
    let share = |t: &str| *got.get(t).unwrap_or(&0) as f64 / grants as f64;
    println!(
        "cross-replica shares of {grants} grants, weights 1:1:1 (A 40 waiting on replica 1; B 10, C 10 on replica 2): A {:.0} %, B {:.0} %, C {:.0} %",
        share("A") * 100.0,
        share("B") * 100.0,
        share("C") * 100.0
    );
    for t in ["A", "B", "C"] {
        assert!(share(t) >= 0.1, "{t} starved: {got:?}");
    }
    one.stop().await;
    two.stop().await;
}
