//! `POST /json` on the admin port: upstream's protojson form of ShouldRateLimit, sharing the
//! counters of gRPC; 200 OK, 429 OVER_LIMIT, 400 for bad input naming the field.

mod support;

use serde_json::json;
use support::http::request;
use support::*;

const RULES: &str = "\
domain: api
descriptors:
  - key: tenant
    rate_limit: {unit: minute, requests_per_unit: 2}
";

const ACME: &str =
    r#"{"domain":"api","descriptors":[{"entries":[{"key":"tenant","value":"acme"}]}]}"#;

#[tokio::test]
async fn json_answers_200_then_429_on_the_grpc_counters() {
    let s = TestServer::start(&[("api.yaml", RULES)], &[]).await;
    let first = request(s.http, "POST", "/json", None, Some(ACME)).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("content-type"), Some("application/json"));
    // protojson: lowerCamelCase, enum names, Duration as "59s" (T0 is noon + 1 s).
    assert_eq!(
        first.json(),
        json!({"overallCode": "OK", "statuses": [{"code": "OK",
            "currentLimit": {"requestsPerUnit": 2, "unit": "MINUTE"},
            "limitRemaining": 1, "durationUntilReset": "59s"}]})
    );
    let mut c = s.client().await;
    call(&mut c, req("api", vec![desc(&[("tenant", "acme")])])).await;
    let over = request(s.http, "POST", "/json", None, Some(ACME)).await;
    assert_eq!(over.status, 429, "{over:?}");
    assert_eq!(
        over.json(),
        json!({"overallCode": "OVER_LIMIT", "statuses": [{"code": "OVER_LIMIT",
            "currentLimit": {"requestsPerUnit": 2, "unit": "MINUTE"},
            "durationUntilReset": "59s"}]})
    );
    // Proto field names work too; an unmatched descriptor is OK with no limit.
    let other = r#"{"domain":"api","hits_addend":1,"descriptors":[{"entries":[{"key":"user","value":"x"}]}]}"#;
    let r = request(s.http, "POST", "/json", None, Some(other)).await;
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"overallCode": "OK", "statuses": [{"code": "OK"}]})
        )
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_json_requests_get_400_naming_the_field() {
    let s = TestServer::start(&[("api.yaml", RULES)], &[]).await;
    for (body, want) in [
        ("not json", "body is not JSON"),
        (
            r#"{"domain":"api","descriptors":[{"entries":[{"key":"tenant","valeu":"a"}]}]}"#,
            "descriptors[0].entries[0].valeu: unknown field",
        ),
        (
            r#"{"domain":"","descriptors":[{"entries":[{"key":"tenant","value":"a"}]}]}"#,
            "domain: rate limit domain must not be empty",
        ),
        (
            r#"{"domain":"api","descriptors":[]}"#,
            "descriptors: rate limit descriptor list must not be empty",
        ),
        (
            r#"{"domain":"api","descriptors":[{"entries":[{"key":"tenant","value":"a"}],"limit":{"requestsPerUnit":1,"unit":"UNKNOWN"}}]}"#,
            "descriptors[0].limit.unit: unit 0 is not a rate limit unit",
        ),
    ] {
        let r = request(s.http, "POST", "/json", None, Some(body)).await;
        assert_eq!(r.status, 400, "{body}: {r:?}");
        let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            error.starts_with(want),
            "{body}\n got:  {error}\n want: {want}…"
        );
    }
    s.stop().await;
}
