//! sluice with `--config-type grpc_xds_sotw`, fed by the test xDS server: ShouldRateLimit
//! follows pushed configs and `/rlconfig` shows them; with
//! `--force-start-without-initial-config` it serves at once and answers `UNKNOWN` "no rate
//! limit configuration loaded" until the first config, and without it start-up waits for one.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use sluice::xds::proto::RateLimitUnit;
use std::time::Duration;
use support::http::http_get;
use support::xds::{eg_config, eg_entries, XdsServer, EG_DOMAIN, EG_NODE_ID};
use support::{call, desc, req, summary, TestServer};

/// Flags as Envoy Gateway's environment sets them, with test-sized backoff.
fn xds_flags(server: &XdsServer, force_start: bool) -> Vec<String> {
    let mut flags = vec![
        "--config-type".to_owned(),
        "grpc_xds_sotw".to_owned(),
        "--xds-server-url".to_owned(),
        server.addr.to_string(),
        "--xds-node-id".to_owned(),
        EG_NODE_ID.to_owned(),
        "--xds-backoff-initial".to_owned(),
        "50ms".to_owned(),
        "--xds-backoff-max".to_owned(),
        "500ms".to_owned(),
    ];
    if force_start {
        flags.push("--force-start-without-initial-config".to_owned());
    }
    flags
}

/// sluice fed by `server`; its rule directory holds a broken file, which xDS mode never reads.
async fn start(server: &XdsServer, force_start: bool) -> TestServer {
    let flags = xds_flags(server, force_start);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestServer::start(&[("broken.yaml", "domain: [")], &flags).await
}

fn eg_request() -> envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest {
    req(EG_DOMAIN, vec![desc(&eg_entries())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_rate_limit_follows_pushed_configs() {
    let xds = XdsServer::start().await;
    xds.set("1", &[eg_config(EG_DOMAIN, 2, RateLimitUnit::Hour)]);
    let sluice = start(&xds, false).await;
    let mut client = sluice.client().await;

    let first = call(&mut client, eg_request()).await;
    assert_eq!(summary(&first), vec![(Code::Ok, 1, Some(2))]);
    call(&mut client, eg_request()).await;
    let third = call(&mut client, eg_request()).await;
    assert_eq!(summary(&third)[0].0, Code::OverLimit);

    let rlconfig = http_get(sluice.http, "/rlconfig", &[])
        .await
        .expect("GET /rlconfig");
    assert!(
        rlconfig.body.contains(
            "default/eg/http.httproute/default/backend/rule/0/match/0/*_httproute/default/backend/rule/0/match/0/*.rule-0-match-0_rule-0-match-0.masked_remote_address_0.0.0.0/0: unit=HOUR requests_per_unit=2"
        ),
        "{rlconfig:?}"
    );

    xds.set("2", &[eg_config(EG_DOMAIN, 50, RateLimitUnit::Minute)]);
    xds.wait_request("ACK of version 2", |r| r.is_ack() && r.version_info == "2")
        .await;
    let after = call(&mut client, eg_request()).await;
    assert_eq!(summary(&after)[0].0, Code::Ok);
    assert_eq!(summary(&after)[0].2, Some(50), "the pushed limit applies");

    // An invalid push is NACKed and the limit in force stays.
    xds.set("3", &[eg_config(EG_DOMAIN, 1, RateLimitUnit::Unknown)]);
    xds.wait_request("NACK of version 3", |r| r.is_nack()).await;
    let kept = call(&mut client, eg_request()).await;
    assert_eq!(summary(&kept)[0].2, Some(50));
    // Loads are counted in the server's own metrics.
    let metrics = http_get(sluice.http, "/metrics", &[])
        .await
        .expect("GET /metrics");
    for line in [
        "ratelimit_service_config_load_success 2",
        "ratelimit_service_config_load_error 1",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "{line}: {metrics:?}"
        );
    }
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_start_answers_unknown_until_the_first_config() {
    let xds = XdsServer::start().await;
    let sluice = start(&xds, true).await;
    let mut client = sluice.client().await;
    let status = client
        .should_rate_limit(eg_request())
        .await
        .expect_err("no config yet");
    assert_eq!(status.code(), tonic::Code::Unknown);
    assert_eq!(status.message(), "no rate limit configuration loaded");
    let metrics = http_get(sluice.http, "/metrics", &[])
        .await
        .expect("GET /metrics");
    let line = "ratelimit_service_should_rate_limit_error{err_type=\"service_error\"} 1";
    assert!(metrics.body.lines().any(|l| l == line), "{metrics:?}");
    // `/json` answers the same way (upstream's /json calls the same service).
    let json = support::http::http_request(
        sluice.http,
        "POST",
        "/json",
        &[("content-type", "application/json")],
        Some(
            r#"{"domain":"default/eg/http","descriptors":[{"entries":[{"key":"k","value":"v"}]}]}"#,
        ),
    )
    .await
    .expect("POST /json");
    assert_eq!(json.status, 500, "{json:?}");
    assert!(
        json.body.contains("no rate limit configuration loaded"),
        "{json:?}"
    );

    // An empty config is a config: the answer becomes "no limit" rather than an error.
    xds.set("1", &[]);
    xds.wait_request("ACK of version 1", |r| r.is_ack() && r.version_info == "1")
        .await;
    let open = call(&mut client, eg_request()).await;
    assert_eq!(summary(&open), vec![(Code::Ok, 0, None)]);

    xds.set("2", &[eg_config(EG_DOMAIN, 1, RateLimitUnit::Hour)]);
    xds.wait_request("ACK of version 2", |r| r.is_ack() && r.version_info == "2")
        .await;
    assert_eq!(
        summary(&call(&mut client, eg_request()).await)[0].0,
        Code::Ok
    );
    assert_eq!(
        summary(&call(&mut client, eg_request()).await)[0].0,
        Code::OverLimit
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_force_start_start_up_waits_for_the_first_config() {
    let xds = XdsServer::start().await;
    let flags = xds_flags(&xds, false);
    let starting = tokio::spawn(async move {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        TestServer::start(&[], &flags).await
    });
    xds.wait_request("the subscription", |r| r.version_info.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!starting.is_finished(), "start-up must wait for a config");

    xds.set("1", &[eg_config(EG_DOMAIN, 1, RateLimitUnit::Hour)]);
    let sluice = tokio::time::timeout(Duration::from_secs(15), starting)
        .await
        .expect("start-up completes once a config arrives")
        .expect("start task");
    let mut client = sluice.client().await;
    assert_eq!(
        summary(&call(&mut client, eg_request()).await),
        vec![(Code::Ok, 0, Some(1))]
    );
    sluice.stop().await;
}
