//! A real Envoy, configured by `deploy/envoy/envoy-authz.yaml` (ext_authz in gRPC mode), in front
//! of an in-process backend and asking the real sluice binary with the demo AI-gateway policy set
//! (`examples/rules`, `examples/authz/`): through Envoy, a missing or unknown key gets 401, a
//! model outside the key's plan 403, ent-user-2's 11th gpt-4o request in an hour 429 naming
//! USER_MODEL; allowed requests reach the backend with the identity headers (overwriting the
//! client's), without `authorization`, with their JSON body, and with the identity in Envoy's
//! access log; with sluice gone, Envoy denies (fails closed).
//!
//! The limits are hour windows on sluice's real clock (its memory store), so each test starts
//! its own sluice, whose counters start empty. The harness is `support::envoy`.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::envoy::{Response, Stack, WAIT};
use tokio::time::{sleep, Instant};

const TEMPLATE: &str = "deploy/envoy/envoy-authz.yaml";
const ENT_USER_1: &str = "sk-demo-ent-user-1";
const ENT_USER_2: &str = "sk-demo-ent-user-2";
const FREE_USER_1: &str = "sk-demo-free-user-1";

/// The gateway: Envoy on the ext_authz template, sluice with the demo policy set.
async fn start_gateway() -> Stack {
    Stack::start(
        TEMPLATE,
        &[
            "--rules",
            "examples/rules",
            "--authz-config",
            "examples/authz/config.yaml",
            "--authz-keys",
            "examples/authz/keys.yaml",
        ],
    )
    .await
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// A counter of the ext_authz filter, `http.ingress.ext_authz.<name>` (`ok`, `denied`, `error`,
/// `failure_mode_allowed`): one count per Check.
async fn authz_stat(stack: &Stack, name: &str) -> u64 {
    stack
        .envoy_stat(&format!("http.ingress.ext_authz.{name}"))
        .await
}

/// The `RateLimit-Reset` (or `Retry-After`) of `r` in seconds: within the current hour window.
fn seconds_header(r: &Response, name: &str, context: &dyn Fn() -> String) -> u64 {
    let secs: u64 = r
        .header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in seconds: {}", context()));
    assert!((1..=3600).contains(&secs), "{name}: {}", context());
    secs
}

/// The hour limits count per wall-clock hour (fixed window, sluice's system clock): if the hour
/// ends within 15 s, wait for the next one so a test's requests share one window.
async fn start_of_a_fresh_hour() {
    let into_hour = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        % 3600.0;
    if into_hour > 3585.0 {
        sleep(Duration::from_secs_f64(3600.5 - into_hour)).await;
    }
}

/// Envoy's access log lines (JSON objects, one per request) once there are `count`; panics if
/// there are more, or fewer after `WAIT`.
async fn access_log(stack: &Stack, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines: Vec<Value> = stack
            .envoy
            .log()
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert!(lines.len() <= count, "{lines:#?}\n{}", stack.logs());
        if lines.len() == count {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} access log lines after {WAIT:?}, expected {count}\n{}",
            lines.len(),
            stack.logs()
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_denies_missing_or_unknown_keys_401_and_forbidden_models_403() {
    let stack = start_gateway().await;
    let unknown = bearer("sk-not-a-key");
    let free = bearer(FREE_USER_1);
    let cases: [(&str, &[(&str, &str)]); 2] = [
        ("no key", &[("x-model", "gpt-4o")]),
        (
            "unknown key",
            &[("authorization", unknown.as_str()), ("x-model", "gpt-4o")],
        ),
    ];
    for (what, headers) in cases {
        let r = stack.get_path("/v1/models", headers).await;
        let context = || format!("{what}: {r:?}\n{}", stack.logs());
        assert_eq!(r.status, 401, "{}", context());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"sluice\""),
            "{}",
            context()
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{}",
            context()
        );
        assert_eq!(
            r.json(),
            json!({"error": "unauthenticated"}),
            "{}",
            context()
        );
    }

    // free-key-1's plan may use tiny-model and gpt-4o-mini only.
    let r = stack
        .get_path(
            "/v1/models",
            &[("authorization", free.as_str()), ("x-model", "gpt-4o")],
        )
        .await;
    let context = || format!("free key, gpt-4o: {r:?}\n{}", stack.logs());
    assert_eq!(r.status, 403, "{}", context());
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        context()
    );
    assert_eq!(r.header("www-authenticate"), None, "{}", context());
    assert_eq!(
        r.json(),
        json!({"error": "forbidden", "reason": "model 'gpt-4o' is not allowed for tier 'free'"}),
        "{}",
        context()
    );

    // None of them reached the backend; all three were sluice's decisions, not errors.
    let received = stack.backend.received();
    assert!(received.is_empty(), "{received:#?}");
    assert_eq!(authz_stat(&stack, "denied").await, 3, "{}", stack.logs());
    assert_eq!(authz_stat(&stack, "ok").await, 0, "{}", stack.logs());
    assert_eq!(authz_stat(&stack, "error").await, 0, "{}", stack.logs());

    // The shipped config uses no deprecated field (Envoy warns at start-up about each one).
    assert!(
        !stack.envoy.log().contains("deprecated"),
        "{}",
        stack.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_passes_ten_gpt4o_requests_an_hour_with_the_identity_then_429() {
    let stack = start_gateway().await;
    start_of_a_fresh_hour().await;

    // The model only in the JSON body (no x-model header): Envoy sends the body with the Check
    // (with_request_body). The client also tries to claim another tenant and user.
    let auth = bearer(ENT_USER_2);
    let headers = [
        ("authorization", auth.as_str()),
        ("x-sluice-tenant", "spoofed_co"),
        ("x-sluice-user", "someone-else"),
    ];
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

    // USER_MODEL (ent-user-2 on gpt-4o) is 10 an hour, the binding limit for this key.
    for i in 1..=10u64 {
        let r = stack
            .request("POST", "/v1/chat/completions", &headers, Some(body))
            .await;
        let context = || format!("request {i}: {r:?}\n{}", stack.logs());
        assert_eq!(r.status, 200, "{}", context());
        assert_eq!(r.body, "ok", "{}", context());
        // sluice's RateLimit headers, added by Envoy to the response (response_headers_to_add).
        assert_eq!(r.header("ratelimit-limit"), Some("10"), "{}", context());
        let remaining = (10 - i).to_string();
        assert_eq!(
            r.header("ratelimit-remaining"),
            Some(remaining.as_str()),
            "{}",
            context()
        );
        seconds_header(&r, "ratelimit-reset", &context);
    }

    // What the backend got: each request once, with sluice's identity headers (one value each:
    // the client's were overwritten), without the API key, and with the body intact.
    let received = stack.backend.received();
    assert_eq!(received.len(), 10, "{received:#?}");
    for (i, got) in (1..).zip(&received) {
        let context = || format!("request {i} as received: {got:#?}");
        assert_eq!(got.method, "POST", "{}", context());
        assert_eq!(got.path, "/v1/chat/completions", "{}", context());
        assert_eq!(
            got.header_values("x-sluice-tenant"),
            ["enterprise_co"],
            "{}",
            context()
        );
        assert_eq!(
            got.header_values("x-sluice-user"),
            ["ent-user-2"],
            "{}",
            context()
        );
        assert_eq!(
            got.header_values("x-sluice-tier"),
            ["enterprise"],
            "{}",
            context()
        );
        assert!(
            got.header_values("authorization").is_empty(),
            "{}",
            context()
        );
        assert_eq!(got.body, body, "{}", context());
    }

    // The 11th: refused by sluice, with the cause, and never forwarded.
    let r = stack
        .request("POST", "/v1/chat/completions", &headers, Some(body))
        .await;
    let context = || format!("request 11: {r:?}\n{}", stack.logs());
    assert_eq!(r.status, 429, "{}", context());
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        context()
    );
    assert_eq!(r.header("ratelimit-limit"), Some("10"), "{}", context());
    assert_eq!(r.header("ratelimit-remaining"), Some("0"), "{}", context());
    let retry_after = seconds_header(&r, "retry-after", &context);
    let reset = seconds_header(&r, "ratelimit-reset", &context);
    // Retry-After rounds the time to the window's end up, RateLimit-Reset down.
    assert!(
        reset == retry_after || reset + 1 == retry_after,
        "{}",
        context()
    );
    assert_eq!(
        r.json(),
        json!({
            "error": "rate_limited",
            "cause": "USER_MODEL",
            "message": "USER_MODEL exceeded: 11/10 per hour",
            "retry_after_seconds": retry_after,
        }),
        "{}",
        context()
    );
    assert_eq!(stack.backend.received().len(), 10, "{}", context());

    assert_eq!(authz_stat(&stack, "ok").await, 10, "{}", stack.logs());
    assert_eq!(authz_stat(&stack, "denied").await, 1, "{}", stack.logs());
    assert_eq!(authz_stat(&stack, "error").await, 0, "{}", stack.logs());

    // Envoy received sluice's identity as dynamic metadata: its access log shows it for each
    // allowed request (a denial carries none).
    let log = access_log(&stack, 11).await;
    for (i, line) in (1..).zip(&log[..10]) {
        assert_eq!(
            *line,
            json!({
                "status": 200, "method": "POST", "path": "/v1/chat/completions",
                "tenant": "enterprise_co", "user": "ent-user-2", "tier": "enterprise",
                "api_key_id": "ent-key-2", "model": "gpt-4o", "model_tier": "premium",
            }),
            "access log line {i}"
        );
    }
    assert_eq!(log[10]["status"], 429, "{:#?}", log[10]);
    assert_eq!(log[10]["tenant"], Value::Null, "{:#?}", log[10]);
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_fails_closed_when_sluice_dies() {
    let mut stack = start_gateway().await;
    let auth = bearer(ENT_USER_1);
    let headers = [("authorization", auth.as_str()), ("x-model", "tiny-model")];

    // Authorization is on: a valid key passes.
    let r = stack.get_path("/v1/models", &headers).await;
    assert_eq!(r.status, 200, "before the kill: {r:?}\n{}", stack.logs());
    assert_eq!(r.body, "ok", "before the kill: {r:?}");

    stack.sluice.kill();

    // failure_mode_allow: false, so with sluice gone the same valid request is refused, every
    // time: Envoy's own 403 (status_on_error's default), empty, with none of sluice's headers.
    for i in 1..=3 {
        let r = stack.get_path("/v1/models", &headers).await;
        let context = || format!("after the kill, request {i}: {r:?}\n{}", stack.logs());
        assert_eq!(r.status, 403, "{}", context());
        assert_eq!(r.body, "", "{}", context());
        assert_eq!(r.header("content-length"), Some("0"), "{}", context());
        let mut names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["connection", "content-length", "date", "server"],
            "{}",
            context()
        );
    }
    // Only the request before the kill reached the backend; the others were errors, denied.
    assert_eq!(stack.backend.received().len(), 1, "{}", stack.logs());
    assert_eq!(authz_stat(&stack, "ok").await, 1, "{}", stack.logs());
    assert_eq!(authz_stat(&stack, "error").await, 3, "{}", stack.logs());
    assert_eq!(
        authz_stat(&stack, "failure_mode_allowed").await,
        0,
        "{}",
        stack.logs()
    );
}
