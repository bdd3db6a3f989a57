//! Moving a single node's data directory into a cluster (issue 16,
//! docs/cluster.md): `auditlog-server --cluster-import` publishes the log
//! into an empty stream of a real three-server NATS cluster, refusing a
//! wrong key and a stream that is not empty; three nodes started afterwards
//! hold the same events, verify clean to the single node's head signature,
//! and go on from there. Skipped without a `nats-server` binary, unless
//! `REQUIRE_NATS=1`.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use async_nats::jetstream;
use common::cluster::{IMPORT_LIMIT, import};
use common::endpoints::closed_port;
use common::{NatsCluster, ServerProcess, wait_until};

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
    // Four batches of 100 events of 4 KiB: about 1.6 MiB, so the import
    // needs more than one message, each ending where a batch ends.
    for b in 0..4 {
        let from = 5 + b * 100;
        acked.extend(
            client
                .log_batch((from..from + 100).map(|i| event(i, 4096)))
                .await
                .unwrap(),
        );
    }
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

    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(start_node(&nats, &format!("node{i}")).await);
    }
    let head = acked.len() as u64;
    for (_, process) in &nodes {
        let client = auditlog_client::Client::connect(&process.url)
            .await
            .unwrap();
        wait_until("the node to apply the imported log", || async {
            match client.stats(None).await {
                Ok(s) if s.head_seq == head => Ok(()),
                other => Err(format!("{:?}", other.map(|s| s.head_seq))),
            }
        })
        .await;
        common::assert_whole(&client, &acked).await;
        let report = client.verify().await.unwrap();
        assert_eq!(report.head_signature, head_signature);
    }
    // The chain goes on from the imported head.
    let any = auditlog_client::Client::builder()
        .nodes(nodes.iter().map(|(_, p)| p.url.clone()))
        .connect()
        .await
        .unwrap();
    let next = wait_until("a write after the import", || async {
        any.log(event(406, 10)).await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(next.seq, head + 1);
}

/// A node on a fresh directory, named `name`, with its directory.
async fn start_node(nats: &NatsCluster, name: &str) -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let config = dir.path().join("auditlog.toml");
    std::fs::write(&config, nats.node_toml(name, port)).unwrap();
    let process = ServerProcess::spawn_at(
        port,
        &dir.path().join("data"),
        ["--config".as_ref(), config.as_os_str()],
        &[],
    )
    .await;
    (dir, process)
}
