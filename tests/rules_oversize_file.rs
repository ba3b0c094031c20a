//! A rule file above `rules_max_file_bytes` is an invalid change: it is refused with the file
//! and the reason, counted in `ratelimit_service_config_load_error`, and the last good rules
//! keep being served.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use std::time::{Duration, Instant};
use support::process::SluiceProcess;
use support::*;

fn rules(limit: u32) -> String {
    format!("domain: big\ndescriptors:\n  - {{key: k, rate_limit: {{unit: hour, requests_per_unit: {limit}}}}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_rule_file_is_refused_and_the_old_rules_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rl.yaml");
    std::fs::write(&file, rules(3)).expect("write");
    let root = dir.path().to_string_lossy().to_string();
    let s = SluiceProcess::start(&[
        "--rules",
        &root,
        "--rules-poll-ms",
        "100",
        "--rules-max-file-bytes",
        "1000",
    ]);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut c = RateLimitServiceClient::new(channel);
    assert_eq!(current(&mut c).await, Some(3));

    // Valid YAML that would raise the limit, padded with a comment past the 1000-byte cap.
    let padded = format!("{}# {}\n", rules(9), "x".repeat(1000));
    std::fs::write(&file, padded).expect("write the big file");
    let reason = "file larger than rules_max_file_bytes (1000 bytes)";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.log().contains(reason) {
        assert!(
            Instant::now() < deadline,
            "the big file was never refused: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = s
        .log()
        .lines()
        .find(|l| l.contains(reason))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(line.contains("rl.yaml"), "names the file: {line}");
    assert_eq!(current(&mut c).await, Some(3), "the last good rules stay");
}

/// The limit ShouldRateLimit reports for the one descriptor.
async fn current(c: &mut RateLimitServiceClient<tonic::transport::Channel>) -> Option<u32> {
    let r = call(c, req("big", vec![desc_hits(&[("k", "v")], 0)])).await;
    r.statuses[0]
        .current_limit
        .as_ref()
        .map(|l| l.requests_per_unit)
}
