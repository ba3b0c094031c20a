//! End to end, as Envoy Gateway wires its rate-limit service:
//!
//! - a test xDS server stands in for Envoy Gateway: ADS over mutual TLS 1.3, node id
//!   `envoy-ratelimit`, one `RateLimitConfig` per domain (`default/eg/http`) with the descriptor
//!   chain Envoy Gateway generates (route → `rule-0-match-0` → `masked_remote_address`);
//! - sluice is started as `ratelimit` (the image's `/bin/ratelimit`) with Envoy Gateway's exact
//!   environment (envoy-gateway.md §1; only paths, loopback ports and the backoff shortened),
//!   certificates shaped like Envoy Gateway's (CA `envoy-gateway`, RSA PKCS#1 keys);
//! - a real Envoy 1.40 runs `deploy/envoy/envoy-gateway.yaml`: `ratelimit_cluster` over TLS
//!   with a client certificate, rules in `RateLimitPerRoute`, X-RateLimit headers (draft 03).
//!
//! Then: 200s then 429 with `X-RateLimit-*`; a pushed change is followed; an invalid push is
//! NACKed and the old limit stays; the xDS server restarts (its versions start at 1 again) and
//! sluice reconnects, carrying its last ACKed version; metrics and `/rlconfig` answer where
//! Envoy Gateway reads them.

mod support;

use sluice::xds::proto::RateLimitUnit;
use std::net::SocketAddr;
use std::process::Command;
use support::certs::{envoy_gateway_certs, KeyKind};
use support::envoy::{
    http_get, http_request, listener_addr, render_template, start_envoy, start_upstream, wait_for,
    with_timeout, Proc, SLUICE,
};
use support::redis::RedisServer;
use support::xds::{eg_config, XdsServer, EG_DOMAIN};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One request through Envoy as the matching client (`x-user-id: one`): status and the
/// `x-ratelimit-limit` header.
async fn hit(listener: SocketAddr) -> (u16, Option<String>, Option<String>) {
    let r = http_request(listener, "GET", "/", &[("x-user-id", "one")], None)
        .await
        .expect("request through Envoy");
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    (
        r.status,
        header("x-ratelimit-limit"),
        header("x-ratelimit-remaining"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_gateway_wiring() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    // /certs of the `envoy-rate-limit` Secret (ca.crt, tls.crt, tls.key), and Envoy Gateway's
    // own serving certificate for its xDS port, both from the `envoy-gateway` CA.
    let (ca, _) = envoy_gateway_certs(&certs);
    let eg = ca.leaf(
        "envoy-gateway",
        "envoy-gateway",
        &[
            "DNS:envoy-gateway",
            "DNS:envoy-gateway.envoy-gateway-system",
            "DNS:envoy-gateway.envoy-gateway-system.svc",
        ],
        KeyKind::RsaPkcs1,
    );
    let mut xds = XdsServer::start_tls(&ca.cert, &eg.cert, &eg.key).await;
    xds.set("1", &[eg_config(EG_DOMAIN, 3, RateLimitUnit::Hour)]);
    let redis = RedisServer::start();

    let bin = dir.join("ratelimit");
    std::os::unix::fs::symlink(SLUICE, &bin).expect("symlink");
    let (http_port, grpc_port, debug_port, metrics_port) =
        (free_port(), free_port(), free_port(), free_port());
    let c = |f: &str| certs.join(f).to_string_lossy().to_string();
    let env: Vec<(&str, String)> = vec![
        // Envoy Gateway's environment, in its order.
        ("RUNTIME_ROOT", "/data".into()),
        ("RUNTIME_SUBDIRECTORY", "ratelimit".into()),
        ("RUNTIME_IGNOREDOTFILES", "true".into()),
        ("RUNTIME_WATCH_ROOT", "false".into()),
        ("LOG_LEVEL", "info".into()),
        ("USE_STATSD", "false".into()),
        ("CONFIG_TYPE", "GRPC_XDS_SOTW".into()),
        ("CONFIG_GRPC_XDS_SERVER_URL", xds.addr.to_string()),
        ("CONFIG_GRPC_XDS_NODE_ID", "envoy-ratelimit".into()),
        ("GRPC_SERVER_USE_TLS", "true".into()),
        ("GRPC_SERVER_TLS_CERT", c("tls.crt")),
        ("GRPC_SERVER_TLS_KEY", c("tls.key")),
        ("GRPC_SERVER_TLS_CA_CERT", c("ca.crt")),
        ("CONFIG_GRPC_XDS_SERVER_USE_TLS", "true".into()),
        ("CONFIG_GRPC_XDS_CLIENT_TLS_CERT", c("tls.crt")),
        ("CONFIG_GRPC_XDS_CLIENT_TLS_KEY", c("tls.key")),
        ("CONFIG_GRPC_XDS_SERVER_TLS_CACERT", c("ca.crt")),
        ("FORCE_START_WITHOUT_INITIAL_CONFIG", "true".into()),
        ("REDIS_SOCKET_TYPE", "tcp".into()),
        (
            "REDIS_URL",
            redis.url().trim_start_matches("redis://").to_owned(),
        ),
        ("USE_PROMETHEUS", "true".into()),
        ("PROMETHEUS_ADDR", format!("127.0.0.1:{metrics_port}")),
        (
            "PROMETHEUS_MAPPER_YAML",
            "/etc/statsd-exporter/conf.yaml".into(),
        ),
        // The test's own: loopback listeners, the server's name (the URL here is an IP
        // address, Envoy Gateway's is `envoy-gateway:18001`), a short reconnect backoff.
        ("HOST", "127.0.0.1".into()),
        ("PORT", http_port.to_string()),
        ("GRPC_HOST", "127.0.0.1".into()),
        ("GRPC_PORT", grpc_port.to_string()),
        ("DEBUG_HOST", "127.0.0.1".into()),
        ("DEBUG_PORT", debug_port.to_string()),
        ("CONFIG_GRPC_XDS_SERVER_TLS_SAN", "envoy-gateway".into()),
        ("XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "200ms".into()),
        ("XDS_CLIENT_BACKOFF_MAX_INTERVAL", "1s".into()),
    ];
    let mut cmd = Command::new(&bin);
    cmd.env_clear().current_dir(dir);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut sluice = Proc::spawn("ratelimit", &mut cmd, dir);
    let log = dir.join("ratelimit.log");
    wait_for("ratelimit to listen", &mut [&mut sluice], || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains("listening grpc=").then_some(()) }
    })
    .await;
    let first = xds
        .wait_request("the ACK of version 1", |r| {
            r.is_ack() && r.version_info == "1"
        })
        .await;
    assert_eq!(first.node_id, "envoy-ratelimit");

    let (mut upstream, backend) = start_upstream(dir).await;
    let config = render_template(
        "deploy/envoy/envoy-gateway.yaml",
        &[
            ("LISTEN_PORT", "0".into()),
            ("ADMIN_PORT", "0".into()),
            ("RATELIMIT_PORT", grpc_port.to_string()),
            ("BACKEND_PORT", backend.port().to_string()),
            ("CERT_DIR", certs.to_string_lossy().to_string()),
        ],
    );
    // Decisions, not latency: a loaded machine must not turn a 429 into a fail-open 200.
    let config = with_timeout(&config, "5s");
    let (mut envoy, admin) = start_envoy(dir, &config, &mut [&mut sluice, &mut upstream]).await;
    let listener = listener_addr(admin, "default/eg/http")
        .await
        .expect("listener");

    // 3 per hour: 200, 200, 200, then 429, with draft-03 headers.
    for i in 0..3 {
        let (status, limit, _) = hit(listener).await;
        assert_eq!(status, 200, "request {i}\n{}", sluice.log());
        assert_eq!(limit.as_deref(), Some("3, 3;w=3600"), "request {i}");
    }
    let (status, limit, remaining) = hit(listener).await;
    assert_eq!(status, 429, "the 4th request\n{}", sluice.log());
    assert_eq!(limit.as_deref(), Some("3, 3;w=3600"));
    assert_eq!(remaining.as_deref(), Some("0"));
    // A client the rule does not match sends no descriptor: never limited.
    let other = http_request(listener, "GET", "/", &[("x-user-id", "two")], None)
        .await
        .expect("request");
    assert_eq!(other.status, 200);

    // A pushed change is followed.
    xds.set("2", &[eg_config(EG_DOMAIN, 10, RateLimitUnit::Hour)]);
    xds.wait_request("the ACK of version 2", |r| {
        r.is_ack() && r.version_info == "2"
    })
    .await;
    let (status, limit, _) = hit(listener).await;
    assert_eq!((status, limit.as_deref()), (200, Some("10, 10;w=3600")));

    // An invalid push (the same domain twice) is NACKed; the old limit stays.
    xds.set(
        "3",
        &[
            eg_config(EG_DOMAIN, 1, RateLimitUnit::Hour),
            eg_config(EG_DOMAIN, 1, RateLimitUnit::Hour),
        ],
    );
    let nack = xds
        .wait_request("the NACK of version 3", |r| r.is_nack())
        .await;
    assert_eq!(
        nack.version_info, "2",
        "a NACK carries the last good version"
    );
    assert!(
        nack.error_detail
            .as_deref()
            .is_some_and(|d| d.contains(EG_DOMAIN)),
        "{nack:?}"
    );
    let (status, limit, _) = hit(listener).await;
    assert_eq!((status, limit.as_deref()), (200, Some("10, 10;w=3600")));

    // Envoy Gateway restarts: versions start at 1 again. sluice reconnects with its last ACKed
    // version and takes the new snapshot.
    xds.stop().await;
    xds.set("1", &[eg_config(EG_DOMAIN, 20, RateLimitUnit::Hour)]);
    let streams_before = xds.requests().iter().map(|r| r.stream).max().unwrap_or(0);
    xds.restart().await;
    let resumed = xds
        .wait_request("the first request after the restart", |r| {
            r.stream > streams_before
        })
        .await;
    assert_eq!(resumed.version_info, "2", "{resumed:?}");
    xds.wait_request("the ACK after the restart", |r| {
        r.stream > streams_before && r.is_ack() && r.version_info == "1"
    })
    .await;
    let (status, limit, _) = hit(listener).await;
    assert_eq!((status, limit.as_deref()), (200, Some("20, 20;w=3600")));

    // Where Envoy Gateway reads metrics and egctl reads the rules.
    let metrics_addr: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().expect("addr");
    let metrics = http_get(metrics_addr, "/metrics", &[])
        .await
        .expect("metrics");
    assert_eq!(metrics.status, 200);
    for series in [
        "ratelimit_service_rate_limit_over_limit{domain=\"default/eg/http\"",
        "ratelimit_service_rate_limit_total_hits{domain=\"default/eg/http\"",
        "ratelimit_service_config_load_success",
        "ratelimit_service_config_load_error",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.body.contains(series),
            "{series} in\n{}",
            metrics.body
        );
    }
    let debug: SocketAddr = format!("127.0.0.1:{debug_port}").parse().expect("addr");
    let rl = http_get(debug, "/rlconfig", &[]).await.expect("rlconfig");
    assert_eq!(rl.status, 200);
    assert!(rl.body.contains("default/eg/http"), "{}", rl.body);
    envoy.kill();
}
