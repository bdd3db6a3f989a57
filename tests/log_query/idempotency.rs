//! Idempotency keys: a repeated key returns the original receipt, within
//! one batch and across batches, and after a restart.

use auditlog_client::{NewEvent, Query, pb};

use crate::common::{TestServer, seqs};
use crate::log_query::model::assert_chained;

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_original_receipt() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let event = NewEvent::email_sent("LEAD-1", "a@example.com", "Hi").idempotency_key("mail-1");
    let first = client.log(event.clone()).await.unwrap();
    assert!(!first.duplicate);
    let again = client.log(event).await.unwrap();
    assert_eq!(
        again,
        pb::Receipt {
            duplicate: true,
            ..first.clone()
        }
    );
    // A different event under the same key is answered the same way.
    let other = client
        .log(NewEvent::new("error").idempotency_key("mail-1"))
        .await
        .unwrap();
    assert_eq!(other, again);

    let stats = client.stats(None).await.unwrap();
    assert_eq!((stats.total_events, stats.head_seq), (1, 1));
    let stored = client.query_all(Query::new()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (
            stored[0].event_type.as_str(),
            stored[0].idempotency_key.as_str()
        ),
        ("email_sent", "mail-1")
    );
    // Another key is another event.
    assert_eq!(
        client
            .log(NewEvent::new("error").idempotency_key("mail-2"))
            .await
            .unwrap()
            .seq,
        2
    );
}

/// An event carrying idempotency key `key`, told apart by detail `i`.
fn keyed(key: &str, i: u64) -> NewEvent {
    NewEvent::new("crm_update")
        .detail("i", i)
        .idempotency_key(key)
}

#[tokio::test]
async fn a_key_repeated_inside_one_batch_is_written_once() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let receipts = client
        .log_batch([
            keyed("a", 0),
            NewEvent::new("crm_create"),
            keyed("a", 2),
            keyed("b", 3),
        ])
        .await
        .unwrap();
    let stored = client.query_all(Query::new().oldest_first()).await.unwrap();
    let keys: Vec<&str> = stored.iter().map(|e| e.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["a", "", "b"], "the second \"a\" must not be written");
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 1, 3]
    );
    assert_eq!(
        receipts[2],
        pb::Receipt {
            duplicate: true,
            ..receipts[0].clone()
        }
    );
    assert!(!receipts[0].duplicate && !receipts[1].duplicate && !receipts[3].duplicate);
    assert_chained(&stored);
}

#[tokio::test]
async fn a_batch_naming_a_logged_key_writes_only_its_new_events() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let first = client.log(keyed("b", 0)).await.unwrap();
    let next = client
        .log_batch([keyed("b", 1), keyed("c", 2)])
        .await
        .unwrap();
    assert_eq!(
        next[0],
        pb::Receipt {
            duplicate: true,
            ..first
        }
    );
    assert_eq!((next[1].seq, next[1].duplicate), (2, false));

    let stored = client.query_all(Query::new().oldest_first()).await.unwrap();
    assert_eq!(seqs(&stored), [1, 2]);
    assert_chained(&stored);
    assert!(client.verify().await.unwrap().ok);
}

#[tokio::test]
async fn idempotency_keys_survive_a_restart() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let event = NewEvent::lead_ingested("LEAD-1", "webform").idempotency_key("ingest-LEAD-1");
    let first = client.log(event.clone()).await.unwrap();
    client.log(NewEvent::new("email_sent")).await.unwrap();

    let server = server.restart(|_| {}).await;
    let client = server.client().await;
    let again = client.log(event).await.unwrap();
    assert_eq!(
        again,
        pb::Receipt {
            duplicate: true,
            ..first
        }
    );
    assert_eq!(client.stats(None).await.unwrap().head_seq, 2);
    assert_eq!(
        client.log(NewEvent::new("email_sent")).await.unwrap().seq,
        3
    );
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}
