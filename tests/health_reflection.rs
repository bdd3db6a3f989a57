//! The standard services beside AuditService: `grpc.health.v1.Health` and
//! server reflection in both `grpc.reflection.v1` and `v1alpha`, which is
//! what grpcurl, Postman and the Python reflection client need to work
//! without the proto file.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use common::{TestServer, health_of};
use tokio_stream::StreamExt as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_audit_service() {
    let server = TestServer::start().await;
    let ch = server.channel().await;
    assert_eq!(health_of(&ch, "").await.unwrap(), ServingStatus::Serving);
    assert_eq!(
        health_of(&ch, "auditlog.v1.AuditService").await.unwrap(),
        ServingStatus::Serving
    );
    let unknown = health_of(&ch, "no.such.Service").await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn health_watch_sees_not_serving_when_shutdown_begins() {
    let mut server = TestServer::start().await;
    let ch = server.channel().await;
    let mut watch = HealthClient::new(ch)
        .watch(HealthCheckRequest {
            service: "auditlog.v1.AuditService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let stopping = tokio::spawn(async move { server.stop().await });
    // The watch sees NOT_SERVING before its stream ends, or the stream ends
    // with the connection; either way it never hangs.
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
        .await
        .expect("the health watch hung during shutdown");
    if let Some(Ok(update)) = next {
        assert_eq!(update.status(), ServingStatus::NotServing);
    }
    drop(watch);
    tokio::time::timeout(std::time::Duration::from_secs(15), stopping)
        .await
        .expect("shutdown hung")
        .unwrap();
}

/// Lists services through reflection v1 and v1alpha; both must name the
/// audit service, health, and reflection itself.
#[tokio::test]
async fn reflection_lists_services_in_v1_and_v1alpha() {
    use tonic_reflection::pb::v1alpha;
    let server = TestServer::start().await;
    let ch = server.channel().await;

    let names = common::reflection_v1_services(ch.clone()).await;
    for expected in ["auditlog.v1.AuditService", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        common::reflection_v1alpha_file(ch, "auditlog.v1.AuditService").await
    else {
        panic!("v1alpha reflection did not return the file");
    };
    use prost::Message as _;
    let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
        .unwrap();
    assert_eq!(file.package(), "auditlog.v1");
    let methods: Vec<&str> = file.service[0].method.iter().map(|m| m.name()).collect();
    assert_eq!(
        methods,
        [
            "Log",
            "LogBatch",
            "Query",
            "StreamEvents",
            "VerifyIntegrity",
            "GetStats",
            "TrackPerformance",
            "GetPerformanceStats",
            "ExportSubject",
            "GetCheckpoint",
            "GetInclusionProof",
            "GetConsistencyProof"
        ]
    );
}
