//! Malformed requests get INVALID_ARGUMENT naming the field, and the server keeps serving.

mod support;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use support::*;

const RULES: &str =
    "domain: d\ndescriptors:\n  - {key: k, rate_limit: {unit: second, requests_per_unit: 5}}\n";

async fn expect_invalid(
    c: &mut envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient<tonic::transport::Channel>,
    r: RateLimitRequest,
    field: &str,
) {
    let err = c.should_rate_limit(r).await.expect_err("must be rejected");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with(field),
        "message {:?} should name {field}",
        err.message()
    );
}

#[tokio::test]
async fn each_malformed_field_is_named() {
    let s = TestServer::start(&[("d.yaml", RULES)], &[]).await;
    let mut c = s.client().await;
    expect_invalid(&mut c, req("", vec![desc(&[("k", "v")])]), "domain").await;
    expect_invalid(&mut c, req("d", vec![]), "descriptors").await;
    expect_invalid(
        &mut c,
        req(
            "d",
            vec![desc(&[("k", "v")]), RateLimitDescriptor::default()],
        ),
        "descriptors[1].entries",
    )
    .await;
    expect_invalid(
        &mut c,
        req("d", vec![desc(&[("k", "v"), ("", "x")])]),
        "descriptors[0].entries[1].key",
    )
    .await;
    // UNKNOWN (0) crashes envoyproxy/ratelimit; WEEK does not exist in envoy.type.v3.
    for unit in [0, 7, -3, 1000] {
        expect_invalid(
            &mut c,
            req("d", vec![desc_override(&[("k", "v")], 10, unit)]),
            "descriptors[0].limit.unit",
        )
        .await;
    }
    // Still serving, and nothing was counted by the rejected calls.
    let r = call(&mut c, req("d", vec![desc(&[("k", "v")])])).await;
    assert_eq!(summary(&r), [(Code::Ok, 4, Some(5))]);
    s.stop().await;
}
