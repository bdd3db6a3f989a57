//! Oversized requests: over 4 MiB is RESOURCE_EXHAUSTED, naming the limit
//! as the docs do, with advice for the method called.

use std::collections::BTreeMap;

use auditlog_client::pb;
use prost::Message as _;
use prost_types::{Struct, Value, value::Kind};
use tonic::Code;

use crate::bad_input::raw::{log_request, refused, send_raw};
use crate::common::TestServer;

#[tokio::test]
async fn an_oversized_request_is_resource_exhausted() {
    let server = TestServer::start().await;
    let text = "x".repeat(5 << 20);
    let details = Struct {
        fields: BTreeMap::from([(
            "blob".to_owned(),
            Value {
                kind: Some(Kind::StringValue(text)),
            },
        )]),
    };
    let status = refused(
        "5 MiB request",
        send_raw(&server, "Log", log_request("a", Some(details))).await,
    );
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("larger than"), "{status:?}");
}

/// A request over 4 MiB is refused naming the limit as the docs do (not
/// 4194309, the limit plus the frame prefix) with advice for the method
/// called: before, every method was told to send fewer events per LogBatch,
/// a VerifyIntegrity with 100,000 checkpoints too.
#[tokio::test]
async fn an_oversized_request_is_told_what_to_send_for_its_method() {
    let server = TestServer::start().await;
    let event = |actor: String| pb::EventInput {
        event_type: "lead_ingested".into(),
        actor,
        ..Default::default()
    };
    let ten_mb = || "x".repeat(10_000_000);
    let checkpoints = (1..=100_000)
        .map(|seq| pb::Checkpoint {
            seq,
            signature: "0".repeat(64),
        })
        .collect();
    for (rpc, request, advice) in [
        (
            "Log",
            log_request(&ten_mb(), None),
            "its details at most 64 KiB as JSON",
        ),
        (
            "LogBatch",
            pb::LogBatchRequest {
                events: (0..20).map(|_| event("y".repeat(300_000))).collect(),
                with_proof: false,
            }
            .encode_to_vec(),
            "send fewer events per LogBatch",
        ),
        (
            "VerifyIntegrity",
            pb::VerifyIntegrityRequest {
                from_seq: 0,
                to_seq: 0,
                checkpoints,
            }
            .encode_to_vec(),
            "send fewer checkpoints per call",
        ),
        (
            "GetStats",
            pb::GetStatsRequest {
                workflow: ten_mb(),
                ..Default::default()
            }
            .encode_to_vec(),
            "no request of this method needs that much",
        ),
    ] {
        assert!(request.len() > 4 << 20, "{rpc}: {}", request.len());
        let status = refused(rpc, send_raw(&server, rpc, request).await);
        assert_eq!(status.code(), Code::ResourceExhausted, "{rpc}: {status:?}");
        let message = status.message();
        assert!(
            message.starts_with("the request message is larger than 4 MiB (4,194,304 bytes)"),
            "{rpc}: {message}"
        );
        assert!(message.contains(advice), "{rpc}: {message}");
        assert!(!message.contains("4194309"), "{rpc}: {message}");
        if rpc != "LogBatch" {
            assert!(!message.contains("LogBatch"), "{rpc}: {message}");
        }
    }
}
