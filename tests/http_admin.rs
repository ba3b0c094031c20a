//! The HTTP admin port answers `/healthcheck` and serves Prometheus `/metrics`.

mod support;

use std::io::{Read, Write};
use support::*;

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect admin port");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    body
}

// Multi-threaded: the blocking HTTP client must not stall the server's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_and_metrics() {
    let rules =
        "domain: d\ndescriptors:\n  - {key: k, rate_limit: {unit: second, requests_per_unit: 5}}\n";
    let s = TestServer::start(&[("d.yaml", rules)], &["--memory-max-keys", "64"]).await;
    let health = get(s.http, "/healthcheck");
    assert!(
        health.starts_with("HTTP/1.0 200") && health.ends_with("OK"),
        "{health}"
    );
    // Fill the memory store beyond its cap so a metric is recorded.
    let mut c = s.client().await;
    for i in 0..500 {
        call(&mut c, req("d", vec![desc(&[("k", &i.to_string())])])).await;
    }
    let config = get(s.http, "/rlconfig");
    assert!(
        config.ends_with(
            "d.k: unit=SECOND requests_per_unit=5, shadow_mode: false, quota_mode: false\n"
        ),
        "{config}"
    );
    let metrics = get(s.http, "/metrics");
    assert!(metrics.starts_with("HTTP/1.0 200"), "{metrics}");
    assert!(
        metrics.contains("sluice_memory_store_full_total"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn healthcheck_fails_once_shutdown_begins() {
    let rules =
        "domain: d\ndescriptors:\n  - {key: k, rate_limit: {unit: second, requests_per_unit: 5}}\n";
    let mut s = TestServer::start(&[("d.yaml", rules)], &["--shutdown-delay-ms", "3000"]).await;
    let up = support::http::request(s.http, "GET", "/healthcheck", None, None).await;
    assert_eq!((up.status, up.body.as_str()), (200, "OK"));
    s.begin_shutdown();
    // Shutdown is asynchronous: poll (bounded) until the admin port reports it.
    let mut last = up;
    for _ in 0..100 {
        last = support::http::request(s.http, "GET", "/healthcheck", None, None).await;
        if last.status != 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!((last.status, last.body.as_str()), (500, "draining"));
    // gRPC still answers during the delay, so in-flight traffic drains.
    let mut c = s.client().await;
    call(&mut c, req("d", vec![desc(&[("k", "v")])])).await;
    s.stop().await;
}
