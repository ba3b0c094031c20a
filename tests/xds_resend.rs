//! Resends are harmless: the same version pushed again is ACKed again without swapping the
//! rules or counting a reload, and a rejected config the control plane keeps resending (as a
//! go-control-plane cache does after each NACK) is NACKed each time but counted once.

mod support;

use sluice::xds::proto::RateLimitUnit;
use std::sync::Arc;
use support::xds::{eg_config, subscribed_at_v1, EG_DOMAIN};

const SUCCESS: &str = "ratelimit_service_config_load_success";
const ERROR: &str = "ratelimit_service_config_load_error";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_version_resent_changes_nothing() {
    let (server, client) = subscribed_at_v1(3).await;
    let applied = client.rules.load_full();

    for n in 2..=4 {
        server.resend();
        let acks = || {
            server
                .requests()
                .iter()
                .filter(|r| r.is_ack() && r.version_info == "1")
                .count()
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        while acks() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "resend {n} not ACKed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    assert!(
        Arc::ptr_eq(&applied, &client.rules.load_full()),
        "a resend does not swap the rules"
    );
    assert_eq!(client.counter(SUCCESS), 1, "a resend is not a reload");
    assert_eq!(client.counter(ERROR), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_config_resent_is_nacked_again_but_counted_once() {
    let (server, client) = subscribed_at_v1(3).await;

    server.set("2", &[eg_config(EG_DOMAIN, 3, RateLimitUnit::Unknown)]);
    // The server answers each NACK (version "1" ≠ "2") with the same snapshot at once.
    let nacks = || server.requests().iter().filter(|r| r.is_nack()).count();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while nacks() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "NACKs: {}", nacks());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let all = server.requests();
    let reasons: Vec<_> = all.iter().filter_map(|r| r.error_detail.clone()).collect();
    assert!(reasons.iter().all(|r| r == &reasons[0]), "{reasons:?}");
    assert!(all
        .iter()
        .filter(|r| r.is_nack())
        .all(|r| r.version_info == "1"));
    assert_eq!(client.counter(ERROR), 1, "one rejected config, one error");
    assert_eq!(client.counter(SUCCESS), 1);
    assert_eq!(client.eg_limit(EG_DOMAIN), Some(3));
}
