//! Each server records into its own metrics registry (injected, never the process-wide
//! recorder): two servers in one process do not share counters or gauges.

mod support;

use support::*;

const RULES: &str = "
domain: m
descriptors:
  - {key: k, rate_limit: {unit: hour, requests_per_unit: 100}}
";

fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_keep_their_metrics_apart() {
    let a = TestServer::start(&[("m.yaml", RULES)], &[]).await;
    let b = TestServer::start(&[("m.yaml", RULES)], &[]).await;
    let mut ca = a.client().await;
    for _ in 0..3 {
        call(&mut ca, req("m", vec![desc(&[("k", "v")])])).await;
    }
    let mut cb = b.client().await;
    call(&mut cb, req("m", vec![desc(&[("k", "w")])])).await;
    let (ma, mb) = (a.metrics(), b.metrics());
    assert_eq!(
        value(&ma, "ratelimit_service_rate_limit_total_hits"),
        3.0,
        "{ma}"
    );
    assert_eq!(
        value(&mb, "ratelimit_service_rate_limit_total_hits"),
        1.0,
        "{mb}"
    );
    assert_eq!(
        value(&ma, "sluice_request_duration_seconds_count"),
        3.0,
        "{ma}"
    );
    assert_eq!(
        value(&mb, "sluice_request_duration_seconds_count"),
        1.0,
        "{mb}"
    );
    // Gauges too: each reports its own live counters.
    assert_eq!(value(&ma, "sluice_memory_store_keys"), 1.0, "{ma}");
    assert_eq!(value(&mb, "sluice_memory_store_keys"), 1.0, "{mb}");
    a.stop().await;
    b.stop().await;
}
