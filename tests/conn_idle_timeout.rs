//! With no request for `idle_timeout_ms` a connection is closed, on both ports; HTTP/2
//! keep-alive PINGs do not count as activity, and a client that keeps calling keeps its
//! connection. (Own test binary: it reads the process-wide `sluice_connections_timed_out_total`.)

mod support;

use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn timed_out(s: &TestServer) -> u64 {
    s.metrics()
        .lines()
        .find_map(|l| l.strip_prefix("sluice_connections_timed_out_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_active_ones_kept() {
    let s = TestServer::start(&[], &["--idle-timeout-ms", "500", "--keepalive-ms", "100"]).await;

    // gRPC: calls every 100 ms for three idle timeouts; the connection is never closed.
    let mut c = s.client().await;
    for _ in 0..15 {
        let r = call(&mut c, req("none", vec![desc(&[("k", "v")])])).await;
        assert_eq!(r.statuses.len(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(timed_out(&s), 0, "an active connection was closed");
    // Then idle (PINGs every 100 ms keep flowing): closed after the idle timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    while timed_out(&s) < 1 {
        assert!(
            Instant::now() < deadline,
            "the idle gRPC connection was never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client reconnects and keeps working.
    let r = call(&mut c, req("none", vec![desc(&[("k", "v")])])).await;
    assert_eq!(r.statuses.len(), 1);

    // HTTP/1.1 keep-alive: answered, then closed once idle (the read sees end-of-file).
    let mut h = TcpStream::connect(s.http).await.expect("connect");
    h.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match h.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle HTTP connection was never closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    s.stop().await;
}
