//! ext_authz `Authorization/Check` over gRPC with the shipped demo policy set
//! (examples/rules/ai_gateway.yaml, examples/authz/): each answer — 401, 403, 429 with the
//! most specific cause, OK with identity headers and metadata — and per-key limits.

mod support;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use envoy_types::pb::google::protobuf::value::Kind;
use serde_json::json;
use support::*;
use tonic::transport::Channel;

const ENT_USER_2: &str = "sk-demo-ent-user-2";
const FREE_USER_1: &str = "sk-demo-free-user-1";
const PRO_USER_1: &str = "sk-demo-pro-user-1";

fn example(path: &str) -> String {
    format!("{}/examples/{path}", env!("CARGO_MANIFEST_DIR"))
}

async fn start() -> TestServer {
    let rules = std::fs::read_to_string(example("rules/ai_gateway.yaml")).expect("demo rules");
    let (config, keys) = (example("authz/config.yaml"), example("authz/keys.yaml"));
    TestServer::start(
        &[("ai_gateway.yaml", &rules)],
        &["--authz-config", &config, "--authz-keys", &keys],
    )
    .await
}

async fn client(s: &TestServer) -> AuthorizationClient<Channel> {
    AuthorizationClient::new(s.channel().await)
}

/// A Check for `POST /v1/chat` with these headers and body.
fn request(headers: &[(&str, &str)], body: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "POST".into(),
                    path: "/v1/chat?stream=false".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    body: body.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

async fn check(c: &mut AuthorizationClient<Channel>, key: &str, model: &str) -> CheckResponse {
    let auth = bearer(key);
    c.check(request(&[("authorization", &auth), ("x-model", model)], ""))
        .await
        .expect("Check answers")
        .into_inner()
}

/// `(http status, headers, JSON body)` of a denial; panics on OK.
fn denial(r: &CheckResponse) -> (i32, Vec<(String, String)>, serde_json::Value) {
    let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else {
        panic!("not denied: {r:?}");
    };
    let headers = d
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.to_ascii_lowercase(), h.value.clone()))
        .collect();
    let body = serde_json::from_str(&d.body).expect("JSON body");
    (d.status.as_ref().map_or(0, |s| s.code), headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn is_ok(r: &CheckResponse) -> bool {
    r.status.as_ref().is_some_and(|s| s.code == 0)
        && matches!(r.http_response, Some(HttpResponse::OkResponse(_)))
}

#[tokio::test]
async fn the_eleventh_gpt4o_request_of_ent_user_2_is_denied_by_user_model() {
    let s = start().await;
    let mut c = client(&s).await;
    for i in 1..=10 {
        let r = check(&mut c, ENT_USER_2, "gpt-4o").await;
        assert!(is_ok(&r), "request {i}: {r:?}");
    }
    let r = check(&mut c, ENT_USER_2, "gpt-4o").await;
    assert_eq!(
        r.status.as_ref().map(|s| s.code),
        Some(8),
        "RESOURCE_EXHAUSTED"
    );
    let (status, headers, body) = denial(&r);
    assert_eq!(status, 429);
    // T0 is noon + 1 s: the hour window resets in 3599 s.
    assert_eq!(
        body,
        json!({"error": "rate_limited", "cause": "USER_MODEL",
            "message": "USER_MODEL exceeded: 11/10 per hour", "retry_after_seconds": 3599})
    );
    assert_eq!(header(&headers, "retry-after"), Some("3599"));
    assert_eq!(
        header(&headers, "ratelimit-limit"),
        Some("10"),
        "{headers:?}"
    );
    assert_eq!(header(&headers, "ratelimit-remaining"), Some("0"));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    // Another model of the same user is not limited by that rule.
    assert!(is_ok(&check(&mut c, ENT_USER_2, "gpt-4o-mini").await));
    s.stop().await;
}

#[tokio::test]
async fn free_co_meets_its_model_tier_then_its_key_limit() {
    let s = start().await;
    let mut c = client(&s).await;
    for i in 1..=10 {
        assert!(
            is_ok(&check(&mut c, FREE_USER_1, "tiny-model").await),
            "request {i}"
        );
    }
    let (status, _, body) = denial(&check(&mut c, FREE_USER_1, "tiny-model").await);
    assert_eq!(status, 429);
    assert_eq!(body["cause"], "MODEL_TIER");
    assert_eq!(body["message"], "MODEL_TIER exceeded: 11/10 per hour");
    // The fixed window counts denied hits too (as upstream): the key has used 11 of 20.
    for i in 12..=20 {
        assert!(
            is_ok(&check(&mut c, FREE_USER_1, "gpt-4o-mini").await),
            "request {i}"
        );
    }
    let (status, _, body) = denial(&check(&mut c, FREE_USER_1, "gpt-4o-mini").await);
    assert_eq!(status, 429);
    assert_eq!(body["cause"], "API_KEY");
    assert_eq!(body["message"], "API_KEY exceeded: 21/20 per hour");
    // Both the key and the tier are over: the more specific one is the cause, the other named.
    let (_, _, body) = denial(&check(&mut c, FREE_USER_1, "tiny-model").await);
    assert_eq!(
        body["message"],
        "API_KEY exceeded: 22/20 per hour; also violated: MODEL_TIER"
    );
    s.stop().await;
}

#[tokio::test]
async fn unknown_or_missing_keys_get_401_and_forbidden_models_403() {
    let s = start().await;
    let mut c = client(&s).await;
    for headers in [
        vec![("authorization", bearer("sk-not-a-key"))],
        vec![("authorization", "Basic Zm9vOmJhcg==".to_owned())],
        vec![("x-model", "gpt-4o".to_owned())],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = c
            .check(request(&h, ""))
            .await
            .expect("answers")
            .into_inner();
        assert_eq!(
            r.status.as_ref().map(|s| s.code),
            Some(16),
            "UNAUTHENTICATED"
        );
        let (status, headers, body) = denial(&r);
        assert_eq!((status, body), (401, json!({"error": "unauthenticated"})));
        assert_eq!(
            header(&headers, "www-authenticate"),
            Some("Bearer realm=\"sluice\"")
        );
    }
    let r = check(&mut c, FREE_USER_1, "gpt-4o").await;
    assert_eq!(
        r.status.as_ref().map(|s| s.code),
        Some(7),
        "PERMISSION_DENIED"
    );
    let (status, _, body) = denial(&r);
    assert_eq!(
        (status, body),
        (
            403,
            json!({"error": "forbidden", "reason": "model 'gpt-4o' is not allowed for tier 'free'"})
        )
    );
    // A body Envoy cut short may hide the model: refused rather than decided without it.
    let auth = bearer(FREE_USER_1);
    let r = c
        .check(request(
            &[
                ("authorization", &auth),
                ("x-envoy-auth-partial-body", "true"),
            ],
            r#"{"messages":[{"role":"user","content":"…"#,
        ))
        .await
        .expect("answers")
        .into_inner();
    assert_eq!(denial(&r).0, 413);
    // The model must be readable for sure: header and body disagreeing, a plan that restricts
    // models with none named, a JSON body that does not parse.
    for (headers, body, status, reason) in [
        (
            vec![("x-model", "tiny-model")],
            r#"{"model":"gpt-4o"}"#,
            403,
            "the model header says 'tiny-model' but the body says 'gpt-4o'",
        ),
        (
            vec![],
            "",
            403,
            "tier 'free' may use only some models: name the model",
        ),
        (
            vec![("content-type", "application/json")],
            r#"{"model":"gpt-4o","temperature":NaN}"#,
            400,
            "the JSON body does not parse, so its model cannot be checked",
        ),
    ] {
        let mut h = vec![("authorization", auth.as_str())];
        h.extend(headers);
        let r = c
            .check(request(&h, body))
            .await
            .expect("answers")
            .into_inner();
        let (got, _, json) = denial(&r);
        assert_eq!(
            (got, json["reason"].as_str()),
            (status, Some(reason)),
            "{body}"
        );
    }
    // The key's own model list: pro-key-1 may not use gpt-4o either.
    assert_eq!(denial(&check(&mut c, PRO_USER_1, "gpt-4o").await).0, 403);
    s.stop().await;
}

#[tokio::test]
async fn allowed_requests_carry_the_identity_upstream() {
    let s = start().await;
    let mut c = client(&s).await;
    // The model from the JSON body when no x-model header is sent.
    let auth = bearer(ENT_USER_2);
    let r = c
        .check(request(
            &[("authorization", &auth), ("x-sluice-tenant", "spoofed")],
            r#"{"model":"gpt-4o","messages":[]}"#,
        ))
        .await
        .expect("answers")
        .into_inner();
    assert!(is_ok(&r), "{r:?}");
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        unreachable!("checked above");
    };
    let added: Vec<(&str, &str, i32)> = ok
        .headers
        .iter()
        .filter_map(|o| {
            o.header
                .as_ref()
                .map(|h| (h.key.as_str(), h.value.as_str(), o.append_action))
        })
        .collect();
    // append_action 2: OVERWRITE_IF_EXISTS_OR_ADD, so the spoofed header is replaced.
    assert_eq!(
        added,
        vec![
            ("x-sluice-tenant", "enterprise_co", 2),
            ("x-sluice-user", "ent-user-2", 2),
            ("x-sluice-tier", "enterprise", 2)
        ]
    );
    assert_eq!(ok.headers_to_remove, vec!["authorization"]);
    let remaining: Vec<(&str, &str)> = ok
        .response_headers_to_add
        .iter()
        .filter_map(|o| {
            o.header
                .as_ref()
                .map(|h| (h.key.as_str(), h.value.as_str()))
        })
        .collect();
    // The binding limit is USER_MODEL's 10/hour, one used.
    assert!(
        remaining.contains(&("RateLimit-Remaining", "9")),
        "{remaining:?}"
    );
    let meta = r.dynamic_metadata.expect("dynamic metadata");
    let field = |k: &str| match meta.fields.get(k).and_then(|v| v.kind.clone()) {
        Some(Kind::StringValue(s)) => s,
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(field("tenant"), "enterprise_co");
    assert_eq!(field("api_key_id"), "ent-key-2");
    assert_eq!(field("model"), "gpt-4o");
    assert_eq!(field("model_tier"), "premium");
    s.stop().await;
}

#[tokio::test]
async fn a_key_with_its_own_limit_uses_it() {
    let s = start().await;
    let mut c = client(&s).await;
    // pro-key-1 has API_KEY 200/hour instead of the rule's 20: its 21st request passes
    // (gpt-4o-mini is the standard tier, 100/hour).
    for i in 1..=21 {
        assert!(
            is_ok(&check(&mut c, PRO_USER_1, "gpt-4o-mini").await),
            "request {i}"
        );
    }
    // A key without its own limit stops at 20.
    for i in 1..=20 {
        assert!(
            is_ok(&check(&mut c, ENT_USER_2, "gpt-4o-mini").await),
            "request {i}"
        );
    }
    let (_, _, body) = denial(&check(&mut c, ENT_USER_2, "gpt-4o-mini").await);
    assert_eq!(body["cause"], "API_KEY");
    s.stop().await;
}
