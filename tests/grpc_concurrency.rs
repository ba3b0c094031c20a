//! 64 concurrent clients on separate connections hammering one 100/minute descriptor get
//! exactly 100 OK: the memory store never over-admits.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_limit_is_admitted() {
    let rules = "domain: hammer\ndescriptors:\n  - {key: k, rate_limit: {unit: minute, requests_per_unit: 100}}\n";
    let s = TestServer::start(&[("h.yaml", rules)], &[]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let mut c = s.client().await;
        tasks.spawn(async move {
            let (mut ok, mut over) = (0u32, 0u32);
            for _ in 0..10 {
                let r = call(&mut c, req("hammer", vec![desc(&[("k", "shared")])])).await;
                match overall(&r) {
                    Code::Ok => ok += 1,
                    _ => over += 1,
                }
            }
            (ok, over)
        });
    }
    let (mut ok, mut over) = (0, 0);
    while let Some(res) = tasks.join_next().await {
        let (o, v) = res.expect("client task");
        ok += o;
        over += v;
    }
    assert_eq!(ok, 100);
    assert_eq!(over, 540);
    s.stop().await;
}
