//! Moving a single node's data directory into a cluster (issue 16,
//! docs/cluster.md): `auditlog-server --cluster-import` publishes the log
//! into an empty stream of a real three-server NATS cluster, refusing a
//! wrong key and a stream that is not empty; three nodes started afterwards
//! hold the same events, verify clean to the single node's head signature,
//! and go on from there. Skipped without a `nats-server` binary, unless
//! `REQUIRE_NATS=1`.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::time::Duration;

use async_nats::jetstream;
use common::cluster::{self, IMPORT_LIMIT, import};
use common::{NatsCluster, ServerProcess, wait_until, wait_until_within};

/// Messages in the stream `AUDITLOG` (0 when it does not exist yet).
async fn messages(js: &jetstream::Context) -> u64 {
    match js.get_stream("AUDITLOG").await {
        Ok(mut stream) => stream.info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

/// An event with `bytes` of details, so that a few batches fill more than
/// one stream message (about 1 MiB each).
fn event(i: usize, bytes: usize) -> auditlog_client::NewEvent {
    auditlog_client::NewEvent::new("crm_update")
        .actor("system")
        .lead(format!("L{i}"))
        .idempotency_key(format!("k{i}"))
        .detail("note", "x".repeat(bytes))
}

/// `count` batches of 100 events of 4 KiB each, the first event `first`.
async fn batches(
    client: &auditlog_client::Client,
    first: usize,
    count: usize,
) -> Vec<auditlog_client::pb::Receipt> {
    let mut acked = Vec::new();
    for b in 0..count {
        let from = first + b * 100;
        let events = (from..from + 100).map(|i| event(i, 4096));
        acked.extend(client.log_batch(events).await.unwrap());
    }
    acked
}

#[tokio::test]
async fn a_single_node_log_imported_into_an_empty_stream_is_every_nodes_log() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let single = tempfile::tempdir().unwrap();
    let data = single.path().join("data");
    let mut server = ServerProcess::spawn(&data).await;
    let client = auditlog_client::Client::connect(&server.url).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(client.log(event(i, 10)).await.unwrap());
    }
    // About 1.6 MiB, so the import needs more than one message, each ending
    // where a batch ends.
    acked.extend(batches(&client, 5, 4).await);
    acked.push(client.log(event(405, 10)).await.unwrap());
    let head_signature = client.verify().await.unwrap().head_signature;
    server.signal("TERM");
    assert!(server.wait_exit_within(IMPORT_LIMIT).await.success());
    let js = jetstream::new(nats.client().await);

    // Signed with another key than the cluster's: refused, nothing published.
    let wrong = import(&nats, &data, "another-key-not-the-clusters-0123456789").await;
    assert_ne!(wrong.code, 0, "{wrong:?}");
    assert!(wrong.stderr.contains("key"), "{wrong:?}");
    assert_eq!(messages(&js).await, 0);

    let done = import(&nats, &data, common::TEST_KEY).await;
    assert_eq!(done.code, 0, "{done:?}");
    assert!(done.stdout.contains(&head_signature), "{done:?}");
    let published = messages(&js).await;
    assert!(published >= 2, "{published} messages for about 1.6 MiB");

    // The stream is no longer empty: a second import is refused whole.
    let again = import(&nats, &data, common::TEST_KEY).await;
    assert_ne!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("empty stream"), "{again:?}");
    assert_eq!(messages(&js).await, published);

    // Started as every cluster test starts its nodes: once a leader holds
    // the lease and every node says SERVING (its replica caught up).
    let nodes = cluster::start_nodes(&nats, 3).await;
    cluster::assert_same_whole_log(&nodes, &acked).await;
    let report = nodes[0].client().await.verify().await.unwrap();
    assert_eq!(report.head_signature, head_signature);
    let head = acked.len() as u64;
    // The chain goes on from the imported head.
    let any = cluster::failover_client(&nodes).await;
    let next = wait_until("a write after the import", || async {
        any.log(event(406, 10)).await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(next.seq, head + 1);
}

/// NATS in trouble during an import is waited out, not a failed import
/// with half a log in the stream: JetStream without its quorum when the
/// import starts (two of three servers down: it cannot create the stream
/// yet), and every server paused between two messages for longer than the
/// lease, so the import's lease lapses and expires. The stream ends up the
/// whole log all the same.
#[tokio::test]
async fn an_import_waits_out_nats_without_a_quorum_and_its_lease_lapsing() {
    let Some(mut nats) = NatsCluster::start(3).await else {
        return;
    };
    let single = tempfile::tempdir().unwrap();
    let data = single.path().join("data");
    let mut server = ServerProcess::spawn(&data).await;
    let client = auditlog_client::Client::connect(&server.url).await.unwrap();
    // About 1.2 MiB: two messages at least.
    let acked = batches(&client, 0, 3).await;
    let head_signature = client.verify().await.unwrap().head_signature;
    server.signal("TERM");
    assert!(server.wait_exit_within(IMPORT_LIMIT).await.success());

    // The import holds after each message while this file exists.
    let hold = data.join("HOLD_IMPORT");
    std::fs::write(&hold, "").unwrap();
    nats.kill9(1);
    nats.kill9(2);
    let importing = tokio::spawn(import(&nats, &data, common::TEST_KEY));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!importing.is_finished(), "{:?}", importing.await);
    nats.restart(1);
    nats.restart(2);
    let js = jetstream::new(nats.client().await);
    // Its first request went unanswered for the client's 10 s timeout
    // before it asks again.
    wait_until_within(IMPORT_LIMIT, "the import's first message", || async {
        match messages(&js).await {
            0 if importing.is_finished() => panic!("the import ended before its first message"),
            0 => Err("no message".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    for i in 0..3 {
        nats.signal(i, "STOP");
    }
    // The lease is 1 s (`NatsCluster::node_toml`).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for i in 0..3 {
        nats.signal(i, "CONT");
    }
    std::fs::remove_file(&hold).unwrap();
    let done = importing.await.unwrap();
    assert_eq!(done.code, 0, "{done:?}");
    assert!(done.stdout.contains(&head_signature), "{done:?}");

    let nodes = cluster::start_nodes(&nats, 1).await;
    cluster::assert_same_whole_log(&nodes, &acked).await;
    let report = nodes[0].client().await.verify().await.unwrap();
    assert_eq!(report.head_signature, head_signature);
}
