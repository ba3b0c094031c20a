//! The control plane goes away and comes back on the same port (as Envoy Gateway restarting,
//! its version counter back at 1): the rules in force stay meanwhile, the client reconnects
//! with backoff, its first request on the new stream carries the last ACKed version, and it
//! takes the restarted server's config.

mod support;

use sluice::xds::proto::RateLimitUnit;
use support::xds::{eg_config, subscribed_at_v1, EG_DOMAIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_resumes_from_the_last_acked_version() {
    let (mut server, client) = subscribed_at_v1(3).await;
    server.set("2", &[eg_config(EG_DOMAIN, 4, RateLimitUnit::Hour)]);
    server
        .wait_request("ACK of version 2", |r| r.is_ack() && r.version_info == "2")
        .await;
    let first_stream = server.requests()[0].stream;

    server.stop().await;
    // Nothing listens now: dials fail and are retried; the rules stay.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(client.eg_limit(EG_DOMAIN), Some(4));

    // Restarted with a fresh counter, as Envoy Gateway after a restart.
    server.set("1", &[eg_config(EG_DOMAIN, 6, RateLimitUnit::Hour)]);
    server.restart().await;
    let resumed = server
        .wait_request("first request of a new stream", |r| r.stream > first_stream)
        .await;
    assert_eq!(resumed.version_info, "2", "the last ACKed version");
    assert_eq!(resumed.response_nonce, "", "no nonce on a new stream");
    client.wait_limit(EG_DOMAIN, Some(6)).await;
    server
        .wait_request("ACK of the restarted server's version", |r| {
            r.stream > first_stream && r.is_ack() && r.version_info == "1"
        })
        .await;
    assert_eq!(client.counter("ratelimit_service_config_load_success"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_already_at_the_acked_version_sends_nothing_again() {
    let (mut server, client) = subscribed_at_v1(3).await;
    server.restart().await;
    server
        .wait_request("resubscription at version 1", |r| {
            r.stream > 1 && r.version_info == "1" && r.response_nonce.is_empty()
        })
        .await;
    // The watch stays open: a later push still arrives on the new stream.
    server.set("2", &[eg_config(EG_DOMAIN, 8, RateLimitUnit::Hour)]);
    client.wait_limit(EG_DOMAIN, Some(8)).await;
    assert_eq!(
        client.counter("ratelimit_service_config_load_success"),
        2,
        "the resubscription itself reloaded nothing"
    );
}
