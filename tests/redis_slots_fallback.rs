//! Slots when something dies. The redis-server killed: acquisitions are decided locally with
//! `max / replicas` slots, marked `fallback` (and counted in `sluice_fallback_decisions_total`);
//! restarted: the slots are shared again. A sluice killed while holding slots (and with a call
//! waiting): another sluice gets them back once their lease has passed.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use sluice::concurrency::{SlotAction, SlotOp, SlotOutcome, SlotResult};
use sluice::store::fallback::FailurePolicy;
use sluice::store::redis::{FallbackConfig, RedisConfig, RedisStore};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::process::SluiceProcess;
use support::redis::RedisServer;
use support::slot_cases::{acquire, release};
use support::*;

const RULES: &str = "
domain: fb
descriptors:
  - key: pool
    concurrency: {max: 4, lease: 60s, lease_id: request_id}
";

/// Free slots of `pool=p` as the server sees them now.
async fn remaining(c: &mut RateLimitServiceClient<tonic::transport::Channel>) -> u32 {
    let r = call(c, req("fb", vec![desc_hits(&[("pool", "p")], 0)])).await;
    r.statuses[0].limit_remaining
}

/// Acquires `ids` one by one; which were granted.
async fn take(
    c: &mut RateLimitServiceClient<tonic::transport::Channel>,
    ids: &[&str],
) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        let r = call(c, req("fb", vec![acquire("pool", "p", id)])).await;
        out.push(overall(&r) == Code::Ok);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_means_the_local_share_then_shared_again() {
    let mut node = RedisServer::start();
    let url = node.url();
    let s = TestServer::start(
        &[("s.yaml", RULES)],
        &[
            "--backend",
            "redis",
            "--redis-nodes",
            &url,
            "--redis-timeout",
            "500ms",
            "--fallback",
            "local",
            "--fallback-replicas",
            "2",
            "--breaker-open-ms",
            "100",
            "--breaker-max-open-ms",
            "200",
        ],
    )
    .await;
    let mut c = s.client().await;
    assert_eq!(
        take(&mut c, &["s1", "s2", "s3", "s4", "s5"]).await,
        [true, true, true, true, false]
    );
    assert_eq!(
        node.command("ZCARD fb_pool_p_#c:ids").trim(),
        ":4",
        "held in Redis"
    );
    for id in ["s1", "s2", "s3", "s4"] {
        call(&mut c, req("fb", vec![release("pool", "p", id)])).await;
    }

    node.kill();
    // Local: max 4 shared by 2 replicas = 2 slots here.
    assert_eq!(take(&mut c, &["l1", "l2", "l3"]).await, [true, true, false]);
    let m = s.metrics();
    assert!(
        m.lines()
            .any(|l| l.starts_with("sluice_fallback_decisions_total")
                && l.contains("policy=\"local\"")),
        "{m}"
    );
    // A local lease is released locally.
    call(&mut c, req("fb", vec![release("pool", "p", "l1")])).await;
    assert_eq!(take(&mut c, &["l4", "l5"]).await, [true, false]);

    node.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while remaining(&mut c).await != 4 {
        assert!(Instant::now() < deadline, "never shared again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        take(&mut c, &["r1", "r2", "r3", "r4", "r5"]).await,
        [true, true, true, true, false]
    );
    assert_eq!(
        node.command("ZCARD fb_pool_p_#c:ids").trim(),
        ":4",
        "shared again"
    );
    // l2 and l4 were taken locally: their releases stay local, Redis keeps its 4.
    for id in ["l2", "l4"] {
        call(&mut c, req("fb", vec![release("pool", "p", id)])).await;
    }
    assert_eq!(node.command("ZCARD fb_pool_p_#c:ids").trim(), ":4");
    s.stop().await;
}

fn op(id: &str, action: SlotAction) -> SlotOp {
    SlotOp {
        key: "k".into(),
        max: 3,
        lease_ms: 60_000,
        lease: Some(id.into()),
        action,
        rule: Arc::from("d.k"),
    }
}

/// Every policy's answers carry `fallback`: local (3 slots among 2 replicas: 2), allow, deny.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_outcomes_say_so_under_every_policy() {
    let mut node = RedisServer::start();
    let mut stores = Vec::new();
    for policy in [
        FailurePolicy::Local,
        FailurePolicy::Allow,
        FailurePolicy::Deny,
    ] {
        let config = RedisConfig {
            timeout: Duration::from_millis(500),
            fallback: FallbackConfig {
                policy,
                replicas: 2,
                ..FallbackConfig::default()
            },
            ..RedisConfig::new(vec![node.url()])
        };
        stores.push(RedisStore::connect(config).await.expect("connect"));
    }
    node.kill();
    let results = |out: Vec<SlotOutcome>| {
        assert!(out.iter().all(|o| o.fallback), "{out:?}");
        out.iter().map(|o| o.result).collect::<Vec<_>>()
    };
    use SlotResult::*;
    // Per policy: the three acquisitions, then a's release.
    let expected = [
        ([Granted, Granted, Full], Released), // local: 3 among 2 replicas = 2; a held here
        ([Granted; 3], Stray),                // allow: nothing held here to free
        ([Full; 3], Stray),                   // deny
    ];
    for (store, (want, back)) in stores.iter().zip(expected) {
        let slots = store.slots();
        let mut got = Vec::new();
        for id in ["a", "b", "c"] {
            let out = slots.run(&[op(id, SlotAction::Acquire)], None).await;
            got.extend(results(out.expect("answered")));
        }
        assert_eq!(got, want);
        let out = slots.run(&[op("a", SlotAction::Release)], None).await;
        assert_eq!(results(out.expect("answered")), [back]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_of_a_killed_sluice_return_after_their_lease() {
    let node = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("s.yaml"),
        "
domain: fb
descriptors:
  - key: pool
    concurrency: {max: 2, queue: 4, queue_timeout: 30s, lease: 2s, lease_id: request_id}
",
    )
    .expect("rules");
    let rules = dir.path().to_string_lossy().to_string();
    let url = node.url();
    let args = [
        "--rules",
        rules.as_str(),
        "--backend",
        "redis",
        "--redis-nodes",
        url.as_str(),
        "--redis-timeout",
        "1s",
    ];
    let connect = |p: &SluiceProcess| {
        let addr = format!("http://{}", p.grpc);
        async move {
            RateLimitServiceClient::connect(addr)
                .await
                .expect("connect")
        }
    };
    let first = SluiceProcess::start(&args);
    let mut c = connect(&first).await;
    let taken = Instant::now();
    assert_eq!(take(&mut c, &["a1", "a2"]).await, [true, true]);
    // A third call waits in the killed process's queue.
    let mut waiter = connect(&first).await;
    let waiting = tokio::spawn(async move {
        waiter
            .should_rate_limit(req("fb", vec![acquire("pool", "p", "a3")]))
            .await
            .is_ok()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(first); // SIGKILL: no release ever comes
    assert!(
        !waiting.await.expect("task"),
        "the held call died with its server"
    );

    let second = SluiceProcess::start(&args);
    let mut c = connect(&second).await;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ids = [format!("b{attempt}a"), format!("b{attempt}b")];
        let got = take(&mut c, &[&ids[0], &ids[1]]).await;
        if got == [true, true] {
            break;
        }
        for id in &ids {
            call(&mut c, req("fb", vec![release("pool", "p", id)])).await;
        }
        assert!(
            taken.elapsed() < Duration::from_secs(15),
            "slots never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = taken.elapsed();
    println!("both slots back {after:?} after they were taken (lease 2 s)");
    assert!(
        after >= Duration::from_millis(1_900),
        "back before the lease ended: {after:?}"
    );
}

/// The freed-slot subscription survives a Redis restart: notices flow again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_resume_after_redis_restarts() {
    let mut node = RedisServer::start();
    let store = RedisStore::connect(RedisConfig::new(vec![node.url()]))
        .await
        .expect("connect");
    let slots = store.slots();
    let mut rx = slots.freed_elsewhere().expect("a shared table has notices");
    for phase in ["before", "after"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            node.command(&format!("PUBLISH sluice:slots:freed elsewhere:{phase}"));
            let got = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await;
            if let Ok(Ok(key)) = got {
                assert_eq!(&*key, phase);
                break;
            }
            assert!(Instant::now() < deadline, "no notice {phase} the restart");
        }
        if phase == "before" {
            node.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            node.restart();
        }
    }
}
