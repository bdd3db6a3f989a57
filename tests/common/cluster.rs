//! Cluster nodes for the cluster-mode tests: `auditlog-server` processes,
//! each with a config file whose `[cluster]` section names a
//! [`NatsCluster`](super::NatsCluster), a directory of its own and a port
//! known before it starts (its `advertise`).

use std::path::Path;

use super::endpoints::closed_port;
use super::nats::NatsCluster;
use super::process::ServerProcess;

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

/// The `[cluster]` section of node `name` listening on `port`.
pub(crate) fn cluster_toml(nats: &NatsCluster, name: &str, port: u16) -> String {
    let urls: Vec<String> = nats.urls().iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[cluster]\nnats_urls = [{}]\nnode_name = \"{name}\"\n\
         advertise = \"http://127.0.0.1:{port}\"\nlease_ttl_ms = 1000\n",
        urls.join(", ")
    )
}

/// Node `name`, its config the top-level keys `top`, then its `[cluster]`
/// section, then `extra`.
pub(crate) async fn start_node(nats: &NatsCluster, name: &str, top: &str, extra: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let config = dir.path().join("auditlog.toml");
    std::fs::write(
        &config,
        format!("{top}{}{extra}", cluster_toml(nats, name, port)),
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
    nodes
}
