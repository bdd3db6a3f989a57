//! The quick start of the README, as a test: log an event and read it back.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use auditlog_client::{NewEvent, Query};
use common::TestServer;

#[tokio::test]
async fn log_then_read_back() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let receipt = client
        .log(NewEvent::lead_ingested("LEAD-001", "webform").workflow("sales"))
        .await
        .unwrap();
    assert_eq!(receipt.seq, 1);
    assert_eq!(receipt.signature.len(), 64);
    let page = client.query(Query::new().lead("LEAD-001")).await.unwrap();
    assert_eq!(page.events.len(), 1);
    let event = &page.events[0];
    assert_eq!(event.event_type, "lead_ingested");
    assert_eq!(event.signature, receipt.signature);
    assert_eq!(event.prev, "0".repeat(64));
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_checked, 1);
}
