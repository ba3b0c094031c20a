//! mTLS to an Envoy Gateway-shaped control plane (TLS 1.3 only, ALPN h2, client certificates
//! required, RSA keys in PKCS#1): a client with EG's certificate gets its config; a client
//! without a certificate, with one from another CA, or expecting another server name is
//! refused and loads nothing.

mod support;

use sluice::xds::proto::RateLimitUnit;
use sluice::xds::XdsTls;
use std::time::Duration;
use support::certs::{envoy_gateway_certs, Ca, KeyKind};
use support::xds::{client_config, eg_config, subscribe, XdsServer, EG_DOMAIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_envoy_gateway_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, server_leaf) = envoy_gateway_certs(dir.path());
    // The rate-limit pod's certificate: same CA, CN `*`, PKCS#1 key, no ExtKeyUsage.
    let client_leaf = ca.leaf(
        "client",
        "*",
        &["DNS:*.envoy-gateway-system"],
        KeyKind::RsaPkcs1,
    );
    let server = XdsServer::start_tls(&ca.cert, &server_leaf.cert, &server_leaf.key).await;
    server.set("1", &[eg_config(EG_DOMAIN, 3, RateLimitUnit::Hour)]);

    let mut config = client_config(&server);
    config.tls = Some(XdsTls {
        cert: Some(client_leaf.cert.clone()),
        key: Some(client_leaf.key.clone()),
        ca: Some(ca.cert.clone()),
        // Dialled by address, verified by the name Envoy Gateway's certificate carries.
        san: Some("envoy-gateway".into()),
    });
    let client = subscribe(config);
    client.wait_limit(EG_DOMAIN, Some(3)).await;
    server
        .wait_request("ACK over mTLS", |r| r.is_ack() && r.version_info == "1")
        .await;
    assert_eq!(server.handshake_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_valid_certificate_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, server_leaf) = envoy_gateway_certs(dir.path());
    let good = ca.leaf("client", "*", &[], KeyKind::RsaPkcs1);
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Ca::new(other_dir.path(), "other", "someone-else");
    let foreign = other.leaf("foreign", "*", &[], KeyKind::RsaPkcs1);
    let server = XdsServer::start_tls(&ca.cert, &server_leaf.cert, &server_leaf.key).await;
    server.set("1", &[eg_config(EG_DOMAIN, 3, RateLimitUnit::Hour)]);

    let cases = [
        ("no client certificate", None, "envoy-gateway"),
        (
            "a certificate from another CA",
            Some(&foreign),
            "envoy-gateway",
        ),
        ("the wrong server name", Some(&good), "not-envoy-gateway"),
    ];
    for (what, leaf, san) in cases {
        let mut config = client_config(&server);
        config.tls = Some(XdsTls {
            cert: leaf.map(|l| l.cert.clone()),
            key: leaf.map(|l| l.key.clone()),
            ca: Some(ca.cert.clone()),
            san: Some(san.into()),
        });
        let failures = server.handshake_failures();
        let client = subscribe(config);
        // Let it try (and fail) at least twice: the refusal is not a one-off.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while server.handshake_failures() < failures + 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: no refused handshake"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            server.requests().is_empty(),
            "{what}: a request got through"
        );
        assert!(!*client.loaded.borrow(), "{what}: loaded a config");
        assert_eq!(client.eg_limit(EG_DOMAIN), None, "{what}");
    }
}
