//! The xDS client ACKs each valid config with its version and follows pushed changes; an
//! invalid config (bad unit, duplicate key) is NACKed with the reason naming it, counted as a
//! load error, and the last good rules stay.

mod support;

use sluice::xds::proto::RateLimitUnit;
use support::xds::{
    client_config, eg_config, subscribe, subscribed_at_v1, XdsServer, EG_DOMAIN, EG_NODE_ID,
};

const SUCCESS: &str = "ratelimit_service_config_load_success";
const ERROR: &str = "ratelimit_service_config_load_error";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_configs_are_acked_and_followed() {
    let server = XdsServer::start().await;
    server.set("1", &[eg_config(EG_DOMAIN, 3, RateLimitUnit::Hour)]);
    let mut config = client_config(&server);
    config.headers = vec![("X-Token".into(), "abc".into())];
    config.node_metadata = vec![("cluster".into(), "eg".into())];
    let client = subscribe(config);

    client.wait_limit(EG_DOMAIN, Some(3)).await;
    assert!(
        *client.loaded.borrow(),
        "loaded turns true with the first config"
    );
    let ack = server
        .wait_request("ACK of version 1", |r| r.is_ack() && r.version_info == "1")
        .await;
    assert_eq!(ack.node_id, EG_NODE_ID);
    let first = &server.requests()[0];
    assert_eq!(
        first.version_info, "",
        "nothing ACKed before the first response"
    );
    assert_eq!(first.response_nonce, "");
    assert_eq!(first.type_url, sluice::xds::TYPE_URL);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.resource_names.is_empty()),
        "wildcard subscription"
    );
    assert!(
        server.stream_headers()[0].contains(&("x-token".to_owned(), "abc".to_owned())),
        "extra headers ride on the stream: {:?}",
        server.stream_headers()
    );

    // A pushed change replaces the rules; a second domain appears with it.
    server.set(
        "2",
        &[
            eg_config(EG_DOMAIN, 5, RateLimitUnit::Minute),
            eg_config("default/eg/https", 9, RateLimitUnit::Second),
        ],
    );
    client.wait_limit(EG_DOMAIN, Some(5)).await;
    assert_eq!(client.eg_limit("default/eg/https"), Some(9));
    server
        .wait_request("ACK of version 2", |r| r.is_ack() && r.version_info == "2")
        .await;

    // Zero resources: valid, no domains.
    server.set("3", &[]);
    client.wait_limit(EG_DOMAIN, None).await;
    assert!(client.rules.load().files().is_empty());
    server
        .wait_request("ACK of version 3", |r| r.is_ack() && r.version_info == "3")
        .await;
    assert_eq!(client.counter(SUCCESS), 3);
    assert_eq!(client.counter(ERROR), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_nacked_and_the_old_rules_stay() {
    let (server, client) = subscribed_at_v1(3).await;
    let before = client.rules.load_full();

    // A unit Envoy Gateway never sends.
    server.set("2", &[eg_config(EG_DOMAIN, 3, RateLimitUnit::Unknown)]);
    let nack = server
        .wait_request("NACK of version 2", |r| r.is_nack())
        .await;
    assert_eq!(
        nack.version_info, "1",
        "a NACK carries the last ACKed version"
    );
    assert!(!nack.response_nonce.is_empty());
    let reason = nack.error_detail.expect("reason");
    assert!(reason.contains("xds:default/eg/http"), "{reason}");
    assert!(
        reason.contains("descriptors[0].descriptors[0].descriptors[0].rate_limit.unit"),
        "{reason}"
    );
    assert!(
        reason.contains("invalid rate limit unit 'UNKNOWN'"),
        "{reason}"
    );
    assert_eq!(client.counter(ERROR), 1);
    assert!(
        std::sync::Arc::ptr_eq(&before, &client.rules.load_full()),
        "the last good rules stay in force"
    );
    assert_eq!(client.eg_limit(EG_DOMAIN), Some(3));

    // A composite key defined twice.
    let mut dup = eg_config(EG_DOMAIN, 4, RateLimitUnit::Hour);
    dup.descriptors.push(dup.descriptors[0].clone());
    server.set("3", &[dup]);
    let nack = server
        .wait_request("NACK mentioning the duplicate key", |r| {
            r.error_detail
                .as_deref()
                .is_some_and(|e| e.contains("duplicate descriptor composite key"))
        })
        .await;
    assert_eq!(nack.version_info, "1");
    assert!(nack
        .error_detail
        .expect("reason")
        .contains("descriptors[1]"));
    assert_eq!(client.eg_limit(EG_DOMAIN), Some(3));

    // A good config is taken again.
    server.set("4", &[eg_config(EG_DOMAIN, 7, RateLimitUnit::Day)]);
    client.wait_limit(EG_DOMAIN, Some(7)).await;
    server
        .wait_request("ACK of version 4", |r| r.is_ack() && r.version_info == "4")
        .await;
    assert_eq!(client.counter(ERROR), 2);
    assert_eq!(client.counter(SUCCESS), 2);
}
