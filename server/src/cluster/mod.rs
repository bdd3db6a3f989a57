//! Cluster mode on NATS JetStream (`[cluster]`, docs/cluster.md): the
//! stream is the source of truth, one node at a time (the holder of the
//! leader lease) signs and publishes, and every node keeps its own replica.
//!
//! - `config.rs`: the `[cluster]` section and its validation.
//! - `stream.rs`: the stream and the lease bucket (created or checked), the
//!   stream's tail.
//! - `lease.rs`: acquiring, renewing and losing the leader lease.
//! - `leader.rs`: the fenced publish of signed groups.
//! - `write.rs`: the leader's write path (gather, sign, publish, wait for
//!   the replica), taking over from the stream's tail.
//! - `gather.rs`: the group commit: the callers waiting for the next
//!   publish, and one group signed from them, an idempotency key written
//!   once.
//! - `follower.rs`: every node applying the stream to its store.
//! - `forward.rs`: a follower forwarding writes to the leader.
//! - `import.rs`: `--cluster-import`, a single node's log published into
//!   an empty stream.
//! - `retention.rs`: retention decided by the leader, and the stream's
//!   storage reclaimed after a purge.
//!
//! [`Node`] is the handle `run` keeps: it connects in the background
//! (health says NOT_SERVING until the stream and the bucket are set up and
//! while NATS is unreachable) and runs the lease rounds until shutdown. Its
//! [`Node::duty`] is on while the lease says this node leads: webhooks,
//! threshold alerts and pushing checkpoints out run only then
//! (`crate::duty`), with the bucket of delivery positions.
//!
//! Invariant: a node appends to the stream only through a `Publisher`
//! fenced on the stream's last sequence, so no two nodes ever extend the
//! chain from the same record.

mod config;
mod follower;
mod forward;
mod gather;
mod import;
mod leader;
mod lease;
mod retention;
mod stream;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{ErrorCode, kv};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::ClusterConfig;
pub(crate) use import::import;
pub(crate) use lease::Role;

use crate::duty::{Duty, OnDuty};
use crate::keys::Keyring;
use crate::store::{Store, StoreError};

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
    #[error("leader changed, retry: {0}")]
    Deposed(String),
    /// This node does not lead and has no leader to forward to.
    #[error("{0}")]
    NotLeader(String),
    /// The leader cannot be reached to forward a write to.
    #[error("{0}")]
    Forward(String),
    /// The leader refused a forwarded write: its answer, as it gave it.
    #[error("the leader refused: {}", .0.message())]
    Leader(Box<tonic::Status>),
    /// The local replica refused or could not wait.
    #[error(transparent)]
    Store(StoreError),
    /// `--cluster-import` refused or failed; nothing after the reason was
    /// published.
    #[error("cluster import: {0}")]
    Import(String),
    /// The write's group failed, or the leader stopped before answering:
    /// whether it was written is unknown (a keyed retry finds out).
    #[error("{0}")]
    Unavailable(String),
    /// A batch too large to publish as one message.
    #[error("{0}")]
    TooLarge(String),
    /// The stream cannot be vouched for (gone, shorter than the replica,
    /// or configured to drop messages): no write until an operator fixes
    /// it.
    #[error("{0}")]
    Unfit(String),
    /// The stream no longer holds records this replica needs (retention
    /// purged them): the node must be seeded from another node.
    #[error("{0}")]
    PurgedPast(String),
}

impl ClusterError {
    /// The same failure for each caller of a group that failed with it:
    /// its reason, with the kind that decides the caller's status
    /// (UNAVAILABLE, but for a too large batch and an unfit stream).
    pub(crate) fn for_each_caller(&self) -> ClusterError {
        match self {
            ClusterError::Deposed(m) => ClusterError::Deposed(m.clone()),
            ClusterError::NotLeader(m) => ClusterError::NotLeader(m.clone()),
            ClusterError::TooLarge(m) => ClusterError::TooLarge(m.clone()),
            ClusterError::Unfit(m) => ClusterError::Unfit(m.clone()),
            e => ClusterError::Unavailable(e.to_string()),
        }
    }
}

/// How often the replica's lag behind the stream is looked at.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// How long to wait before setting up the stream again after a failure.
pub(crate) const SETUP_RETRY: Duration = Duration::from_secs(1);

/// This node's link to the cluster.
#[derive(Clone)]
pub(crate) struct Node {
    config: Arc<ClusterConfig>,
    client: async_nats::Client,
    /// Why the node cannot take writes yet, while the stream and the lease
    /// bucket are not set up; `None` once they are.
    setup: Arc<Mutex<Option<String>>>,
    role: watch::Receiver<Role>,
    /// On while this node leads, with the bucket of delivery positions.
    duty: watch::Receiver<Option<OnDuty>>,
    /// True once the stream and the lease bucket are set up.
    ready: watch::Receiver<bool>,
    keyring: Keyring,
    /// The leader's signer and publisher, while it leads.
    leading: Arc<tokio::sync::Mutex<Option<write::Leading>>>,
    /// The appends waiting for the leader's next publish.
    queue: Arc<gather::Queue>,
    /// The stream sequence of the last message the replica applied (or
    /// skipped as foreign), and how many it skipped: `follower.rs`.
    progress: Arc<follower::Progress>,
    /// Events the replica is behind the stream's tail, last time looked.
    behind: Arc<AtomicU64>,
    /// Why the replica stopped following the stream, if it did.
    failed: Arc<Mutex<Option<String>>>,
    /// What is wrong with the stream, as last looked (`watch_lag`): gone,
    /// shorter than the replica, or configured to drop messages.
    stream_fault: Arc<Mutex<Option<String>>>,
    /// Where a follower forwards writes.
    to_leader: Arc<forward::LeaderChannel>,
    /// Since when the lease rounds have not known who leads (NATS gave no
    /// answer), while they do not.
    unknown_since: Arc<Mutex<Option<Instant>>>,
}

impl Node {
    /// Connects to NATS (in the background: an unreachable NATS does not
    /// stop the server, it keeps health NOT_SERVING) and starts setting up
    /// the stream and running the lease until `cancel`.
    pub(crate) async fn start(
        config: ClusterConfig,
        tls: Option<&crate::config::TlsConfig>,
        keyring: Keyring,
        cancel: CancellationToken,
    ) -> Result<Node, ClusterError> {
        let to_leader = Arc::new(forward::LeaderChannel::new(&config, tls)?);
        let client = connect(&config, &config.node()).await?;
        let (role_tx, role) = watch::channel(Role::Unknown);
        let (ready_tx, ready) = watch::channel(false);
        let (duty_tx, duty) = watch::channel(None);
        let node = Node {
            config: Arc::new(config),
            client,
            setup: Arc::new(Mutex::new(Some("connecting to NATS".into()))),
            role,
            duty,
            ready,
            keyring,
            leading: Arc::new(tokio::sync::Mutex::new(None)),
            queue: Arc::default(),
            progress: Arc::default(),
            behind: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(Mutex::new(None)),
            stream_fault: Arc::new(Mutex::new(None)),
            to_leader,
            unknown_since: Arc::new(Mutex::new(Some(Instant::now()))),
        };
        tokio::spawn(
            node.clone()
                .set_up_and_lead(role_tx, ready_tx, duty_tx, cancel),
        );
        Ok(node)
    }

    /// Starts applying the stream to `store` (once the stream is set up)
    /// and watching how far behind it is.
    pub(crate) fn attach(&self, store: Arc<Store>, cancel: CancellationToken) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut ready = node.ready.clone();
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = ready.wait_for(|&r| r) => if r.is_err() { return },
            }
            let js = async_nats::jetstream::new(node.client.clone());
            let failed = Arc::clone(&node.failed);
            tokio::spawn(follower::run(
                js.clone(),
                Arc::clone(&node.config),
                Arc::clone(&store),
                node.keyring.clone(),
                Arc::clone(&node.progress),
                move |why| *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why),
                cancel.clone(),
            ));
            node.watch_lag(js, store, cancel).await;
        });
    }

    /// Every second: how many events the replica is behind the stream, and
    /// whether the stream is still one to vouch for (there, fit to keep
    /// the log, holding every message the replica took in).
    async fn watch_lag(
        &self,
        js: async_nats::jetstream::Context,
        store: Arc<Store>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(LAG_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.keep_buckets(&js).await;
            // Read before the stream's state is asked for: the replica may
            // take in messages while the answer is on its way, and a
            // position read after it could be past the last message it
            // names, which would read as a stream that lost messages (CI
            // at 289cc0b refused writes so, with messages flowing).
            let applied = self.progress.applied.load(Ordering::Acquire);
            let head = store.head();
            let stream = match js.get_stream(&self.config.stream).await {
                Ok(stream) => stream,
                Err(e) => {
                    // Unreachable NATS is said by the connection's state.
                    if let GetStreamErrorKind::JetStream(e) = e.kind()
                        && e.error_code() == ErrorCode::STREAM_NOT_FOUND
                    {
                        self.set_stream_fault(Some(format!(
                            "stream {} does not exist (it was deleted, or NATS lost its \
                             store); no node signs until it is restored (docs/cluster.md, \
                             \"A stream that lost messages\")",
                            self.config.stream
                        )));
                    }
                    continue;
                }
            };
            let info = stream.cached_info();
            let last = info.state.last_sequence;
            self.set_stream_fault(if stream::lost_by(last, applied, head) {
                Some(stream::lost(&self.config.stream, last, applied, head))
            } else {
                stream::unfit(&info.config, &self.config)
            });
            // How far behind, with the position as it is now (the one read
            // before only judges loss).
            if self.progress.applied.load(Ordering::Acquire) >= last {
                // Every message taken in: whatever the last one's header
                // claims (someone else's message may name any seqs).
                self.behind.store(0, Ordering::Release);
            } else if let Ok(tail) = stream::tail(&stream, &self.config.subject()).await {
                let last = tail.map_or(0, |t| t.last_record);
                self.behind
                    .store(last.saturating_sub(store.head()), Ordering::Release);
            }
        }
    }

    /// Creates the lease bucket and the bucket of delivery positions again
    /// if someone deleted them: without the lease bucket no node could ever
    /// be elected again. Both only coordinate (who leads, where webhooks
    /// stand: a new leader then resumes from its own position files), so
    /// an empty one is safe; the log itself is in the stream.
    async fn keep_buckets(&self, js: &async_nats::jetstream::Context) {
        for bucket in [self.config.lease_bucket(), self.config.cursor_bucket()] {
            let Err(e) = js.get_stream(format!("KV_{bucket}")).await else {
                continue;
            };
            let GetStreamErrorKind::JetStream(e) = e.kind() else {
                continue;
            };
            if e.error_code() != ErrorCode::STREAM_NOT_FOUND {
                continue;
            }
            tracing::error!(
                bucket,
                "the bucket was deleted under the cluster; creating it again"
            );
            let created = if bucket == self.config.lease_bucket() {
                stream::ensure_lease_bucket(js, &self.config)
                    .await
                    .map(drop)
            } else {
                stream::ensure_cursor_bucket(js, &self.config)
                    .await
                    .map(drop)
            };
            if let Err(e) = created {
                tracing::error!(bucket, error = %e, "cannot create the bucket again");
            }
        }
    }

    /// Records what is wrong with the stream (logged once when it starts),
    /// or that nothing is.
    fn set_stream_fault(&self, why: Option<String>) {
        let mut fault = self.stream_fault.lock().unwrap_or_else(|p| p.into_inner());
        if *fault != why {
            match &why {
                Some(why) => tracing::error!(error = %why, "the stream cannot be vouched for"),
                None if fault.is_some() => tracing::info!("the stream is fit again"),
                None => {}
            }
        }
        *fault = why;
    }

    /// Sets up the stream and the buckets (retrying until it works or
    /// shutdown), then runs the lease, keeping `duty` on while it leads.
    async fn set_up_and_lead(
        self,
        role: watch::Sender<Role>,
        ready: watch::Sender<bool>,
        duty: watch::Sender<Option<OnDuty>>,
        cancel: CancellationToken,
    ) {
        let js = async_nats::jetstream::new(self.client.clone());
        let mut logged = None;
        let (bucket, cursors) = loop {
            let attempt = async {
                stream::ensure_stream(&js, &self.config).await?;
                let lease = stream::ensure_lease_bucket(&js, &self.config).await?;
                let cursors = stream::ensure_cursor_bucket(&js, &self.config).await?;
                Ok::<_, ClusterError>((lease, cursors))
            };
            let error = match attempt.await {
                Ok(buckets) => break buckets,
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
        ready.send_replace(true);
        tracing::info!(
            stream = %self.config.stream,
            node = %self.config.node(),
            "cluster stream and lease bucket ready"
        );
        let lease = lease::Lease::new(
            bucket,
            (self.config.node(), self.config.advertise.clone()),
            self.keyring.clone(),
            self.config.lease_ttl(),
        );
        tokio::spawn(keep_duty(self.role.clone(), cursors, duty));
        tokio::spawn(track_unknown(
            self.role.clone(),
            Arc::clone(&self.unknown_since),
        ));
        lease::run(lease, role, cancel).await;
    }

    /// Whether this node is on duty: on while it holds the lease.
    pub(crate) fn duty(&self) -> Duty {
        Duty::following(self.duty.clone())
    }

    /// What is wrong with the stream, if anything (`watch_lag`).
    fn stream_fault(&self) -> Option<String> {
        self.stream_fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_setup(&self, why: Option<String>) {
        *self.setup.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Why this node cannot take writes now (NATS unreachable, the stream
    /// not set up, its replica stopped following the stream), or `None`.
    pub(crate) fn refusal(&self) -> Option<String> {
        if self.client.connection_state() != State::Connected {
            return Some(format!(
                "cannot reach NATS at {}",
                self.config.nats_urls.join(", ")
            ));
        }
        let unknown = *self.unknown_since.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = unknown.filter(|s| s.elapsed() >= self.config.lease_ttl())
            && self
                .setup
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
        {
            return Some(format!(
                "NATS has not answered this node's lease rounds for {} ms (NATS paused, \
                 partitioned or overloaded, or the lease bucket {} gone): no leader is known",
                since.elapsed().as_millis(),
                self.config.lease_bucket()
            ));
        }
        if let Some(why) = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Some(why);
        }
        if let Some(why) = self.stream_fault() {
            return Some(why);
        }
        let behind = self.behind.load(Ordering::Acquire);
        if behind > self.config.max_replica_lag {
            return Some(format!(
                "this node's replica is {behind} events behind the stream (more than \
                 cluster.max_replica_lag = {}); it is catching up",
                self.config.max_replica_lag
            ));
        }
        self.setup.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the lease says this node leads: alerts, webhooks and
    /// checkpoint signing run only there.
    pub(crate) fn leads(&self) -> bool {
        matches!(*self.role.borrow(), Role::Leader { .. })
    }

    /// What the metrics show of this node, read at each scrape.
    pub(crate) fn status(&self) -> Status {
        Status {
            leads: self.leads(),
            applied: self.progress.applied.load(Ordering::Acquire),
            behind: self.behind.load(Ordering::Acquire),
            skipped: self.progress.skipped.load(Ordering::Relaxed),
            vouched: self.refusal().is_none(),
        }
    }
}

/// A node's part in the cluster, as the metrics show it ([`Node::status`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status {
    /// The lease says this node leads.
    pub(crate) leads: bool,
    /// The stream sequence of the last message the replica took in.
    pub(crate) applied: u64,
    /// Events the replica was behind the stream's tail, last looked.
    pub(crate) behind: u64,
    /// Stream messages skipped since start because no leader wrote them.
    pub(crate) skipped: u64,
    /// The node takes writes: NATS reached, the stream fit, the replica
    /// following and within `max_replica_lag` ([`Node::refusal`]).
    pub(crate) vouched: bool,
}

/// A NATS client for `config`, named `auditlog <name>`; it keeps trying
/// to connect (and reconnect) in the background.
async fn connect(config: &ClusterConfig, name: &str) -> Result<async_nats::Client, ClusterError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("auditlog {name}"))
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
        readable("cluster.nats_tls_ca", ca)?;
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.nats_tls_cert, &config.nats_tls_key) {
        readable("cluster.nats_tls_cert", cert)?;
        readable("cluster.nats_tls_key", key)?;
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    if let (Some(user), Some(password)) = (&config.nats_user, &config.nats_password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(token) = &config.nats_token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(seed) = &config.nats_nkey_file {
        let text = std::fs::read_to_string(seed).map_err(|e| ClusterError::Config {
            key: "cluster.nats_nkey_file",
            reason: format!("cannot read {}: {e}", seed.display()),
        })?;
        let seed_line = text.trim();
        // A user's seed is base32 starting `SU`; anything else would only
        // fail later, at each connection attempt, out of sight.
        if !seed_line.starts_with("SU") || seed_line.contains(char::is_whitespace) {
            return Err(ClusterError::Config {
                key: "cluster.nats_nkey_file",
                reason: format!(
                    "{} holds no NKey seed; write the user's seed (SU...) alone in it",
                    seed.display()
                ),
            });
        }
        options = options.nkey(seed_line.to_owned());
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
    options
        .connect(addrs)
        .await
        .map_err(|e| ClusterError::Nats(format!("connecting: {e}")))
}

/// `Ok` if the file `path` named by `key` can be read.
fn readable(key: &'static str, path: &std::path::Path) -> Result<(), ClusterError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| ClusterError::Config {
            key,
            reason: format!("cannot read {}: {e}", path.display()),
        })
}

/// Keeps `since` at the moment `role` became [`Role::Unknown`] (a lease
/// round NATS did not answer), `None` while the role is known, until the
/// lease stops (shutdown).
async fn track_unknown(mut role: watch::Receiver<Role>, since: Arc<Mutex<Option<Instant>>>) {
    loop {
        let unknown = *role.borrow_and_update() == Role::Unknown;
        {
            let mut since = since.lock().unwrap_or_else(|p| p.into_inner());
            match (unknown, since.is_some()) {
                (true, false) => *since = Some(Instant::now()),
                (false, true) => *since = None,
                _ => {}
            }
        }
        if role.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps `duty` on while `role` says this node leads, off otherwise, until
/// the lease stops (shutdown).
async fn keep_duty(
    mut role: watch::Receiver<Role>,
    cursors: kv::Store,
    duty: watch::Sender<Option<OnDuty>>,
) {
    loop {
        let leads = matches!(*role.borrow_and_update(), Role::Leader { .. });
        duty.send_if_modified(|on| {
            if on.is_some() == leads {
                return false;
            }
            *on = leads.then(|| OnDuty {
                cursors: Some(cursors.clone()),
            });
            true
        });
        if role.changed().await.is_err() {
            duty.send_replace(None);
            return;
        }
    }
}

#[cfg(test)]
mod tests;
