//! Connection deadlines over TLS: clients that connect and never finish a handshake hold
//! neither the accept loop nor their connection past the first-request deadline, and a TLS
//! connection with calls in flight is tracked like a plaintext one (busy connections are
//! kept, idle ones closed).

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::time::{Duration, Instant};
use support::certs::envoy_gateway_certs;
use support::tls::{ask, connect_and_ask, counter, endpoint, server_tls, start_tls, CALL_LIMIT};
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_neither_block_others_nor_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, leaf) = envoy_gateway_certs(dir.path());
    // The handshake deadline (the first-request deadline) is far beyond CALL_LIMIT: if a
    // silent client held the accept loop, the TLS call below could not be answered in time.
    let s = start_tls(server_tls(&leaf), &["--header-read-timeout-ms", "60000"]).await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(s.addr).await.expect("connect"));
    }
    let r = connect_and_ask(endpoint(s.addr, &ca.cert, None))
        .await
        .expect("a TLS client is served while silent ones are connected");
    assert_eq!(overall(&r), Code::Ok);
    s.stop().await;

    // With a short deadline a silent client is closed and counted.
    let s = start_tls(server_tls(&leaf), &["--header-read-timeout-ms", "300"]).await;
    let mut quiet = TcpStream::connect(s.addr).await.expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(CALL_LIMIT, quiet.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a silent client was not disconnected: {read:?}"
    );
    let deadline = Instant::now() + CALL_LIMIT;
    while counter(&s, "sluice_tls_handshake_errors_total") < 1 {
        assert!(
            Instant::now() < deadline,
            "the timed-out handshake was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_tls_keep_a_connection_and_idleness_closes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, leaf) = envoy_gateway_certs(dir.path());
    // Both deadlines short: were the calls not seen through the TLS layer, the connection
    // would be closed at the first-request deadline while calls keep coming.
    let s = start_tls(
        server_tls(&leaf),
        &[
            "--header-read-timeout-ms",
            "400",
            "--idle-timeout-ms",
            "400",
        ],
    )
    .await;
    let channel = endpoint(s.addr, &ca.cert, None)
        .connect()
        .await
        .expect("connect");
    for _ in 0..15 {
        let r = ask(channel.clone()).await.expect("call");
        assert_eq!(overall(&r), Code::Ok);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        counter(&s, "sluice_connections_timed_out_total"),
        0,
        "a TLS connection with calls was closed"
    );
    let deadline = Instant::now() + CALL_LIMIT;
    while counter(&s, "sluice_connections_timed_out_total") < 1 {
        assert!(
            Instant::now() < deadline,
            "the idle TLS connection was never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}
