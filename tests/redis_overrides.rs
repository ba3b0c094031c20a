//! Two sluice processes sharing one real redis-server: an override set through one replica is
//! applied by the other within a second, clearing it does the same, and an expired override
//! vanishes from both replicas and from Redis.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::http::request;
use support::process::SluiceProcess;
use support::redis::RedisServer;

const RULES: &str = "\
domain: api
descriptors:
  - key: tenant
    rate_limit: {unit: minute, requests_per_unit: 2}
";

const TOKEN: &str = "replicas-share-this-token-0001";
const PROBE: &str = r#"{"domain":"api","descriptor":[{"key":"tenant","value":"probe"}]}"#;

struct Replicas {
    a: SluiceProcess,
    b: SluiceProcess,
    redis: RedisServer,
    _dir: tempfile::TempDir,
}

fn start() -> Replicas {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(rules.join("api.yaml"), RULES).expect("rules");
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let (rules, token, url) = (
        rules.to_string_lossy().to_string(),
        token.to_string_lossy().to_string(),
        redis.url(),
    );
    let args = [
        "--rules",
        &rules,
        "--backend",
        "redis",
        "--redis-nodes",
        &url,
        "--redis-timeout",
        "1s",
        "--admin-token-file",
        &token,
    ];
    Replicas {
        a: SluiceProcess::start(&args),
        b: SluiceProcess::start(&args),
        redis,
        _dir: dir,
    }
}

/// The limit a replica applies to the probe tenant now (read without charging).
async fn limit_on(http: SocketAddr) -> u64 {
    let r = request(http, "POST", "/admin/usage", Some(TOKEN), Some(PROBE)).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["limits"][0]["requests_per_unit"]
        .as_u64()
        .unwrap_or_else(|| panic!("no limit in {}", r.body))
}

/// Polls until `http` applies `limit`; how long that took (panics after 5 s).
async fn until_limit(http: SocketAddr, limit: u64, since: Instant) -> Duration {
    loop {
        if limit_on(http).await == limit {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "never applied {limit}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_override_set_on_one_replica_applies_on_the_other_within_a_second() {
    let r = start();
    assert_eq!(limit_on(r.b.http).await, 2);
    let body = r#"{"rule":"api.tenant","requests_per_unit":50,"unit":"minute","ttl_seconds":300}"#;
    let set_at = Instant::now();
    let set = request(
        r.a.http,
        "POST",
        "/admin/overrides",
        Some(TOKEN),
        Some(body),
    )
    .await;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(
        limit_on(r.a.http).await,
        50,
        "applied at once where it was set"
    );
    let took = until_limit(r.b.http, 50, set_at).await;
    eprintln!("override reached the other replica after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let listed = request(r.b.http, "GET", "/admin/overrides", Some(TOKEN), None)
        .await
        .json();
    assert_eq!(listed["overrides"][0]["rule"], "api.tenant");

    let target = r#"{"rule":"api.tenant"}"#;
    let cleared_at = Instant::now();
    let clear = request(
        r.b.http,
        "DELETE",
        "/admin/overrides",
        Some(TOKEN),
        Some(target),
    )
    .await;
    assert_eq!(clear.json()["cleared"], true);
    let took = until_limit(r.a.http, 2, cleared_at).await;
    eprintln!("clear reached the other replica after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(r.redis.command("HLEN sluice:overrides").trim(), ":0");
}

#[tokio::test]
async fn expired_overrides_vanish_from_every_replica_and_from_redis() {
    let r = start();
    let body = r#"{"domain":"api","descriptor":[{"key":"tenant","value":"probe"}],"requests_per_unit":7,"unit":"minute","ttl_seconds":1}"#;
    let set_at = Instant::now();
    let set = request(
        r.a.http,
        "POST",
        "/admin/overrides",
        Some(TOKEN),
        Some(body),
    )
    .await;
    assert_eq!(set.status, 200, "{set:?}");
    until_limit(r.b.http, 7, set_at).await;
    assert_eq!(r.redis.command("HLEN sluice:overrides").trim(), ":1");

    // Expiry is checked on every request against the override's own end: no poll needed.
    let a_back = until_limit(r.a.http, 2, set_at).await;
    let b_back = until_limit(r.b.http, 2, set_at).await;
    eprintln!("expired after {a_back:?} (a) and {b_back:?} (b); ttl 1 s");
    assert!(
        a_back >= Duration::from_millis(900),
        "not before its ttl: {a_back:?}"
    );
    for http in [r.a.http, r.b.http] {
        let listed = request(http, "GET", "/admin/overrides", Some(TOKEN), None)
            .await
            .json();
        assert_eq!(listed["overrides"], serde_json::json!([]));
        let config = request(http, "GET", "/rlconfig", None, None).await.body;
        assert!(!config.contains("override"), "{config}");
    }
    // The other replica's poll drops the expired entry too (gauge back to 0).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = request(r.b.http, "GET", "/metrics", None, None).await.body;
        if metrics.lines().any(|l| l == "sluice_overrides_active 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired override still counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A replica's poll deletes the expired document.
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.redis.command("HLEN sluice:overrides").trim() != ":0" {
        assert!(
            Instant::now() < deadline,
            "expired override still stored in Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
