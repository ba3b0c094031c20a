//! gRPC health reports SERVING under "", "ratelimit" and the service name, flips to
//! NOT_SERVING on shutdown before the listener closes; reflection v1 and v1alpha both list the
//! services (grpcurl 1.8 speaks only v1alpha).

mod support;

use support::*;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const RULES: &str =
    "domain: d\ndescriptors:\n  - {key: k, rate_limit: {unit: second, requests_per_unit: 5}}\n";

async fn status(c: &mut HealthClient<tonic::transport::Channel>, name: &str) -> ServingStatus {
    let r = c
        .check(HealthCheckRequest {
            service: name.into(),
        })
        .await
        .expect("health check answers")
        .into_inner();
    ServingStatus::try_from(r.status).expect("known status")
}

#[tokio::test]
async fn health_flips_before_shutdown_completes() {
    let mut s = TestServer::start(&[("d.yaml", RULES)], &["--shutdown-delay-ms", "300"]).await;
    let mut health = HealthClient::new(s.channel().await);
    for name in [
        "",
        "ratelimit",
        "envoy.service.ratelimit.v3.RateLimitService",
    ] {
        assert_eq!(
            status(&mut health, name).await,
            ServingStatus::Serving,
            "{name:?}"
        );
    }
    s.begin_shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        status(&mut health, "ratelimit").await,
        ServingStatus::NotServing
    );
    assert_eq!(status(&mut health, "").await, ServingStatus::NotServing);
    s.stop().await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    let s = TestServer::start(&[("d.yaml", RULES)], &[]).await;
    let want = [
        "envoy.service.auth.v3.Authorization",
        "envoy.service.ratelimit.v3.RateLimitService",
        "grpc.health.v1.Health",
    ];
    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        let mut c = ServerReflectionClient::new(s.channel().await);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = c
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .expect("v1 reflection")
            .into_inner();
        let resp = stream.next().await.expect("one response").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("unexpected reflection answer");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for w in want {
            assert!(names.iter().any(|n| n == w), "v1 lacks {w}: {names:?}");
        }
    }
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        let mut c = ServerReflectionClient::new(s.channel().await);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "envoy.service.ratelimit.v3.RateLimitService".into(),
            )),
        };
        let mut stream = c
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .expect("v1alpha reflection")
            .into_inner();
        let resp = stream.next().await.expect("one response").expect("ok");
        let Some(MessageResponse::FileDescriptorResponse(files)) = resp.message_response else {
            panic!("unexpected reflection answer");
        };
        assert!(
            !files.file_descriptor_proto.is_empty(),
            "descriptor for rls.proto"
        );
    }
    s.stop().await;
}
