//! `--max-connections` bounds the open connections of each port: at the cap a port stops
//! accepting (a client waits in the kernel's backlog, unanswered) until a connection closes,
//! so a flood of idle connections cannot grow the process without end.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RULES: &str = "
domain: c
descriptors:
  - {key: k, rate_limit: {unit: hour, requests_per_unit: 100}}
";

async fn grpc_call(addr: std::net::SocketAddr) -> Option<Code> {
    let call = async {
        let mut c = RateLimitServiceClient::connect(format!("http://{addr}"))
            .await
            .ok()?;
        let r = call(&mut c, req("c", vec![desc(&[("k", "v")])])).await;
        Some(overall(&r))
    };
    tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .ok()
        .flatten()
}

async fn healthcheck(addr: std::net::SocketAddr) -> Option<String> {
    let check = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"GET /healthcheck HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut buf = vec![0u8; 128];
        let n = tcp.read(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(1), check)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_port_accepts_at_most_max_connections() {
    let s = TestServer::start(
        &[("c.yaml", RULES)],
        &[
            "--max-connections",
            "2",
            "--header-read-timeout-ms",
            "60000",
        ],
    )
    .await;
    // Two idle connections fill each port.
    let mut idle = Vec::new();
    for addr in [s.addr, s.addr, s.http, s.http] {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        grpc_call(s.addr).await,
        None,
        "a third gRPC connection waits"
    );
    assert_eq!(
        healthcheck(s.http).await,
        None,
        "a third HTTP connection waits"
    );

    // Closing them makes room.
    drop(idle);
    let mut served = None;
    for _ in 0..20 {
        served = grpc_call(s.addr).await;
        if served.is_some() {
            break;
        }
    }
    assert_eq!(served, Some(Code::Ok));
    let health = healthcheck(s.http).await.unwrap_or_default();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    s.stop().await;
}
