//! TLS on the gRPC port in tests: a sluice serving over TLS, and tonic clients with a chosen
//! trust anchor and optional client certificate.

use super::certs::Leaf;
use super::{desc, req, TestServer};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use sluice::net::tls::ServerTls;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// One rule: domain `tls`, key `k`, 1000 a minute.
pub const RULES: &str = "domain: tls\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: minute\n      requests_per_unit: 1000\n";

/// How long a test waits for one call (connect and answer) before calling it failed.
pub const CALL_LIMIT: Duration = Duration::from_secs(10);

/// Serves [`RULES`] over TLS with `tls` (given as the `--grpc-tls*` flags, so the settings'
/// wiring is under test too) and extra flags.
pub async fn start_tls(tls: ServerTls, flags: &[&str]) -> TestServer {
    let path = |p: &Path| p.to_string_lossy().to_string();
    let mut argv: Vec<String> = vec![
        "--grpc-tls".into(),
        "--grpc-tls-cert".into(),
        path(&tls.cert),
        "--grpc-tls-key".into(),
        path(&tls.key),
    ];
    if let Some(ca) = &tls.client_ca {
        argv.extend(["--grpc-tls-client-ca".into(), path(ca)]);
    }
    if let Some(san) = &tls.client_san {
        argv.extend(["--grpc-tls-client-san".into(), san.clone()]);
    }
    argv.extend(flags.iter().map(|f| f.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    TestServer::start(&[("tls.yaml", RULES)], &argv).await
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
