//! A real Envoy, configured by `deploy/envoy/envoy.yaml`, in front of an in-process backend and
//! asking the real sluice binary serving `deploy/envoy/rules`: the shipped config and rules
//! limit per tenant, show the X-RateLimit headers, and fail open when sluice is gone; they limit
//! per client address (`/ip`), charge a route's `hits_addend` (`/cost`), and check a quota before
//! a request and charge it when the stream is done (`/quota`).
//!
//! The harness (processes, ports, HTTP client, stats) is `support::envoy`; Envoy comes from
//! `$SLUICE_ENVOY` or `.venv/bin/envoy` (`scripts/test` installs it there).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::envoy::{http_request, Response, Stack, WAIT};
use tokio::time::{sleep, Instant};

/// The X-RateLimit-Limit Envoy builds from sluice's answer for a tenant at 3/minute: the
/// nearest limit first, then every descriptor's policy in request order (route ceiling, tenant).
const ACME_LIMIT: &str = "3, 1000;w=1, 3;w=60";
/// `/ip`: [(remote_address, <client IP>)] at 5 a minute.
const IP_LIMIT: &str = "5, 5;w=60";
/// `/cost`: [(cost, report)] at 10 hits a minute, 3 hits a request.
const COST_LIMIT: &str = "10, 10;w=60";
/// `/quota`: [(quota, export)] at 3 a minute, checked before the request, charged after it.
const QUOTA_LIMIT: &str = "3, 3;w=60";

/// `deploy/envoy/envoy.yaml` in front of sluice serving `deploy/envoy/rules`.
async fn start_stack() -> Stack {
    Stack::start(
        "deploy/envoy/envoy.yaml",
        &["--rules", "deploy/envoy/rules"],
    )
    .await
}

// The requests and checks of these tests. (`Stack` is defined in `support::envoy`, a module of
// this test crate, so this crate may add inherent methods to it.)
impl Stack {
    /// `GET /` through Envoy, with `x-tenant` when given.
    async fn get(&self, tenant: Option<&str>) -> Response {
        let headers: Vec<(&str, &str)> = tenant.map(|t| ("x-tenant", t)).into_iter().collect();
        self.get_path("/", &headers).await
    }

    /// A counter of the ratelimit filter, `cluster.backend.ratelimit.<name>`: one count per
    /// request-time decision (`ok`, `over_limit`, `error`, `failure_mode_allowed`); the
    /// stream-done calls of `apply_on_stream_done` are not counted here.
    async fn filter_stat(&self, name: &str) -> u64 {
        self.envoy_stat(&format!("cluster.backend.ratelimit.{name}"))
            .await
    }

    /// Waits until Envoy has had sluice's answer to exactly `calls` ShouldRateLimit calls in all
    /// (`cluster.sluice.upstream_rq_completed`). A stream-done charge is fire-and-forget, made
    /// after the client has its response; once its answer is back, sluice has counted it.
    async fn wait_for_sluice_calls(&self, calls: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let completed = self
                .envoy_stat("cluster.sluice.upstream_rq_completed")
                .await;
            assert!(
                completed <= calls,
                "{completed} calls to sluice, expected {calls}\n{}",
                self.logs()
            );
            if completed == calls {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{completed} calls to sluice after {WAIT:?}, expected {calls}\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// Hits counted in the current window for the descriptor `[(key, value)]` of domain `edge`,
    /// read from sluice's `POST /admin/usage`, which charges nothing.
    async fn used(&self, key: &str, value: &str) -> u64 {
        let body = serde_json::json!({
            "domain": "edge",
            "descriptor": [{"key": key, "value": value}],
        })
        .to_string();
        let r = http_request(self.sluice_http, "POST", "/admin/usage", &[], Some(&body))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        let context = || format!("usage of [({key}, {value})]: {r:?}\n{}", self.logs());
        assert_eq!(r.status, 200, "{}", context());
        let usage: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", context()));
        assert_eq!(usage["status"], "limited", "{}", context());
        let limits = usage["limits"].as_array().expect("limits array");
        assert_eq!(limits.len(), 1, "{}", context());
        limits[0]["used"]
            .as_u64()
            .unwrap_or_else(|| panic!("used: {}", context()))
    }

    /// Asserts `r` is a 200 from the backend carrying the X-RateLimit headers.
    fn assert_admitted(&self, r: &Response, limit: &str, remaining: u64, what: &str) {
        let context = || format!("{what}: {r:?}\n{}", self.logs());
        assert_eq!(r.status, 200, "{}", context());
        assert_eq!(r.body, "ok", "{}", context());
        assert_eq!(r.header("x-envoy-ratelimited"), None, "{}", context());
        assert_eq!(r.header("x-ratelimit-limit"), Some(limit), "{}", context());
        let remaining_text = remaining.to_string();
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some(remaining_text.as_str()),
            "{}",
            context()
        );
        let reset: u64 = r
            .header("x-ratelimit-reset")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("x-ratelimit-reset in seconds: {}", context()));
        assert!((1..=60).contains(&reset), "{}", context());
    }

    /// Asserts `r` is Envoy's rate-limited reply.
    fn assert_limited(&self, r: &Response, limit: &str, what: &str) {
        let context = || format!("{what}: {r:?}\n{}", self.logs());
        assert_eq!(r.status, 429, "{}", context());
        assert_eq!(
            r.header("x-envoy-ratelimited"),
            Some("true"),
            "{}",
            context()
        );
        assert_eq!(r.header("x-ratelimit-limit"), Some(limit), "{}", context());
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some("0"),
            "{}",
            context()
        );
        assert_ne!(r.body, "ok", "the backend must not see it: {}", context());
    }

    /// Sends acme's three allowed requests and the fourth, refused one.
    async fn exhaust_acme(&self) {
        for i in 1..=3u64 {
            let r = self.get(Some("acme")).await;
            self.assert_admitted(&r, ACME_LIMIT, 3 - i, &format!("acme request {i}"));
        }
        let r = self.get(Some("acme")).await;
        self.assert_limited(&r, ACME_LIMIT, "acme request 4");
    }
}

/// The tenant limits count per wall-clock minute (fixed window, sluice's system clock): if the
/// minute ends within 10 s, wait for the next one so a test's requests share one window.
async fn start_of_a_fresh_minute() {
    let into_minute = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        % 60.0;
    if into_minute > 50.0 {
        sleep(Duration::from_secs_f64(60.5 - into_minute)).await;
    }
}

/// `deploy/envoy/envoy.yaml` with its port placeholders filled (the listener and admin port on

#[tokio::test(flavor = "multi_thread")]
async fn envoy_limits_each_tenant_and_shows_ratelimit_headers() {
    let stack = start_stack().await;
    start_of_a_fresh_minute().await;

    // acme: 3 a minute. Requests 1–3 reach the backend, each with one fewer remaining.
    stack.exhaust_acme().await;

    // Another tenant has its own counter, untouched by acme's.
    let r = stack.get(Some("globex")).await;
    stack.assert_admitted(
        &r,
        "3, 1000;w=1, 3;w=60",
        2,
        "globex, after acme is limited",
    );

    // bigco's exact-value rule (100 a minute) beats the per-tenant default.
    let r = stack.get(Some("bigco")).await;
    stack.assert_admitted(&r, "100, 1000;w=1, 100;w=60", 99, "bigco");

    // Without x-tenant only the route's descriptor is sent: the 1000/second ceiling, of which
    // this test has used at most 6 (this second may have seen fewer).
    let r = stack.get(None).await;
    let context = format!("no tenant: {r:?}\n{}", stack.logs());
    assert_eq!(r.status, 200, "{context}");
    assert_eq!(
        r.header("x-ratelimit-limit"),
        Some("1000, 1000;w=1"),
        "{context}"
    );
    let remaining: u64 = r
        .header("x-ratelimit-remaining")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("x-ratelimit-remaining: {context}"));
    assert!((993..=999).contains(&remaining), "{context}");

    // Every decision came from sluice: none of the 200s above was a fail-open.
    assert_eq!(stack.filter_stat("ok").await, 6, "{}", stack.logs());
    assert_eq!(stack.filter_stat("over_limit").await, 1, "{}", stack.logs());
    assert_eq!(stack.filter_stat("error").await, 0, "{}", stack.logs());
    assert_eq!(
        stack.filter_stat("failure_mode_allowed").await,
        0,
        "{}",
        stack.logs()
    );

    // The shipped config uses no deprecated field (Envoy warns at start-up about each one).
    assert!(
        !stack.envoy.log().contains("deprecated"),
        "{}",
        stack.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_fails_open_when_sluice_dies() {
    let mut stack = start_stack().await;
    start_of_a_fresh_minute().await;

    // Limiting is on: acme is refused on its fourth request.
    stack.exhaust_acme().await;

    stack.sluice.kill();

    // failure_mode_deny: false, so with sluice gone the same tenant passes again, every time,
    // and without X-RateLimit headers (there is no answer to build them from).
    for i in 1..=3 {
        let r = stack.get(Some("acme")).await;
        let context = format!("acme after the kill, request {i}: {r:?}\n{}", stack.logs());
        assert_eq!(r.status, 200, "{context}");
        assert_eq!(r.body, "ok", "{context}");
        assert_eq!(r.header("x-envoy-ratelimited"), None, "{context}");
        assert_eq!(r.header("x-ratelimit-limit"), None, "{context}");
    }
    // Each of those was an RLS error let through, not a decision.
    assert_eq!(stack.filter_stat("error").await, 3, "{}", stack.logs());
    assert_eq!(
        stack.filter_stat("failure_mode_allowed").await,
        3,
        "{}",
        stack.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_limits_each_client_address() {
    let stack = start_stack().await;
    start_of_a_fresh_minute().await;

    // /ip sends [(remote_address, <peer IP>)]: 5 a minute for 127.0.0.1. X-Forwarded-For does
    // not change the key (use_remote_address: the peer is the trusted address), and neither
    // does spelling the path differently (normalize_path, merge_slashes: still the /ip route).
    let requests: [(&str, &[(&str, &str)]); 5] = [
        ("/ip", &[]),
        ("/ip", &[("x-forwarded-for", "203.0.113.7")]),
        ("//ip", &[]),
        (
            "/x/../ip/sub",
            &[("x-forwarded-for", "203.0.113.8, 198.51.100.1")],
        ),
        ("/ip/", &[]),
    ];
    for (i, (path, headers)) in (1..=5u64).zip(requests) {
        let r = stack.get_path(path, headers).await;
        stack.assert_admitted(&r, IP_LIMIT, 5 - i, &format!("/ip request {i} ({path})"));
    }
    let r = stack
        .get_path("/ip", &[("x-forwarded-for", "203.0.113.9")])
        .await;
    stack.assert_limited(&r, IP_LIMIT, "/ip request 6, claiming another address");

    // One counter, the peer's, holds all six hits (a refused hit counts too, as upstream); the
    // addresses the client claimed have none.
    assert_eq!(stack.used("remote_address", "127.0.0.1").await, 6);
    for claimed in ["203.0.113.7", "203.0.113.8", "198.51.100.1", "203.0.113.9"] {
        assert_eq!(stack.used("remote_address", claimed).await, 0, "{claimed}");
    }
    // The catch-all route does not send remote_address: /ipx is another route.
    let r = stack.get_path("/ipx", &[]).await;
    assert_eq!(r.status, 200, "/ipx: {r:?}\n{}", stack.logs());
    assert_eq!(
        r.header("x-ratelimit-limit"),
        Some("1000, 1000;w=1"),
        "/ipx: {r:?}"
    );

    assert_eq!(stack.filter_stat("ok").await, 6, "{}", stack.logs());
    assert_eq!(stack.filter_stat("over_limit").await, 1, "{}", stack.logs());
    assert_eq!(stack.filter_stat("error").await, 0, "{}", stack.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_charges_a_routes_hits_addend() {
    let stack = start_stack().await;
    start_of_a_fresh_minute().await;

    // /cost: [(cost, report)] with hits_addend 3 against 10 a minute. Each request takes 3.
    for i in 1..=3u64 {
        let r = stack.get_path("/cost", &[]).await;
        stack.assert_admitted(&r, COST_LIMIT, 10 - 3 * i, &format!("/cost request {i}"));
        assert_eq!(stack.used("cost", "report").await, 3 * i);
    }
    // 1 remains, the request costs 3: 12 > 10, refused though the count was under the limit.
    let r = stack.get_path("/cost", &[]).await;
    stack.assert_limited(&r, COST_LIMIT, "/cost request 4, with 1 remaining");
    assert_eq!(stack.used("cost", "report").await, 12);

    // One call per request, at request time only.
    stack.wait_for_sluice_calls(4).await;
    assert_eq!(stack.filter_stat("ok").await, 3, "{}", stack.logs());
    assert_eq!(stack.filter_stat("over_limit").await, 1, "{}", stack.logs());
    assert_eq!(stack.filter_stat("error").await, 0, "{}", stack.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_checks_a_quota_then_charges_it_when_the_stream_is_done() {
    let stack = start_stack().await;
    start_of_a_fresh_minute().await;

    // /quota: [(quota, export)] at 3 a minute, checked before the request (hits_addend 0) and
    // charged 1 after it (apply_on_stream_done). Each response's headers are the check's answer,
    // given before its own charge: request i sees the i - 1 charged before it. 3 charged is not
    // over 3, so the 4th request still passes, with 0 remaining.
    for i in 1..=4u64 {
        let r = stack.get_path("/quota", &[]).await;
        stack.assert_admitted(&r, QUOTA_LIMIT, 4 - i, &format!("/quota request {i}"));
        // The check and, once the stream is done, the charge: two calls per request.
        stack.wait_for_sluice_calls(2 * i).await;
        assert_eq!(
            stack.used("quota", "export").await,
            i,
            "after /quota request {i}\n{}",
            stack.logs()
        );
    }
    // 4 charged: over 3, so the check refuses. Envoy still makes the stream-done call for the
    // refused request (its local reply is a finished stream too), which charges it.
    let r = stack.get_path("/quota", &[]).await;
    stack.assert_limited(&r, QUOTA_LIMIT, "/quota request 5");
    stack.wait_for_sluice_calls(10).await;
    assert_eq!(stack.used("quota", "export").await, 5, "{}", stack.logs());

    // The filter's counters count the request-time checks only.
    assert_eq!(stack.filter_stat("ok").await, 4, "{}", stack.logs());
    assert_eq!(stack.filter_stat("over_limit").await, 1, "{}", stack.logs());
    assert_eq!(stack.filter_stat("error").await, 0, "{}", stack.logs());
}
