//! The memory store is bounded in bytes, not only in keys: distinct 1 MB descriptor values
//! (allowed here by a raised `--max-value-bytes`) against a small key cap leave the process's
//! memory where it was, because long values are hashed into fixed-size counter keys.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use support::process::SluiceProcess;
use support::*;

const RULES: &str = "
domain: big
descriptors:
  - key: v
    rate_limit: {unit: hour, requests_per_unit: 10}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabyte_values_cost_a_bounded_key_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("big.yaml"), RULES).expect("write rules");
    let rules = dir.path().to_str().expect("utf-8 path");
    let p = SluiceProcess::start(&[
        "--rules",
        rules,
        "--memory-max-keys",
        "100",
        "--max-value-bytes",
        "2000000",
        "--max-request-bytes",
        "3000000",
    ]);
    let mut c = RateLimitServiceClient::connect(format!("http://{}", p.grpc))
        .await
        .expect("connect")
        .max_encoding_message_size(4 << 20);
    let base = "x".repeat(1 << 20);
    let send = |c: &mut RateLimitServiceClient<_>, i: usize| {
        let value = format!("{i:06}{base}");
        let r = req("big", vec![desc(&[("v", &value)])]);
        let mut c = c.clone();
        async move { c.should_rate_limit(r).await.map(|r| r.into_inner()) }
    };
    // Warm up (buffers, allocator arenas), then measure what 150 more distinct values cost.
    for i in 0..20 {
        send(&mut c, i).await.expect("answered");
    }
    let before = p.rss_kib();
    for i in 20..170 {
        let r = send(&mut c, i).await.expect("answered");
        assert_eq!(
            overall(&r),
            envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code::Ok
        );
    }
    let after = p.rss_kib();
    // Unbounded, 150 values × 1 MiB would keep ~150 MiB; bounded keys cost ~300 B each.
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // The same long value twice is the same counter (hashing is stable; value 0 was stored
    // before the cap was reached — later ones were decided on a fresh state, uncounted).
    let r = send(&mut c, 0).await.expect("answered");
    assert_eq!(r.statuses[0].limit_remaining, 8);
}
