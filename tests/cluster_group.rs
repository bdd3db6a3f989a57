//! Cluster mode's group commit (issue 16): concurrent writes to a 3-node
//! cluster on a real 3-server NATS cluster share publishes (fewer stream
//! messages than events), and an idempotency key written by several callers
//! at once, repeated inside a batch, or partly known already, is one event.
//! Skipped without a `nats-server` binary, unless `REQUIRE_NATS=1`.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::collections::HashMap;

use auditlog_client::pb::Receipt;
use common::cluster::start_nodes;
use common::{NatsCluster, wait_until};

/// Concurrent callers.
const CALLERS: usize = 64;
/// Calls per caller.
const CALLS: usize = 12;

/// The keys of caller `c`'s call `n`: keys shared with the callers next to
/// it (written by several at once), and every fourth call a batch that
/// repeats a key and holds one written before.
fn keys_of(c: usize, n: usize) -> Vec<String> {
    let shared = |c: usize, n: usize| format!("k-{}-{n}", c / 4);
    match n % 4 {
        3 => vec![
            shared(c, n),
            format!("own-{c}-{n}"),
            shared(c, n),
            shared(c, n - 1),
            format!("own-{c}-{n}-b"),
        ],
        _ => vec![shared(c, n)],
    }
}

#[tokio::test]
async fn concurrent_keyed_writers_share_publishes_and_each_key_is_one_event() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    // Any node takes writes once a leader is elected.
    let first = auditlog_client::Client::connect(nodes[0].url())
        .await
        .unwrap();
    wait_until("a first write", || async {
        common::send(&first, &["first".to_owned()])
            .await
            .map_err(|e| e.to_string())
    })
    .await;

    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let url = nodes[c % nodes.len()].url().to_owned();
        tasks.push(tokio::spawn(async move {
            let client = auditlog_client::Client::connect(&url).await.unwrap();
            let mut got = Vec::new();
            for n in 0..CALLS {
                let keys = keys_of(c, n);
                let receipts = common::send(&client, &keys).await.unwrap();
                assert_eq!(receipts.len(), keys.len());
                got.push((keys, receipts));
            }
            got
        }));
    }
    let mut by_key: HashMap<String, Receipt> = HashMap::new();
    // Calls that wrote something new: one message each, were every call
    // published alone (the first write included).
    let mut writing_calls = 1;
    for task in tasks {
        for (keys, receipts) in task.await.unwrap() {
            writing_calls += u64::from(receipts.iter().any(|r| !r.duplicate));
            for (key, receipt) in keys.into_iter().zip(receipts) {
                let first = by_key.entry(key.clone()).or_insert_with(|| receipt.clone());
                assert_eq!(
                    (first.seq, &first.id, &first.signature),
                    (receipt.seq, &receipt.id, &receipt.signature),
                    "key {key} got two receipts"
                );
            }
        }
    }
    let distinct = by_key.len() as u64 + 1;
    let acked: Vec<Receipt> = by_key.values().cloned().collect();

    // Every node holds exactly one event per key, each at its receipt.
    for node in &nodes {
        let client = auditlog_client::Client::connect(node.url()).await.unwrap();
        wait_until("the replica to hold every event", || async {
            let head = client
                .stats(None)
                .await
                .map_err(|e| e.to_string())?
                .head_seq;
            if head >= distinct {
                Ok(())
            } else {
                Err(format!("head {head} of {distinct}"))
            }
        })
        .await;
        let events = common::assert_whole(&client, &acked).await;
        assert_eq!(events.len() as u64, distinct, "one event per key");
        let mut keys: Vec<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len() as u64, distinct, "a key written twice");
    }

    // Fewer messages in the stream than calls that wrote: publishes were
    // shared.
    let js = async_nats::jetstream::new(nats.client().await);
    let mut stream = js.get_stream("AUDITLOG").await.unwrap();
    let messages = stream.info().await.unwrap().state.messages;
    assert!(
        messages < writing_calls,
        "{messages} stream messages for {writing_calls} calls that wrote {distinct} events: \
         concurrent writes were not gathered"
    );
}
