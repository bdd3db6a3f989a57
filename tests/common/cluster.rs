//! A cluster of `auditlog-server` processes for the cluster-mode tests:
//! [`Node`]s, each with a config file naming a [`super::NatsCluster`]
//! (`[cluster]`, `lease_ttl_ms = 1000`) plus whatever a test adds; a
//! client that outlasts a takeover and the check that every node holds the
//! same whole log; and who holds the leader lease, as the bucket says.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use auditlog_client::pb;
use tonic_health::pb::health_check_response::ServingStatus;

use super::checks::assert_whole;
use super::endpoints::closed_port;
use super::health_reflection::wait_for_health;
pub(crate) use super::lease::lease;
use super::wait::wait_until;
use super::{NatsCluster, ServerProcess};

/// One auditlog node: its process, its directory and its advertised URL.
pub(crate) struct Node {
    pub(crate) process: ServerProcess,
    pub(crate) port: u16,
    pub(crate) dir: tempfile::TempDir,
}

impl Node {
    pub(crate) async fn client(&self) -> auditlog_client::Client {
        auditlog_client::Client::connect(self.url()).await.unwrap()
    }

    /// Kills the node (SIGKILL) and starts it again on its directory and port.
    pub(crate) async fn restart(&mut self) {
        self.process.kill9();
        self.process = spawn(self.port, self.dir.path()).await;
    }

    pub(crate) fn url(&self) -> &str {
        &self.process.url
    }

    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url().to_owned())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

/// Node `name`, its config the top-level keys `top`, then its `[cluster]`
/// section, then `extra`.
pub(crate) async fn start_node(nats: &NatsCluster, name: &str, top: &str, extra: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let config = dir.path().join("auditlog.toml");
    std::fs::write(
        &config,
        format!("{top}{}{extra}", nats.node_toml(name, port)),
    )
    .unwrap();
    let process = spawn(port, dir.path()).await;
    Node { process, port, dir }
}

/// The node in `dir` (`auditlog.toml`, `data/`) on `port`.
pub(crate) async fn spawn(port: u16, dir: &Path) -> ServerProcess {
    let config = dir.join("auditlog.toml");
    ServerProcess::spawn_at(
        port,
        &dir.join("data"),
        ["--config".as_ref(), config.as_os_str()],
        &[],
    )
    .await
}

/// Stops `node` cleanly (SIGTERM) and returns the last stream message its
/// replica saved as applied (`cluster.pos`, written at most once a second).
pub(crate) async fn stop_cleanly(node: &mut Node) -> u64 {
    node.process.signal("TERM");
    node.process
        .wait_exit_within(std::time::Duration::from_secs(30))
        .await;
    let pos = node.dir.path().join("data/cluster.pos");
    std::fs::read_to_string(&pos)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Cuts a stopped node's `audit.log` to its first `records` lines, as a disk
/// that lost the file's tail would.
pub(crate) fn cut_log(node: &Node, records: usize) {
    let log = node.dir.path().join("data/audit.log");
    let bytes = std::fs::read(&log).unwrap();
    let keep: usize = bytes
        .split_inclusive(|&b| b == b'\n')
        .take(records)
        .map(<[u8]>::len)
        .sum();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(keep as u64)
        .unwrap();
}

/// [`spawn`], the server's stderr written to `stderr`.
pub(crate) async fn spawn_logging(port: u16, dir: &Path, stderr: PathBuf) -> ServerProcess {
    let config = dir.join("auditlog.toml");
    ServerProcess::spawn_at_logging(
        port,
        &dir.join("data"),
        ["--config".as_ref(), config.as_os_str()],
        stderr,
    )
    .await
}

pub(crate) async fn start_nodes(nats: &NatsCluster, n: usize) -> Vec<Node> {
    start_nodes_with(nats, n, "").await
}

/// `n` nodes, each config ending with `extra`.
pub(crate) async fn start_nodes_with(nats: &NatsCluster, n: usize, extra: &str) -> Vec<Node> {
    start_nodes_around(nats, n, "", extra).await
}

/// `n` nodes, each config starting with the top-level keys `top` and
/// ending with `extra`.
pub(crate) async fn start_nodes_around(
    nats: &NatsCluster,
    n: usize,
    top: &str,
    extra: &str,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(start_node(nats, &format!("node{i}"), top, extra).await);
    }
    wait_ready(nats, &nodes).await;
    nodes
}

/// `n` nodes, each serving Prometheus metrics on a port of its own; with
/// each node, the address of its metrics.
pub(crate) async fn start_metered_nodes(nats: &NatsCluster, n: usize) -> Vec<(Node, String)> {
    let mut nodes = Vec::new();
    for i in 0..n {
        let metrics = format!("127.0.0.1:{}", closed_port());
        let top = format!("metrics_listen = \"{metrics}\"\n");
        nodes.push((
            start_node(nats, &format!("node{i}"), &top, "").await,
            metrics,
        ));
    }
    let just: Vec<&Node> = nodes.iter().map(|(node, _)| node).collect();
    wait_ready(nats, &just).await;
    nodes
}

/// Waits until a leader is elected and every one of `nodes` takes writes:
/// a node answers health as soon as it serves calls, and a write needs a
/// leader and every node reaching NATS as well.
async fn wait_ready(nats: &NatsCluster, nodes: &[impl std::borrow::Borrow<Node>]) {
    let js = jetstream::new(nats.client().await);
    wait_until("a leader", || lease(&js)).await;
    for node in nodes {
        wait_for_health(
            &node.borrow().channel().await,
            "auditlog.v1.AuditService",
            ServingStatus::Serving,
        )
        .await;
    }
}

/// Receipts that concurrent writers collect as they come.
pub(crate) type Acked = Arc<Mutex<Vec<pb::Receipt>>>;

/// A client over every node's address, with retries long enough to outlast
/// a takeover.
pub(crate) async fn failover_client(nodes: &[Node]) -> auditlog_client::Client {
    auditlog_client::Client::builder()
        .nodes(nodes.iter().map(|n| n.url().to_owned()))
        .retry(auditlog_client::Retry {
            attempts: 60,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
        })
        .connect()
        .await
        .unwrap()
}

/// Waits until the writers have collected at least `n` receipts in `acked`.
pub(crate) async fn wait_acked(acked: &Acked, n: usize, what: &str) {
    wait_until(what, || async {
        match acked.lock().unwrap().len() {
            have if have >= n => Ok(()),
            have => Err(format!("{have} acked")),
        }
    })
    .await;
}

/// Every node holds exactly the `acked` events, once each, verifies, and
/// reports the same head signature.
pub(crate) async fn assert_same_whole_log(nodes: &[Node], acked: &[pb::Receipt]) {
    let head = acked.len();
    // A deposed leader that acknowledged what its successor had stored
    // under the same seqs would show here first.
    let seqs: std::collections::BTreeSet<u64> = acked.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), head, "two acknowledged writes got the same seq");
    wait_all_at(nodes, head as u64).await;
    let mut heads = Vec::new();
    for node in nodes {
        let events = assert_whole(&node.client().await, acked).await;
        let mut keys: Vec<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), head, "an event was written twice");
        heads.push(node.client().await.verify().await.unwrap().head_signature);
    }
    assert!(heads.iter().all(|h| *h == heads[0]), "{heads:?}");
}

/// Waits until the lease is held by a node other than `not`, with a term
/// above `after`.
pub(crate) async fn new_leader(
    js: &jetstream::Context,
    not: &str,
    after: u64,
) -> (String, String, u64) {
    wait_until("another node to take the lease", || async {
        match lease(js).await? {
            (node, advertise, term) if node != not && term > after => Ok((node, advertise, term)),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

pub(crate) fn index_of(nodes: &[Node], advertise: &str) -> usize {
    nodes
        .iter()
        .position(|n| n.url() == advertise)
        .unwrap_or_else(|| panic!("the lease names {advertise}, no node of this test"))
}

/// The node holding the lease, once one does.
pub(crate) async fn leader<'a>(js: &jetstream::Context, nodes: &'a [Node]) -> &'a Node {
    let (_, advertise, _) = wait_until("a leader", || lease(js)).await;
    &nodes[index_of(nodes, &advertise)]
}

/// Waits until every node's replica has `head` events.
pub(crate) async fn wait_all_at<'a>(nodes: impl IntoIterator<Item = &'a Node>, head: u64) {
    for node in nodes {
        let client = node.client().await;
        wait_until(&format!("{} to hold {head} events", node.url()), || async {
            match client.stats(None).await {
                Ok(s) if s.head_seq == head => Ok(()),
                other => Err(format!("{:?}", other.map(|s| s.head_seq))),
            }
        })
        .await;
    }
}

/// How long one `--cluster-import` may run.
pub(crate) const IMPORT_LIMIT: Duration = Duration::from_secs(60);

/// `auditlog-server --cluster-import` on `data_dir` with a node's config,
/// HMAC key `key`; the run borrows nothing, so a test may stop and start
/// NATS servers while it runs.
pub(crate) fn import(
    nats: &NatsCluster,
    data_dir: &Path,
    key: &str,
) -> impl Future<Output = super::Finished> + 'static {
    let config = data_dir.with_extension("import.toml");
    std::fs::write(&config, nats.node_toml("importer", closed_port())).unwrap();
    let args = vec![
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
        "--config".to_owned(),
        config.display().to_string(),
        "--cluster-import".to_owned(),
    ];
    let env = vec![("AUDITLOG_HMAC_KEY".to_owned(), key.to_owned())];
    let bin = super::workspace_bin("auditlog-server", "auditlog-server");
    super::run_to_end(bin, args, env, IMPORT_LIMIT)
}
