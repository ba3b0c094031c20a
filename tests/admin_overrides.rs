//! Runtime overrides through the admin API (memory store): authentication, validation, a rule
//! override, a descriptor override, expiry, listing in `/admin/overrides` and `/rlconfig`.

mod support;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use std::time::Duration;
use support::http::request;
use support::*;

const RULES: &str = "\
domain: api
descriptors:
  - key: tenant
    rate_limit: {unit: minute, requests_per_unit: 2}
";

const TOKEN: &str = "0123456789abcdef-test-token";

async fn start() -> (TestServer, tempfile::TempDir) {
    let secrets = tempfile::tempdir().expect("tempdir");
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
    let path = token_file.to_string_lossy().to_string();
    let s = TestServer::start(&[("api.yaml", RULES)], &["--admin-token-file", &path]).await;
    (s, secrets)
}

/// `(code, remaining, limit)` of one tenant's request.
async fn hit(s: &TestServer, tenant: &str) -> (Code, u32, Option<u32>) {
    let mut c = s.client().await;
    summary(&call(&mut c, req("api", vec![desc(&[("tenant", tenant)])])).await)[0]
}

#[tokio::test]
async fn admin_calls_need_the_bearer_token() {
    let (s, _secrets) = start().await;
    let none = request(s.http, "GET", "/admin/overrides", None, None).await;
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert!(none.json()["error"]
        .as_str()
        .unwrap_or_default()
        .contains("missing"));
    let wrong = request(s.http, "GET", "/admin/overrides", Some("nope"), None).await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let body = r#"{"rule":"api.tenant","requests_per_unit":5,"unit":"minute","ttl_seconds":60}"#;
    let set = request(s.http, "POST", "/admin/overrides", None, Some(body)).await;
    assert_eq!(set.status, 401, "an unauthenticated set changes nothing");
    assert_eq!(hit(&s, "a").await.2, Some(2));
    let ok = request(s.http, "GET", "/admin/overrides", Some(TOKEN), None).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json(), serde_json::json!({"overrides": []}));
    s.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_400_naming_the_field() {
    let (s, _secrets) = start().await;
    for (body, want) in [
        ("{not json", "body is not a JSON object"),
        (
            r#"{"rule":"api.tenant","requests_per_unit":5,"unit":"minute"}"#,
            "ttl_seconds: required",
        ),
        (
            r#"{"rule":"api.tenant","requests_per_unit":"5","unit":"minute","ttl_seconds":5}"#,
            "requests_per_unit: expected an integer",
        ),
        (
            r#"{"rule":"api.user","requests_per_unit":5,"unit":"minute","ttl_seconds":5}"#,
            "rule: no rule 'api.user' is loaded",
        ),
        (
            r#"{"domain":"web","descriptor":[{"key":"tenant","value":"a"}],"unlimited":true,"ttl_seconds":5}"#,
            "domain: no rule file has domain 'web'",
        ),
        (
            r#"{"rule":"api.tenant","unit":"minute","requests_per_unit":1,"ttl_seconds":5,"colour":"red"}"#,
            "colour: unknown field",
        ),
    ] {
        let r = request(s.http, "POST", "/admin/overrides", Some(TOKEN), Some(body)).await;
        assert_eq!(r.status, 400, "{body}: {r:?}");
        let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            error.starts_with(want),
            "{body}\n got:  {error}\n want: {want}…"
        );
    }
    let r = request(
        s.http,
        "POST",
        "/admin/usage",
        Some(TOKEN),
        Some(r#"{"rule":"api.tenant"}"#),
    )
    .await;
    assert_eq!(r.status, 400, "usage needs one descriptor: {r:?}");
    assert!(
        r.body.contains("rule: usage and reset need one descriptor"),
        "{}",
        r.body
    );
    s.stop().await;
}

#[tokio::test]
async fn a_rule_override_raises_the_limit_until_it_expires() {
    let (s, _secrets) = start().await;
    assert_eq!(hit(&s, "acme").await, (Code::Ok, 1, Some(2)));
    assert_eq!(hit(&s, "acme").await, (Code::Ok, 0, Some(2)));
    assert_eq!(hit(&s, "acme").await.0, Code::OverLimit);

    let body = r#"{"rule":"api.tenant","requests_per_unit":5,"unit":"minute","ttl_seconds":30,"reason":"INC-42"}"#;
    let set = request(s.http, "POST", "/admin/overrides", Some(TOKEN), Some(body)).await;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(set.json()["expires_in_seconds"], 30);
    // The counter carries on: 3 hits were counted (fixed window counts denied ones too).
    assert_eq!(hit(&s, "acme").await, (Code::Ok, 1, Some(5)));
    assert_eq!(hit(&s, "acme").await, (Code::Ok, 0, Some(5)));
    assert_eq!(hit(&s, "acme").await, (Code::OverLimit, 0, Some(5)));
    assert_eq!(
        hit(&s, "other").await,
        (Code::Ok, 4, Some(5)),
        "every tenant"
    );

    let listed = request(s.http, "GET", "/admin/overrides", Some(TOKEN), None)
        .await
        .json();
    let o = &listed["overrides"][0];
    assert_eq!(
        (o["rule"].as_str(), o["requests_per_unit"].as_u64()),
        (Some("api.tenant"), Some(5))
    );
    assert_eq!(
        (o["unit"].as_str(), o["reason"].as_str()),
        (Some("minute"), Some("INC-42"))
    );
    let config = request(s.http, "GET", "/rlconfig", None, None).await.body;
    assert!(
        config.contains("override api.tenant: unit=MINUTE requests_per_unit=5, expires_in: 30s, reason: INC-42\n"),
        "{config}"
    );

    s.clock.advance(Duration::from_secs(30)); // same minute: only the override has gone
    assert_eq!(hit(&s, "other").await, (Code::Ok, 0, Some(2)));
    assert_eq!(hit(&s, "acme").await, (Code::OverLimit, 0, Some(2)));
    let listed = request(s.http, "GET", "/admin/overrides", Some(TOKEN), None)
        .await
        .json();
    assert_eq!(listed["overrides"], serde_json::json!([]));
    let config = request(s.http, "GET", "/rlconfig", None, None).await.body;
    assert!(!config.contains("override"), "{config}");
    s.stop().await;
}

#[tokio::test]
async fn a_descriptor_override_wins_over_the_rules_and_can_be_cleared() {
    let (s, _secrets) = start().await;
    let block = r#"{"domain":"api","descriptor":[{"key":"tenant","value":"abuser"}],"requests_per_unit":0,"unit":"hour","ttl_seconds":600}"#;
    assert_eq!(
        request(s.http, "POST", "/admin/overrides", Some(TOKEN), Some(block))
            .await
            .status,
        200
    );
    let free = r#"{"domain":"api","descriptor":[{"key":"tenant","value":"vip"}],"unlimited":true,"ttl_seconds":600}"#;
    assert_eq!(
        request(s.http, "POST", "/admin/overrides", Some(TOKEN), Some(free))
            .await
            .status,
        200
    );
    let rule = r#"{"rule":"api.tenant","requests_per_unit":1,"unit":"minute","ttl_seconds":600}"#;
    assert_eq!(
        request(s.http, "POST", "/admin/overrides", Some(TOKEN), Some(rule))
            .await
            .status,
        200
    );

    assert_eq!(hit(&s, "abuser").await, (Code::OverLimit, 0, Some(0)));
    for _ in 0..5 {
        assert_eq!(
            hit(&s, "vip").await,
            (Code::Ok, u32::MAX, None),
            "unlimited"
        );
    }
    assert_eq!(
        hit(&s, "anyone").await,
        (Code::Ok, 0, Some(1)),
        "the rule override"
    );

    let target = r#"{"domain":"api","descriptor":[{"key":"tenant","value":"abuser"}]}"#;
    let cleared = request(
        s.http,
        "DELETE",
        "/admin/overrides",
        Some(TOKEN),
        Some(target),
    )
    .await;
    assert_eq!(
        (cleared.status, cleared.json()["cleared"].as_bool()),
        (200, Some(true))
    );
    // Back under the rule override (1/minute, the rule's unit: the rule's counter). The
    // blocking override was per hour, so it counted on a counter of its own: 1 is free.
    assert_eq!(hit(&s, "abuser").await, (Code::Ok, 0, Some(1)));
    assert_eq!(hit(&s, "abuser").await, (Code::OverLimit, 0, Some(1)));
    let again = request(
        s.http,
        "DELETE",
        "/admin/overrides",
        Some(TOKEN),
        Some(target),
    )
    .await;
    assert_eq!(again.json()["cleared"].as_bool(), Some(false));
    s.stop().await;
}

#[tokio::test]
async fn admin_bodies_must_be_json_and_the_bearer_scheme_is_case_insensitive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (s, _secrets) = start().await;
    // A form post, as a browser could send cross-site without a preflight: refused.
    let body = r#"{"rule":"api.tenant","requests_per_unit":5,"unit":"minute","ttl_seconds":60}"#;
    let raw = format!(
        "POST /admin/overrides HTTP/1.1\r\nHost: {}\r\nAuthorization: bearer {TOKEN}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.http,
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(s.http)
        .await
        .expect("connect");
    conn.write_all(raw.as_bytes()).await.expect("write");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    assert_eq!(hit(&s, "a").await.2, Some(2), "nothing changed");
    // The same with Content-Type: application/json and a lower-case scheme: accepted.
    let r = request(s.http, "POST", "/admin/overrides", None, Some(body)).await;
    assert_eq!(r.status, 401);
    let lower = raw.replace("text/plain", "application/json");
    let mut conn = tokio::net::TcpStream::connect(s.http)
        .await
        .expect("connect");
    conn.write_all(lower.as_bytes()).await.expect("write");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(hit(&s, "a").await.2, Some(5));
    s.stop().await;
}
