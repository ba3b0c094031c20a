//! Token budgets through a real Envoy on `deploy/envoy/envoy-tokens.yaml`: ext_authz turns the
//! demo API key into `x-sluice-tenant`, the ratelimit filter reserves `x-max-tokens` at request
//! and, at stream done, charges `x-usage-total-tokens` and gives the reservation back; the
//! upstream is the model-like `sluice-bench upstream` (streaming, so requests overlap).
//!
//! With reservations: concurrent clients spend a 10 000-token budget until 429; the tokens
//! admitted never exceed the budget (every one was reserved first), and once every stream has
//! ended sluice's count equals the sum of the `x-usage-total-tokens` the clients received,
//! exactly (denied requests included: Envoy sends their refund too). Without reservations (the
//! same config with `x-max-tokens: 0`: a check at request, the charge at stream done — README,
//! "LLM tokens") the same clients overshoot; both figures are printed for the README.
//!
//! Idempotent retries: a request retried with the same `Idempotency-Key` is counted once in the
//! tenant's request limit and reserved once; each attempt pays the tokens it really used (no
//! reservation is given back twice); another key is a new request.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::envoy::{
    listener_addr, logs, render_template, start_envoy, start_sluice, start_upstream, Proc,
};
use support::http::http_request;

const TEMPLATE: &str = "deploy/envoy/envoy-tokens.yaml";
const BUDGET: u64 = 10_000;
const MAX_TOKENS: u64 = 1000;
const COMPLETION: u64 = 200;
const CLIENTS: usize = 8;

const RULES: &str = "
domain: example
idempotency: {key: request_id, ttl: 10m}
descriptors:
  - key: tenant
    descriptors:
      - {key: budget, value: tokens, rate_limit: {unit: month, requests_per_unit: 10000, calendar: true}}
      - {key: budget, value: requests, rate_limit: {unit: hour, requests_per_unit: 1000}}
";

struct Gateway {
    envoy: Proc,
    sluice: Proc,
    upstream: Proc,
    listener: SocketAddr,
    sluice_http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start() -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).expect("rules dir");
        std::fs::write(rules.join("tokens.yaml"), RULES).expect("rules");
        let rules = rules.to_string_lossy().to_string();
        let (mut upstream, upstream_addr) = start_upstream(dir.path()).await;
        let (mut sluice, grpc, sluice_http) = start_sluice(
            dir.path(),
            &[
                "--rules",
                &rules,
                "--authz-config",
                "examples/authz/config.yaml",
                "--authz-keys",
                "examples/authz/keys.yaml",
            ],
        )
        .await;
        let config = render_template(
            TEMPLATE,
            &[
                ("LISTEN_PORT", "0".to_owned()),
                ("ADMIN_PORT", "0".to_owned()),
                ("SLUICE_PORT", grpc.port().to_string()),
                ("BACKEND_PORT", upstream_addr.port().to_string()),
            ],
        );
        // Decisions, not latency: a loaded machine must not turn a call into a failure.
        let config = config
            .replace("timeout: 0.25s", "timeout: 2s")
            .replace("timeout: 0.02s", "timeout: 2s");
        let (mut envoy, admin) =
            start_envoy(dir.path(), &config, &mut [&mut sluice, &mut upstream]).await;
        let listener = listener_addr(admin, "ingress")
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(&[&mut envoy, &mut sluice])));
        Gateway {
            envoy,
            sluice,
            upstream,
            listener,
            sluice_http,
            _dir: dir,
        }
    }

    fn logs(&mut self) -> String {
        logs(&[&mut self.envoy, &mut self.sluice, &mut self.upstream])
    }

    /// The token budget's count in sluice (`/admin/usage`).
    async fn used(&self, tenant: &str) -> u64 {
        self.count(tenant, "tokens").await
    }

    /// The count of the tenant's `budget` limit `which` (tokens, requests).
    async fn count(&self, tenant: &str, which: &str) -> u64 {
        let target = format!(
            r#"{{"domain":"example","descriptor":[{{"key":"tenant","value":"{tenant}"}},{{"key":"budget","value":"{which}"}}]}}"#
        );
        let r = http_request(self.sluice_http, "POST", "/admin/usage", &[], Some(&target))
            .await
            .expect("usage");
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["limits"][0]["used"].as_u64().expect("used")
    }
}

impl Gateway {
    /// One streamed model call as `key` with an `Idempotency-Key`; returns the tokens used.
    async fn model_call(&self, key: &str, idempotency_key: &str) -> u64 {
        let auth = format!("Bearer {key}");
        let r = http_request(
            self.listener,
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("idempotency-key", idempotency_key),
                ("x-max-tokens", "1000"),
                ("x-completion-tokens", "200"),
                ("x-stream-ms", "50"),
            ],
            Some(r#"{"model":"tiny-model","messages":[{"role":"user","content":"hi"}]}"#),
        )
        .await
        .expect("request");
        assert_eq!(r.status, 200, "{r:?}");
        r.header("x-usage-total-tokens")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("usage header: {r:?}"))
    }

    /// `sluice_idempotency_requests_total{result}` on sluice's admin port.
    async fn idempotent(&self, result: &str) -> u64 {
        let r = http_request(self.sluice_http, "GET", "/metrics", &[], None)
            .await
            .expect("metrics");
        let series = format!("sluice_idempotency_requests_total{{result=\"{result}\"}} ");
        r.body
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `result` reaches `want` (stream-done calls arrive after the answer).
    async fn idempotent_reaches(&mut self, result: &str, want: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.idempotent(result).await < want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{result} never reached {want}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What one client saw: tokens used by its admitted requests, and how many were admitted.
#[derive(Default, Debug)]
struct Spent {
    used: u64,
    admitted: u64,
    denied: u64,
}

/// `CLIENTS` clients, each sending streamed requests with `key` until its first 429.
/// `reserve`: `x-max-tokens` is the reservation; else 0 (a check) and the model's
/// `max_tokens` is in the body.
async fn spend(listener: SocketAddr, key: &'static str, reserve: bool) -> Spent {
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut spent = Spent::default();
            let auth = format!("Bearer {key}");
            let body = format!(
                r#"{{"model":"tiny-model","max_tokens":{MAX_TOKENS},"messages":[{{"role":"user","content":"hi"}}]}}"#
            );
            let max = if reserve { MAX_TOKENS.to_string() } else { "0".to_owned() };
            let completion = COMPLETION.to_string();
            loop {
                let r = http_request(
                    listener,
                    "POST",
                    "/v1/chat/completions",
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                        ("x-max-tokens", &max),
                        ("x-completion-tokens", &completion),
                        ("x-stream-ms", "200"),
                    ],
                    Some(&body),
                )
                .await
                .expect("request");
                match r.status {
                    200 => {
                        let used: u64 = r
                            .header("x-usage-total-tokens")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or_else(|| panic!("usage header: {r:?}"));
                        spent.used += used;
                        spent.admitted += 1;
                    }
                    429 => {
                        spent.denied += 1;
                        return spent;
                    }
                    other => panic!("status {other}: {r:?}"),
                }
                assert!(spent.admitted < 1000, "never denied");
            }
        }));
    }
    let mut total = Spent::default();
    for t in tasks {
        let s = t.await.expect("client");
        total.used += s.used;
        total.admitted += s.admitted;
        total.denied += s.denied;
    }
    total
}

/// Polls sluice's count until it equals `want` (stream-done calls are fire-and-forget and
/// arrive after the client has its answer); returns the last count read.
async fn settled(g: &mut Gateway, tenant: &str, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let used = g.used(tenant).await;
        if used == want || tokio::time::Instant::now() > deadline {
            return used;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_hold_the_budget_and_settle_exactly() {
    let mut g = Gateway::start().await;

    // With reservations: free_co (sk-demo-free-user-1).
    let with = spend(g.listener, "sk-demo-free-user-1", true).await;
    let counted = settled(&mut g, "free_co", with.used).await;
    assert_eq!(
        counted,
        with.used,
        "after settlement sluice counts exactly the tokens used ({with:?})\n{}",
        g.logs()
    );
    assert!(
        with.used <= BUDGET,
        "reserved first, so never over the budget: {with:?}"
    );
    let remaining = BUDGET - counted;
    assert!(
        remaining < MAX_TOKENS,
        "denied only when a reservation no longer fits: {remaining} left"
    );

    // Without reservations: pro_co, check at request, charge at stream done.
    let without = spend(g.listener, "sk-demo-pro-user-1", false).await;
    let counted_without = settled(&mut g, "pro_co", without.used).await;
    assert_eq!(counted_without, without.used, "{without:?}\n{}", g.logs());
    assert!(
        without.used > BUDGET,
        "check-then-charge lets the requests in flight through: {without:?}"
    );
    let per_request = with.used / with.admitted.max(1);
    println!(
        "token budget {BUDGET}, {CLIENTS} concurrent clients, max_tokens {MAX_TOKENS}, \
         {per_request} tokens used per request:\n  \
         with reservations:    {} admitted, {} tokens used, overshoot {}\n  \
         without reservations: {} admitted, {} tokens used, overshoot {}",
        with.admitted,
        with.used,
        with.used.saturating_sub(BUDGET),
        without.admitted,
        without.used,
        without.used.saturating_sub(BUDGET),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_idempotency_key_is_charged_once() {
    let mut g = Gateway::start().await;
    let key = "sk-demo-ent-user-1";
    let first = g.model_call(key, "retry-me").await;
    g.idempotent_reaches("first", 2).await; // its request-time call and its settlement
    assert_eq!(g.used("enterprise_co").await, first);
    assert_eq!(g.count("enterprise_co", "requests").await, 1);

    // The client retries (say its connection dropped): the same key, twice more. Counted
    // once; the model ran three times, and each run's tokens are paid, but no reservation is
    // returned twice (nor made twice).
    let again = g.model_call(key, "retry-me").await;
    let third = g.model_call(key, "retry-me").await;
    g.idempotent_reaches("replayed", 4).await;
    assert_eq!(
        g.count("enterprise_co", "requests").await,
        1,
        "a retry is the same request\n{}",
        g.logs()
    );
    assert_eq!(
        g.used("enterprise_co").await,
        first + again + third,
        "each attempt pays what it used, nothing more, nothing less\n{}",
        g.logs()
    );
    assert_eq!(g.idempotent("first").await, 2, "no retry decided afresh");

    // Another key is another request.
    let other = g.model_call(key, "another").await;
    g.idempotent_reaches("first", 4).await;
    assert_eq!(g.count("enterprise_co", "requests").await, 2);
    assert_eq!(g.used("enterprise_co").await, first + again + third + other);
}
