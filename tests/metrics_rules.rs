//! Upstream's per-rule counters after known traffic, scraped from `/metrics`, with exact values
//! (envoyproxy/ratelimit's near/over arithmetic) and bounded labels.

mod support;

use support::*;

const RULES: &str = "
domain: mx
descriptors:
  - key: api
    rate_limit: {unit: hour, requests_per_unit: 20}
  - key: tenant
    value: acme
    descriptors:
      - key: user
        shadow_mode: true
        rate_limit: {unit: hour, requests_per_unit: 2}
  - key: ip
    detailed_metric: true
    rate_limit: {unit: hour, requests_per_unit: 5}
";

fn value(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} with {labels} in:\n{metrics}"))
}

// Multi-threaded: scraping /metrics blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_upstream_arithmetic() {
    let s = TestServer::start(&[("m.yaml", RULES)], &[]).await;
    let mut c = s.client().await;
    // 15 single hits, then one request of 7: before 15, after 22, limit 20, near threshold 16.
    for _ in 0..15 {
        call(&mut c, req("mx", vec![desc(&[("api", "a")])])).await;
    }
    call(&mut c, req("mx", vec![desc_hits(&[("api", "a")], 7)])).await;
    // Shadowed rule: 3 hits against 2 → the third is over (and shadowed).
    for _ in 0..3 {
        call(
            &mut c,
            req("mx", vec![desc(&[("tenant", "acme"), ("user", "bob")])]),
        )
        .await;
    }
    // detailed_metric: the runtime value appears in the labels.
    call(&mut c, req("mx", vec![desc(&[("ip", "10.0.0.1")])])).await;

    let m = s.metrics();
    let api = r#"domain="mx",key1="api""#;
    assert_eq!(
        value(&m, "ratelimit_service_rate_limit_total_hits", api),
        22.0
    );
    assert_eq!(
        value(&m, "ratelimit_service_rate_limit_within_limit", api),
        15.0
    );
    assert_eq!(
        value(&m, "ratelimit_service_rate_limit_near_limit", api),
        4.0
    );
    assert_eq!(
        value(&m, "ratelimit_service_rate_limit_over_limit", api),
        2.0
    );

    let user = r#"domain="mx",key1="tenant_acme",key2="user""#;
    assert_eq!(
        value(&m, "ratelimit_service_rate_limit_total_hits", user),
        3.0
    );
    assert_eq!(
        value(&m, "ratelimit_service_rate_limit_within_limit", user),
        2.0
    );
    assert_eq!(
        value(&m, "ratelimit_service_rate_limit_over_limit", user),
        1.0
    );
    assert_eq!(
        value(&m, "ratelimit_service_rate_limit_shadow_mode", user),
        1.0
    );
    assert!(
        !m.contains("bob"),
        "runtime values stay out of labels unless detailed_metric"
    );

    let ip = r#"domain="mx",key1="ip_10_0_0_1""#;
    assert_eq!(
        value(&m, "ratelimit_service_rate_limit_total_hits", ip),
        1.0
    );
    s.stop().await;
}
