//! Redis failures under load: three shards, one sluice, bounded concurrent clients. One node is
//! killed (SIGKILL), another frozen (SIGSTOP) and thawed (SIGCONT), the killed one restarted.
//! Every call is answered (no gRPC error, none held past a liveness bound: a call waits on Redis
//! at most its deadline, then the fallback decides); healthy shards stay exact; a failed shard's
//! keys get at most the local share (limit / replicas); the restarted node serves again within
//! 5 s; the metrics show the breaker transitions.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use sluice::store::ring::ShardRing;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::redis::RedisServer;
use support::*;

const RULES: &str = "
domain: fail
descriptors:
  - {key: load, rate_limit: {unit: hour, requests_per_unit: 1000000000}}
  - {key: user, rate_limit: {unit: hour, requests_per_unit: 10}}
";

/// A `user` value whose counter lives on `shard` (`tag` keeps keys distinct per phase).
fn user_on(ring: &ShardRing, shard: usize, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|v| ring.shard_of(&format!("fail_user_{v}")) == shard)
        .expect("some value lands on every shard")
}

/// Sends 12 one-hit requests for `user` and counts the admitted ones.
async fn admitted(s: &TestServer, user: &str) -> u32 {
    let mut c = s.client().await;
    let mut ok = 0;
    for _ in 0..12 {
        let r = call(&mut c, req("fail", vec![desc(&[("user", user)])])).await;
        ok += u32::from(overall(&r) == Code::Ok);
    }
    ok
}

fn metric(text: &str, name: &str, shard: &str, extra: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && l.contains(&format!("shard=\"{shard}\"")) && l.contains(extra)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_answering_while_shards_fail_and_heal() {
    let mut nodes = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let names: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let ring = ShardRing::new(&names);
    let urls = nodes
        .iter()
        .map(RedisServer::url)
        .collect::<Vec<_>>()
        .join(",");
    let s = TestServer::start(
        &[("f.yaml", RULES)],
        &[
            "--backend",
            "redis",
            "--redis-nodes",
            &urls,
            "--redis-timeout",
            "10ms",
            "--fallback-replicas",
            "2",
            "--breaker-open-ms",
            "200",
            "--breaker-max-open-ms",
            "1000",
        ],
    )
    .await;

    // Background load over all shards, recording every call's latency and any error.
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = tokio::task::JoinSet::new();
    for t in 0..8 {
        let mut c = s.client().await;
        let (stop, latencies, errors) = (stop.clone(), latencies.clone(), errors.clone());
        load.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let value = format!("{t}-{}", i % 64);
                let started = Instant::now();
                let r = c
                    .should_rate_limit(req("fail", vec![desc(&[("load", &value)])]))
                    .await;
                let took = started.elapsed();
                match r {
                    Ok(_) => latencies.lock().expect("lock").push(took),
                    Err(e) => errors.lock().expect("lock").push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. Kill shard 0: its keys get the local share (10 / 2 replicas = 5); shard 1 stays exact.
    nodes[0].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        use tonic_health::pb::health_client::HealthClient;
        let mut h = HealthClient::new(s.channel().await);
        let st = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: "ratelimit".into(),
            })
            .await
            .expect("health answers")
            .into_inner()
            .status;
        assert_eq!(st, 1, "still SERVING while the fallback answers");
    }
    assert_eq!(
        admitted(&s, &user_on(&ring, 0, "dead")).await,
        5,
        "local share on the dead shard"
    );
    assert_eq!(
        admitted(&s, &user_on(&ring, 1, "live")).await,
        10,
        "healthy shard stays exact"
    );

    // 2. Freeze shard 2 (accepts connections, never answers): treated like a dead one.
    nodes[2].signal("STOP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        admitted(&s, &user_on(&ring, 2, "frozen")).await <= 5,
        "at most the local share"
    );
    assert_eq!(
        admitted(&s, &user_on(&ring, 1, "live2")).await,
        10,
        "healthy shard stays exact"
    );
    nodes[2].signal("CONT");

    // 3. Restart shard 0: within 5 s its keys are served from Redis again.
    nodes[0].restart();
    let back = Instant::now();
    let deadline = back + Duration::from_secs(5);
    let shard0 = &names[0];
    loop {
        let m = s.metrics();
        let closed = names
            .iter()
            .all(|n| metric(&m, "sluice_redis_shard_state", n, "") == 0.0);
        if closed && nodes[0].calls("evalsha") > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shard 0 not back within 5 s:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        admitted(&s, &user_on(&ring, 0, "healed")).await,
        10,
        "exact again after healing"
    );

    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    let errors = errors.lock().expect("lock").clone();
    assert!(errors.is_empty(), "gRPC errors during faults: {errors:?}");
    let mut lat = latencies.lock().expect("lock").clone();
    lat.sort();
    let p99 = lat[lat.len() * 99 / 100];
    eprintln!(
        "calls={} p99={p99:?} max={:?} back_after={:?}",
        lat.len(),
        lat[lat.len() - 1],
        back.elapsed()
    );
    // Liveness, not speed (measured figures are printed above): no call waited on a dead or
    // frozen node beyond its deadline and the fallback.
    assert!(
        lat[lat.len() - 1] < Duration::from_secs(2),
        "a call took {:?} during faults",
        lat[lat.len() - 1]
    );

    let m = s.metrics();
    for (i, n) in names.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert!(
            metric(&m, "sluice_redis_shard_transitions_total", n, "to=\"open\"") >= 1.0,
            "shard {i} opened:\n{m}"
        );
        assert!(
            metric(
                &m,
                "sluice_redis_shard_transitions_total",
                n,
                "to=\"closed\""
            ) >= 1.0,
            "shard {i} closed:\n{m}"
        );
    }
    assert!(
        metric(
            &m,
            "sluice_fallback_decisions_total",
            shard0,
            "policy=\"local\""
        ) > 0.0
    );
    s.stop().await;
}

/// `allow` and `deny`: a dead shard's keys are admitted or refused, marked as fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_policies() {
    use sluice::limiter::Op;
    use sluice::rules::model::Algorithm;
    use sluice::store::fallback::FailurePolicy;
    use sluice::store::redis::{FallbackConfig, RedisConfig, RedisStore};
    use sluice::store::Store;
    for (policy, allowed) in [(FailurePolicy::Allow, true), (FailurePolicy::Deny, false)] {
        let mut node = RedisServer::start();
        let store = RedisStore::connect(RedisConfig {
            fallback: FallbackConfig {
                policy,
                ..Default::default()
            },
            local_max_keys: 1000,
            ..RedisConfig::new(vec![node.url()])
        })
        .await
        .expect("connect");
        let op = Op {
            key: "k".into(),
            algorithm: Algorithm::FixedWindow,
            requests_per_unit: 1,
            period_secs: 60,
            burst: 1,
            hits: 1,
            refund: false,
        };
        // Redis decides while up (the very first call also loads the script: on a busy
        // machine it may miss its 10 ms deadline, so allow a few tries).
        let mut by_redis = false;
        for _ in 0..20 {
            let out = store
                .apply(std::slice::from_ref(&op), None)
                .await
                .expect("answers");
            if !out[0].fallback {
                by_redis = true;
                break;
            }
        }
        assert!(by_redis, "Redis decides while up");
        node.kill();
        for _ in 0..5 {
            let out = store
                .apply(std::slice::from_ref(&op), None)
                .await
                .expect("never an error");
            assert_eq!(
                (out[0].allowed, out[0].fallback),
                (allowed, true),
                "{policy:?}"
            );
        }
    }
}
