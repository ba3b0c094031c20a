//! Concurrency slots in Redis (`lua/slots.lua`): the gRPC cases of `tests/concurrency_slots.rs`
//! on a real redis-server; the Redis slot tables held to `MemorySlots`' exact outcomes on
//! random op sequences under one manual clock; the per-op sweep bound; keys that vanish.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use sluice::clock::{Clock, ManualClock};
use sluice::concurrency::memory::MemorySlots;
use sluice::concurrency::{SlotAction, SlotBackend, SlotOp, SlotResult};
use sluice::store::redis::{RedisConfig, RedisStore};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::redis::RedisServer;
use support::slot_cases as cases;

/// The store flags for `node` (a generous deadline: these cases test semantics, not speed).
fn on(node: &RedisServer) -> [String; 6] {
    [
        "--backend".into(),
        "redis".into(),
        "--redis-nodes".into(),
        node.url(),
        "--redis-timeout".into(),
        "1s".into(),
    ]
}

fn refs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_slots_then_over_limit_and_a_release_frees_one() {
    let node = RedisServer::start();
    let flags = on(&node);
    cases::three_slots_then_over_limit_and_a_release_frees_one(&refs(&flags)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_lease_id_never_buys_a_slot() {
    let node = RedisServer::start();
    let flags = on(&node);
    cases::a_reused_lease_id_never_buys_a_slot(&refs(&flags)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_slots_never_go_below_zero() {
    let node = RedisServer::start();
    let flags = on(&node);
    cases::anonymous_slots_never_go_below_zero(&refs(&flags)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_key_holds_the_call_until_a_release() {
    let node = RedisServer::start();
    let flags = on(&node);
    cases::a_full_key_holds_the_call_until_a_release(&refs(&flags)).await;
}

/// 2026-01-01 12:00:01 UTC, in ms.
const T0_MS: u64 = 1_767_268_801_000;

/// Lease ids: anonymous, short ones, the empty one, ones that are stored hashed (a leading
/// `#`, longer than 64 bytes), and one shaped like the notices' separator.
fn lease(choice: usize) -> Option<String> {
    match choice {
        0 | 1 => None,
        2 => Some("a".into()),
        3 => Some("b".into()),
        4 => Some(String::new()),
        5 => Some("#h00".into()),
        6 => Some("x".repeat(70)),
        _ => Some("c:d".into()),
    }
}

/// One op: key index, action, lease id choice, lease (ms).
type OpSpec = (usize, SlotAction, usize, u64);

#[derive(Debug, Clone)]
struct Step {
    /// The clock moves this far first.
    advance_ms: u64,
    /// Then these ops run in one call.
    ops: Vec<OpSpec>,
}

#[derive(Debug, Clone)]
struct Case {
    two_shards: bool,
    /// Slots per key (0 included: every acquire is refused).
    maxes: Vec<u32>,
    steps: Vec<Step>,
}

fn case() -> impl Strategy<Value = Case> {
    let action = prop_oneof![
        5 => Just(SlotAction::Acquire),
        4 => Just(SlotAction::Release),
        1 => Just(SlotAction::Peek),
        1 => Just(SlotAction::Note),
    ];
    let advance = prop_oneof![
        3 => Just(0u64),
        3 => 1..1_200u64,
        1 => prop::sample::select(vec![1_000u64, 2_500, 5_000]),
        1 => 1..8_000u64,
    ];
    let leases = prop::sample::select(vec![1_000u64, 2_500, 5_000]);
    let op = (0..3usize, action, 0..8usize, leases);
    let step = (advance, prop::collection::vec(op, 1..=4))
        .prop_map(|(advance_ms, ops)| Step { advance_ms, ops });
    (
        any::<bool>(),
        prop::collection::vec(0..=4u32, 1..=3),
        prop::collection::vec(step, 1..=40),
    )
        .prop_map(|(two_shards, maxes, steps)| Case {
            two_shards,
            maxes,
            steps,
        })
}

/// Runs `case` on both tables; `Err` describes the first difference. Tallies what happened.
async fn run_case(
    case: &Case,
    nodes: &[RedisServer],
    n: usize,
    seen: &Mutex<BTreeMap<String, usize>>,
) -> Result<(), String> {
    let clock = Arc::new(ManualClock::new(Duration::from_millis(T0_MS)));
    let memory = MemorySlots::new(clock.clone(), 1_000_000);
    let shards = if case.two_shards { 2 } else { 1 };
    let store = RedisStore::connect(RedisConfig {
        key_prefix: format!("sl{n}:"),
        timeout: Duration::from_secs(2),
        clock: Some(clock.clone()),
        ..RedisConfig::new(nodes[..shards].iter().map(RedisServer::url).collect())
    })
    .await
    .map_err(|e| format!("connect: {e}"))?;
    let redis = store.slots();
    let rule: Arc<str> = Arc::from("d.k");
    for (s, step) in case.steps.iter().enumerate() {
        clock.advance(Duration::from_millis(step.advance_ms));
        let ops: Vec<SlotOp> = step
            .ops
            .iter()
            .map(|&(k, action, id, lease_ms)| {
                let k = k % case.maxes.len();
                SlotOp {
                    key: format!("d_k_{k}_#c"),
                    max: case.maxes[k],
                    lease_ms,
                    lease: lease(id),
                    action,
                    rule: rule.clone(),
                }
            })
            .collect();
        let m = memory.run(&ops, None).await.map_err(|e| e.to_string())?;
        let r = redis.run(&ops, None).await.map_err(|e| e.to_string())?;
        if r.iter().any(|o| o.fallback) {
            return Err(format!("step {s}: Redis failed (decided by fallback)"));
        }
        if m != r {
            return Err(format!(
                "step {s} at {:?} differs:\n ops {ops:#?}\n memory {m:#?}\n redis {r:#?}",
                clock.now()
            ));
        }
        let mut seen = seen.lock().map_err(|e| e.to_string())?;
        for o in &m {
            *seen.entry(format!("{:?}", o.result)).or_default() += 1;
            if o.expired > 0 {
                *seen.entry("expired".into()).or_default() += 1;
            }
        }
    }
    Ok(())
}

#[test]
fn memory_and_redis_slots_agree_on_random_sequences() {
    let nodes = [RedisServer::start(), RedisServer::start()];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = Config {
        cases: 192,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let n = AtomicUsize::new(0);
    let seen = Mutex::new(BTreeMap::new());
    let result = runner.run(&case(), |case| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        rt.block_on(run_case(&case, &nodes, i, &seen))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.into_inner().expect("tally");
    println!("outcomes: {seen:?}");
    for what in [
        "Granted",
        "Full",
        "InUse",
        "Released",
        "Absorbed",
        "Stray",
        "Unchanged",
        "expired",
    ] {
        assert!(
            seen.get(what).copied().unwrap_or(0) >= 10,
            "{what} barely exercised: {seen:?}"
        );
    }
}

fn op(key: &str, max: u32, lease: Option<&str>, action: SlotAction) -> SlotOp {
    SlotOp {
        key: key.into(),
        max,
        lease_ms: 1_000,
        lease: lease.map(str::to_owned),
        action,
        rule: Arc::from("d.k"),
    }
}

/// An op drops at most 100 expired leases of its key (bounded work per call); the rest go on
/// the next ops. (Memory drops all at once: the one documented difference.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_sweeps_at_most_100_expired_leases() {
    let node = RedisServer::start();
    let clock = Arc::new(ManualClock::new(Duration::from_millis(T0_MS)));
    let store = RedisStore::connect(RedisConfig {
        timeout: Duration::from_secs(2),
        clock: Some(clock.clone()),
        ..RedisConfig::new(vec![node.url()])
    })
    .await
    .expect("connect");
    let slots = store.slots();
    let many: Vec<SlotOp> = (0..150)
        .map(|_| op("k", 200, None, SlotAction::Acquire))
        .collect();
    let out = slots.run(&many, None).await.expect("acquired");
    assert!(out.iter().all(|o| o.result == SlotResult::Granted));
    clock.advance(Duration::from_millis(1_000));
    let peek = [op("k", 200, None, SlotAction::Peek)];
    let first = slots.run(&peek, None).await.expect("peek")[0];
    assert_eq!((first.expired, first.held), (100, 50));
    assert_eq!(first.next_expiry, Some(Duration::ZERO));
    let second = slots.run(&peek, None).await.expect("peek")[0];
    assert_eq!(
        (second.expired, second.held, second.next_expiry),
        (50, 0, None)
    );
}

/// Released slots leave no key behind; abandoned ones vanish with their lease (Redis `TIME`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_vanish_when_released_or_abandoned() {
    let node = RedisServer::start();
    let store = RedisStore::connect(RedisConfig {
        timeout: Duration::from_secs(2),
        key_prefix: "p:".into(),
        ..RedisConfig::new(vec![node.url()])
    })
    .await
    .expect("connect");
    let slots = store.slots();
    let run = |ops: Vec<SlotOp>| {
        let slots = slots.clone();
        async move { slots.run(&ops, None).await.expect("answered") }
    };
    run(vec![op("k", 2, Some("a"), SlotAction::Acquire)]).await;
    run(vec![op("k", 2, Some("a"), SlotAction::Note)]).await;
    run(vec![op("k", 2, None, SlotAction::Acquire)]).await;
    assert_eq!(
        node.command("EXISTS p:k:ids p:k:anon p:k:absorb").trim(),
        ":3"
    );
    let ttl: i64 = node
        .command("PTTL p:k:absorb")
        .trim()
        .trim_start_matches(':')
        .parse()
        .expect("a TTL");
    assert!((1..=1_000).contains(&ttl), "{ttl}");
    for o in [
        op("k", 2, Some("a"), SlotAction::Release),
        op("k", 2, Some("a"), SlotAction::Release),
        op("k", 2, None, SlotAction::Release),
    ] {
        run(vec![o]).await;
    }
    assert_eq!(
        node.command("DBSIZE").trim(),
        ":0",
        "released: nothing left"
    );
    run(vec![
        op("k", 2, Some("b"), SlotAction::Acquire),
        op("k", 2, Some("b"), SlotAction::Acquire),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        node.command("EXISTS p:k:ids p:k:anon p:k:absorb").trim(),
        ":0",
        "abandoned keys expire with their lease"
    );
}
