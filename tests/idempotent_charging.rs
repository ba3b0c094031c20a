//! Idempotent charging over gRPC: a domain declaring `idempotency: {key: request_id, ttl: 10m}`
//! charges a request carrying `request_id` once, however often (and however concurrently) it
//! is retried, and answers every repeat with the first decision. Checked with exact counter
//! figures in the memory store (each and all-or-nothing), on one Redis node, on three
//! independent Redis shards (each and all-or-nothing) and in a Redis Cluster.

mod support;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use std::time::Duration;
use support::redis::{RedisCluster, RedisServer};
use support::*;
use tonic::transport::Channel;

const RULES: &str = r#"
domain: api
idempotency: {key: request_id, ttl: 10m}
descriptors:
  - key: tenant
    rate_limit: {unit: hour, requests_per_unit: 3}
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 100}
  - key: budget
    rate_limit: {unit: month, requests_per_unit: 10000}
"#;

/// Repeats bounded: one record answers two repeats, then the key is charged again.
const CAPPED: &str = r#"
domain: capped
idempotency: {key: request_id, ttl: 10m, max_repeats: 2}
descriptors:
  - key: tenant
    rate_limit: {unit: hour, requests_per_unit: 10}
"#;

/// A domain without `idempotency:`: `request_id` is an ordinary (unmatched) descriptor.
const PLAIN: &str = r#"
domain: plain
descriptors:
  - key: tenant
    rate_limit: {unit: hour, requests_per_unit: 3}
"#;

type Client = RateLimitServiceClient<Channel>;

fn id(v: &str) -> RateLimitDescriptor {
    desc(&[("request_id", v)])
}

/// The status of the descriptor at `i`: code and remaining.
fn at(r: &RateLimitResponse, i: usize) -> (Code, u32) {
    (code(&r.statuses[i]), r.statuses[i].limit_remaining)
}

/// What is left of one counter, read without charging (and without a key).
async fn left(c: &mut Client, key: &str, value: &str) -> u32 {
    let r = call(c, req("api", vec![desc_hits(&[(key, value)], 0)])).await;
    r.statuses[0].limit_remaining
}

/// Sequential retries: charged once, the first decision replayed — denials included.
async fn sequential(c: &mut Client, run: &str) {
    let tenant = format!("seq-{run}");
    let first = format!("{run}-1");
    let once = |key: &str| req("api", vec![id(key), desc(&[("tenant", &tenant)])]);
    let r = call(c, once(&first)).await;
    assert_eq!(r.overall_code, Code::Ok as i32);
    assert_eq!(at(&r, 0).0, Code::Ok, "the key's own descriptor");
    assert!(
        r.statuses[0].current_limit.is_none(),
        "is limited by nothing"
    );
    assert_eq!(at(&r, 1), (Code::Ok, 2));
    for _ in 0..4 {
        let again = call(c, once(&first)).await;
        assert_eq!(
            at(&again, 1),
            (Code::Ok, 2),
            "{run}: the first decision again"
        );
    }
    assert_eq!(left(c, "tenant", &tenant).await, 2, "{run}: charged once");
    // Other keys are other requests: they fill the limit, and a denial is replayed too.
    assert_eq!(
        at(&call(c, once(&format!("{run}-2"))).await, 1),
        (Code::Ok, 1)
    );
    assert_eq!(
        at(&call(c, once(&format!("{run}-3"))).await, 1),
        (Code::Ok, 0)
    );
    let denied = format!("{run}-4");
    assert_eq!(
        call(c, once(&denied)).await.overall_code,
        Code::OverLimit as i32
    );
    let again = call(c, once(&denied)).await;
    assert_eq!(
        again.overall_code,
        Code::OverLimit as i32,
        "{run}: denial replayed"
    );
    // The same key and counter, but not lining up with the record (the counter twice): a
    // repeat all the same, charged nothing.
    let twice = req(
        "api",
        vec![
            id(&first),
            desc(&[("tenant", &tenant)]),
            desc(&[("tenant", &tenant)]),
        ],
    );
    let before = left(c, "tenant", &tenant).await;
    let r = call(c, twice).await;
    assert_eq!(r.statuses.len(), 3, "{run}");
    assert_eq!(
        left(c, "tenant", &tenant).await,
        before,
        "{run}: checks only"
    );
    // The first request's decision still stands, with its original figures.
    assert_eq!(at(&call(c, once(&first)).await, 1), (Code::Ok, 2));
    // A request without a key is charged as usual.
    let plain = call(c, req("api", vec![desc(&[("tenant", &tenant)])])).await;
    assert_eq!(plain.overall_code, Code::OverLimit as i32);
}

/// A token budget through retries: a retry with other hits is still a repeat (the first
/// reservation stands); a settlement's refund is applied once per key, its usage every time —
/// so aborting a first attempt and retrying earns nothing, and a retried call pays what it
/// really used.
async fn settlement(c: &mut Client, run: &str) {
    let tenant = format!("tok-{run}");
    let key = format!("{run}-llm");
    let budget = |hits: u64| desc_hits(&[("budget", &tenant)], hits);
    let refund = |hits: u64| RateLimitDescriptor {
        is_negative_hits: true,
        ..budget(hits)
    };
    let reserve = |hits: u64| req("api", vec![id(&key), budget(hits)]);
    assert_eq!(at(&call(c, reserve(1000)).await, 1), (Code::Ok, 9000));
    assert_eq!(at(&call(c, reserve(2000)).await, 1), (Code::Ok, 9000));
    assert_eq!(
        left(c, "budget", &tenant).await,
        9000,
        "{run}: reserved once"
    );
    // The first attempt is aborted: its stream-done call only gives the reservation back.
    call(c, req("api", vec![id(&key), refund(1000)])).await;
    assert_eq!(left(c, "budget", &tenant).await, 10_000, "{run}: returned");
    // The retry (not reserved again) completes: 300 used; its refund is not applied twice.
    let done = |used: u64| req("api", vec![id(&key), budget(used), refund(1000)]);
    call(c, done(300)).await;
    assert_eq!(
        left(c, "budget", &tenant).await,
        9700,
        "{run}: the retry's usage"
    );
    // One more retry: 450 used, charged; still no second refund.
    call(c, done(450)).await;
    assert_eq!(
        left(c, "budget", &tenant).await,
        9250,
        "{run}: every attempt's usage"
    );

    // Finished, then retried: one reservation, one refund, two usages.
    let t2 = format!("tok2-{run}");
    let key2 = format!("{run}-llm2");
    let budget2 = |hits: u64| desc_hits(&[("budget", &t2)], hits);
    let done2 = |used: u64| {
        let back = RateLimitDescriptor {
            is_negative_hits: true,
            ..budget2(1000)
        };
        req("api", vec![id(&key2), back, budget2(used)])
    };
    for used in [200, 250] {
        call(c, req("api", vec![id(&key2), budget2(1000)])).await;
        call(c, done2(used)).await;
    }
    assert_eq!(
        left(c, "budget", &t2).await,
        10_000 - 450,
        "{run}: finished then retried"
    );

    // A retry cannot return more than the key reserved, whatever it claims: the first
    // attempt reserves 1; a retry claiming 10^9 is a repeat (not checked, not reserved) and
    // settles first, giving back 10^9 — capped at the 1 reserved.
    let t3 = format!("tok3-{run}");
    let key3 = format!("{run}-llm3");
    let budget3 = |hits: u64| desc_hits(&[("budget", &t3)], hits);
    let settle3 = |used: u64, back: u64| {
        let back = RateLimitDescriptor {
            is_negative_hits: true,
            ..budget3(back)
        };
        req("api", vec![id(&key3), budget3(used), back])
    };
    call(c, req("api", vec![id(&key3), budget3(1)])).await;
    let big = call(c, req("api", vec![id(&key3), budget3(1_000_000_000)])).await;
    assert_eq!(
        big.overall_code,
        Code::Ok as i32,
        "{run}: the first decision"
    );
    call(c, settle3(10, 1_000_000_000)).await;
    call(c, settle3(5, 1)).await;
    assert_eq!(
        left(c, "budget", &t3).await,
        10_000 - 15,
        "{run}: no free budget"
    );
}

/// Twenty concurrent attempts of one request touching several counters (on several shards
/// when there are several): every counter charged exactly once, every attempt answered alike.
async fn concurrent(s: &TestServer, run: &str) {
    let tenant = format!("conc-{run}");
    let users: Vec<String> = (0..6).map(|i| format!("conc-{run}-u{i}")).collect();
    let mut ds = vec![desc(&[("tenant", &tenant)]), id(&format!("{run}-c"))];
    ds.extend(users.iter().map(|u| desc(&[("user", u)])));
    let request = req("api", ds);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut c = s.client().await;
        let r = request.clone();
        tasks.push(tokio::spawn(async move { call(&mut c, r).await }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(summary(&t.await.expect("task")));
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "{run}: every attempt gets the same decision: {answers:?}"
    );
    let mut c = s.client().await;
    assert_eq!(left(&mut c, "tenant", &tenant).await, 2, "{run}: tenant");
    for u in &users {
        assert_eq!(left(&mut c, "user", u).await, 99, "{run}: {u} charged once");
    }
    // Distinct keys are distinct requests, concurrent or not: exactly the limit passes.
    let other = format!("conc2-{run}");
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut c = s.client().await;
        let r = req(
            "api",
            vec![id(&format!("{run}-d{i}")), desc(&[("tenant", &other)])],
        );
        tasks.push(tokio::spawn(
            async move { call(&mut c, r).await.overall_code },
        ));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.expect("task") == Code::Ok as i32);
    }
    assert_eq!(ok, 3, "{run}: distinct keys each charged");
}

/// Bad keys are the request's own error, naming the field; a domain without `idempotency:`
/// treats `request_id` as any descriptor.
async fn refusals(c: &mut Client, run: &str) {
    let tenant = format!("bad-{run}");
    let empty = c
        .should_rate_limit(req("api", vec![id(""), desc(&[("tenant", &tenant)])]))
        .await
        .expect_err("an empty key is refused");
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    assert!(
        empty.message().contains("descriptors[0].entries[0].value"),
        "{}",
        empty.message()
    );
    let two = c
        .should_rate_limit(req(
            "api",
            vec![desc(&[("tenant", &tenant)]), id("a"), id("b")],
        ))
        .await
        .expect_err("two different keys are refused");
    assert_eq!(two.code(), tonic::Code::InvalidArgument);
    assert!(
        two.message().contains("descriptors[2].entries[0].value"),
        "{}",
        two.message()
    );
    assert_eq!(left(c, "tenant", &tenant).await, 3, "nothing charged");
    // The same key twice is one key.
    let same = call(
        c,
        req("api", vec![id("s"), id("s"), desc(&[("tenant", &tenant)])]),
    )
    .await;
    assert_eq!(at(&same, 2), (Code::Ok, 2));
    // No `idempotency:` in the domain: every call is charged.
    for want in [2, 1, 0] {
        let r = call(c, req("plain", vec![id("k"), desc(&[("tenant", &tenant)])])).await;
        assert_eq!(at(&r, 1), (Code::Ok, want), "plain domain");
    }
}

/// `max_repeats: 2`: a key reused for every request pays for every third one.
async fn capped(c: &mut Client, run: &str) {
    let tenant = format!("cap-{run}");
    let mut seen = Vec::new();
    for _ in 0..7 {
        let r = call(
            c,
            req("capped", vec![id("same"), desc(&[("tenant", &tenant)])]),
        )
        .await;
        seen.push(at(&r, 1).1);
    }
    assert_eq!(seen, [9, 9, 9, 8, 8, 8, 7], "{run}");
    let r = call(c, req("capped", vec![desc_hits(&[("tenant", &tenant)], 0)])).await;
    assert_eq!(
        r.statuses[0].limit_remaining, 7,
        "{run}: charged three times"
    );
}

async fn run_all(flags: &[&str], label: &str) -> TestServer {
    let s = TestServer::start(
        &[("a.yaml", RULES), ("p.yaml", PLAIN), ("c.yaml", CAPPED)],
        flags,
    )
    .await;
    let run = format!("{label}-{}", std::process::id());
    let mut c = s.client().await;
    sequential(&mut c, &run).await;
    settlement(&mut c, &run).await;
    concurrent(&s, &run).await;
    refusals(&mut c, &run).await;
    capped(&mut c, &run).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_charges_once() {
    let s = run_all(&[], "mem").await;
    let metrics = s.metrics();
    assert!(
        metrics.contains("sluice_idempotency_requests_total{result=\"replayed\"}"),
        "{metrics}"
    );
    // The ttl passes: the same key is a new request.
    let mut c = s.client().await;
    let r = |k: &str| req("api", vec![id(k), desc(&[("tenant", "ttl")])]);
    assert_eq!(at(&call(&mut c, r("t")).await, 1), (Code::Ok, 2));
    s.clock.advance(Duration::from_secs(599));
    assert_eq!(at(&call(&mut c, r("t")).await, 1), (Code::Ok, 2));
    assert_eq!(left(&mut c, "tenant", "ttl").await, 2);
    s.clock.advance(Duration::from_secs(1));
    assert_eq!(
        at(&call(&mut c, r("t")).await, 1),
        (Code::Ok, 1),
        "ttl over"
    );
    s.stop().await;

    let s = run_all(&["--atomic-admission"], "mematomic").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_node_charges_once() {
    let node = RedisServer::start();
    let url = node.url();
    let s = run_all(
        &["--backend", "redis", "--redis-nodes", url.as_str()],
        "redis",
    )
    .await;
    // No extra round trip: one script call per request, first attempt or repeat.
    let mut c = s.client().await;
    let (before, failed) = (node.calls("evalsha"), node.failed_calls("evalsha"));
    for k in ["x", "x", "y", "x", "y"] {
        call(
            &mut c,
            req("api", vec![id(k), desc(&[("tenant", "calls")])]),
        )
        .await;
    }
    assert_eq!(node.calls("evalsha") - before, 5, "one call each");
    assert_eq!(node.failed_calls("evalsha"), failed, "no script error");
    s.stop().await;
    // Records live beside the counters, for the rule's ttl.
    let keys = node.keys("*_#r*");
    let record = keys.first().expect("a record in Redis");
    let ttl: u64 = node
        .command(&format!("PTTL {record}"))
        .trim()
        .trim_start_matches(':')
        .parse()
        .expect("PTTL");
    assert!(ttl > 0 && ttl <= 600_000, "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shards_charge_once() {
    let nodes = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let urls = nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",");
    let flags = ["--backend", "redis", "--redis-nodes", urls.as_str()];
    run_all(&flags, "shards").await.stop().await;
    let atomic = [&flags[..], &["--atomic-admission"]].concat();
    run_all(&atomic, "shardsatomic").await.stop().await;
    let with_records = nodes.iter().filter(|n| !n.keys("*_#r*").is_empty()).count();
    assert!(with_records > 1, "records on several shards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_charges_once() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls().join(",");
    let flags = ["--backend", "redis_cluster", "--redis-nodes", urls.as_str()];
    run_all(&flags, "cluster").await.stop().await;
}
