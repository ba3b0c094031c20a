//! Redis with AUTH and TLS: `rediss://:password@host:port` with a private CA
//! (`--redis-tls-ca-file`) works; a wrong password fails at start-up with a clear error.
//! Certificates are made with the `openssl` command (scripts/test installs it when missing).

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use sluice::store::redis::{RedisConfig, RedisStore};
use sluice::store::redis_conn::Topology;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

const RULES: &str =
    "domain: tls\ndescriptors:\n  - {key: k, rate_limit: {unit: day, requests_per_unit: 2}}\n";

/// A CA (`ca.crt`) and a server certificate for 127.0.0.1 (`server.crt`, `server.key`).
fn certificates(dir: &Path) {
    let ca = support::certs::Ca::new(dir, "ca", "sluice-test-ca");
    ca.leaf(
        "server",
        "127.0.0.1",
        &["IP:127.0.0.1"],
        support::certs::KeyKind::RsaPkcs8,
    );
}

/// A TLS-only redis-server requiring a password; killed on drop.
struct TlsRedis {
    port: u16,
    child: Child,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> TlsRedis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
        ])
        .args([
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "TLS redis did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    TlsRedis { port, child }
}

fn config(url: String, ca: &Path) -> RedisConfig {
    RedisConfig {
        nodes: vec![url],
        topology: Topology::Shards,
        tls_ca: Some(std::fs::read(ca).expect("ca.crt")),
        tls_client: None,
        key_prefix: String::new(),
        timeout: Duration::from_secs(2),
        atomic: false,
        clock: None,
        fallback: Default::default(),
        local_max_keys: 1_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let redis = start(dir.path());
    let ca = dir.path().join("ca.crt");
    let url = format!("rediss://:s3cret@127.0.0.1:{}", redis.port);

    let s = TestServer::start(
        &[("t.yaml", RULES)],
        &[
            "--backend",
            "redis",
            "--redis-nodes",
            &url,
            "--redis-tls-ca-file",
            &ca.to_string_lossy(),
            "--redis-timeout",
            "2s",
        ],
    )
    .await;
    let mut c = s.client().await;
    let one = || req("tls", vec![desc(&[("k", "v")])]);
    assert_eq!(
        summary(&call(&mut c, one()).await),
        [(Code::Ok, 1, Some(2))]
    );
    assert_eq!(
        summary(&call(&mut c, one()).await),
        [(Code::Ok, 0, Some(2))]
    );
    assert_eq!(overall(&call(&mut c, one()).await), Code::OverLimit);
    s.stop().await;

    let wrong = format!("rediss://:wrong@127.0.0.1:{}", redis.port);
    let err = RedisStore::connect(config(wrong, &ca))
        .await
        .err()
        .expect("wrong password is refused");
    assert!(err.to_string().contains("redis 127.0.0.1"), "{err}");

    let untrusted = RedisStore::connect(RedisConfig {
        tls_ca: None,
        tls_client: None,
        ..config(url, &ca)
    })
    .await;
    assert!(
        untrusted.is_err(),
        "a certificate from an unknown CA is refused"
    );
}
