//! Ranges: an inverted time range is refused.

use auditlog_client::pb;
use tonic::Code;

use crate::common::TestServer;

#[tokio::test]
async fn performance_stats_refuse_an_inverted_range() {
    let server = TestServer::start().await;
    let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let err = server
        .client()
        .await
        .performance_stats_with(pb::GetPerformanceStatsRequest {
            operation: String::new(),
            since: at(2_000_000_000),
            until: at(1_000_000_000),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains("until"), "{err}");
}
