//! The servers under test as child processes of the bench: the release
//! `auditlog-server` binary, once in the default single-node mode and three
//! times in cluster mode on the bench's NATS cluster; killed with SIGKILL,
//! started again on their directory and port, and asked who leads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use auditlog_proto::v1 as pb;
use pb::audit_service_client::AuditServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::BoxError;
use crate::endpoints::closed_port;
use crate::lease::lease;

/// The HMAC key every server signs with (the cluster's nodes must share it).
const HMAC_KEY: &str = "bench-key-0123456789abcdef0123456789";

/// One `auditlog-server` process (or its place while it is killed).
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) url: String,
    port: u16,
    dir: PathBuf,
    /// The `--config` file, for a cluster node.
    config: Option<PathBuf>,
    child: Option<Child>,
}

/// The cluster nodes' shared checkpoint signing key.
const CHECKPOINT_KEY: &str = "5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

impl Node {
    /// A single-node server with the default configuration, data in `dir`.
    pub(crate) async fn single(dir: &Path) -> Result<Node, BoxError> {
        Node::start("single".into(), dir, closed_port(), None).await
    }

    /// Cluster node `i` on the NATS servers `nats_urls`, data in `dir`:
    /// the default `[cluster]` settings (replicas 3, lease 2 s) but for
    /// the addresses.
    pub(crate) async fn member(
        i: usize,
        dir: &Path,
        nats_urls: &[String],
    ) -> Result<Node, BoxError> {
        std::fs::create_dir_all(dir)?;
        let port = closed_port();
        let urls: Vec<String> = nats_urls.iter().map(|u| format!("{u:?}")).collect();
        let config = dir.join("auditlog.toml");
        // The cluster's one checkpoint key: the same bytes in every node's
        // directory.
        let key = dir.join("checkpoint.key");
        std::fs::write(&key, CHECKPOINT_KEY)?;
        std::fs::write(
            &config,
            format!(
                "checkpoint_key_file = {key:?}\ncheckpoint_origin = \"auditlog/bench\"\n\
                 [cluster]\nnats_urls = [{}]\nnode_name = \"node{i}\"\n\
                 advertise = \"http://127.0.0.1:{port}\"\n",
                urls.join(", ")
            ),
        )?;
        Node::start(format!("node{i}"), dir, port, Some(config)).await
    }

    async fn start(
        name: String,
        dir: &Path,
        port: u16,
        config: Option<PathBuf>,
    ) -> Result<Node, BoxError> {
        std::fs::create_dir_all(dir)?;
        let mut node = Node {
            name,
            url: format!("http://127.0.0.1:{port}"),
            port,
            dir: dir.to_path_buf(),
            config,
            child: None,
        };
        node.spawn()?;
        node.wait_serving().await?;
        Ok(node)
    }

    fn spawn(&mut self) -> Result<(), BoxError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        let mut command = Command::new(server_bin()?);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.dir.join("data"));
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        // The server reads `AUDITLOG_*` as its configuration and refuses
        // keys it does not know, such as this bench's settings.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AUDITLOG_") {
                command.env_remove(name);
            }
        }
        self.child = Some(
            command
                .env("AUDITLOG_HMAC_KEY", HMAC_KEY)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        Ok(())
    }

    /// Waits (at most 30 s) until the server answers GetStats.
    pub(crate) async fn wait_serving(&self) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.head().await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    let log =
                        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    return Err(format!(
                        "{} at {} did not serve: {e}; its log ends: {}",
                        self.name,
                        self.url,
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    )
                    .into());
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// This node's head seq, on a connection of its own.
    pub(crate) async fn head(&self) -> Result<u64, BoxError> {
        let channel = Endpoint::from_shared(self.url.clone())?
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await?;
        Ok(head(&channel).await?)
    }

    /// SIGKILL, waited for: the process is gone when this returns.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed node again on its directory and port.
    pub(crate) async fn restart(&mut self) -> Result<(), BoxError> {
        self.kill9();
        self.spawn()?;
        self.wait_serving().await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A node's head seq through `channel`: GetStats over an empty time window
/// (from a day ahead), so the server counts nothing and only reads its
/// head.
pub(crate) async fn head(channel: &Channel) -> Result<u64, tonic::Status> {
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 86_400;
    let request = pb::GetStatsRequest {
        since: Some(prost_types::Timestamp {
            seconds: i64::try_from(ahead).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        ..Default::default()
    };
    let stats = AuditServiceClient::new(channel.clone())
        .get_stats(request)
        .await?
        .into_inner();
    Ok(stats.head_seq)
}

/// The node holding the leader lease, by name, and its term.
pub(crate) async fn leader(js: &async_nats::jetstream::Context) -> Result<(String, u64), String> {
    let (node, _, term) = lease(js).await?;
    Ok((node, term))
}

/// The release `auditlog-server` beside this bench's executable, built
/// once per run (a bench builds only its own package).
fn server_bin() -> Result<PathBuf, BoxError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // Bench executables live in target/<profile>/deps.
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .ok_or("cannot tell the target directory")?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args([
                "build",
                "-q",
                "-p",
                "auditlog-server",
                "--bin",
                "auditlog-server",
            ]);
            if dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("building auditlog-server failed".into());
            }
            Ok(dir.join("auditlog-server"))
        })
        .clone()
        .map_err(BoxError::from)
}
