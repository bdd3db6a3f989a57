//! Retention in cluster mode (issue 16, docs/cluster.md "Retention"):
//! three `auditlog-server` nodes over a real three-server NATS cluster
//! (`common::NatsCluster`). Skipped without a `nats-server` binary, unless
//! `REQUIRE_NATS=1`.
//!
//! Covered:
//! - only the leader purges (a follower's ApplyRetention names the leader);
//!   then every node serves the same log: the purged events gone, the purge
//!   event there, its segment files deleted, verification clean from the
//!   same head; and the stream starts at the message holding the first
//!   record kept;
//! - a node that was down while the stream was purged past what it holds
//!   says so in its health instead of serving a log with a hole, and serves
//!   the whole log again once seeded from another node's data directory;
//! - a node whose log lost records while it was down, records the stream
//!   no longer holds either, says so (verification, health, its log naming
//!   the seqs and the seeding) instead of following with a hole;
//! - compliance mode in a cluster without a shared pseudonym key is refused
//!   at start.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::time::Duration;

use async_nats::jetstream;
use auditlog_client::{NewEvent, Query, pb};
use common::cluster::{
    Node, cut_log, spawn, spawn_logging, start_nodes_around, stop_cleanly, wait_all_at,
};
use common::endpoints::closed_port;
use common::{
    DEADLINE, NatsCluster, copy_dir, files, run_to_end, wait_for_health, wait_until,
    wait_until_within, workspace_bin,
};
use tonic_health::pb::health_check_response::ServingStatus;

const AUDIT_SERVICE: &str = "auditlog.v1.AuditService";

/// The retention period the nodes run with.
const RETENTION: Duration = Duration::from_secs(2);

/// The old events: one batch, seqs 1..=5, sealed into one segment on
/// every node.
const OLD: u64 = 5;

/// Top-level keys: a retention of [`RETENTION`], checked at start only
/// (the tests ask for the rest with ApplyRetention), and segments sealed
/// only on request, so every node's segments end at the same seqs.
fn retained() -> String {
    format!(
        "retention_days = {}\nretention_check_secs = 86400\nmax_segment_age_secs = 0\n",
        RETENTION.as_secs_f64() / 86_400.0
    )
}

fn event(i: u64) -> NewEvent {
    NewEvent::new("crm_update")
        .actor("system")
        .lead(format!("L{i}"))
        .idempotency_key(format!("k{i}"))
}

/// Writes the old batch (1..=5) through `via`, seals it on each of
/// `nodes`, then writes 6..=8 one by one: three more stream messages.
async fn write_old_then_new(via: &Node, nodes: &[&Node]) {
    let client = via.client().await;
    wait_until("the old batch to be written", || async {
        client
            .log_batch((1..=OLD).map(event))
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    wait_all_at(nodes.iter().copied(), OLD).await;
    for node in nodes {
        let sealed = node.client().await.rotate(true).await.unwrap();
        assert!(sealed.rotated, "{}: {sealed:?}", node.url());
    }
    for i in OLD + 1..=OLD + 3 {
        client.log(event(i)).await.unwrap();
    }
    wait_all_at(nodes.iter().copied(), OLD + 3).await;
}

/// Asks every node for ApplyRetention until one (the leader) purges;
/// returns the purge and that node's index. Every other node answers
/// UNAVAILABLE naming the leader.
async fn purge_on_leader(nodes: &[&Node]) -> (pb::ApplyRetentionResponse, usize) {
    let (purge, leader) =
        wait_until_within(RETENTION + DEADLINE, "the leader to purge", || async {
            let mut seen = Vec::new();
            for (i, node) in nodes.iter().enumerate() {
                match node.client().await.apply_retention().await {
                    Ok(p) if p.through_seq > 0 => return Ok((p, i)),
                    Ok(_) => seen.push(format!("{}: nothing due", node.url())),
                    Err(e) => seen.push(format!("{}: {e}", node.url())),
                }
            }
            Err(seen.join("; "))
        })
        .await;
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != leader) {
        let refused = node.client().await.apply_retention().await.unwrap_err();
        assert_eq!(refused.code(), Some(tonic::Code::Unavailable), "node {i}");
        let message = refused.to_string();
        assert!(
            message.contains("decided by the cluster's leader")
                && message.contains(nodes[leader].url()),
            "{message}"
        );
    }
    (purge, leader)
}

/// What every node must serve after the purge of 1..=5 logged at seq 9:
/// events 6..=9, the purge event last, no segment file left, a clean
/// verification of those four. Returns its head signature.
async fn assert_purged(node: &Node) -> String {
    let client = node.client().await;
    let data = node.dir.path().join("data");
    wait_until(
        &format!("{} to delete its segments", node.url()),
        || async {
            let sealed: Vec<String> = files(&data)
                .into_iter()
                .filter(|f| f.ends_with(".log.gz") || f.ends_with(".leads.zst"))
                .collect();
            if sealed.is_empty() {
                Ok(())
            } else {
                Err(format!("{sealed:?}"))
            }
        },
    )
    .await;
    let all = client.query_all(Query::new()).await.unwrap();
    let mut seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![6, 7, 8, 9], "{}", node.url());
    let purge = all.iter().find(|e| e.seq == 9).unwrap();
    assert_eq!(purge.event_type, "auditlog.purge");
    let details = auditlog_proto::json::struct_to_json(purge.details.as_ref().unwrap()).unwrap();
    assert_eq!(
        details["through_seq"].as_f64(),
        Some(OLD as f64),
        "{details:?}"
    );
    let stats = client.stats(None).await.unwrap();
    assert_eq!((stats.total_events, stats.head_seq), (4, 9), "{stats:?}");
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{}: {:?}", node.url(), report.problems);
    assert_eq!((report.events_checked, report.head_seq), (4, 9));
    report.head_signature
}

#[tokio::test]
async fn the_leader_purges_and_every_node_deletes_the_same_events_and_the_stream_is_reclaimed() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes_around(&nats, 3, &retained(), "").await;
    let all: Vec<&Node> = nodes.iter().collect();
    write_old_then_new(&nodes[0], &all).await;

    let (purge, _) = purge_on_leader(&all).await;
    assert_eq!((purge.first_seq, purge.through_seq), (1, OLD));
    assert_eq!(purge.event_seq, OLD + 4);
    let mut heads = Vec::new();
    for node in &nodes {
        heads.push(assert_purged(node).await);
    }
    assert!(heads.iter().all(|h| *h == heads[0]), "{heads:?}");

    // The stream's own storage: the message of the old batch is gone, the
    // first one left holds seq 6.
    let js = jetstream::new(nats.client().await);
    let mut stream = js.get_stream("AUDITLOG").await.unwrap();
    let first = stream.info().await.unwrap().state.first_sequence;
    assert!(first > 1, "the stream still starts at {first}");
    let message = stream.get_raw_message(first).await.unwrap();
    let records = message.headers.get("Auditlog-Seq").unwrap().as_str();
    assert_eq!(records.split('-').next(), Some("6"), "{records}");
}

#[tokio::test]
async fn a_node_down_while_the_stream_was_purged_past_it_says_so_and_serves_once_seeded() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut nodes = start_nodes_around(&nats, 3, &retained(), "").await;
    for node in &nodes {
        wait_for_health(&node.channel().await, AUDIT_SERVICE, ServingStatus::Serving).await;
    }
    nodes[2].process.kill9();
    {
        let up: Vec<&Node> = nodes[..2].iter().collect();
        write_old_then_new(&nodes[0], &up).await;
        purge_on_leader(&up).await;
    }

    // Node 2 comes back: the stream no longer holds seqs 1..=5.
    nodes[2].restart().await;
    let client = nodes[2].client().await;
    // Once it knows the leader, it has set up the stream and tried to
    // follow it.
    wait_until("node 2 to know the leader", || async {
        match client.apply_retention().await {
            Err(e) if e.to_string().contains("the leader is") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let channel = nodes[2].channel().await;
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::NotServing).await;
    assert_eq!(client.stats(None).await.unwrap().head_seq, 0);

    // Seeded from a follower's data directory (stopped for the copy).
    let donor = follower_of(&nodes[..2])
        .await
        .expect("one of nodes 0 and 1 follows");
    nodes[donor].process.signal("TERM");
    nodes[donor]
        .process
        .wait_exit_within(Duration::from_secs(30))
        .await;
    nodes[2].process.kill9();
    let target = nodes[2].dir.path().join("data");
    std::fs::remove_dir_all(&target).unwrap();
    copy_dir(&nodes[donor].dir.path().join("data"), &target);
    nodes[donor].process = spawn(nodes[donor].port, nodes[donor].dir.path()).await;
    nodes[2].process = spawn(nodes[2].port, nodes[2].dir.path()).await;
    wait_for_health(
        &nodes[2].channel().await,
        AUDIT_SERVICE,
        ServingStatus::Serving,
    )
    .await;
    let mut heads = Vec::new();
    for node in &nodes {
        wait_all_at([node], OLD + 4).await;
        heads.push(assert_purged(node).await);
    }
    assert!(heads.iter().all(|h| *h == heads[0]), "{heads:?}");
}

#[tokio::test]
async fn a_node_that_lost_records_the_stream_no_longer_holds_says_so_and_stops() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut nodes = start_nodes_around(&nats, 3, &retained(), "").await;
    for node in &nodes {
        wait_for_health(&node.channel().await, AUDIT_SERVICE, ServingStatus::Serving).await;
    }
    let down = follower_of(&nodes).await.expect("a node follows");
    {
        let up: Vec<&Node> = (0..3).filter(|&i| i != down).map(|i| &nodes[i]).collect();
        // 1..=5, a stream message each (a batch cut in the middle would be
        // cut whole by recovery, as never acknowledged), sealed everywhere
        // but on `down`, whose position then moves past them (written at
        // most once a second).
        let client = up[0].client().await;
        for i in 1..=OLD {
            client.log(event(i)).await.unwrap();
        }
        wait_all_at(&nodes, OLD).await;
        for node in &up {
            assert!(node.client().await.rotate(true).await.unwrap().rotated);
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        for i in OLD + 1..=OLD + 3 {
            client.log(event(i)).await.unwrap();
        }
        wait_all_at(&nodes, OLD + 3).await;
    }
    let pos = stop_cleanly(&mut nodes[down]).await;
    assert!(
        pos > OLD,
        "cluster.pos is {pos}: the test needs it past 1..=5"
    );
    // While it is down its log loses 4..=8, and retention purges 1..=5
    // from the other nodes and from the stream.
    cut_log(&nodes[down], 3);
    {
        let up: Vec<&Node> = (0..3).filter(|&i| i != down).map(|i| &nodes[i]).collect();
        purge_on_leader(&up).await;
    }

    let node = &mut nodes[down];
    let stderr = node.dir.path().join("server.log");
    node.process = spawn_logging(node.port, node.dir.path(), stderr).await;
    wait_for_health(
        &node.channel().await,
        AUDIT_SERVICE,
        ServingStatus::NotServing,
    )
    .await;
    let said = wait_until("the node to say why it stopped", || async {
        let log = node.process.stderr();
        let line = log.lines().find(|l| l.contains("replica stopped"));
        line.map(str::to_owned).ok_or(log)
    })
    .await;
    assert!(
        said.contains("no longer holds seqs 4 to 5") && said.contains("seed this node"),
        "{said}"
    );
    let report = node.client().await.verify().await.unwrap();
    assert!(!report.ok, "{report:?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind() == pb::ProblemKind::Truncated && p.seq == 4),
        "{report:?}"
    );
}

/// The index among `nodes` of one that follows (its ApplyRetention names
/// the leader).
async fn follower_of(nodes: &[Node]) -> Option<usize> {
    for (i, node) in nodes.iter().enumerate() {
        if let Err(e) = node.client().await.apply_retention().await
            && e.to_string().contains("the leader is")
        {
            return Some(i);
        }
    }
    None
}

#[tokio::test]
async fn compliance_in_a_cluster_without_a_shared_pseudonym_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditlog.toml");
    std::fs::write(
        &config,
        "[compliance]\nenabled = true\n\n[cluster]\nnats_urls = [\"nats://127.0.0.1:4222\"]\n\
         advertise = \"http://127.0.0.1:50051\"\n",
    )
    .unwrap();
    let args = vec![
        "--listen".to_owned(),
        format!("127.0.0.1:{}", closed_port()),
        "--data-dir".to_owned(),
        dir.path().join("data").display().to_string(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    let env = vec![("AUDITLOG_HMAC_KEY".to_owned(), common::TEST_KEY.to_owned())];
    let bin = workspace_bin("auditlog-server", "auditlog-server");
    let run = run_to_end(bin, args, env, Duration::from_secs(30)).await;
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("compliance.pseudonym_key"), "{run:?}");
    assert!(run.stderr.contains("same key"), "{run:?}");
}
