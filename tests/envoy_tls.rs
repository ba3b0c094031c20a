//! A real Envoy asks the real sluice binary over mutual TLS as Envoy Gateway wires it
//! (`tests/fixtures/envoy-tls.yaml`: a `ratelimit_cluster` presenting Envoy's certificate,
//! trusting the CA, no SNI, no SAN match; certificates shaped like Envoy Gateway's): the
//! decisions come back (200s, then 429 with X-RateLimit headers), over TLS, with no failed
//! handshake on either side.

mod support;

use support::certs::{envoy_gateway_certs, KeyKind};
use support::envoy::{
    envoy_stat, http_get, listener_addr, logs, render_template, start_envoy, start_sluice,
    with_timeout, Backend,
};

/// Two requests a minute for every request through Envoy.
const RULES: &str = "domain: tls\ndescriptors:\n  - key: k\n    value: v\n    rate_limit:\n      unit: minute\n      requests_per_unit: 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_gets_decisions_over_mutual_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    // `/certs` as Envoy Gateway mounts it, and Envoy's own certificate from the same CA.
    let (ca, server) = envoy_gateway_certs(&certs);
    ca.leaf("envoy", "*", &[], KeyKind::RsaPkcs1);
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(rules.join("tls.yaml"), RULES).expect("write rules");

    let backend = Backend::start().await;
    let path = |p: &std::path::Path| p.to_string_lossy().to_string();
    let (mut sluice, grpc, http) = start_sluice(
        dir.path(),
        &[
            "--rules",
            &path(&rules),
            "--grpc-tls",
            "--grpc-tls-cert",
            &path(&server.cert),
            "--grpc-tls-key",
            &path(&server.key),
            "--grpc-tls-client-ca",
            &path(&ca.cert),
        ],
    )
    .await;
    let config = render_template(
        "tests/fixtures/envoy-tls.yaml",
        &[
            ("LISTEN_PORT", "0".to_owned()),
            ("ADMIN_PORT", "0".to_owned()),
            ("SLUICE_PORT", grpc.port().to_string()),
            ("BACKEND_PORT", backend.addr.port().to_string()),
            ("CERT_DIR", path(&certs)),
        ],
    );
    // Decisions, not latency: a loaded machine must not turn a TLS set-up into a timeout.
    let config = with_timeout(&config, "2s");
    let (mut envoy, admin) = start_envoy(dir.path(), &config, &mut [&mut sluice]).await;
    let ingress = listener_addr(admin, "ingress")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[&mut envoy, &mut sluice])));

    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let r = http_get(ingress, "/", &[])
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[&mut envoy, &mut sluice])));
        statuses.push(r.status);
        last = Some(r);
    }
    let last = last.expect("three responses");
    assert_eq!(
        statuses,
        [200, 200, 429],
        "last response:\n{last:?}\n{}",
        logs(&[&mut envoy, &mut sluice])
    );
    assert_eq!(last.header("x-ratelimit-limit"), Some("2, 2;w=60"));
    assert_eq!(last.header("x-ratelimit-remaining"), Some("0"));

    // Over TLS indeed, and no handshake failed on either side.
    let handshakes = envoy_stat(admin, "cluster.ratelimit_cluster.ssl.handshake")
        .await
        .expect("envoy stat");
    assert!(handshakes >= 1, "Envoy made no TLS handshake to sluice");
    let failures = envoy_stat(admin, "cluster.ratelimit_cluster.ssl.connection_error")
        .await
        .expect("envoy stat");
    assert_eq!(failures, 0, "{}", logs(&[&mut envoy, &mut sluice]));
    let metrics = http_get(http, "/metrics", &[])
        .await
        .expect("sluice metrics");
    assert!(
        !metrics
            .body
            .lines()
            .any(|l| l.starts_with("sluice_tls_handshake_errors_total ") && !l.ends_with(" 0")),
        "sluice counted failed handshakes:\n{}",
        metrics.body
    );
}
