//! Property: the memory store and the Redis store (a real redis-server, time passed to the
//! script from the same manual clock) give identical outcomes, op by op, on random timelines:
//! several ops per request, the same counter twice in one request, checks, refunds, limits and
//! hits up to `u32::MAX`, every algorithm and period, both admission modes, one or two shards,
//! small steps, exact window edges and jumps of years.
//!
//! Bounded: a fixed seed and a fixed number of cases (whatever `PROPTEST_CASES` says), one
//! pair of redis-servers for the whole test, keys namespaced per case.

#[path = "support/redis.rs"]
mod redis_support;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use redis_support::RedisServer;
use sluice::clock::{Clock, ManualClock};
use sluice::limiter::Op;
use sluice::rules::model::Algorithm;
use sluice::store::memory::MemoryStore;
use sluice::store::redis::{RedisConfig, RedisStore};
use sluice::store::redis_conn::Topology;
use sluice::store::Store;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Noon on 2026-01-01 plus 0.25 s.
const T0_US: u64 = 1_767_268_800_250_000;

/// The units a rule may use, in seconds (second … year, and a week).
const PERIODS: [u64; 7] = [1, 60, 3_600, 86_400, 604_800, 2_592_000, 31_536_000];

/// One counter of a case: an op's fixed parameters (a key always has the same rule).
#[derive(Debug, Clone)]
struct Counter {
    algorithm: Algorithm,
    limit: u32,
    period: u64,
    burst: u32,
}

/// How the clock moves before a request.
#[derive(Debug, Clone)]
enum Advance {
    /// By this many microseconds.
    By(u64),
    /// To the next multiple of `period` seconds, plus `offset` µs (−1, 0 or +1).
    ToEdge { period: u64, offset: i8 },
}

/// One request: the clock moves, then these ops (counter index, hits, refund) run together.
#[derive(Debug, Clone)]
struct Request {
    advance: Advance,
    ops: Vec<(usize, u32, bool)>,
}

#[derive(Debug, Clone)]
struct Case {
    atomic: bool,
    two_shards: bool,
    counters: Vec<Counter>,
    requests: Vec<Request>,
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

fn amount() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0..8u32,
        2 => 1..100_000u32,
        1 => 4_000..6_000u32,
        1 => any::<u32>(),
        1 => Just(u32::MAX),
    ]
}

fn hits() -> impl Strategy<Value = u32> {
    prop_oneof![
        2 => Just(0u32),
        6 => 1..4u32,
        2 => 1..5_000u32,
        1 => any::<u32>(),
        1 => Just(u32::MAX),
    ]
}

fn advance() -> impl Strategy<Value = Advance> {
    prop_oneof![
        3 => Just(Advance::By(0)),
        3 => (1..2_000u64).prop_map(Advance::By),
        3 => (1..3_000_000u64).prop_map(Advance::By),
        2 => (1..4_000_000_000_000u64).prop_map(Advance::By),
        1 => (1..100_000_000_000_000u64).prop_map(Advance::By),
        // 31 years: a few of these pass 2⁵² µs, where both stores stop the clock.
        1 => Just(Advance::By(1_000_000_000_000_000)),
        3 => (prop::sample::select(PERIODS.to_vec()), -1..=1i8)
            .prop_map(|(period, offset)| Advance::ToEdge { period, offset }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let counter = (
        algorithm(),
        amount(),
        prop::sample::select(PERIODS.to_vec()),
        amount(),
    )
        .prop_map(|(algorithm, limit, period, burst)| Counter {
            algorithm,
            limit,
            period,
            burst,
        });
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(counter, 1..=3),
    )
        .prop_flat_map(|(atomic, two_shards, counters)| {
            let n = counters.len();
            let op = (0..n, hits(), prop::bool::weighted(0.15));
            let request = (advance(), prop::collection::vec(op, 1..=4))
                .prop_map(|(advance, ops)| Request { advance, ops });
            prop::collection::vec(request, 1..=12).prop_map(move |requests| Case {
                atomic,
                two_shards,
                counters: counters.clone(),
                requests,
            })
        })
}

fn move_clock(clock: &ManualClock, advance: &Advance) {
    let now = u64::try_from(clock.now().as_micros()).unwrap_or(u64::MAX);
    let to = match *advance {
        Advance::By(us) => now + us,
        Advance::ToEdge { period, offset } => {
            let p = period * 1_000_000;
            let edge = (now / p + 1) * p;
            edge.saturating_add_signed(i64::from(offset)).max(now)
        }
    };
    clock.set(Duration::from_micros(to));
}

/// Runs `case` on both stores; `Err` describes the first difference. Returns how many ops
/// were allowed and denied (so the suite can show it exercised both answers).
async fn run_case(case: &Case, nodes: &[RedisServer], n: usize) -> Result<(usize, usize), String> {
    let clock = Arc::new(ManualClock::new(Duration::from_micros(T0_US)));
    let memory = MemoryStore::new(clock.clone(), 1_000_000).all_or_nothing(case.atomic);
    let shards = if case.two_shards { 2 } else { 1 };
    let remote = RedisStore::connect(RedisConfig {
        nodes: nodes[..shards].iter().map(RedisServer::url).collect(),
        topology: Topology::Shards,
        tls_ca: None,
        tls_client: None,
        key_prefix: format!("eq{n}:"),
        timeout: Duration::from_secs(2),
        clock: Some(clock.clone()),
        atomic: case.atomic,
        fallback: Default::default(),
        local_max_keys: 1_000_000,
    })
    .await
    .map_err(|e| format!("connect: {e}"))?;
    let (mut allowed, mut denied) = (0, 0);
    for (r, request) in case.requests.iter().enumerate() {
        move_clock(&clock, &request.advance);
        let ops: Vec<Op> = request
            .ops
            .iter()
            .map(|&(c, hits, refund)| {
                let counter = &case.counters[c];
                Op {
                    key: format!("c{c}"),
                    algorithm: counter.algorithm,
                    requests_per_unit: counter.limit,
                    period_secs: counter.period,
                    burst: counter.burst,
                    hits,
                    refund,
                }
            })
            .collect();
        let m = memory.apply(&ops, None).await.map_err(|e| e.to_string())?;
        let d = remote.apply(&ops, None).await.map_err(|e| e.to_string())?;
        if let Some(i) = d.iter().position(|o| o.fallback) {
            return Err(format!(
                "request {r} op {i}: Redis failed (decided by fallback)"
            ));
        }
        if m != d {
            return Err(format!(
                "request {r} at {:?} differs:\n ops {ops:#?}\n memory {m:#?}\n redis {d:#?}",
                clock.now()
            ));
        }
        allowed += m.iter().filter(|o| o.allowed).count();
        denied += m.iter().filter(|o| !o.allowed).count();
    }
    Ok((allowed, denied))
}

#[test]
fn memory_and_redis_agree_on_random_timelines() {
    let nodes = [RedisServer::start(), RedisServer::start()];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = Config {
        cases: 128,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let seq = AtomicUsize::new(0);
    let allowed = AtomicUsize::new(0);
    let denied = AtomicUsize::new(0);
    let result = runner.run(&case(), |case| {
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let (a, d) = rt
            .block_on(run_case(&case, &nodes, n))
            .map_err(TestCaseError::fail)?;
        allowed.fetch_add(a, Ordering::Relaxed);
        denied.fetch_add(d, Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (a, d) = (allowed.into_inner(), denied.into_inner());
    assert!(
        a > 100 && d > 100,
        "both answers exercised: {a} allowed, {d} denied"
    );
}
