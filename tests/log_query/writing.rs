//! Writing: absent fields and the default actor, batches (all or nothing,
//! consecutive seqs, what is stored), and concurrent writers on one chain.

use std::collections::{HashMap, HashSet};

use auditlog_client::{NewEvent, Query, pb};

use crate::common::{TestServer, seqs};
use crate::log_query::model::{
    assert_chained, assert_invalid_argument, log_samples, micros, sample,
};

#[tokio::test]
async fn actor_defaults_to_system_and_absent_fields_stay_empty() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log(NewEvent::new("workflow_started")).await.unwrap();
    // A raw request without details at all.
    let raw = pb::LogRequest {
        event: Some(pb::EventInput {
            event_type: "workflow_stopped".into(),
            ..Default::default()
        }),
        with_proof: false,
    };
    client.raw().log(raw).await.unwrap();
    let events = client.query_all(Query::new().oldest_first()).await.unwrap();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e.actor, "system", "seq {}", e.seq);
        assert_eq!((e.lead_id.as_str(), e.workflow.as_str()), ("", ""));
        assert_eq!(e.idempotency_key, "");
        assert!(e.details.as_ref().is_none_or(|d| d.fields.is_empty()));
        assert_eq!(e.id.len(), 36, "a UUID: {}", e.id);
        assert_eq!(e.key_id, "k1");
    }
    let explicit = client
        .log(
            NewEvent::new("email_sent")
                .actor("mailer")
                .lead("L1")
                .workflow("sales"),
        )
        .await
        .unwrap();
    let e = &client.query(Query::new().limit(1)).await.unwrap().events[0];
    assert_eq!(e.seq, explicit.seq);
    assert_eq!(
        (e.actor.as_str(), e.lead_id.as_str(), e.workflow.as_str()),
        ("mailer", "L1", "sales")
    );
}

#[tokio::test]
async fn a_batch_with_one_invalid_event_writes_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_samples(&client, 2).await;
    let before = client.stats(None).await.unwrap();
    let head = client.verify().await.unwrap();

    let events = (0..6).map(|i| {
        if i == 3 {
            NewEvent::new("Not-Snake-Case")
        } else {
            sample(i)
        }
    });
    let err = client.log_batch(events).await.unwrap_err();
    assert_invalid_argument(&err, "events[3].event_type");

    let after = client.stats(None).await.unwrap();
    assert_eq!((after.total_events, after.head_seq), (2, 2));
    assert_eq!(after, before);
    let verified = client.verify().await.unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(
        (verified.head_seq, &verified.head_signature),
        (head.head_seq, &head.head_signature)
    );
    // The next write continues the log where it was.
    assert_eq!(client.log(sample(0)).await.unwrap().seq, 3);
}

#[tokio::test]
async fn a_batch_gets_consecutive_seqs_in_order_and_matches_what_is_stored() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_samples(&client, 2).await;
    let inputs: Vec<NewEvent> = (0..10).map(sample).collect();
    let receipts = client.log_batch(inputs.clone()).await.unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (3..=12).collect::<Vec<_>>()
    );
    assert!(
        receipts
            .iter()
            .all(|r| !r.duplicate && r.signature.len() == 64)
    );
    let ids: HashSet<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 10, "ids are unique");
    assert!(
        receipts
            .windows(2)
            .all(|w| micros(&w[0].timestamp) <= micros(&w[1].timestamp))
    );

    let stored = client.query_all(Query::new().oldest_first()).await.unwrap();
    assert_eq!(seqs(&stored), (1..=12).collect::<Vec<_>>());
    for ((receipt, event), input) in receipts.iter().zip(&stored[2..]).zip(inputs) {
        let input = input.into_input().unwrap();
        assert_eq!(
            (
                receipt.seq,
                &receipt.id,
                &receipt.timestamp,
                &receipt.signature
            ),
            (event.seq, &event.id, &event.timestamp, &event.signature)
        );
        assert_eq!(
            (&event.event_type, &event.lead_id),
            (&input.event_type, &input.lead_id)
        );
    }
    assert_chained(&stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_gapless_unique_seqs_and_one_chain() {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 500;
    let server = TestServer::start().await;
    let mut writers = Vec::new();
    for task in 0..TASKS {
        let client = server.client().await;
        writers.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for i in 0..PER_TASK {
                let event = NewEvent::new("email_sent")
                    .lead(format!("LEAD-{task}"))
                    .detail("i", i);
                receipts.push(client.log(event).await.unwrap());
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for w in writers {
        receipts.extend(w.await.unwrap());
    }
    let total = TASKS * PER_TASK;
    let mut got: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    got.sort_unstable();
    assert_eq!(got, (1..=total).collect::<Vec<_>>(), "no gap, no duplicate");

    let client = server.client().await;
    assert_eq!(client.stats(None).await.unwrap().total_events, total);
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, total);

    let stored = client
        .query_all(Query::new().oldest_first().limit(1000))
        .await
        .unwrap();
    assert_chained(&stored);
    let signatures: HashMap<u64, &str> = receipts
        .iter()
        .map(|r| (r.seq, r.signature.as_str()))
        .collect();
    assert!(stored.iter().all(|e| signatures[&e.seq] == e.signature));
    // Each writer's events are in the order it wrote them.
    for task in 0..TASKS {
        let history = client.lead_history(&format!("LEAD-{task}")).await.unwrap();
        let order: Vec<f64> = history
            .iter()
            .map(|e| match e.details.as_ref().unwrap().fields["i"].kind {
                Some(prost_types::value::Kind::NumberValue(n)) => n,
                ref other => panic!("detail i is {other:?}"),
            })
            .collect();
        assert_eq!(order, (0..PER_TASK).map(|i| i as f64).collect::<Vec<_>>());
    }
}
