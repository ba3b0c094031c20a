//! A connection that does not send a complete first request within `header_read_timeout_ms`
//! is closed, on both ports: one that sends nothing, half an HTTP/2 preface, or half an
//! HTTP/1 request header. A prompt client is served normally.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::http::http_get;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes`, then reads (discarding what the server sends, e.g. its SETTINGS) until the
/// server closes; returns how long that took, or `None` if it was still open after 5 s.
async fn closed_after(addr: SocketAddr, bytes: &[u8]) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_to_end)
        .await
        .ok()
        .map(|()| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_sent_connections_are_closed() {
    let s = TestServer::start(&[], &["--header-read-timeout-ms", "300"]).await;
    let half_preface: &[u8] = b"PRI * HTTP/2.0\r\n";
    let half_header: &[u8] = b"GET /healthcheck HTTP/1.1\r\nHost: loc";
    let cases = [
        ("grpc, nothing", s.addr, &b""[..]),
        ("grpc, half a preface", s.addr, half_preface),
        ("http, nothing", s.http, &b""[..]),
        ("http, half a header", s.http, half_header),
    ];
    let runs = cases
        .iter()
        .map(|(name, addr, bytes)| async move { (*name, closed_after(*addr, bytes).await) });
    for (name, took) in futures_util::future::join_all(runs).await {
        let took = took.unwrap_or_else(|| panic!("{name}: still open after 5 s"));
        // Not a speed assertion: only that it was not closed before the deadline.
        assert!(
            took >= Duration::from_millis(250),
            "{name}: closed too early ({took:?})"
        );
    }
    // A client that sends its request promptly is served.
    let r = http_get(s.http, "/healthcheck", &[])
        .await
        .expect("healthcheck");
    assert_eq!(r.status, 200, "{r:?}");
    let mut c = s.client().await;
    let r = call(&mut c, req("none", vec![desc(&[("k", "v")])])).await;
    assert_eq!(r.statuses.len(), 1);
    s.stop().await;
}
