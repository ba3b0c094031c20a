//! A FIFO and a symlink to `/dev/zero` dropped into the rule directory of a running sluice
//! neither stall it nor keep it alive: gRPC and `/healthcheck` keep answering over several
//! poll periods, a good change made afterwards is still picked up, and SIGTERM still ends the
//! process within 10 s.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use std::time::{Duration, Instant};
use support::http::http_get;
use support::process::SluiceProcess;
use support::*;

fn rules(limit: u32) -> String {
    format!("domain: sf\ndescriptors:\n  - {{key: k, rate_limit: {{unit: hour, requests_per_unit: {limit}}}}}\n")
}

/// The limit ShouldRateLimit reports, within 2 s.
async fn limit(c: &mut RateLimitServiceClient<tonic::transport::Channel>) -> Option<u32> {
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        c.should_rate_limit(req("sf", vec![desc_hits(&[("k", "v")], 0)])),
    )
    .await
    .expect("ShouldRateLimit answers within 2 s")
    .expect("ShouldRateLimit succeeds")
    .into_inner();
    r.statuses[0]
        .current_limit
        .as_ref()
        .map(|l| l.requests_per_unit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_and_dev_zero_in_the_rule_dir_stall_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rl.yaml"), rules(3)).expect("write");
    let root = dir.path().to_string_lossy().to_string();
    let mut s = SluiceProcess::start(&["--rules", &root, "--rules-poll-ms", "100"]);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut c = RateLimitServiceClient::new(channel);
    assert_eq!(limit(&mut c).await, Some(3));

    let made = std::process::Command::new("mkfifo")
        .arg(dir.path().join("p.yaml"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("z.yaml")).expect("symlink");

    // Ten poll periods: every call answers, and the old rules stay.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(limit(&mut c).await, Some(3));
        let health = tokio::time::timeout(
            Duration::from_secs(2),
            http_get(s.http, "/healthcheck", &[]),
        )
        .await
        .expect("/healthcheck answers within 2 s")
        .expect("/healthcheck");
        assert_eq!(health.status, 200, "{health:?}");
    }

    // A good change is still picked up by the poller.
    std::fs::write(dir.path().join("rl.yaml"), rules(7)).expect("edit");
    let deadline = Instant::now() + Duration::from_secs(5);
    while limit(&mut c).await != Some(7) {
        assert!(
            Instant::now() < deadline,
            "the good change was never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        s.log().contains("not a regular file"),
        "the special files are reported: {}",
        s.log()
    );

    drop(c);
    let exited = tokio::task::block_in_place(|| s.terminate_within(Duration::from_secs(10)));
    assert!(exited, "sluice must exit within 10 s of SIGTERM");
}
