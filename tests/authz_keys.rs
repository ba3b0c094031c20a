//! ext_authz keys as a running sluice sees them: `sluice hash-key`, a keys file hot-reloaded
//! (a new key works without a restart; an invalid file keeps the last good keys), and keys
//! never written to the log, even at debug level.

mod support;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::process::SluiceProcess;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn hash(key: &str) -> String {
    let out = Command::new(BIN)
        .args(["hash-key", key])
        .output()
        .expect("run sluice hash-key");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn hash_key_prints_the_sha256_from_an_argument_or_stdin() {
    assert_eq!(
        hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let mut child = Command::new(BIN)
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"abc\n")
        .expect("write key");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hash("abc"));
}

const CONFIG: &str = "\
domain: api
descriptors:
  - name: TENANT
    entries: [{key: tenant, value: '%tenant%'}]
";

const RULES: &str = "\
domain: api
descriptors:
  - key: tenant
    rate_limit: {unit: hour, requests_per_unit: 100}
";

fn keys_file(entries: &[(&str, &str)]) -> String {
    let mut text = "keys:\n".to_owned();
    for (id, key) in entries {
        text.push_str(&format!(
            "  - {{id: {id}, sha256: {}, tenant: t-{id}, user: u-{id}, tier: free}}\n",
            hash(key)
        ));
    }
    text
}

/// Whether `key` is accepted (OK) by the Check service at `addr`.
async fn accepted(addr: std::net::SocketAddr, key: &str) -> bool {
    let mut c = AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let req = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/".into(),
                    headers: [("authorization".to_owned(), format!("Bearer {key}"))].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let r = c.check(req).await.expect("Check answers").into_inner();
    r.status.is_some_and(|s| s.code == 0)
}

// Multi-threaded: `terminate` blocks, and dropped clients' connections must still be closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reload_without_a_restart_and_never_reach_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(rules.join("api.yaml"), RULES).expect("rules");
    let (config, keys) = (dir.path().join("authz.yaml"), dir.path().join("keys.yaml"));
    std::fs::write(&config, CONFIG).expect("config");
    std::fs::write(&keys, keys_file(&[("one", "sk-first-secret-key")])).expect("keys");
    let (rules, config_s, keys_s) = (
        rules.to_string_lossy().to_string(),
        config.to_string_lossy().to_string(),
        keys.to_string_lossy().to_string(),
    );
    let mut s = SluiceProcess::start(&[
        "--rules",
        &rules,
        "--authz-config",
        &config_s,
        "--authz-keys",
        &keys_s,
        "--rules-poll-ms",
        "50",
        "--log-level",
        "debug",
    ]);
    assert!(accepted(s.grpc, "sk-first-secret-key").await);
    assert!(!accepted(s.grpc, "sk-second-secret-key").await);
    assert!(!accepted(s.grpc, "sk-never-valid-key").await);

    std::fs::write(
        &keys,
        keys_file(&[
            ("one", "sk-first-secret-key"),
            ("two", "sk-second-secret-key"),
        ]),
    )
    .expect("rewrite keys");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !accepted(s.grpc, "sk-second-secret-key").await {
        assert!(Instant::now() < deadline, "the new key was never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An invalid keys file: the last good keys stay, the error names file, path and reason.
    std::fs::write(
        &keys,
        "keys:\n  - {id: x, sha256: nothex, tenant: t, user: u, tier: f}\n",
    )
    .expect("break keys");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("keys[0].sha256: expected 64 hex digits") {
        assert!(
            Instant::now() < deadline,
            "no reload error logged:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted(s.grpc, "sk-first-secret-key").await);
    assert!(accepted(s.grpc, "sk-second-secret-key").await);

    s.terminate();
    let log = s.log();
    assert!(log.contains("authz reloaded"), "{log}");
    for secret in [
        "sk-first-secret-key",
        "sk-second-secret-key",
        "sk-never-valid-key",
    ] {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
    }
}

// Multi-threaded: dropped clients' connections must be closed while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_keys_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(rules.join("api.yaml"), RULES).expect("rules");
    let (config, keys) = (dir.path().join("authz.yaml"), dir.path().join("keys.yaml"));
    std::fs::write(&config, CONFIG).expect("config");
    std::fs::write(&keys, keys_file(&[("one", "sk-first-secret-key")])).expect("keys");
    let (rules, config_s, keys_s) = (
        rules.to_string_lossy().to_string(),
        config.to_string_lossy().to_string(),
        keys.to_string_lossy().to_string(),
    );
    // Polling once an hour: only SIGHUP can make the new key known within the test.
    let s = SluiceProcess::start(&[
        "--rules",
        &rules,
        "--authz-config",
        &config_s,
        "--authz-keys",
        &keys_s,
        "--rules-poll-ms",
        "3600000",
    ]);
    std::fs::write(&keys, keys_file(&[("two", "sk-second-secret-key")])).expect("rewrite keys");
    assert!(!accepted(s.grpc, "sk-second-secret-key").await);
    s.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !accepted(s.grpc, "sk-second-secret-key").await {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the keys:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !accepted(s.grpc, "sk-first-secret-key").await,
        "the old key is gone"
    );
}
