//! Fairness of the waiting room over gRPC (memory store): a pool of 4 slots, tenant A greedy
//! (40 waiting), B and C with 10 each, weights 1:1:1. While all three wait, each gets a third
//! of the grants (within ±10 % of the weights); then weights 2:1:1 give A half.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::collections::HashMap;
use std::time::Duration;
use support::slot_cases::{pool_slot, wait_for};
use support::*;

fn rules(weights: &str) -> String {
    format!(
        "domain: fair\ndescriptors:\n  - key: pool\n    concurrency: {{max: 4, queue: 100, queue_timeout: 60s, fair_by: tenant, lease_id: request_id, weights: {weights}}}\n"
    )
}

/// Queues `waiters` per tenant behind 4 held slots, then frees one slot per grant, `grants`
/// times; returns the grants per tenant.
async fn shares(weights: &str, waiters: &[(&str, usize)], grants: usize) -> HashMap<String, usize> {
    let s = TestServer::start(&[("f.yaml", &rules(weights))], &[]).await;
    let mut c = s.client().await;
    for i in 0..4 {
        let r = call(
            &mut c,
            req("fair", vec![pool_slot("holder", &format!("h{i}"), false)]),
        )
        .await;
        assert_eq!(overall(&r), Code::Ok);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    let mut queued = 0;
    for (tenant, n) in waiters {
        for i in 0..*n {
            let mut client = s.client().await;
            let tx = tx.clone();
            let (tenant, id) = (tenant.to_string(), format!("{tenant}{i}"));
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
                &s,
                &format!("sluice_concurrency_queued{{rule=\"fair.pool\"}} {queued}\n"),
            )
            .await;
        }
    }
    let mut holders: Vec<(String, String)> = (0..4)
        .map(|i| ("holder".to_owned(), format!("h{i}")))
        .collect();
    let mut got: HashMap<String, usize> = HashMap::new();
    for _ in 0..grants {
        let (tenant, id) = holders.remove(0);
        call(&mut c, req("fair", vec![pool_slot(&tenant, &id, true)])).await;
        let granted = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a waiter is granted")
            .expect("channel");
        *got.entry(granted.0.clone()).or_default() += 1;
        holders.push(granted);
    }
    s.stop().await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_weights_share_equally_while_all_wait() {
    let got = shares("{}", &[("A", 40), ("B", 10), ("C", 10)], 30).await;
    println!("grants of 30 with weights 1:1:1 (A 40 waiting, B 10, C 10): {got:?}");
    for t in ["A", "B", "C"] {
        let share = *got.get(t).unwrap_or(&0) as f64 / 30.0;
        assert!(
            (share - 1.0 / 3.0).abs() <= 0.1 / 3.0 + 1e-9,
            "{t}: {share} of grants: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_set_the_shares() {
    let got = shares("{A: 2, B: 1, C: 1}", &[("A", 40), ("B", 10), ("C", 10)], 20).await;
    println!("grants of 20 with weights 2:1:1: {got:?}");
    assert_eq!(got.get("A"), Some(&10), "{got:?}");
    assert_eq!(got.get("B"), Some(&5), "{got:?}");
    assert_eq!(got.get("C"), Some(&5), "{got:?}");
}
