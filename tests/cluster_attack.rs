//! Cluster mode attacked from outside, as someone with NATS access (or a
//! faulty NATS) would: messages no leader wrote published to the stream's
//! subject, and the stream edited, emptied or deleted under running nodes.
//! A real three-server NATS cluster on loopback (`common::NatsCluster`),
//! skipped without a `nats-server` binary unless `REQUIRE_NATS=1`.
//!
//! What is here: foreign messages (garbage, a forged record, a replay) are
//! skipped by every replica and the leader signs on after them, writes
//! going on; a stream that lost what the replicas hold, or that was edited
//! to drop messages, turns health NOT_SERVING and writes FAILED_PRECONDITION
//! saying so, and nobody signs on top of it.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use auditlog_client::pb;
use common::cluster::{
    Node, assert_same_whole_log, failover_client, import, leader, lease, start_metered_nodes,
    start_nodes, start_nodes_around, wait_all_at,
};
use common::{
    NatsCluster, deploy_exprs, health_of, is_exposed, metric_names, wait_for_health, wait_until,
    wait_until_within,
};
use tonic_health::pb::health_check_response::ServingStatus;

const AUDIT_SERVICE: &str = "auditlog.v1.AuditService";
const SUBJECT: &str = "AUDITLOG.log";

fn event(i: usize) -> auditlog_client::NewEvent {
    auditlog_client::NewEvent::new("crm_update")
        .actor("system")
        .lead(format!("L{i}"))
        .idempotency_key(format!("k{i}"))
}

/// Publishes `payload` to the stream's subject as an outsider: no fence,
/// no message id, the headers given. Sent again while no stream answers
/// (JetStream's "no responders" while its stream elects a leader, which a
/// busy machine meets now and then): nothing was stored then.
async fn publish(js: &jetstream::Context, headers: &[(&str, &str)], payload: Vec<u8>) {
    use jetstream::context::PublishErrorKind;
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ack = js
            .publish_with_headers(SUBJECT, map.clone(), payload.clone().into())
            .await
            .unwrap()
            .await;
        match ack {
            Err(e)
                if e.kind() == PublishErrorKind::StreamNotFound
                    && tokio::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            ack => {
                ack.unwrap();
                return;
            }
        }
    }
}

/// A node's Prometheus exposition (`GET /metrics` over HTTP/1.0: neither
/// chunked nor kept alive).
async fn scrape(addr: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let ask = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(ask.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.split(' ').nth(1) == Some("200") => Ok(body.to_owned()),
        _ => Err(format!("not a 200 answer: {answer:?}")),
    }
}

/// The value of the unlabelled sample `name` in `text`, if it is there.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Waits until every node reports `want` for the audit service.
async fn wait_all_health(nodes: &[Node], want: ServingStatus) {
    for node in nodes {
        wait_for_health(&node.channel().await, AUDIT_SERVICE, want).await;
    }
}

#[tokio::test]
async fn messages_no_leader_wrote_are_skipped_and_writes_go_on_after_them() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let (mut nodes, metrics): (Vec<Node>, Vec<String>) =
        start_metered_nodes(&nats, 3).await.into_iter().unzip();
    let js = jetstream::new(nats.client().await);
    let client = leader(&js, &nodes).await.client().await;
    let mut acked: Vec<pb::Receipt> = Vec::new();
    for i in 0..3 {
        acked.push(client.log(event(i)).await.unwrap());
    }
    let stream = js.get_stream("AUDITLOG").await.unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    let third = stream.get_raw_message(3).await.unwrap();

    // Bytes that are not records, with and without the header.
    publish(&js, &[], b"garbage".to_vec()).await;
    publish(&js, &[("Auditlog-Seq", "4-4")], b"{\"seq\":4}\n".to_vec()).await;
    // A record 4 that looks right but whose MAC does not verify (record 3
    // renumbered), and the same under a header naming other seqs.
    let forged = String::from_utf8(third.payload.to_vec()).unwrap().replacen(
        "{\"seq\":3,",
        "{\"seq\":4,",
        1,
    );
    publish(&js, &[("Auditlog-Seq", "4-4")], forged.clone().into()).await;
    publish(&js, &[("Auditlog-Seq", "9-9")], forged.into()).await;
    // A replay of a real group, outside JetStream's duplicate window (no
    // message id): the same bytes the replicas hold at seq 1.
    publish(&js, &[("Auditlog-Seq", "1-1")], first.payload.to_vec()).await;

    // The leader's fenced publish finds the stream moved on, and signs on
    // after the foreign messages; every write is answered.
    let writer = failover_client(&nodes).await;
    for i in 3..6 {
        let receipt = tokio::time::timeout(Duration::from_secs(20), writer.log(event(i)))
            .await
            .expect("a write after foreign messages was not answered")
            .unwrap();
        assert_eq!(receipt.seq, i as u64 + 1);
        acked.push(receipt);
    }
    wait_all_health(&nodes, ServingStatus::Serving).await;
    assert_same_whole_log(&nodes, &acked).await;

    // What an operator's Prometheus sees: every node skipped the four
    // messages that are no leader's (the replay changed nothing), took the
    // stream in to its last message (3 groups, 5 foreign, 3 groups), and
    // takes writes; one of them leads.
    let mut leaders = 0;
    for addr in &metrics {
        // The lag is read once a second: it shows 0 from the first reading
        // after the replica reached the end.
        let text = wait_until("the replica at the stream's end, its lag read", || async {
            let text = scrape(addr).await?;
            match (
                sample(&text, "auditlog_cluster_applied_stream_seq"),
                sample(&text, "auditlog_cluster_replica_lag_events"),
            ) {
                (Some(11), Some(0)) => Ok(text),
                other => Err(format!("applied, lag {other:?}")),
            }
        })
        .await;
        let skipped = sample(&text, "auditlog_cluster_foreign_messages_skipped_total");
        assert_eq!(skipped, Some(4), "{addr}: {text}");
        assert_eq!(sample(&text, "auditlog_cluster_ready"), Some(1), "{text}");
        assert_eq!(
            sample(&text, "auditlog_cluster_replica_lag_events"),
            Some(0)
        );
        leaders += sample(&text, "auditlog_cluster_leader").unwrap();
    }
    assert_eq!(leaders, 1, "one node leads");
    // Every cluster metric deploy/'s dashboard and alert rules name is one
    // a cluster node exposes.
    let exposed = metric_names(&scrape(&metrics[0]).await.unwrap());
    for name in metric_names(&deploy_exprs()) {
        if name.starts_with("auditlog_cluster_") {
            assert!(is_exposed(&exposed, &name), "{name} is not exposed");
        }
    }

    // A restarted node takes the stream in again past the same messages,
    // from its position or (without one) from the start.
    nodes[0].restart().await;
    nodes[1].process.kill9();
    let _ = std::fs::remove_file(nodes[1].dir.path().join("data/cluster.pos"));
    nodes[1].restart().await;
    acked.push(writer.log(event(6)).await.unwrap());
    wait_all_health(&nodes, ServingStatus::Serving).await;
    assert_same_whole_log(&nodes, &acked).await;
}

/// The status a write gets while the stream is unfit: FAILED_PRECONDITION
/// (no retry helps until an operator acts) naming what is wrong.
async fn assert_write_refused(client: &auditlog_client::Client, i: usize, saying: &str) {
    let refused = wait_until("the write to be refused", || async {
        match client.log(event(i)).await {
            Err(auditlog_client::Error::Rpc(s)) if s.code() == tonic::Code::FailedPrecondition => {
                Ok(s)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(refused.message().contains(saying), "{refused:?}");
}

#[tokio::test]
async fn a_stream_edited_to_drop_messages_is_not_vouched_for_until_it_is_fixed() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let client = leader(&js, &nodes).await.client().await;
    let mut acked = vec![client.log(event(0)).await.unwrap()];

    // Someone with NATS access caps the stream: old messages would go.
    let mut stream = js.get_stream("AUDITLOG").await.unwrap();
    let fit = stream.info().await.unwrap().config.clone();
    let capped = jetstream::stream::Config {
        max_messages: 1000,
        ..fit.clone()
    };
    js.update_stream(&capped).await.unwrap();
    wait_all_health(&nodes, ServingStatus::NotServing).await;
    assert_write_refused(&client, 1, "max_msgs").await;
    // Reads go on from the replicas.
    for node in &nodes {
        assert_eq!(node.client().await.stats(None).await.unwrap().head_seq, 1);
    }

    js.update_stream(&fit).await.unwrap();
    wait_all_health(&nodes, ServingStatus::Serving).await;
    acked.push(client.log(event(1)).await.unwrap());
    assert_same_whole_log(&nodes, &acked).await;

    // Sealed, for good: it takes no write any more, which health says.
    let sealed = jetstream::stream::Config {
        sealed: true,
        ..fit
    };
    js.update_stream(&sealed).await.unwrap();
    wait_all_health(&nodes, ServingStatus::NotServing).await;
    assert_write_refused(&client, 2, "sealed").await;
    assert_same_whole_log(&nodes, &acked).await;
}

#[tokio::test]
async fn a_stream_deleted_or_recreated_empty_under_the_nodes_is_not_signed_on() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let client = leader(&js, &nodes).await.client().await;
    let acked = client.log_batch((0..5).map(event)).await.unwrap();
    // Past the position file's once-a-second write.
    for i in 5..8 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        client.log(event(i)).await.unwrap();
    }
    let mut stream = js.get_stream("AUDITLOG").await.unwrap();
    let config = stream.info().await.unwrap().config.clone();

    js.delete_stream("AUDITLOG").await.unwrap();
    wait_all_health(&nodes, ServingStatus::NotServing).await;
    assert_write_refused(&client, 8, "does not exist").await;

    // Created again, empty: what every replica holds is gone from it, and
    // no node signs a log on top of nothing.
    js.create_stream(config).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_write_refused(&client, 8, "lost messages").await;
    for node in &nodes {
        let status = health_of(&node.channel().await, AUDIT_SERVICE).await;
        assert_eq!(status.unwrap(), ServingStatus::NotServing, "{}", node.url());
        let verified = node.client().await.verify().await.unwrap();
        assert!(verified.ok && verified.head_seq == 8, "{verified:?}");
    }
    // A restart tells the same, even where the position file is gone: a
    // replica holding records never takes an empty stream for the log.
    for node in &mut nodes {
        node.process.kill9();
        let _ = std::fs::remove_file(node.dir.path().join("data/cluster.pos"));
        node.restart().await;
    }
    assert_write_refused(&client, 8, "lost messages").await;
    wait_all_health(&nodes, ServingStatus::NotServing).await;
    let stream = js.get_stream("AUDITLOG").await.unwrap();
    assert_eq!(stream.cached_info().state.messages, 0, "a node signed on");

    // Restored as docs/cluster.md says: every node stopped, one node's log
    // imported into the empty stream, the position files removed.
    for node in &mut nodes {
        node.process.kill9();
    }
    let data = nodes[1].dir.path().join("data");
    let imported = wait_until("the import to find no lease held", || async {
        let run = import(&nats, &data, common::TEST_KEY).await;
        if run.code == 0 {
            Ok(run)
        } else {
            Err(format!("{run:?}"))
        }
    })
    .await;
    assert!(
        imported.stdout.contains("imported records 1-8"),
        "{imported:?}"
    );
    for node in &mut nodes {
        let _ = std::fs::remove_file(node.dir.path().join("data/cluster.pos"));
        node.restart().await;
    }
    wait_all_health(&nodes, ServingStatus::Serving).await;
    let mut acked = acked;
    acked.extend(
        common::all_events(&client)
            .await
            .iter()
            .skip(5)
            .map(|e| pb::Receipt {
                seq: e.seq,
                id: e.id.clone(),
                timestamp: e.timestamp,
                signature: e.signature.clone(),
                duplicate: false,
            }),
    );
    acked.push(failover_client(&nodes).await.log(event(8)).await.unwrap());
    assert_same_whole_log(&nodes, &acked).await;
}

#[tokio::test]
async fn a_deleted_lease_bucket_is_created_again_and_a_leader_elected() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let client = leader(&js, &nodes).await.client().await;
    let mut acked = vec![client.log(event(0)).await.unwrap()];

    js.delete_key_value("AUDITLOG_leader").await.unwrap();
    js.delete_key_value("AUDITLOG_cursors").await.unwrap();
    // Without the bucket no node could take the lease: once the leader
    // found its renewal refused, every write would be refused, "no
    // leader", for good.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let writer = failover_client(&nodes).await;
    let receipt = tokio::time::timeout(Duration::from_secs(20), writer.log(event(1)))
        .await
        .expect("no write answered after the lease bucket was deleted")
        .unwrap();
    acked.push(receipt);
    wait_until("the buckets to be there again", || async {
        js.get_key_value("AUDITLOG_cursors")
            .await
            .map_err(|e| e.to_string())?;
        lease(&js).await
    })
    .await;
    wait_all_health(&nodes, ServingStatus::Serving).await;
    assert_same_whole_log(&nodes, &acked).await;
}

#[tokio::test]
async fn health_is_not_serving_while_every_nats_server_is_paused() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let client = leader(&js, &nodes).await.client().await;
    let mut acked = vec![client.log(event(0)).await.unwrap()];

    // Paused, NATS keeps its connections open: a node is not told it is
    // gone, yet nothing it asks is answered.
    for i in 0..3 {
        nats.signal(i, "STOP");
    }
    for node in &nodes {
        let channel = node.channel().await;
        wait_until_within(Duration::from_secs(5), "health NOT_SERVING", || async {
            match health_of(&channel, AUDIT_SERVICE).await {
                Ok(ServingStatus::NotServing) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let refused = node.client().await.log(event(1)).await.unwrap_err();
        let auditlog_client::Error::Rpc(status) = refused else {
            panic!("{refused:?}");
        };
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("NATS"), "{status:?}");
    }
    for i in 0..3 {
        nats.signal(i, "CONT");
    }
    wait_all_health(&nodes, ServingStatus::Serving).await;
    // The lease rounds answer again before JetStream has settled: the
    // first publish can outlast the call's deadline (DEADLINE_EXCEEDED;
    // seen in CI). The event carries an idempotency key, so trying again is
    // safe.
    let writer = failover_client(&nodes).await;
    let receipt = wait_until("a write acknowledged once NATS is back", || async {
        writer.log(event(1)).await.map_err(|e| e.to_string())
    })
    .await;
    acked.push(receipt);
    assert_same_whole_log(&nodes, &acked).await;
}

#[tokio::test]
async fn writes_while_nats_stalls_again_and_again_are_answered_in_time_and_none_is_lost() {
    const DEADLINE: Duration = Duration::from_secs(3);
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let _ = leader(&js, &nodes).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        // Each call once, to the next node along, with a deadline.
        let client = auditlog_client::Client::builder()
            .nodes(nodes.iter().map(|n| n.url().to_owned()))
            .retry(auditlog_client::Retry {
                attempts: 1,
                ..Default::default()
            })
            .answer_within(DEADLINE)
            .connect()
            .await
            .unwrap();
        let stop = std::sync::Arc::clone(&stop);
        writers.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let started = std::time::Instant::now();
                let answer = client.log(event(w * 100_000 + i)).await;
                if answer.is_err() {
                    // As a caller would, before trying again (counted in
                    // the call's time).
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                calls.push((w * 100_000 + i, started.elapsed(), answer));
            }
            calls
        }));
    }
    // NATS stalls a second at a time: longer than a lease round may take,
    // so the leader steps down each time.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        for i in 0..3 {
            nats.signal(i, "STOP");
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        for i in 0..3 {
            nats.signal(i, "CONT");
        }
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut calls = Vec::new();
    for writer in writers {
        calls.extend(writer.await.unwrap());
    }

    let retry = failover_client(&nodes).await;
    let mut acked = Vec::new();
    for (i, took, answer) in calls {
        assert!(
            took < DEADLINE + Duration::from_secs(1),
            "{i} took {took:?}"
        );
        // A refusal says what is wrong; no node sends a write to itself
        // as if it were another's leader, nor is said unreachable when it
        // answered.
        if let Err(auditlog_client::Error::Rpc(status)) = &answer {
            let message = status.message();
            for node in 0..3 {
                assert!(
                    message.matches(&format!("node{node} at")).count() < 2,
                    "{status:?}"
                );
            }
            assert!(
                !(message.contains("cannot reach") && message.contains("this node")),
                "{status:?}"
            );
        }
        // A refused write, asked again with its key, is written now, or
        // found written once.
        match answer {
            Ok(receipt) => acked.push(receipt),
            Err(_) => acked.push(retry.log(event(i)).await.unwrap()),
        }
    }
    assert_same_whole_log(&nodes, &acked).await;
}

#[tokio::test]
async fn a_replayed_message_does_not_make_retention_purge_records_it_keeps_from_the_stream() {
    const RETENTION: Duration = Duration::from_secs(2);
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    // Retention checked at start only (then asked for), segments sealed
    // on request.
    let retained = format!(
        "retention_days = {}\nretention_check_secs = 86400\nmax_segment_age_secs = 0\n",
        RETENTION.as_secs_f64() / 86_400.0
    );
    let mut nodes = start_nodes_around(&nats, 3, &retained, "").await;
    let js = jetstream::new(nats.client().await);
    let leader_url = leader(&js, &nodes).await.url().to_owned();
    let client = auditlog_client::Client::connect(&leader_url).await.unwrap();
    client.log_batch((1..=5).map(event)).await.unwrap();
    wait_all_at(&nodes, 5).await;
    for node in &nodes {
        assert!(node.client().await.rotate(true).await.unwrap().rotated);
    }
    // A node goes down holding 1..=5, all that retention will purge.
    let down = nodes.iter().position(|n| n.url() != leader_url).unwrap();
    nodes[down].process.kill9();
    client.log(event(6)).await.unwrap();
    // Stream message 1 again, after record 6's message.
    let stream = js.get_stream("AUDITLOG").await.unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    publish(&js, &[("Auditlog-Seq", "1-5")], first.payload.to_vec()).await;
    client.log(event(7)).await.unwrap();
    client.log(event(8)).await.unwrap();

    let purge = wait_until_within(RETENTION * 10, "the leader to purge 1..=5", || async {
        match client.apply_retention().await {
            Ok(p) if p.through_seq > 0 => Ok(p),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(purge.through_seq, 5);
    // The stream keeps every message from record 6's on.
    let mut stream = js.get_stream("AUDITLOG").await.unwrap();
    let first_left = stream.info().await.unwrap().state.first_sequence;
    let message = stream.get_raw_message(first_left).await.unwrap();
    assert_eq!(
        message.headers.get("Auditlog-Seq").unwrap().as_str(),
        "6-6",
        "the stream lost records retention keeps"
    );
    // So the node that was down catches up from the stream.
    let node = &mut nodes[down];
    node.process = common::cluster::spawn(node.port, node.dir.path()).await;
    wait_for_health(&node.channel().await, AUDIT_SERVICE, ServingStatus::Serving).await;
    wait_all_at(&nodes, 9).await;
    let verified = nodes[down].client().await.verify().await.unwrap();
    assert!(verified.ok, "{verified:?}");
}

#[tokio::test]
async fn a_lease_written_by_someone_else_draws_no_forwarded_write() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    let js = jetstream::new(nats.client().await);
    let client = leader(&js, &nodes).await.client().await;
    let mut acked = vec![client.log(event(0)).await.unwrap()];
    // Where the forged lease sends the followers: a listener that counts
    // who connects (a forwarded write carries the caller's token).
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    let drawn = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = std::sync::Arc::clone(&drawn);
    let trapping = tokio::spawn(async move {
        while let Ok((_connection, _)) = trap.accept().await {
            counting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let bucket = js.get_key_value("AUDITLOG_leader").await.unwrap();
    let forged = format!(r#"{{"node":"node9","advertise":"{trap_url}","term":99}}"#);
    for round in 0..8 {
        bucket.put("leader", forged.clone().into()).await.unwrap();
        for node in &nodes {
            let _ = tokio::time::timeout(
                Duration::from_millis(300),
                node.client().await.log(event(1000 + round)),
            )
            .await;
        }
    }
    trapping.abort();
    assert_eq!(
        drawn.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a write went to the forged leader"
    );
    // Once the forged entry expires, a node takes the lease again.
    let writer = failover_client(&nodes).await;
    acked.push(writer.log(event(1)).await.unwrap());
    for round in 0..8 {
        // Whether each write of the forged rounds was written is unknown:
        // asked again with its key, it is.
        acked.push(writer.log(event(1000 + round)).await.unwrap());
    }
    wait_all_health(&nodes, ServingStatus::Serving).await;
    assert_same_whole_log(&nodes, &acked).await;
}
