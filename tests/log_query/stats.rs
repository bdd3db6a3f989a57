//! Statistics: `GetStats` over the whole log or one workflow, and for a time
//! range with a timeline, error types and the funnel of leads by type.

use std::collections::HashMap;

use auditlog_client::{NewEvent, pb};
use prost_types::Timestamp;
use tonic::Code;

use crate::common::TestServer;

#[tokio::test]
async fn stats_count_the_whole_log_or_one_workflow() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let empty = client.stats(None).await.unwrap();
    assert_eq!(empty, pb::GetStatsResponse::default(), "an empty log");

    let events = [
        NewEvent::lead_ingested("L1", "webform").workflow("sales"),
        NewEvent::lead_qualified("L1", 0.9, true).workflow("sales"),
        NewEvent::crm_update("L3", "hubspot", "7", &["stage"]).workflow("support"),
        NewEvent::email_sent("L2", "b@example.com", "Hi").workflow("sales"),
        NewEvent::error("Timeout", "CRM did not answer").workflow("sales"),
        NewEvent::error("Bounce", "mailbox full")
            .lead("L1")
            .workflow("support"),
        NewEvent::email_sent("L2", "b@example.com", "Again"),
        NewEvent::lead_ingested("L4", "import"),
    ];
    let mut receipts = Vec::new();
    for e in events {
        receipts.push(client.log(e).await.unwrap());
    }
    let counts = |pairs: &[(&str, u64)]| -> HashMap<String, u64> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    };

    let all = client.stats(None).await.unwrap();
    let want_all = pb::GetStatsResponse {
        total_events: 8,
        by_type: counts(&[
            ("lead_ingested", 2),
            ("lead_qualified", 1),
            ("crm_update", 1),
            ("email_sent", 2),
            ("error", 2),
        ]),
        by_workflow: counts(&[("sales", 4), ("support", 2)]),
        leads_processed: 4,
        error_count: 2,
        first_event: receipts[0].timestamp,
        last_event: receipts[7].timestamp,
        head_seq: 8,
        ..pb::GetStatsResponse::default()
    };
    assert_eq!(all, want_all);

    let sales = client.stats(Some("sales")).await.unwrap();
    let want_sales = pb::GetStatsResponse {
        total_events: 4,
        by_type: counts(&[
            ("lead_ingested", 1),
            ("lead_qualified", 1),
            ("email_sent", 1),
            ("error", 1),
        ]),
        by_workflow: counts(&[("sales", 4)]),
        leads_processed: 2,
        error_count: 1,
        first_event: receipts[0].timestamp,
        last_event: receipts[4].timestamp,
        head_seq: 8,
        ..pb::GetStatsResponse::default()
    };
    assert_eq!(sales, want_sales);

    let none = client.stats(Some("nowhere")).await.unwrap();
    assert_eq!(
        none,
        pb::GetStatsResponse {
            head_seq: 8,
            ..Default::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_for_a_time_range_with_timeline_error_types_and_funnel() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let events = vec![
        NewEvent::lead_ingested("L1", "web"),
        NewEvent::lead_ingested("L2", "web"),
        NewEvent::lead_ingested("L3", "web"),
        NewEvent::lead_qualified("L1", 0.9, true),
        NewEvent::lead_qualified("L1", 0.95, true),
        NewEvent::lead_qualified("L2", 0.7, true),
        NewEvent::email_sent("L1", "a@b.c", "Hi"),
        NewEvent::error("Timeout", "CRM did not answer"),
        NewEvent::error("Timeout", "again"),
        NewEvent::error("AuthError", "bad token"),
        NewEvent::new("error").detail("error_message", "no type"),
    ];
    let receipts = client.log_batch(events).await.unwrap();
    let at = receipts[0].timestamp.unwrap().seconds;
    let hour = at - at.rem_euclid(3600);
    let ts = |seconds: i64| Some(Timestamp { seconds, nanos: 0 });
    let stats = client
        .stats_with(pb::GetStatsRequest {
            since: ts(hour),
            until: ts(hour + 3600),
            bucket_seconds: 60,
            error_types: true,
            leads_by_type: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stats.total_events, 11);
    assert_eq!(
        stats.timeline.len(),
        60,
        "one bucket per minute of the hour"
    );
    assert_eq!(stats.timeline[0].start, ts(hour));
    assert_eq!(stats.timeline.iter().map(|b| b.events).sum::<u64>(), 11);
    assert_eq!(stats.timeline.iter().map(|b| b.errors).sum::<u64>(), 4);
    let minute = ((at - hour) / 60) as usize;
    assert!(stats.timeline[minute].events > 0);
    let counts = |pairs: &[(&str, u64)]| -> HashMap<String, u64> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    };
    assert_eq!(
        stats.errors_by_type,
        counts(&[("Timeout", 2), ("AuthError", 1), ("unknown", 1)])
    );
    // Distinct leads, not events: L1 was qualified twice.
    assert_eq!(
        stats.leads_by_type,
        counts(&[
            ("lead_ingested", 3),
            ("lead_qualified", 2),
            ("email_sent", 1)
        ])
    );
    // A range before the events counts nothing, with every bucket present.
    let before = client
        .stats_with(pb::GetStatsRequest {
            since: ts(hour - 7200),
            until: ts(hour - 3600),
            bucket_seconds: 3600,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before.total_events, 0);
    assert_eq!(before.timeline.len(), 1);
    assert_eq!(before.timeline[0].events, 0);
    // Refusals name the field.
    for (request, field) in [
        (
            pb::GetStatsRequest {
                since: ts(hour),
                until: ts(hour),
                ..Default::default()
            },
            "until",
        ),
        (
            pb::GetStatsRequest {
                since: ts(0),
                until: ts(hour),
                bucket_seconds: 60,
                ..Default::default()
            },
            "bucket_seconds",
        ),
    ] {
        let err = client.stats_with(request).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
        let fields: Vec<String> = err.field_violations().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [field], "{err}");
    }
}
