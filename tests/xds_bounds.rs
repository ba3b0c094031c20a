//! Bounds on what the control plane sends: a response above `max_message_bytes` breaks the
//! stream before it is buffered and counts as a load error, a resource above the per-resource
//! cap or more resources than allowed are NACKed; the client survives each, keeps the last
//! good rules and takes the next valid config.

mod support;

use sluice::xds::proto::RateLimitUnit;
use support::xds::{any, client_config, eg_config, subscribe, XdsServer, EG_DOMAIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_is_rejected_without_harm() {
    let server = XdsServer::start().await;
    server.set("1", &[eg_config(EG_DOMAIN, 3, RateLimitUnit::Hour)]);
    let mut config = client_config(&server);
    config.max_message_bytes = 64 * 1024;
    let client = subscribe(config);
    server
        .wait_request("ACK of version 1", |r| r.is_ack() && r.version_info == "1")
        .await;

    let huge = eg_config(&"d".repeat(100 * 1024), 1, RateLimitUnit::Hour);
    server.set_raw("2", vec![any(&huge)]);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while client.counter("ratelimit_service_config_load_error") < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "oversize not counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        client.eg_limit(EG_DOMAIN),
        Some(3),
        "the rules in force stay"
    );
    // The client reconnects (as version 1) and takes the next valid config.
    server.set("3", &[eg_config(EG_DOMAIN, 5, RateLimitUnit::Hour)]);
    client.wait_limit(EG_DOMAIN, Some(5)).await;
    let resumed = server
        .wait_request("resubscription after the broken stream", |r| r.stream > 1)
        .await;
    assert_eq!(resumed.version_info, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_resources_and_too_many_resources_are_nacked() {
    let server = XdsServer::start().await;
    server.set("1", &[eg_config(EG_DOMAIN, 3, RateLimitUnit::Hour)]);
    let mut config = client_config(&server);
    config.max_resource_bytes = 2000;
    config.max_resources = 2;
    let client = subscribe(config);
    server
        .wait_request("ACK of version 1", |r| r.is_ack() && r.version_info == "1")
        .await;

    server.set("2", &[eg_config(&"d".repeat(3000), 1, RateLimitUnit::Hour)]);
    let nack = server
        .wait_request("NACK of the big resource", |r| r.is_nack())
        .await;
    let reason = nack.error_detail.expect("reason");
    assert!(reason.contains("xds:resources[0]"), "{reason}");
    assert!(
        reason.contains("larger than rules_max_file_bytes (2000 bytes)"),
        "{reason}"
    );

    let three: Vec<_> = (0..3)
        .map(|i| eg_config(&format!("d{i}"), 1, RateLimitUnit::Hour))
        .collect();
    server.set("3", &three);
    server
        .wait_request("NACK of too many resources", |r| {
            r.error_detail
                .as_deref()
                .is_some_and(|e| e.contains("3 resources, more than the 2 allowed"))
        })
        .await;
    assert_eq!(client.eg_limit(EG_DOMAIN), Some(3));
    assert_eq!(client.counter("ratelimit_service_config_load_error"), 2);
}
