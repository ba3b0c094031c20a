//! Calendar windows (`calendar: true`): a monthly budget resets on the 1st at 00:00 UTC, a
//! daily one at local midnight of its `utc_offset`, in the memory store (over gRPC, with the
//! server's manual clock) and in Redis (a real redis-server, given the same manual time as the
//! memory store, as the other store-equivalence tests do; and once on Redis `TIME`). Expected
//! boundaries are literal Unix times (from `date -u`), not computed by the code under test.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use sluice::clock::{Clock, ManualClock, SystemClock};
use sluice::limiter::calendar::{Calendar, MONTH_SECS, YEAR_SECS};
use sluice::limiter::{Algorithm, Op};
use sluice::store::memory::MemoryStore;
use sluice::store::redis::{RedisConfig, RedisStore};
use sluice::store::Store;
use std::sync::Arc;
use std::time::Duration;
use support::http::http_get;
use support::redis::{both, RedisServer};
use support::*;

const DAY: u64 = 86_400;
/// 2026-02-01T00:00:00Z.
const FEB_1_2026: u64 = 1_769_904_000;
/// 2026-03-01T00:00:00Z.
const MAR_1_2026: u64 = 1_772_323_200;

const RULES: &str = r#"
domain: budget
descriptors:
  - key: tenant
    rate_limit: {unit: month, requests_per_unit: 3, calendar: true}
  - key: plain
    rate_limit: {unit: month, requests_per_unit: 3}
  - key: daily
    rate_limit: {unit: day, requests_per_unit: 1, calendar: true, utc_offset: "+05:30"}
"#;

fn secs(at: u64) -> Duration {
    Duration::from_secs(at)
}

/// `(code, remaining, duration_until_reset in s)` of the only status.
fn status(r: &RateLimitResponse) -> (Code, u32, i64) {
    assert_eq!(r.statuses.len(), 1, "{r:?}");
    let s = &r.statuses[0];
    let reset = s.duration_until_reset.as_ref().expect("reset").seconds;
    (code(s), s.limit_remaining, reset)
}

#[tokio::test]
async fn a_calendar_month_resets_exactly_on_the_first_and_the_default_month_does_not() {
    let s = TestServer::start(&[("b.yaml", RULES)], &["--response-headers", "ratelimit"]).await;
    let mut c = s.client().await;
    let tenant = || req("budget", vec![desc(&[("tenant", "acme")])]);
    s.clock.set(secs(FEB_1_2026 - 2));
    for remaining in [2, 1, 0] {
        let r = call(&mut c, tenant()).await;
        assert_eq!(status(&r), (Code::Ok, remaining, 2), "2 s to 1 February");
    }
    let r = call(&mut c, tenant()).await;
    assert_eq!(status(&r), (Code::OverLimit, 0, 2));
    let reset = r
        .response_headers_to_add
        .iter()
        .find(|h| h.key == "RateLimit-Reset");
    assert_eq!(reset.map(|h| h.value.as_str()), Some("2"));
    s.clock.set(secs(FEB_1_2026 - 1));
    assert_eq!(
        status(&call(&mut c, tenant()).await),
        (Code::OverLimit, 0, 1)
    );
    s.clock.set(secs(FEB_1_2026));
    assert_eq!(
        status(&call(&mut c, tenant()).await),
        (Code::Ok, 2, 28 * 86_400),
        "a fresh count on the 1st; February 2026 has 28 days"
    );
    // Upstream's month is unchanged: 30 days counted from the epoch.
    let r = call(&mut c, req("budget", vec![desc(&[("plain", "acme")])])).await;
    let expected = MONTH_SECS - FEB_1_2026 % MONTH_SECS;
    assert_eq!(
        status(&r),
        (Code::Ok, 2, i64::try_from(expected).expect("small"))
    );
    assert_ne!(expected, 28 * 86_400);
    s.stop().await;
}

#[tokio::test]
async fn a_calendar_day_resets_at_local_midnight_of_its_offset() {
    let s = TestServer::start(&[("b.yaml", RULES)], &[]).await;
    let mut c = s.client().await;
    let daily = || req("budget", vec![desc(&[("daily", "acme")])]);
    // Midnight of 2 March at +05:30 is 2026-03-01T18:30:00Z.
    let midnight = 1_772_389_800;
    s.clock.set(secs(midnight - 1));
    assert_eq!(status(&call(&mut c, daily()).await), (Code::Ok, 0, 1));
    assert_eq!(
        status(&call(&mut c, daily()).await),
        (Code::OverLimit, 0, 1)
    );
    s.clock.set(secs(midnight));
    assert_eq!(status(&call(&mut c, daily()).await), (Code::Ok, 0, 86_400));
    s.stop().await;
}

#[tokio::test]
async fn rlconfig_shows_the_calendar() {
    let s = TestServer::start(&[("b.yaml", RULES)], &[]).await;
    let r = http_get(s.http, "/rlconfig", &[])
        .await
        .expect("GET /rlconfig");
    let flags = "shadow_mode: false, quota_mode: false";
    for line in [
        format!("budget.tenant: unit=MONTH requests_per_unit=3, {flags}, calendar: true\n"),
        format!("budget.plain: unit=MONTH requests_per_unit=3, {flags}\n"),
        format!(
            "budget.daily: unit=DAY requests_per_unit=1, {flags}, calendar: true, utc_offset: +05:30\n"
        ),
    ] {
        assert!(r.body.contains(&line), "{line:?} in {r:?}");
    }
    s.stop().await;
}

#[test]
fn calendar_on_another_algorithm_is_rejected_with_its_path() {
    let text = "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: month, requests_per_unit: 1, calendar: true, algorithm: token_bucket}\n";
    let e = sluice::rules::parse::parse_domain("rules/d.yaml", text).expect_err("rejected");
    assert_eq!(e.path, "descriptors[0].rate_limit.calendar");
    assert!(e.reason.contains("fixed_window"), "{e}");
}

// ---- Redis: the script against the memory store, on the same manual time.

async fn redis(node: &RedisServer, clock: Option<Arc<ManualClock>>, atomic: bool) -> RedisStore {
    RedisStore::connect(RedisConfig {
        key_prefix: "x:".into(),
        timeout: Duration::from_secs(2),
        clock: clock.map(|c| c as Arc<dyn Clock>),
        atomic,
        ..RedisConfig::new(vec![node.url()])
    })
    .await
    .expect("connect")
}

fn calendar(key: &str, offset_minutes: i16, period: u64, limit: u32, hits: u32) -> Op {
    Op {
        key: key.into(),
        algorithm: Algorithm::CalendarWindow(Calendar::new(offset_minutes).expect("offset")),
        requests_per_unit: limit,
        period_secs: period,
        burst: limit,
        hits,
        refund: false,
    }
}

/// A boundary: an op, the last second of one window and the first of the next, and how long
/// each of the two windows has left at those seconds.
struct Edge {
    op: Op,
    boundary: u64,
    next_len: u64,
}

fn edges() -> Vec<Edge> {
    vec![
        // 31 January → 1 February.
        Edge {
            op: calendar("jan", 0, MONTH_SECS, 2, 1),
            boundary: FEB_1_2026,
            next_len: 28 * DAY,
        },
        // 28 February 2028 is followed by the 29th (leap year), then 1 March.
        Edge {
            op: calendar("leap", 0, MONTH_SECS, 2, 1),
            boundary: 1_835_481_600, // 2028-03-01
            next_len: 31 * DAY,
        },
        // 28 February 2026 is followed by 1 March (common year).
        Edge {
            op: calendar("common", 0, MONTH_SECS, 2, 1),
            boundary: MAR_1_2026,
            next_len: 31 * DAY,
        },
        // December → January, as a month and as a year (2027 is common, 365 days).
        Edge {
            op: calendar("dec", 0, MONTH_SECS, 2, 1),
            boundary: 1_798_761_600, // 2027-01-01
            next_len: 31 * DAY,
        },
        Edge {
            op: calendar("year", 0, YEAR_SECS, 2, 1),
            boundary: 1_798_761_600,
            next_len: 365 * DAY,
        },
        // Local midnight at +14:00, −12:00 and +05:30.
        Edge {
            op: calendar("east", 14 * 60, DAY, 2, 1),
            boundary: 1_772_359_200, // 2026-03-01T10:00Z
            next_len: DAY,
        },
        Edge {
            op: calendar("west", -12 * 60, DAY, 2, 1),
            boundary: 1_772_452_800, // 2026-03-02T12:00Z
            next_len: DAY,
        },
        Edge {
            op: calendar("india", 330, DAY, 2, 1),
            boundary: 1_772_389_800, // 2026-03-01T18:30Z
            next_len: DAY,
        },
    ]
}

#[tokio::test]
async fn redis_and_memory_reset_alike_at_every_calendar_boundary() {
    let node = RedisServer::start();
    let clock = Arc::new(ManualClock::new(secs(FEB_1_2026)));
    let memory = MemoryStore::new(clock.clone(), 1_000);
    let remote = redis(&node, Some(clock.clone()), false).await;
    for e in edges() {
        let what = &e.op.key;
        // Half a second before the boundary: 1 s to go in whole seconds, as upstream rounds.
        clock.set(Duration::from_millis(e.boundary * 1_000 - 500));
        let mut over = e.op.clone();
        over.hits = 3;
        let o = both(&memory, &remote, std::slice::from_ref(&over)).await;
        assert_eq!((o[0].allowed, o[0].reset_after), (false, secs(1)), "{what}");
        clock.set(secs(e.boundary));
        let o = both(&memory, &remote, std::slice::from_ref(&e.op)).await;
        assert_eq!(
            (
                o[0].allowed,
                o[0].used_before,
                o[0].remaining,
                o[0].reset_after
            ),
            (true, 0, 1, secs(e.next_len)),
            "{what}: a fresh window"
        );
        // The new window's Redis key carries its start and expires at its end (plus the 60 s
        // the script adds while time is injected).
        let key = format!("x:{what}_{}", e.boundary);
        assert_eq!(node.command(&format!("GET {key}")), "1\r\n", "{key}");
        let pttl: u64 = node
            .command(&format!("PTTL {key}"))
            .trim()
            .trim_start_matches(':')
            .parse()
            .expect("a TTL");
        let expected = e.next_len * 1_000 + 60_000;
        assert!(
            pttl <= expected && pttl + 10_000 > expected,
            "{key}: {pttl} ms"
        );
    }
    // 28 February 2028 is not the end of the month: the 29th follows.
    clock.set(secs(1_835_395_200 - 1)); // 2028-02-28T23:59:59Z
    let o = both(&memory, &remote, &[calendar("feb28", 0, MONTH_SECS, 2, 1)]).await;
    assert_eq!(o[0].reset_after, secs(DAY + 1));
}

#[tokio::test]
async fn redis_and_memory_agree_on_refunds_repeats_and_all_or_nothing() {
    let node = RedisServer::start();
    let clock = Arc::new(ManualClock::new(secs(MAR_1_2026 - 10)));
    let memory = MemoryStore::new(clock.clone(), 1_000);
    let remote = redis(&node, Some(clock.clone()), false).await;
    // The same counter twice in one request, then a refund: the script's general path.
    let charge = calendar("g", 0, MONTH_SECS, 5, 2);
    let mut refund = charge.clone();
    refund.refund = true;
    let o = both(&memory, &remote, &[charge.clone(), charge.clone()]).await;
    assert_eq!((o[1].used_after, o[1].reset_after), (4, secs(10)));
    let o = both(&memory, &remote, &[refund]).await;
    assert_eq!(o[0].used_after, 2);
    let pttl = node.command("PTTL x:g_1769904000"); // February's key
    assert!(pttl.starts_with(':') && !pttl.starts_with(":-"), "{pttl}");

    // All-or-nothing: a request denied by another counter reports the calendar one as a check,
    // with its calendar reset.
    let memory = MemoryStore::new(clock.clone(), 1_000).all_or_nothing(true);
    let remote = redis(&node, Some(clock.clone()), true).await;
    let day = calendar("d", 120, DAY, 5, 1);
    let blocked = Op {
        algorithm: Algorithm::FixedWindow,
        requests_per_unit: 0,
        ..calendar("z", 0, 60, 0, 1)
    };
    let o = both(&memory, &remote, &[day.clone(), blocked]).await;
    // 10 s before 1 March UTC is 01:59:50 on 1 March at +02:00: 22 h 0 min 10 s to go.
    assert_eq!(
        (o[0].allowed, o[0].used_after, o[0].reset_after),
        (true, 0, secs(22 * 3_600 + 10))
    );
    assert!(!o[1].allowed);
}

#[tokio::test]
async fn on_redis_time_a_month_ends_on_the_first() {
    let node = RedisServer::start();
    let remote = redis(&node, None, false).await;
    let before = SystemClock.now().as_secs();
    let o = remote
        .apply(&[calendar("now", 0, MONTH_SECS, 5, 1)], None)
        .await
        .expect("redis");
    let after = SystemClock.now().as_secs();
    assert!(!o[0].fallback && o[0].allowed, "{o:?}");
    let reset = o[0].reset_after.as_secs();
    // The script's now lies between ours: the window ends at the next 1st, 00:00 UTC.
    let first_at_midnight = |end: u64| {
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{end}"), "+%d %H:%M:%S"])
            .output()
            .expect("date");
        String::from_utf8_lossy(&out.stdout).trim() == "01 00:00:00"
    };
    assert!(
        (before..=after).any(|t| first_at_midnight(t + reset)),
        "{reset} s from {before}…{after} is not a 1st at midnight"
    );
    assert!(reset <= 31 * DAY);
}

#[tokio::test]
async fn redis_and_memory_agree_on_calendar_windows_across_the_whole_time_range() {
    let node = RedisServer::start();
    let clock = Arc::new(ManualClock::new(Duration::ZERO));
    let memory = MemoryStore::new(clock.clone(), 10_000);
    let remote = redis(&node, Some(clock.clone()), false).await;
    // A fixed xorshift sequence: the same cases every run, spread from the epoch to 2112.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let periods = [DAY, MONTH_SECS, YEAR_SECS, 3_600, 7 * DAY];
    let max_us = sluice::limiter::NOW_CAP_US;
    for i in 0..300u64 {
        let at_us = match i {
            0 => 1, // (0 would make the script read Redis TIME)
            1 => max_us,
            2..=20 => next() % (3 * DAY * 1_000_000), // the first days of 1970
            _ => next() % max_us,
        };
        let offset = i16::try_from(next() % 1_681).expect("small") - 840;
        let period = periods[usize::try_from(next() % 5).expect("small")];
        clock.set(Duration::from_micros(at_us));
        let op = calendar(&format!("r{i}"), offset, period, 3, 1);
        let o = both(&memory, &remote, std::slice::from_ref(&op)).await;
        assert!(o[0].reset_after > Duration::ZERO, "{op:?} at {at_us}");
    }
}

#[tokio::test]
async fn redis_and_memory_agree_around_every_leap_day_and_new_year_until_2112() {
    let node = RedisServer::start();
    let clock = Arc::new(ManualClock::new(Duration::ZERO));
    let memory = MemoryStore::new(clock.clone(), 10_000);
    let remote = redis(&node, Some(clock.clone()), false).await;
    let midnight = |y: i64, m: u32, d: u32| {
        u64::try_from(sluice::limiter::calendar::days_from_civil(y, m, d)).expect("after 1970")
            * DAY
    };
    for year in 1971..=2111 {
        for at in [
            midnight(year, 2, 28) + DAY - 1,
            midnight(year, 3, 1) - 1,
            midnight(year, 3, 1),
            midnight(year, 1, 1) - 1,
            midnight(year, 1, 1),
        ] {
            clock.set(secs(at));
            let ops = [
                calendar(&format!("m{at}"), 0, MONTH_SECS, 3, 1),
                calendar(&format!("y{at}"), 0, YEAR_SECS, 3, 1),
                calendar(&format!("e{at}"), 14 * 60, DAY, 3, 1),
                calendar(&format!("w{at}"), -12 * 60, DAY, 3, 1),
            ];
            both(&memory, &remote, &ops).await;
        }
    }
}

#[tokio::test]
async fn a_runtime_override_keeps_the_calendar_and_the_months_count() {
    const TOKEN: &str = "0123456789abcdef-test-token";
    let secrets = tempfile::tempdir().expect("tempdir");
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
    let path = token_file.to_string_lossy().to_string();
    let s = TestServer::start(&[("b.yaml", RULES)], &["--admin-token-file", &path]).await;
    let mut c = s.client().await;
    let tenant = || req("budget", vec![desc(&[("tenant", "acme")])]);
    s.clock.set(secs(FEB_1_2026 - 100));
    for _ in 0..3 {
        call(&mut c, tenant()).await;
    }
    assert_eq!(
        status(&call(&mut c, tenant()).await),
        (Code::OverLimit, 0, 100)
    );
    // Raise the budget for the rule: same unit, no algorithm named.
    let body =
        r#"{"rule":"budget.tenant","requests_per_unit":10,"unit":"month","ttl_seconds":3600}"#;
    let set =
        support::http::request(s.http, "POST", "/admin/overrides", Some(TOKEN), Some(body)).await;
    assert!(set.status == 200 || set.status == 201, "{set:?}");
    assert_eq!(
        status(&call(&mut c, tenant()).await),
        (Code::Ok, 5, 100),
        "the month's 4 hits carry on (+1 = 5 of 10), still reset on the 1st"
    );
    // Another unit: that unit's calendar window, on a counter of its own.
    let body = r#"{"rule":"budget.tenant","requests_per_unit":2,"unit":"day","ttl_seconds":3600}"#;
    let set =
        support::http::request(s.http, "POST", "/admin/overrides", Some(TOKEN), Some(body)).await;
    assert!(set.status == 200 || set.status == 201, "{set:?}");
    assert_eq!(status(&call(&mut c, tenant()).await), (Code::Ok, 1, 100));
    s.stop().await;
}
