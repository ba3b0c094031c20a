//! TLS on the gRPC port in tests: a sluice serving over TLS, and tonic clients with a chosen
//! trust anchor and optional client certificate.

use super::certs::Leaf;
use super::{desc, req, TestServer, T0};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use sluice::clock::ManualClock;
use sluice::net::tls::ServerTls;
use sluice::server::Server;
use sluice::settings::{self, Invocation};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// One rule: domain `tls`, key `k`, 1000 a minute.
pub const RULES: &str = "domain: tls\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: minute\n      requests_per_unit: 1000\n";

/// How long a test waits for one call (connect and answer) before calling it failed.
pub const CALL_LIMIT: Duration = Duration::from_secs(10);

/// Serves [`RULES`] over TLS with `tls` and extra flags.
pub async fn start_tls(tls: ServerTls, flags: &[&str]) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tls.yaml"), RULES).expect("write rules");
    let rules = dir.path().to_string_lossy().to_string();
    let mut argv = vec![
        "sluice",
        "--rules",
        &rules,
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(flags);
    let settings = match settings::parse(argv, &Default::default()).expect("valid flags") {
        Invocation::Serve(s) => *s,
        other => panic!("not a serve invocation: {other:?}"),
    };
    let clock = Arc::new(ManualClock::new(T0));
    let server = Server::bind_with_clock(settings, clock.clone())
        .await
        .expect("server binds")
        .with_grpc_tls(tls)
        .await
        .expect("TLS files load");
    let addr = server.grpc_addr().expect("local addr");
    let http = server.http_addr().expect("http addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TestServer {
        addr,
        http,
        clock,
        rules_dir: dir,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// The server side of a [`Leaf`], without client verification.
pub fn server_tls(leaf: &Leaf) -> ServerTls {
    ServerTls {
        cert: leaf.cert.clone(),
        key: leaf.key.clone(),
        client_ca: None,
        client_san: None,
    }
}

/// A TLS endpoint for `addr` trusting the CA certificate in `ca`, verifying the name
/// `localhost`, presenting `identity` if given.
pub fn endpoint(addr: SocketAddr, ca: &Path, identity: Option<&Leaf>) -> Endpoint {
    let pem = std::fs::read(ca).expect("read CA");
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        let cert = std::fs::read(&leaf.cert).expect("read client cert");
        let key = std::fs::read(&leaf.key).expect("read client key");
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .expect("endpoint")
        .tls_config(tls)
        .expect("client TLS config")
        .connect_timeout(CALL_LIMIT)
}

/// One ShouldRateLimit call on `channel` (descriptor `k=v` of domain `tls`).
pub async fn ask(channel: Channel) -> Result<RateLimitResponse, String> {
    let mut client = RateLimitServiceClient::new(channel);
    let call = client.should_rate_limit(req("tls", vec![desc(&[("k", "v")])]));
    match tokio::time::timeout(CALL_LIMIT, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(format!("{status}")),
        Err(_) => Err(format!("no answer within {CALL_LIMIT:?}")),
    }
}

/// Connects (TLS handshake) and makes one call; the error of whichever failed.
pub async fn connect_and_ask(endpoint: Endpoint) -> Result<RateLimitResponse, String> {
    let channel = match tokio::time::timeout(CALL_LIMIT, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("connect: {e:?}")),
        Err(_) => return Err(format!("connect: not within {CALL_LIMIT:?}")),
    };
    ask(channel).await
}

/// The value of the counter `name` (no labels) on the server's `/metrics`, 0 if absent.
pub fn counter(s: &TestServer, name: &str) -> u64 {
    let prefix = format!("{name} ");
    s.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
