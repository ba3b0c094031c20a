//! Client certificates on the gRPC port: with a client CA, a client without a certificate or
//! with one from another CA is refused and one from the CA is served; with a client SAN as
//! well, a certificate from the CA without that SAN is refused and one with it is served.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use sluice::net::tls::ServerTls;
use std::time::{Duration, Instant};
use support::certs::{envoy_gateway_certs, Ca, KeyKind};
use support::tls::{connect_and_ask, counter, endpoint, start_tls, CALL_LIMIT};
use support::*;

/// Waits until the server has counted `n` failed handshakes.
async fn handshake_errors_reach(s: &TestServer, n: u64) {
    let deadline = Instant::now() + CALL_LIMIT;
    while counter(s, "sluice_tls_handshake_errors_total") < n {
        assert!(
            Instant::now() < deadline,
            "expected {n} failed handshakes:\n{}",
            s.metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_with_a_certificate_from_the_ca_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Envoy Gateway's layout: one CA signs the server's and Envoy's certificates.
    let (ca, server) = envoy_gateway_certs(dir.path());
    let envoy = ca.leaf(
        "envoy",
        "*",
        &["DNS:*.envoy-gateway-system"],
        KeyKind::RsaPkcs1,
    );
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other_ca = Ca::new(other_dir.path(), "other", "envoy-gateway");
    let stranger = other_ca.leaf(
        "stranger",
        "*",
        &["DNS:*.envoy-gateway-system"],
        KeyKind::RsaPkcs1,
    );
    let s = start_tls(
        ServerTls {
            cert: server.cert.clone(),
            key: server.key.clone(),
            client_ca: Some(ca.cert.clone()),
            client_san: None,
        },
        &[],
    )
    .await;

    let none = connect_and_ask(endpoint(s.addr, &ca.cert, None)).await;
    assert!(none.is_err(), "a client without a certificate was served");
    handshake_errors_reach(&s, 1).await;

    let wrong = connect_and_ask(endpoint(s.addr, &ca.cert, Some(&stranger))).await;
    assert!(wrong.is_err(), "a certificate from another CA was accepted");
    handshake_errors_reach(&s, 2).await;

    let r = connect_and_ask(endpoint(s.addr, &ca.cert, Some(&envoy)))
        .await
        .expect("a certificate from the CA is served");
    assert_eq!(overall(&r), Code::Ok);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_san_is_required_when_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, server) = envoy_gateway_certs(dir.path());
    let without = ca.leaf("plain", "*", &["DNS:other.example"], KeyKind::EcSec1);
    let with_dns = ca.leaf(
        "named",
        "*",
        &["DNS:other.example", "DNS:envoy.envoy-gateway-system"],
        KeyKind::RsaPkcs8,
    );
    let with_uri = ca.leaf(
        "spiffe",
        "*",
        &["URI:spiffe://cluster.local/ns/envoy-gateway-system/sa/envoy"],
        KeyKind::RsaPkcs1,
    );
    let tls = |san: &str| ServerTls {
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_ca: Some(ca.cert.clone()),
        client_san: Some(san.to_owned()),
    };

    let s = start_tls(tls("envoy.envoy-gateway-system"), &[]).await;
    let refused = connect_and_ask(endpoint(s.addr, &ca.cert, Some(&without))).await;
    assert!(
        refused.is_err(),
        "a certificate without the SAN was accepted"
    );
    handshake_errors_reach(&s, 1).await;
    let r = connect_and_ask(endpoint(s.addr, &ca.cert, Some(&with_dns)))
        .await
        .expect("a certificate with the DNS SAN is served");
    assert_eq!(overall(&r), Code::Ok);
    s.stop().await;

    let s = start_tls(
        tls("spiffe://cluster.local/ns/envoy-gateway-system/sa/envoy"),
        &[],
    )
    .await;
    let refused = connect_and_ask(endpoint(s.addr, &ca.cert, Some(&with_dns))).await;
    assert!(
        refused.is_err(),
        "a certificate without the URI SAN was accepted"
    );
    let r = connect_and_ask(endpoint(s.addr, &ca.cert, Some(&with_uri)))
        .await
        .expect("a certificate with the URI SAN is served");
    assert_eq!(overall(&r), Code::Ok);
    s.stop().await;
}
