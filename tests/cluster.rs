//! Cluster mode on NATS JetStream (issue 16): three `auditlog-server`
//! processes, each with a config file naming a real three-server NATS
//! cluster on loopback (`common::NatsCluster`). Skipped without a
//! `nats-server` binary, unless `REQUIRE_NATS=1` (as `.ci/run` sets).
//!
//! What is here: writes through the leader read back from every node (and
//! streamed live from a follower), the same head after a restart of
//! everything, the stream and the lease bucket set up as the docs say, one
//! leader elected, a killed or paused leader replaced, a follow going on
//! from another node when its node is killed, health following NATS, a bad
//! `[cluster]` section refused at start, a replica cut short while its node
//! was down taking what it lost in again from the stream, Backup refused on
//! any node.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use auditlog_client::pb;
use common::cluster::{
    Acked, Node, assert_same_whole_log, cut_log, failover_client, index_of, leader, lease,
    new_leader, start_nodes, start_nodes_with, stop_cleanly, wait_acked, wait_all_at,
};
use common::endpoints::closed_port;
use common::{
    NatsCluster, run_to_end, wait_for_health, wait_until, wait_until_within, workspace_bin,
};
use sha2::Digest as _;
use tonic_health::pb::health_check_response::ServingStatus;

/// How long a writer retries one write while a NATS server or the leader
/// is being replaced.
const WRITE_RETRY: Duration = Duration::from_secs(60);

const AUDIT_SERVICE: &str = "auditlog.v1.AuditService";

#[tokio::test]
async fn nodes_set_up_the_stream_and_elect_one_leader() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    for node in &nodes {
        wait_for_health(&node.channel().await, AUDIT_SERVICE, ServingStatus::Serving).await;
    }
    let js = jetstream::new(nats.client().await);
    let (name, advertise, _) = wait_until("a leader", || lease(&js)).await;
    assert_eq!(format!("node{}", index_of(&nodes, &advertise)), name);

    let mut stream = js.get_stream("AUDITLOG").await.unwrap();
    let config = &stream.info().await.unwrap().config;
    assert_eq!(config.subjects, vec!["AUDITLOG.log".to_owned()]);
    assert_eq!(config.num_replicas, 3);
    assert_eq!(config.storage, jetstream::stream::StorageType::File);
    assert_eq!(config.discard, jetstream::stream::DiscardPolicy::Old);
    assert!(config.deny_delete && !config.deny_purge && config.allow_direct);
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert_eq!(config.max_age, Duration::ZERO);
    let bucket = js.get_key_value("AUDITLOG_leader").await.unwrap();
    let status = bucket.status().await.unwrap();
    assert_eq!(status.history(), 1);
    assert_eq!(status.max_age(), Duration::from_secs(1));
    assert_eq!(status.info.config.num_replicas, 3);
}

#[tokio::test]
async fn a_killed_or_paused_leader_is_replaced_and_a_resumed_one_does_not_take_back_the_lease() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let (first, advertise, term) = wait_until("a leader", || lease(&js)).await;
    let killed = index_of(&nodes, &advertise);
    nodes[killed].process.kill9();

    let (second, advertise, term2) = new_leader(&js, &first, term).await;
    let paused = index_of(&nodes, &advertise);
    nodes[paused].process.signal("STOP");
    let (third, _, term3) = new_leader(&js, &second, term2).await;
    nodes[paused].process.signal("CONT");
    // Once resumed, its next renewal is refused (the revision moved on): it
    // steps down instead of writing the lease back.
    let resumed = auditlog_client::Client::connect(nodes[paused].url())
        .await
        .unwrap();
    resumed.stats(None).await.unwrap();
    wait_for_health(
        &nodes[paused].channel().await,
        AUDIT_SERVICE,
        ServingStatus::Serving,
    )
    .await;
    let (holder, _, term_now) = lease(&js).await.unwrap();
    assert_eq!(
        (holder, term_now),
        (third, term3),
        "the resumed node took the lease back"
    );
}

#[tokio::test]
async fn health_is_not_serving_while_nats_is_unreachable() {
    let Some(mut nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 1).await;
    let channel = nodes[0].channel().await;
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::Serving).await;
    for i in 0..3 {
        nats.kill9(i);
    }
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::NotServing).await;
    // Reads are still served from the replica.
    wait_for_health(&channel, "", ServingStatus::Serving).await;
    for i in 0..3 {
        nats.restart(i);
    }
    nats.wait_ready().await;
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::Serving).await;
}

#[tokio::test]
async fn a_cluster_section_without_advertise_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditlog.toml");
    std::fs::write(
        &config,
        "[cluster]\nnats_urls = [\"nats://127.0.0.1:4222\"]\n",
    )
    .unwrap();
    let run = start_to_end(dir.path(), &config).await;
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("cluster.advertise"), "{run:?}");
    assert!(!run.stderr.contains("serving"), "announced first: {run:?}");
}

async fn start_to_end(dir: &Path, config: &Path) -> common::Finished {
    let args = vec![
        "--listen".to_owned(),
        format!("127.0.0.1:{}", closed_port()),
        "--data-dir".to_owned(),
        dir.join("data").display().to_string(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    let env = vec![("AUDITLOG_HMAC_KEY".to_owned(), common::TEST_KEY.to_owned())];
    let bin = workspace_bin("auditlog-server", "auditlog-server");
    run_to_end(bin, args, env, Duration::from_secs(30)).await
}

fn event(i: usize) -> auditlog_client::NewEvent {
    auditlog_client::NewEvent::new("crm_update")
        .actor("system")
        .lead(format!("L{i}"))
        .idempotency_key(format!("k{i}"))
}

#[tokio::test]
async fn writes_through_the_leader_are_read_from_every_node_and_streamed_live() {
    use futures::StreamExt as _;
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let leader_node = leader(&js, &nodes).await;
    let leader = leader_node.client().await;
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(leader.log(event(i)).await.unwrap());
    }
    acked.extend(leader.log_batch((10..15).map(event)).await.unwrap());
    // A retry with the same key is the original receipt.
    let again = leader.log(event(3)).await.unwrap();
    assert_eq!(
        (again.seq, &again.signature),
        (acked[3].seq, &acked[3].signature)
    );

    wait_all_at(&nodes, 15).await;
    let follower = nodes.iter().find(|n| n.url() != leader_node.url()).unwrap();
    let mut live = follower
        .client()
        .await
        .stream(auditlog_client::Query::new(), 1, true)
        .await
        .unwrap();
    // And as stored lines: the replica's live groups give the leader's
    // bytes, not a copy rebuilt from the records.
    let mut lines = follower
        .client()
        .await
        .stream_lines(auditlog_client::Query::new(), 1, true)
        .await
        .unwrap();
    for i in 15..18 {
        acked.push(leader.log(event(i)).await.unwrap());
    }
    for seq in 1..=18 {
        let got = live.next().await.unwrap().unwrap();
        assert_eq!(got.seq, seq);
    }
    let mut followed = Vec::new();
    for _ in 1..=18 {
        followed.push(lines.next().await.unwrap().unwrap());
    }
    let stored = common::all_stored_lines(&leader).await;
    assert_eq!(
        followed,
        stored[..18],
        "a follower's stored lines are not the leader's"
    );
    wait_all_at(&nodes, 18).await;
    for node in &nodes {
        common::assert_whole(&node.client().await, &acked).await;
    }
    // A node's directory is a replica of the stream: Backup is refused, and
    // says what to back up instead.
    for node in [leader_node, follower] {
        match node.client().await.backup().await {
            Err(auditlog_client::Error::Rpc(s)) if s.code() == tonic::Code::FailedPrecondition => {
                assert!(s.message().contains("nats stream backup"), "{s:?}");
            }
            other => panic!("Backup in cluster mode was not refused: {other:?}"),
        }
    }
}

/// A token every node knows (same config everywhere): name and secret.
const TOKEN: (&str, &str) = ("svc-crm", "crm-cluster-7f3a9e-secret");

#[tokio::test]
async fn a_write_through_a_follower_reaches_the_leader_as_its_caller_and_is_read_there_at_once() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let tokens = format!(
        "[[tokens]]\nname = {:?}\nsha256 = {:?}\nroles = [\"admin\"]\n",
        TOKEN.0,
        hex::encode(sha2::Sha256::digest(TOKEN.1.as_bytes()))
    );
    let nodes = start_nodes_with(&nats, 3, &tokens).await;
    let js = jetstream::new(nats.client().await);
    let leader_node = leader(&js, &nodes).await;
    let follower = nodes.iter().find(|n| n.url() != leader_node.url()).unwrap();
    // Only the follower: without forwarding it answers UNAVAILABLE, and
    // the client has nowhere else to go.
    let client = with_token(follower.url()).await;
    let mut acked = vec![client.log(event(0)).await.unwrap()];
    acked.extend(client.log_batch((1..4).map(event)).await.unwrap());
    // Read back from the follower at once: no min_seq, no waiting.
    let events = client
        .query_all(auditlog_client::Query::new())
        .await
        .unwrap();
    let mut seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3, 4]);
    // The leader checked the caller's own token and recorded its name.
    assert!(events.iter().all(|e| e.caller == TOKEN.0), "{events:?}");
    // A retried key through the follower is the original receipt.
    let again = client.log(event(2)).await.unwrap();
    assert_eq!((again.seq, again.duplicate), (acked[2].seq, true));
    // Details sent as JSON text reach the leader as the object they hold.
    let text = r#"{"b": 2, "a": [1, "x"], "b": 3}"#;
    let receipt = client
        .raw()
        .log(pb::LogRequest {
            event: Some(pb::EventInput {
                event_type: "crm_update".into(),
                details_json: text.into(),
                ..Default::default()
            }),
            with_proof: false,
        })
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();
    acked.push(receipt.clone());
    let page = client
        .query(auditlog_client::Query::new().event_type("crm_update"))
        .await
        .unwrap();
    let details = page.events[0].details.as_ref().unwrap();
    assert_eq!(
        serde_json::Value::Object(auditlog_proto::json::struct_to_json(details).unwrap()),
        serde_json::json!({"a": [1, "x"], "b": 3})
    );
    for node in &nodes {
        let reader = with_token(node.url()).await;
        common::assert_whole(&reader, &acked).await;
    }
}

/// A client of the node at `url` alone, sending [`TOKEN`].
async fn with_token(url: &str) -> auditlog_client::Client {
    let options = auditlog_client::Options {
        token: Some(TOKEN.1.into()),
        ..auditlog_client::Options::default()
    };
    auditlog_client::Client::connect_with(url, options)
        .await
        .unwrap()
}

#[tokio::test]
async fn after_a_restart_of_everything_every_node_has_the_same_head() {
    let Some(mut nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let leader_client = leader(&js, &nodes).await.client().await;
    let acked = leader_client.log_batch((0..20).map(event)).await.unwrap();
    wait_all_at(&nodes, 20).await;

    for node in &mut nodes {
        node.process.kill9();
    }
    for i in 0..3 {
        nats.restart(i);
    }
    nats.wait_ready().await;
    for node in &mut nodes {
        node.restart().await;
    }
    let js = jetstream::new(nats.client().await);
    let leader_client = leader(&js, &nodes).await.client().await;
    let more = leader_client.log(event(20)).await.unwrap();
    assert_eq!(more.seq, 21);
    wait_all_at(&nodes, 21).await;
    for node in &nodes {
        common::assert_whole(&node.client().await, &acked).await;
    }
}

#[tokio::test]
async fn killing_the_leader_under_load_loses_no_acknowledged_event_and_writes_resume() {
    const WRITERS: usize = 16;
    const EACH: usize = 12;
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let leader_at = index_of(&nodes, leader(&js, &nodes).await.url());
    let client = failover_client(&nodes).await;
    let (acked, writers) = spawn_writers(&client, WRITERS, EACH, 0);
    wait_acked(&acked, WRITERS * 2, "some writes before the kill").await;
    nodes[leader_at].process.kill9();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), WRITERS * EACH);
    let survivors: Vec<Node> = nodes
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| (i != leader_at).then_some(n))
        .collect();
    assert_same_whole_log(&survivors, &acked).await;
}

#[tokio::test]
async fn a_paused_leader_resumed_after_a_takeover_appends_nothing_and_catches_up() {
    const WRITERS: usize = 8;
    const EACH: usize = 10;
    const AFTER: usize = 5;
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let (old, old_at, term) = wait_until("a leader", || lease(&js)).await;
    let paused = index_of(&nodes, &old_at);
    let client = failover_client(&nodes).await;
    let (acked, writers) = spawn_writers(&client, WRITERS, EACH, 0);
    wait_acked(&acked, WRITERS, "some writes before the pause").await;
    nodes[paused].process.signal("STOP");
    let (new, advertise, new_term) = new_leader(&js, &old, term).await;
    // Writes the paused leader knows nothing of.
    let leader_now = nodes[index_of(&nodes, &advertise)].client().await;
    let mut after = Vec::new();
    for i in 0..AFTER {
        after.push(leader_now.log(event(10_000 + i)).await.unwrap());
    }
    nodes[paused].process.signal("CONT");
    for writer in writers {
        writer.await.unwrap();
    }
    let mut acked = acked.lock().unwrap().clone();
    acked.extend(after);
    assert_eq!(acked.len(), WRITERS * EACH + AFTER);
    // It stepped down: the lease stays with the new leader.
    assert_eq!(lease(&js).await.unwrap(), (new, advertise, new_term));
    assert_same_whole_log(&nodes, &acked).await;
}

/// `writers` tasks each writing `each` events with their own idempotency
/// keys (from `first`), retrying each until it is acknowledged; the
/// receipts collect in the returned list as they come.
fn spawn_writers(
    client: &auditlog_client::Client,
    writers: usize,
    each: usize,
    first: usize,
) -> (Acked, Vec<tokio::task::JoinHandle<()>>) {
    let acked = Acked::default();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, acked) = (client.clone(), std::sync::Arc::clone(&acked));
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                // The caller retries with the same key whatever went wrong
                // (the client itself retries UNAVAILABLE, but a call cut
                // by the leader's death comes back as a transport error).
                // Losing a NATS server or the leader stalls writes for a
                // while (a new stream or lease leader); what is asserted is
                // that nothing acknowledged is lost, so the wait is long.
                let receipt =
                    wait_until_within(WRITE_RETRY, "a write to be acknowledged", || async {
                        client
                            .log(event(first + w * each + i))
                            .await
                            .map_err(|e| e.to_string())
                    })
                    .await;
                acked.lock().unwrap().push(receipt);
            }
        }));
    }
    (acked, tasks)
}

/// A follow (`Client::follow` over every node) whose node is killed under
/// load goes on from another node: every event exactly once, in seq order,
/// as a survivor holds them.
#[tokio::test]
async fn a_follow_whose_node_is_killed_goes_on_from_another_node_missing_nothing() {
    use auditlog_client::Followed;
    use futures::StreamExt as _;
    const WRITERS: usize = 4;
    const EACH: usize = 10;
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut nodes = start_nodes(&nats, 3).await;
    // The follow has a client of its own: the writers' moving on to another
    // node is not what moves it.
    let client = failover_client(&nodes).await;
    let mut follow = client.follow(auditlog_client::Query::new(), 1);
    let (acked, writers) = spawn_writers(&failover_client(&nodes).await, WRITERS, EACH, 0);
    let (mut seen, mut told) = (Vec::new(), Vec::new());
    let mut next = async || {
        tokio::time::timeout(WRITE_RETRY, follow.next())
            .await
            .expect("the follow yielded nothing in time")
            .expect("a follow ends only with an error")
            .unwrap()
    };
    while seen.len() < 5 {
        match next().await {
            Followed::Item(e) => seen.push(e.seq),
            other => panic!("nothing was lost yet: {other:?}"),
        }
    }
    let killed = client.current_node().to_owned();
    let at = nodes.iter().position(|n| n.url() == killed).unwrap();
    nodes[at].process.kill9();
    for writer in writers {
        writer.await.unwrap();
    }
    let last = acked.lock().unwrap().iter().map(|r| r.seq).max().unwrap();
    let deadline = std::time::Instant::now() + WRITE_RETRY;
    while seen.last() != Some(&last) {
        assert!(
            std::time::Instant::now() < deadline,
            "the follow got to seq {:?} of {last}, resumed on {told:?}",
            seen.last()
        );
        match next().await {
            Followed::Item(e) => seen.push(e.seq),
            Followed::Resumed { node, .. } => told.push(node),
            Followed::Lost { .. } => {}
        }
    }
    assert!(!told.is_empty(), "the follow never said it resumed");
    assert!(
        told.iter().all(|n| *n != killed),
        "{told:?} resumed on the dead node"
    );
    let survivors: Vec<&Node> = nodes.iter().filter(|n| n.url() != killed).collect();
    wait_all_at(survivors.iter().copied(), last).await;
    let held: Vec<u64> = survivors[0]
        .client()
        .await
        .stream(auditlog_client::Query::new(), 1, false)
        .await
        .unwrap()
        .map(|e| e.unwrap().seq)
        .collect()
        .await;
    assert_eq!(seen, held, "the follow's seqs are not the log's");
    assert_eq!(held.len(), WRITERS * EACH);
}

#[tokio::test]
async fn killing_one_nats_server_under_load_loses_nothing_and_it_catches_up() {
    const WRITERS: usize = 16;
    const EACH: usize = 10;
    let Some(mut nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    leader(&js, &nodes).await;
    let client = auditlog_client::Client::builder()
        .nodes(nodes.iter().map(|n| n.url().to_owned()))
        .connect()
        .await
        .unwrap();
    let (acked, writers) = spawn_writers(&client, WRITERS, EACH, 0);
    wait_acked(&acked, WRITERS * 2, "some writes before the kill").await;
    nats.kill9(1);
    for writer in writers {
        writer.await.unwrap();
    }
    let head = (WRITERS * EACH) as u64;
    wait_all_at(&nodes, head).await;
    nats.restart(1);
    nats.wait_ready().await;
    // The restarted server catches up: the stream's leader reports every
    // replica current, the restarted one included, at the same last message.
    let alone = async_nats::connect(nats.urls()[1].as_str()).await.unwrap();
    let alone = jetstream::new(alone);
    let want = js
        .get_stream("AUDITLOG")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
        .last_sequence;
    wait_until("the restarted NATS server to hold the stream", || async {
        let stream = alone
            .get_stream("AUDITLOG")
            .await
            .map_err(|e| e.to_string())?;
        let info = stream.get_info().await.map_err(|e| e.to_string())?;
        let last = info.state.last_sequence;
        let current = info.cluster.as_ref().is_some_and(|c| {
            c.replicas.len() == 2 && c.replicas.iter().all(|r| r.current && !r.offline)
        });
        if last == want && current {
            Ok(())
        } else {
            Err(format!("last {last}, replicas current {current}"))
        }
    })
    .await;
    let acked = acked.lock().unwrap().clone();
    for node in &nodes {
        common::assert_whole(&node.client().await, &acked).await;
    }
}

#[tokio::test]
async fn a_replica_cut_short_while_its_node_was_down_takes_what_it_lost_from_the_stream() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let leader_url = leader(&js, &nodes).await.url().to_owned();
    let client = auditlog_client::Client::connect(&leader_url).await.unwrap();
    // One stream message each; the last after the follower's position file
    // is due again (written at most once a second), so it names a message
    // past the records about to be lost.
    let mut acked = Vec::new();
    for i in 0..12 {
        acked.push(client.log(event(i)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    acked.push(client.log(event(12)).await.unwrap());
    wait_all_at(&nodes, 13).await;
    let down = nodes.iter().position(|n| n.url() != leader_url).unwrap();
    let node = &mut nodes[down];
    let pos = stop_cleanly(node).await;
    assert!(
        pos > 7,
        "cluster.pos is {pos}: the test needs it past the cut"
    );
    // While it is down, its log loses its last six records.
    cut_log(node, 7);
    let data = node.dir.path().join("data");
    acked.push(client.log(event(13)).await.unwrap());
    // Held from applying at first: until the records are back, its
    // verification says they are missing.
    let hold = data.join("HOLD_APPLY");
    std::fs::write(&hold, b"").unwrap();
    node.process = common::cluster::spawn(node.port, node.dir.path()).await;
    let report = node.client().await.verify().await.unwrap();
    let missing: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind() == pb::ProblemKind::Truncated && p.seq == 8)
        .collect();
    assert!(!report.ok && missing.len() == 1, "{report:?}");
    assert!(missing[0].message.contains("seqs 8..=13"), "{missing:?}");
    std::fs::remove_file(&hold).unwrap();
    // It takes the six records in again, byte for byte, then what came
    // meanwhile: the same whole log as the others, and it verifies clean.
    assert_same_whole_log(&nodes, &acked).await;
    let report = nodes[down].client().await.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    wait_for_health(
        &nodes[down].channel().await,
        AUDIT_SERVICE,
        ServingStatus::Serving,
    )
    .await;
}
