//! A cluster's one checkpoint identity and its health under replica lag
//! (issue 16): real `auditlog-server` processes on a real three-server NATS
//! cluster (`common::NatsCluster`), skipped without a `nats-server` binary
//! unless `REQUIRE_NATS=1`.
//!
//! What is here: every node signs the same checkpoint at the same tree
//! size, and a witness follows the cluster from one node to another; a node
//! without the shared checkpoint key or origin refuses to start, and
//! `--rotate-checkpoint-key` is refused in cluster mode, each with one line
//! that says what to do; a replica held behind the stream (the
//! `HOLD_APPLY` fault, so that node runs in this process) makes its health
//! NOT_SERVING, and SERVING again once it caught up.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;
use std::time::Duration;

use auditlog_client::{Client, NewEvent};
use auditlog_server::config::ClusterConfig;
use common::cluster::{leader, start_nodes, wait_all_at};
use common::endpoints::closed_port;
use common::{
    NatsCluster, TEST_KEY, TestServer, cli, run_to_end, wait_for_health, wait_until,
    wait_until_within, workspace_bin,
};
use tonic_health::pb::health_check_response::ServingStatus;

const AUDIT_SERVICE: &str = "auditlog.v1.AuditService";

/// The origin `NatsCluster::checkpoint_toml` configures.
const ORIGIN: &str = "auditlog/test-cluster";

/// How long a write is retried while the cluster has no known leader.
const WRITE_RETRY: Duration = Duration::from_secs(60);

/// Writes events `from..=to`, each retried as a caller would while the
/// cluster answers UNAVAILABLE: under a loaded CI machine a node can miss a
/// lease round ("no leader is known", 2026-12-07), which is not what these
/// tests are about. Each event has a key, so a retry never writes twice.
async fn log_n(client: &Client, from: u64, to: u64) {
    for n in from..=to {
        let event = NewEvent::lead_ingested(format!("LEAD-{n}"), "webform")
            .idempotency_key(format!("checkpoint-test-{n}"));
        wait_until_within(WRITE_RETRY, "a write to be acknowledged", || async {
            client.log(event.clone()).await.map_err(|e| e.to_string())
        })
        .await;
    }
}

/// The node's latest checkpoint once it holds `size` records: (note,
/// verifier key).
async fn checkpoint_at(client: &Client, size: u64) -> (String, String) {
    wait_until(&format!("a checkpoint of {size} records"), || async {
        let response = client.checkpoint(true).await.map_err(|e| e.to_string())?;
        match response.checkpoint {
            Some(c) if c.tree_size == size => Ok((c.note, response.verifier_key)),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// One round of the witness against `url`: exit code and output.
async fn witness(url: &str, key: &str, state: &Path) -> (i32, String) {
    let state = state.to_str().unwrap();
    let args = [
        "checkpoint",
        "watch",
        "--key",
        key,
        "--state",
        state,
        "--once",
    ];
    let (code, out, err) = cli(url, &args).await;
    (code, format!("{out}{err}"))
}

#[tokio::test]
async fn every_node_signs_the_same_checkpoint_and_a_witness_follows_any_node() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 3).await;
    let clients = [
        nodes[0].client().await,
        nodes[1].client().await,
        nodes[2].client().await,
    ];
    log_n(&clients[0], 1, 4).await;
    wait_all_at(&nodes, 4).await;

    let (note_a, key_a) = checkpoint_at(&clients[0], 4).await;
    let (note_b, key_b) = checkpoint_at(&clients[1], 4).await;
    assert_eq!(key_a, key_b, "two checkpoint identities in one cluster");
    assert!(key_a.starts_with(&format!("{ORIGIN}+")), "{key_a}");
    assert_eq!(note_a, note_b, "the same tree size signed differently");

    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("kept.note");
    let (code, out) = witness(nodes[0].url(), &key_a, &state).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tree size 4"), "{out}");

    // More writes through a third node; the witness moves to the second.
    log_n(&clients[2], 5, 7).await;
    wait_all_at(&nodes, 7).await;
    checkpoint_at(&clients[1], 7).await;
    let (code, out) = witness(nodes[1].url(), &key_a, &state).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("tree size 7") && out.contains("extends the kept size"),
        "{out}"
    );
}

/// Runs `auditlog-server` with `config` (and `extra` arguments) on `dir`
/// to its end.
async fn run_server(dir: &Path, config: &str, extra: &[&str]) -> common::Finished {
    let file = dir.join("auditlog.toml");
    std::fs::write(&file, config).unwrap();
    let mut args = vec![
        "--listen".to_owned(),
        format!("127.0.0.1:{}", closed_port()),
        "--data-dir".to_owned(),
        dir.join("data").display().to_string(),
        "--config".to_owned(),
        file.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let env = vec![("AUDITLOG_HMAC_KEY".to_owned(), TEST_KEY.to_owned())];
    let bin = workspace_bin("auditlog-server", "auditlog-server");
    run_to_end(bin, args, env, Duration::from_secs(30)).await
}

const CLUSTER: &str = "[cluster]\nnats_urls = [\"nats://127.0.0.1:4222\"]\n\
                       advertise = \"http://127.0.0.1:50051\"\n";

#[tokio::test]
async fn a_node_without_the_shared_checkpoint_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();

    let run = run_server(dir.path(), CLUSTER, &[]).await;
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("checkpoint_key_file") && run.stderr.contains("openssl rand -hex 32"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("serving"), "announced first: {run:?}");

    let key = dir.path().join("shared.key");
    let named = format!("checkpoint_key_file = {key:?}\n{CLUSTER}");
    let run = run_server(dir.path(), &named, &[]).await;
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("checkpoint_origin") && run.stderr.contains("names this host"),
        "{run:?}"
    );

    // The file named but missing: never generated on one node.
    let config =
        format!("checkpoint_key_file = {key:?}\ncheckpoint_origin = \"{ORIGIN}\"\n{CLUSTER}");
    let run = run_server(dir.path(), &config, &[]).await;
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains(&key.display().to_string()) && run.stderr.contains("never generates"),
        "{run:?}"
    );
    assert!(!key.exists(), "a node generated the cluster's key");
    assert!(!run.stderr.contains("serving"), "announced first: {run:?}");
}

#[tokio::test]
async fn rotating_the_checkpoint_key_is_refused_in_cluster_mode() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("shared.key");
    let seed = "11".repeat(32);
    std::fs::write(&key, &seed).unwrap();
    let config =
        format!("checkpoint_key_file = {key:?}\ncheckpoint_origin = \"{ORIGIN}\"\n{CLUSTER}");
    let run = run_server(dir.path(), &config, &["--rotate-checkpoint-key"]).await;
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("refused in cluster mode") && run.stderr.contains("stop every node"),
        "{run:?}"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), seed);
    assert!(!dir.path().join("data/checkpoint.retired.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_the_replica_is_behind_and_serving_once_caught_up() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let nodes = start_nodes(&nats, 2).await;
    let js = async_nats::jetstream::new(nats.client().await);
    let writer = leader(&js, &nodes).await.client().await;

    // The third node runs in this process, where the fault hooks are built
    // in, and may be at most 3 events behind.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let data = tempfile::tempdir().unwrap();
    let config = auditlog_server::Config {
        data_dir: data.path().to_path_buf(),
        hmac_key: Some(TEST_KEY.into()),
        checkpoint_key_file: Some(nats.checkpoint_key_file()),
        checkpoint_origin: Some(ORIGIN.into()),
        cluster: Some(ClusterConfig {
            nats_urls: nats.urls(),
            node_name: Some("node2".into()),
            advertise: url,
            lease_ttl_ms: 1000,
            max_replica_lag: 3,
            ..ClusterConfig::default()
        }),
        ..auditlog_server::Config::default()
    };
    let follower = TestServer::start_on(listener, config).await;
    let channel = follower.channel().await;
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::Serving).await;

    let hold = data.path().join("HOLD_APPLY");
    std::fs::write(&hold, b"").unwrap();
    log_n(&writer, 1, 10).await;
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::NotServing).await;
    let head = follower.client().await.stats(None).await.unwrap().head_seq;
    assert!(head < 10, "the held replica applied up to {head}");

    std::fs::remove_file(&hold).unwrap();
    wait_for_health(&channel, AUDIT_SERVICE, ServingStatus::Serving).await;
    let client = follower.client().await;
    wait_until("the follower to catch up", || async {
        match client.stats(None).await {
            Ok(s) if s.head_seq == 10 => Ok(()),
            other => Err(format!("{:?}", other.map(|s| s.head_seq))),
        }
    })
    .await;
}
