//! [`NatsCluster`]: real `nats-server` processes with JetStream on loopback,
//! each with its own store directory in a temp dir, joined by routes into
//! one cluster, for the cluster-mode tests. One server can be killed with
//! SIGKILL, paused (SIGSTOP) and resumed, or restarted on its directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::endpoints::closed_port;
use super::wait::wait_until;

pub(crate) use super::nats_bin::nats_server_bin;

/// A JetStream cluster of `nats-server` processes.
pub(crate) struct NatsCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    servers: Vec<NatsServer>,
    /// Held while the cluster lives (dropped last): the tests that run
    /// NATS clusters take turns, since three NATS servers and three nodes
    /// each would otherwise share two cores with every other such test and
    /// time out for want of CPU, not for a fault.
    _turn: tokio::sync::SemaphorePermit<'static>,
}

/// The auditlog nodes' shared checkpoint signing key, in the cluster's
/// directory under [`CHECKPOINT_KEY_FILE`].
const CHECKPOINT_KEY: &str = "6b3d0e1f2a4c5b6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6";
const CHECKPOINT_KEY_FILE: &str = "checkpoint.key";
/// The auditlog nodes' one checkpoint origin.
pub(crate) const CHECKPOINT_ORIGIN: &str = "auditlog/test-cluster";

/// One NATS cluster at a time in the test process.
static TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

struct NatsServer {
    config: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts `n` servers and waits until JetStream answers on every one;
    /// `None` (the test skips) when there is no `nats-server` binary.
    ///
    /// The ports are picked free, but another process may take one before
    /// a server binds it; a server that cannot bind exits at once, and the
    /// cluster is then started again on other ports (three tries).
    pub(crate) async fn start(n: usize) -> Option<NatsCluster> {
        let bin = nats_server_bin()?;
        let turn = TURN
            .acquire()
            .await
            .expect("the turn semaphore is never closed");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CHECKPOINT_KEY_FILE), CHECKPOINT_KEY).unwrap();
        let mut cluster = NatsCluster {
            bin,
            dir,
            servers: Vec::new(),
            _turn: turn,
        };
        for attempt in 1..=3 {
            cluster.configure(n);
            for i in 0..n {
                cluster.spawn(i);
            }
            if cluster.listening().await || attempt == 3 {
                break;
            }
            for i in 0..n {
                cluster.kill9(i);
            }
        }
        cluster.wait_ready().await;
        Some(cluster)
    }

    /// Picks `n` servers' ports (all distinct) and writes their configs,
    /// each with an empty store directory.
    fn configure(&mut self, n: usize) {
        let mut picked: Vec<u16> = Vec::new();
        while picked.len() < 2 * n {
            let port = closed_port();
            if !picked.contains(&port) {
                picked.push(port);
            }
        }
        let ports: Vec<(u16, u16)> = picked.chunks(2).map(|p| (p[0], p[1])).collect();
        self.servers.clear();
        for (i, (port, route_port)) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .filter(|(_, r)| r != route_port)
                .map(|(_, r)| format!("\"nats-route://127.0.0.1:{r}\""))
                .collect();
            let store = self.dir.path().join(format!("n{i}"));
            let _ = std::fs::remove_dir_all(&store);
            let config = self.dir.path().join(format!("n{i}.conf"));
            // A single server runs JetStream without a cluster block.
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: auditlog-test\n  listen: 127.0.0.1:{route_port}\n  \
                     routes: [{}]\n}}\n",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{port}\n\
                     jetstream {{\n  store_dir: \"{}\"\n}}\n{cluster}",
                    store.display()
                ),
            )
            .unwrap();
            self.servers.push(NatsServer {
                config,
                port: *port,
                child: None,
            });
        }
    }

    /// Whether every server started listening on its client port and is
    /// still running; false as soon as one has exited (it could not bind a
    /// port), or after 10 s.
    async fn listening(&mut self) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for server in &mut self.servers {
            loop {
                let addr = ("127.0.0.1", server.port);
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    break;
                }
                let exited = server
                    .child
                    .as_mut()
                    .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
                if exited || std::time::Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        // A route port that could not be bound ends the server just after.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        self.servers.iter_mut().all(|s| {
            s.child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
        })
    }

    fn spawn(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let log = std::fs::File::create(self.dir.path().join(format!("n{i}.log"))).unwrap();
        server.child = Some(
            Command::new(&self.bin)
                .arg("-c")
                .arg(&server.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// Waits until every running server answers a JetStream request (the
    /// cluster has elected its meta leader).
    pub(crate) async fn wait_ready(&self) {
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            let url = format!("nats://127.0.0.1:{}", server.port);
            wait_until(&format!("JetStream on {url}"), || {
                let url = url.clone();
                async move {
                    let client = async_nats::connect(&url).await.map_err(|e| e.to_string())?;
                    // A request sent before JetStream is up goes unanswered
                    // until the client's 10 s timeout: ask again sooner.
                    let js = async_nats::jetstream::new(client);
                    match tokio::time::timeout(Duration::from_millis(250), js.query_account()).await
                    {
                        Ok(answer) => answer.map(|_| ()).map_err(|e| e.to_string()),
                        Err(_) => Err("no answer within 250 ms".to_owned()),
                    }
                }
            })
            .await;
        }
    }

    /// The client URLs of all servers, running or not.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The top-level keys of the cluster's one checkpoint identity: the
    /// shared key file (in this cluster's directory) and the origin.
    pub(crate) fn checkpoint_toml(&self) -> String {
        format!(
            "checkpoint_key_file = {:?}\ncheckpoint_origin = \"{CHECKPOINT_ORIGIN}\"\n",
            self.checkpoint_key_file()
        )
    }

    /// The checkpoint key file every node of this cluster shares.
    pub(crate) fn checkpoint_key_file(&self) -> PathBuf {
        self.dir.path().join(CHECKPOINT_KEY_FILE)
    }

    /// The cluster's shared checkpoint keys ([`NatsCluster::checkpoint_toml`])
    /// and the `[cluster]` section of an auditlog node named `name`
    /// advertised on `port`, naming these servers, with a 1 s lease.
    pub(crate) fn node_toml(&self, name: &str, port: u16) -> String {
        let urls: Vec<String> = self.urls().iter().map(|u| format!("{u:?}")).collect();
        format!(
            "{}[cluster]\nnats_urls = [{}]\nnode_name = \"{name}\"\n\
             advertise = \"http://127.0.0.1:{port}\"\nlease_ttl_ms = 1000\n",
            self.checkpoint_toml(),
            urls.join(", ")
        )
    }

    /// A client connected to any running server.
    pub(crate) async fn client(&self) -> async_nats::Client {
        let addrs: Vec<async_nats::ServerAddr> =
            self.urls().iter().map(|u| u.parse().unwrap()).collect();
        async_nats::connect(addrs).await.unwrap()
    }

    /// SIGKILL server `i`: no chance to flush.
    pub(crate) fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`"STOP"`) or SIGCONT (`"CONT"`) to server `i`.
    pub(crate) fn signal(&self, i: usize, name: &str) {
        let child = self.servers[i].child.as_ref().expect("server is running");
        signal(child.id(), name);
    }

    /// Starts server `i` again on its store directory (killing it first if
    /// it runs); [`NatsCluster::wait_ready`] waits until JetStream answers
    /// (with a quorum of servers up).
    pub(crate) fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
    }

    /// Where the servers keep their stores and logs (the cluster bench
    /// prints it; no test needs it).
    #[allow(dead_code)]
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            if let Some(child) = &self.servers[i].child {
                // A paused server would not die of SIGKILL until resumed.
                signal(child.id(), "CONT");
            }
            self.kill9(i);
        }
    }
}

/// Sends the signal `name` to `pid` with kill(1).
pub(crate) fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid} failed");
}
