//! Shared helpers for integration tests: an in-process sluice on `127.0.0.1:0` with a manual
//! clock, request builders, and a path to the built binary.

#![allow(dead_code)] // each test file uses a different subset

pub mod certs;
pub mod envoy;
pub mod http;
pub mod process;
pub mod raw_grpc;
pub mod redis;
pub mod slot_cases;
pub mod tls;
pub mod xds;
pub mod xds_fixtures;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use sluice::clock::ManualClock;
use sluice::server::{ServeError, Server};
use sluice::settings::{self, Invocation};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// Noon on 2026-01-01 UTC plus one second: far from any minute/hour/day boundary.
pub const T0: Duration = Duration::from_secs(1_767_268_801);

/// A sluice serving in this process.
pub struct TestServer {
    /// Where gRPC listens.
    pub addr: SocketAddr,
    /// Where the HTTP admin port listens.
    pub http: SocketAddr,
    /// Where the debug port listens (with `--debug-addr`).
    pub debug: Option<SocketAddr>,
    /// Where the metrics-only port listens (with `--prometheus-addr`).
    pub prometheus: Option<SocketAddr>,
    /// The counters' clock.
    pub clock: Arc<ManualClock>,
    /// Rule directory (kept alive for the server's lifetime).
    pub rules_dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// Writes `files` (name, YAML) to a fresh rule directory and serves them with extra flags.
    pub async fn start(files: &[(&str, &str)], flags: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write rule file");
        }
        TestServer::start_in(dir, flags).await
    }

    /// Serves the rule directory `dir` (already filled) with extra flags.
    pub async fn start_in(dir: tempfile::TempDir, flags: &[&str]) -> TestServer {
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
            .expect("server binds");
        let addr = server.grpc_addr().expect("local addr");
        let http = server.http_addr().expect("http addr");
        let (debug, prometheus) = (server.debug_addr(), server.prometheus_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            http,
            debug,
            prometheus,
            clock,
            rules_dir: dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }

    /// A RateLimitService client.
    pub async fn client(&self) -> RateLimitServiceClient<Channel> {
        RateLimitServiceClient::new(self.channel().await)
    }

    /// The text of `GET /metrics` on the admin port (blocking: use a multi-threaded test).
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).expect("connect admin port");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut body = String::new();
        s.read_to_string(&mut body).expect("read");
        body
    }

    /// Asks for shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits for the server to finish.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

/// A descriptor from `(key, value)` entries.
pub fn desc(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

/// A descriptor charging its own `hits` (0 = check only).
pub fn desc_hits(entries: &[(&str, &str)], hits: u64) -> RateLimitDescriptor {
    RateLimitDescriptor {
        hits_addend: Some(UInt64Value { value: hits }),
        ..desc(entries)
    }
}

/// A descriptor with a limit override (`unit` in envoy.type.v3 numbering).
pub fn desc_override(
    entries: &[(&str, &str)],
    requests_per_unit: u32,
    unit: i32,
) -> RateLimitDescriptor {
    RateLimitDescriptor {
        limit: Some(RateLimitOverride {
            requests_per_unit,
            unit,
        }),
        ..desc(entries)
    }
}

/// A request with request-level `hits_addend` 0 (meaning 1).
pub fn req(domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors,
        hits_addend: 0,
    }
}

/// Calls ShouldRateLimit and unwraps the response.
pub async fn call(
    client: &mut RateLimitServiceClient<Channel>,
    r: RateLimitRequest,
) -> RateLimitResponse {
    client
        .should_rate_limit(r)
        .await
        .expect("ShouldRateLimit succeeds")
        .into_inner()
}

/// The overall code of a response.
pub fn overall(r: &RateLimitResponse) -> Code {
    Code::try_from(r.overall_code).expect("known code")
}

/// The code of a status.
pub fn code(s: &DescriptorStatus) -> Code {
    Code::try_from(s.code).expect("known code")
}

/// `(code, remaining, requests_per_unit if a limit applied)` of every status, for compact asserts.
pub fn summary(r: &RateLimitResponse) -> Vec<(Code, u32, Option<u32>)> {
    r.statuses
        .iter()
        .map(|s| {
            (
                code(s),
                s.limit_remaining,
                s.current_limit.as_ref().map(|l| l.requests_per_unit),
            )
        })
        .collect()
}
