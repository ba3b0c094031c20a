//! ShouldRateLimit over TLS with each key encoding a server may be given — RSA PKCS#1 (what
//! Envoy Gateway writes), PKCS#8 and EC SEC1 — and a plaintext client refused on the TLS port.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use support::certs::{envoy_gateway_certs, Ca, KeyKind};
use support::tls::{ask, connect_and_ask, counter, endpoint, server_tls, start_tls};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_encoding_serves_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "ca", "envoy-gateway");
    for (name, kind) in [
        ("pkcs1", KeyKind::RsaPkcs1),
        ("pkcs8", KeyKind::RsaPkcs8),
        ("ec", KeyKind::EcSec1),
    ] {
        let leaf = ca.leaf(name, "*", &["DNS:localhost", "IP:127.0.0.1"], kind);
        let s = start_tls(server_tls(&leaf), &[]).await;
        let r = connect_and_ask(endpoint(s.addr, &ca.cert, None))
            .await
            .unwrap_or_else(|e| panic!("{name}: call over TLS failed: {e}"));
        assert_eq!(overall(&r), Code::Ok, "{name}");
        assert_eq!(r.statuses[0].limit_remaining, 999, "{name}");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_is_refused_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, leaf) = envoy_gateway_certs(dir.path());
    let s = start_tls(server_tls(&leaf), &[]).await;

    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr))
        .expect("endpoint")
        .connect_timeout(support::tls::CALL_LIMIT);
    let refused = match plain.connect().await {
        Ok(channel) => ask(channel).await,
        Err(e) => Err(e.to_string()),
    };
    assert!(
        refused.is_err(),
        "a plaintext client was answered: {refused:?}"
    );
    // The server saw a failed handshake (not some other failure of the client).
    let deadline = std::time::Instant::now() + support::tls::CALL_LIMIT;
    while counter(&s, "sluice_tls_handshake_errors_total") < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no handshake error counted:\n{}",
            s.metrics()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The port still serves TLS clients.
    let r = connect_and_ask(endpoint(s.addr, &ca.cert, None))
        .await
        .expect("TLS call after a plaintext one");
    assert_eq!(overall(&r), Code::Ok);
    s.stop().await;
}
