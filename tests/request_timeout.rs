//! A request that stalls after its headers — a gRPC stream whose message never comes, an HTTP
//! body that stops halfway — is ended at `--request-timeout-ms`, so a client cannot hold
//! streams (and what they buffered) open for ever; prompt clients are unaffected.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::time::Duration;
use support::raw_grpc::RawCodec;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codegen::http::uri::PathAndQuery;

const RULES: &str = "
domain: t
descriptors:
  - {key: k, rate_limit: {unit: hour, requests_per_unit: 100}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_requests_are_ended_at_the_request_timeout() {
    let s = TestServer::start(&[("t.yaml", RULES)], &["--request-timeout-ms", "300"]).await;

    // gRPC: the request stream is open but its message never arrives.
    let channel = s.channel().await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let stalled = tonic::Request::new(futures_util::stream::pending::<Vec<u8>>());
    let path =
        PathAndQuery::from_static("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit");
    let ended = tokio::time::timeout(
        Duration::from_secs(5),
        grpc.client_streaming(stalled, path, RawCodec),
    )
    .await
    .expect("the server ended the stalled call");
    assert!(ended.is_err(), "{ended:?}");

    // HTTP: a /json body that stops halfway gets 408.
    let mut tcp = tokio::net::TcpStream::connect(s.http)
        .await
        .expect("connect");
    tcp.write_all(
        b"POST /json HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"domain\":",
    )
    .await
    .expect("write");
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer))
        .await
        .expect("answered before the client finished")
        .expect("read");
    let head = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");

    // A prompt client is unaffected.
    let mut c = s.client().await;
    let r = call(&mut c, req("t", vec![desc(&[("k", "v")])])).await;
    assert_eq!(overall(&r), Code::Ok);
    s.stop().await;
}
