//! Cluster mode on NATS JetStream (`[cluster]`, docs/cluster.md): the
//! stream is the source of truth, one node at a time (the holder of the
//! leader lease) signs and publishes, and every node keeps its own replica.
//!
//! - `config.rs`: the `[cluster]` section and its validation.
//! - `stream.rs`: the stream and the lease bucket (created or checked), the
//!   stream's tail.
//! - `lease.rs`: acquiring, renewing and losing the leader lease.
//! - `leader.rs`: the fenced publish of signed groups.
//!
//! [`Node`] is the handle `run` keeps: it connects in the background
//! (health says NOT_SERVING until the stream and the bucket are set up and
//! while NATS is unreachable) and runs the lease rounds until shutdown.
//!
//! Invariant: a node appends to the stream only through a `Publisher`
//! fenced on the stream's last sequence, so no two nodes ever extend the
//! chain from the same record.

mod config;
#[allow(dead_code)] // The write path of cluster mode publishes through it.
mod leader;
mod lease;
mod stream;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::ClusterConfig;
#[allow(unused_imports)] // Called by the write path of cluster mode.
pub(crate) use leader::Publisher;
pub(crate) use lease::Role;

/// What went wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A config file named in `[cluster]` cannot be used.
    #[error("configuration key {key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// The stream or the lease bucket cannot be created or is unfit.
    #[error("cluster setup: {0}")]
    Setup(String),
    /// NATS refused or did not answer.
    #[error("NATS: {0}")]
    Nats(String),
    /// Another leader appended: this one must step down.
    #[error("leader changed: {0}")]
    Deposed(String),
}

/// How long to wait before setting up the stream again after a failure.
const SETUP_RETRY: Duration = Duration::from_secs(1);

/// This node's link to the cluster.
#[derive(Clone)]
pub(crate) struct Node {
    config: Arc<ClusterConfig>,
    client: async_nats::Client,
    /// Why the node cannot take writes yet, while the stream and the lease
    /// bucket are not set up; `None` once they are.
    setup: Arc<Mutex<Option<String>>>,
    role: watch::Receiver<Role>,
}

impl Node {
    /// Connects to NATS (in the background: an unreachable NATS does not
    /// stop the server, it keeps health NOT_SERVING) and starts setting up
    /// the stream and running the lease until `cancel`.
    pub(crate) async fn start(
        config: ClusterConfig,
        cancel: CancellationToken,
    ) -> Result<Node, ClusterError> {
        let node = config.node();
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("auditlog {node}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(config.lease_ttl());
        if let Some(creds) = &config.nats_creds {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|e| ClusterError::Config {
                    key: "cluster.nats_creds",
                    reason: format!("cannot read {}: {e}", creds.display()),
                })?;
        }
        if let Some(ca) = &config.nats_tls_ca {
            if let Err(e) = std::fs::metadata(ca) {
                return Err(ClusterError::Config {
                    key: "cluster.nats_tls_ca",
                    reason: format!("cannot read {}: {e}", ca.display()),
                });
            }
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let addrs = config
            .nats_urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClusterError::Config {
                key: "cluster.nats_urls",
                reason: e.to_string(),
            })?;
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| ClusterError::Nats(format!("connecting: {e}")))?;
        let (role_tx, role) = watch::channel(Role::Unknown);
        let node = Node {
            config: Arc::new(config),
            client,
            setup: Arc::new(Mutex::new(Some("connecting to NATS".into()))),
            role,
        };
        tokio::spawn(node.clone().set_up_and_lead(role_tx, cancel));
        Ok(node)
    }

    /// Sets up the stream and the bucket (retrying until it works or
    /// shutdown), then runs the lease.
    async fn set_up_and_lead(self, role: watch::Sender<Role>, cancel: CancellationToken) {
        let js = async_nats::jetstream::new(self.client.clone());
        let mut logged = None;
        let bucket = loop {
            let attempt = async {
                stream::ensure_stream(&js, &self.config).await?;
                stream::ensure_lease_bucket(&js, &self.config).await
            };
            let error = match attempt.await {
                Ok(bucket) => break bucket,
                Err(e) => e.to_string(),
            };
            if logged.as_ref() != Some(&error) {
                tracing::error!(error = %error, "cluster mode cannot start yet; retrying");
                logged = Some(error.clone());
            }
            self.set_setup(Some(error));
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(SETUP_RETRY) => {}
            }
        };
        self.set_setup(None);
        tracing::info!(
            stream = %self.config.stream,
            node = %self.config.node(),
            "cluster stream and lease bucket ready"
        );
        let lease = lease::Lease::new(
            bucket,
            self.config.node(),
            self.config.advertise.clone(),
            self.config.lease_ttl(),
        );
        lease::run(lease, role, cancel).await;
    }

    fn set_setup(&self, why: Option<String>) {
        *self.setup.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Why this node cannot take writes now (NATS unreachable, the stream
    /// not set up), or `None`.
    pub(crate) fn refusal(&self) -> Option<String> {
        if self.client.connection_state() != State::Connected {
            return Some(format!(
                "cannot reach NATS at {}",
                self.config.nats_urls.join(", ")
            ));
        }
        self.setup.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the lease says this node is.
    #[allow(dead_code)] // Read by the write path of cluster mode.
    pub(crate) fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }
}

#[cfg(test)]
mod tests;
