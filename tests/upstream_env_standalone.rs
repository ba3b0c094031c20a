//! The binary started under upstream's name (`ratelimit`, as `/bin/ratelimit` in an image) with
//! envoyproxy/ratelimit's documented environment only — rules under `RUNTIME_ROOT`, Redis by
//! `REDIS_URL`, ports by `HOST`/`PORT`/`GRPC_*`/`DEBUG_*` — answers upstream's own integration
//! sequence (testBasicBaseConfig, testConfigReload) with counters in that Redis.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::net::SocketAddr;
use std::process::Command;
use support::envoy::{http_get, wait_for, Proc, SLUICE};
use support::redis::RedisServer;
use support::*;

const BASIC: &str = "domain: basic\ndescriptors:\n  - key: key1\n    rate_limit: {unit: second, requests_per_unit: 50}\n  - key: one_per_minute\n    rate_limit: {unit: minute, requests_per_unit: 1}\n";
const ANOTHER: &str = "domain: another\ndescriptors:\n  - {key: key2, rate_limit: {unit: minute, requests_per_unit: 20}}\n  - {key: key3, rate_limit: {unit: hour, requests_per_unit: 10}}\n  - {key: key4, rate_limit: {unit: day, requests_per_unit: 20}}\n";
const RELOAD: &str = "domain: reload\ndescriptors:\n  - key: key1\n    rate_limit: {unit: second, requests_per_unit: 50}\n";

/// Port numbers for HOST/PORT-style variables: bound once to learn a free one.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_environment_and_layout() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    // upstream's layout: $RUNTIME_ROOT/$RUNTIME_SUBDIRECTORY/config/*.yaml, with a Kubernetes
    // ConfigMap's `..data` entry that must be skipped (RUNTIME_IGNOREDOTFILES).
    let root = tmp.path().join("srv/runtime_data/current");
    let config = root.join("ratelimit/config");
    std::fs::create_dir_all(config.join("..data")).expect("mkdir");
    std::fs::write(config.join("basic.yaml"), BASIC).expect("write");
    std::fs::write(config.join("another.yaml"), ANOTHER).expect("write");
    std::fs::write(config.join("..data/basic.yaml"), BASIC).expect("write");
    // Started under upstream's binary name.
    let bin = tmp.path().join("ratelimit");
    std::os::unix::fs::symlink(SLUICE, &bin).expect("symlink");
    let (http_port, grpc_port, debug_port) = (free_port(), free_port(), free_port());
    let redis_addr = redis.url().trim_start_matches("redis://").to_owned();
    let env = [
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", http_port.to_string()),
        ("GRPC_HOST", "127.0.0.1".to_owned()),
        ("GRPC_PORT", grpc_port.to_string()),
        ("DEBUG_HOST", "127.0.0.1".to_owned()),
        ("DEBUG_PORT", debug_port.to_string()),
        ("RUNTIME_ROOT", root.to_string_lossy().to_string()),
        ("RUNTIME_SUBDIRECTORY", "ratelimit".to_owned()),
        ("RUNTIME_WATCH_ROOT", "false".to_owned()),
        ("RUNTIME_IGNOREDOTFILES", "true".to_owned()),
        ("USE_STATSD", "false".to_owned()),
        ("LOG_LEVEL", "debug".to_owned()),
        ("REDIS_SOCKET_TYPE", "tcp".to_owned()),
        ("REDIS_URL", redis_addr.clone()),
        ("REDIS_POOL_SIZE", "4".to_owned()),
    ];
    let mut cmd = Command::new(&bin);
    cmd.env_clear().current_dir(tmp.path());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn("ratelimit", &mut cmd, tmp.path());
    let grpc: SocketAddr = format!("127.0.0.1:{grpc_port}").parse().expect("addr");
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().expect("addr");
    let log_path = tmp.path().join("ratelimit.log");
    wait_for("ratelimit to listen", &mut [&mut proc], || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        async move { log.contains("listening grpc=").then_some(()) }
    })
    .await;
    let log = proc.log();
    assert!(
        log.contains("REDIS_POOL_SIZE is set but ignored"),
        "ignored variables are logged once:\n{log}"
    );
    let health = http_get(http, "/healthcheck", &[])
        .await
        .expect("healthcheck");
    assert_eq!((health.status, health.body.trim()), (200, "OK"));

    let mut client = envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    // 1. Unknown domain: OK, no limit.
    let r = client
        .should_rate_limit(req("foo", vec![desc(&[("hello", "world")])]))
        .await
        .expect("call")
        .into_inner();
    assert_eq!(r.overall_code, Code::Ok as i32);
    assert!(r.statuses[0].current_limit.is_none());
    // 2. First hit: 50/SECOND, remaining 49.
    let r = client
        .should_rate_limit(req("basic", vec![desc(&[("key1", "foo")])]))
        .await
        .expect("call")
        .into_inner();
    assert_eq!(r.overall_code, Code::Ok as i32);
    let limit = r.statuses[0].current_limit.clone().expect("limit");
    assert_eq!(limit.requests_per_unit, 50);
    assert_eq!(r.statuses[0].limit_remaining, 49);
    // 3. Crossing the limit: 20/MINUTE, 25 calls.
    let v = format!("v{}", std::process::id());
    for i in 0..25u32 {
        let r = client
            .should_rate_limit(req("another", vec![desc(&[("key2", &v)])]))
            .await
            .expect("call")
            .into_inner();
        if i < 20 {
            assert_eq!(r.overall_code, Code::Ok as i32, "call {i}");
            assert_eq!(r.statuses[0].limit_remaining, 20 - (i + 1), "call {i}");
        } else {
            assert_eq!(r.overall_code, Code::OverLimit as i32, "call {i}");
            assert_eq!(r.statuses[0].limit_remaining, 0);
        }
    }
    // 4. Two descriptors: key3 (10/HOUR) goes over from the 11th call.
    let w = format!("w{}", std::process::id());
    for i in 0..15u32 {
        let r = client
            .should_rate_limit(req(
                "another",
                vec![desc(&[("key2", &w)]), desc(&[("key3", &w)])],
            ))
            .await
            .expect("call")
            .into_inner();
        assert_eq!(r.statuses[0].limit_remaining, 20 - (i + 1), "key2 call {i}");
        let want = if i < 10 { Code::Ok } else { Code::OverLimit };
        assert_eq!(r.overall_code, want as i32, "call {i}");
    }
    // The counters are in the Redis named by REDIS_URL.
    let keys = redis.command("DBSIZE");
    assert!(
        keys.trim()
            .trim_start_matches(':')
            .parse::<u64>()
            .unwrap_or(0)
            >= 3,
        "counters live in Redis: {keys}"
    );
    // testConfigReload: a new file in config/ is picked up (RUNTIME_WATCH_ROOT=false).
    let before = client
        .should_rate_limit(req("reload", vec![desc(&[("key1", "foo")])]))
        .await
        .expect("call")
        .into_inner();
    assert!(before.statuses[0].current_limit.is_none());
    std::fs::write(config.join("reload.yaml"), RELOAD).expect("write");
    let probe = client.clone();
    wait_for("the reload", &mut [&mut proc], || {
        let mut c = probe.clone();
        async move {
            let r = c
                .should_rate_limit(req("reload", vec![desc(&[("key1", "bar")])]))
                .await
                .ok()?
                .into_inner();
            r.statuses[0]
                .current_limit
                .as_ref()
                .map(|l| l.requests_per_unit)
        }
    })
    .await;
    // /rlconfig on the debug port, as `egctl x config ratelimit` reads it.
    let rl = http_get(
        format!("127.0.0.1:{debug_port}").parse().expect("addr"),
        "/rlconfig",
        &[],
    )
    .await
    .expect("rlconfig");
    assert_eq!(rl.status, 200, "{}", rl.body);
    assert!(rl.body.contains("basic.key1"), "{}", rl.body);
}
