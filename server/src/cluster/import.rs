//! `auditlog-server --cluster-import`: moves a single node's log into a
//! cluster by publishing its record lines, byte for byte and in seq order,
//! into the cluster's empty stream. Nodes started afterwards apply the
//! stream to their empty replicas from seq 1, checking every line as a
//! replica does, and verify to the single node's head signature.
//!
//! The steps, each refusing before anything is published:
//! 1. The configuration names the cluster (`[cluster]`) and its HMAC key
//!    (`hmac_key_file`, `hmac_key` or `AUDITLOG_HMAC_KEY`): the key every
//!    node is given. A key generated into the data directory does not
//!    count, since no node would hold it.
//! 2. The data directory is locked (no server runs on it), opened as a
//!    server opens it, and verified whole: every record's MAC under that
//!    key, the chain from seq 1 (replicas start at seq 1, so a log whose
//!    beginning retention purged cannot seed them), no finding at all.
//! 3. The stream is created (or checked) as a node would, and the leader
//!    lease taken as `<node> (import)`: a node holding it means a cluster
//!    runs on that stream. The stream must hold no message. A NATS cluster
//!    that cannot take the setup yet (JetStream without its leaders, just
//!    after a start or while a quorum is down) is asked again for up to
//!    [`SETUP_WAIT`].
//! 4. The lines go out in messages of whole batches, at most
//!    [`MAX_MESSAGE`] bytes each, every one fenced on the stream's last
//!    sequence like a leader's (`leader.rs`), so nothing else can
//!    interleave; each is acknowledged by a quorum before the next. The
//!    lease only keeps nodes from leading meanwhile: when it lapses (NATS
//!    answered no renewal for three quarters of `lease_ttl_ms`) the
//!    import waits to take it back, and stops only if a node took it.
//! 5. The lease is given back.
//!
//! A failure part-way leaves whole messages, a prefix of the log, in the
//! stream; the import then refuses the non-empty stream, and the stream is
//! removed (`nats stream rm`) before it is run again (docs/cluster.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde::de::IgnoredAny;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::leader::{MAX_MESSAGE, Publisher};
use super::lease::{self, Lease, Role};
use super::{ClusterConfig, ClusterError, SETUP_RETRY, stream};
use crate::config::Config;
use crate::keys::{KEY_FILE, Keyring};
use crate::lock::DirLock;
use crate::store::record::{GENESIS, Record, parse_row};
use crate::store::{self, Store, StoreConfig};

/// What an import published.
#[derive(Debug)]
pub(crate) struct Imported {
    stream: String,
    records: u64,
    messages: u64,
    head_signature: String,
}

impl std::fmt::Display for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported records 1-{} into stream {} ({} messages); head signature {}",
            self.records, self.stream, self.messages, self.head_signature
        )
    }
}

/// How long taking the lease, or taking it back after a lapse, may wait
/// for NATS to answer.
const LEASE_WAIT: Duration = Duration::from_secs(10);

/// How long the setup (the stream, the lease bucket) is asked again while
/// NATS cannot take it yet.
const SETUP_WAIT: Duration = Duration::from_secs(30);

/// Publishes the log in `config.data_dir` into the empty stream of
/// `config.cluster` (see the module doc).
pub(crate) async fn import(config: Config) -> Result<Imported, ClusterError> {
    let Some(cluster) = config.cluster.clone() else {
        return Err(ClusterError::Config {
            key: "cluster",
            reason: "--cluster-import publishes into the cluster a [cluster] section names; \
                     run it with a node's configuration"
                .into(),
        });
    };
    let key = config
        .hmac_key_bytes()
        .map_err(|e| refuse(e.to_string()))?
        .ok_or_else(|| ClusterError::Config {
            key: "hmac_key_file",
            reason: format!(
                "--cluster-import checks every record against the cluster's HMAC key, the one \
                 every node is configured with; set hmac_key_file (a single node that \
                 generated its key keeps it in {})",
                config.data_dir.join(KEY_FILE).display()
            ),
        })?;
    // The lease's value is signed with the cluster's key, as a node's is.
    let keyring = Keyring::new(&config.hmac_key_id, key.clone());
    let (lock, store, head_signature) = tokio::task::spawn_blocking(move || open(&config, key))
        .await
        .map_err(|e| refuse(format!("opening the log: {e}")))??;
    let store = Arc::new(store);
    let published = publish(&cluster, &store, keyring).await;
    let closing = Arc::clone(&store);
    let _ = tokio::task::spawn_blocking(move || closing.shutdown()).await;
    drop(lock);
    Ok(Imported {
        stream: cluster.stream.clone(),
        records: store.head(),
        messages: published?,
        head_signature,
    })
}

fn refuse(reason: String) -> ClusterError {
    ClusterError::Import(reason)
}

/// Locks, opens and verifies the log: the lock, the store and its head
/// signature, or why it cannot be imported.
fn open(config: &Config, key: Vec<u8>) -> Result<(DirLock, Store, String), ClusterError> {
    let dir = &config.data_dir;
    let lock = DirLock::acquire(dir).map_err(|e| refuse(e.to_string()))?;
    let store_error = |e: store::StoreError| refuse(e.to_string());
    if !store::holds_log(dir).map_err(store_error)? {
        return Err(refuse(format!("{} holds no log to import", dir.display())));
    }
    let retired = config
        .retired_hmac_key_bytes()
        .map_err(|e| refuse(e.to_string()))?;
    let keyring = Keyring::load(&config.hmac_key_id, Some(&key), dir, true)
        .map_err(|e| refuse(e.to_string()))?
        .with_retired(retired);
    store::check_before_start(dir, &keyring).map_err(store_error)?;
    let store = Store::open(
        // The single node's log, written by its own writer.
        StoreConfig {
            replica: false,
            ..crate::store_config(config)
        },
        keyring,
    )
    .map_err(store_error)?;
    let report = store.verify(1, 0, &[]).map_err(store_error)?;
    if let Some(first) = report.findings.first() {
        return Err(refuse(format!(
            "the log does not verify clean ({} findings; the first, at seq {} in {}: {}); only \
             a log that verifies is imported. If every record fails its MAC, the configured \
             key is not the one the log was written with",
            report.findings.len(),
            first.seq,
            first.file,
            first.message
        )));
    }
    match &report.first {
        Some((1, prev)) if prev == GENESIS => {}
        Some((seq, _)) => {
            return Err(refuse(format!(
                "the log starts at seq {seq} (retention purged what came before), but a \
                 cluster's replicas start at seq 1; keep this log where it is and start the \
                 cluster on a new one"
            )));
        }
        None => return Err(refuse(format!("{} holds no record", dir.display()))),
    }
    Ok((lock, store, report.head_signature))
}

/// Takes the lease, checks the stream is empty, publishes every record and
/// gives the lease back: how many messages it took.
async fn publish(
    cluster: &ClusterConfig,
    store: &Arc<Store>,
    keyring: Keyring,
) -> Result<u64, ClusterError> {
    let node = format!("{} (import)", cluster.node());
    let client = super::connect(cluster, &node).await?;
    let js = jetstream::new(client);
    let (mut stream, bucket) = set_up(&js, cluster).await?;
    let lease = Lease::new(
        bucket,
        (node.clone(), cluster.advertise.clone()),
        keyring,
        cluster.lease_ttl(),
    );
    let (role_tx, mut role) = watch::channel(Role::Unknown);
    let cancel = CancellationToken::new();
    let leasing = tokio::spawn(lease::run(lease, role_tx, cancel.clone()));
    let published =
        async {
            let taken = tokio::time::timeout(LEASE_WAIT, role.wait_for(|r| *r != Role::Unknown))
                .await
                .ok()
                .and_then(|r| r.ok().map(|r| r.clone()));
            match taken {
                Some(Role::Leader { .. }) => {}
                Some(Role::Follower {
                    leader: Some(holder),
                }) => {
                    return Err(refuse(format!(
                        "node {} ({}) holds the leader lease of stream {}: a cluster runs on it; \
                     stop every node, or import into a new stream (cluster.stream)",
                        holder.node, holder.advertise, cluster.stream
                    )));
                }
                _ => {
                    return Err(refuse(format!(
                        "cannot take the leader lease of stream {} within {LEASE_WAIT:?}: is NATS \
                     at {} reachable?",
                        cluster.stream,
                        cluster.nats_urls.join(", ")
                    )));
                }
            }
            let state = stream
                .info()
                .await
                .map_err(|e| ClusterError::Nats(format!("reading stream {}: {e}", cluster.stream)))?
                .state
                .clone();
            if state.messages > 0 {
                return Err(refuse(format!(
                    "stream {} already holds {} messages: an import only fills an empty stream; \
                 name a new one in cluster.stream, or remove this one (nats stream rm {}) if \
                 nothing in it is needed",
                    cluster.stream, state.messages, cluster.stream
                )));
            }
            let mut publisher = Publisher::after(
                js.clone(),
                cluster.stream.clone(),
                cluster.subject(),
                state.last_sequence,
            );
            let head = store.head();
            let mut from = 1;
            let mut messages = 0;
            while from <= head {
                hold_lease(&mut role, &node, cluster, from - 1).await?;
                let reading = Arc::clone(store);
                let (lines, last) =
                    tokio::task::spawn_blocking(move || next_message(&reading, from, head))
                        .await
                        .map_err(|e| refuse(format!("reading the log: {e}")))??;
                // One message already: `next_message` ends it where a batch ends.
                publisher.publish(&lines, from, last, &[]).await.map_err(|e| {
                refuse(format!(
                    "publishing records {from}-{last} failed ({e}); records 1-{} are in stream \
                     {}: remove it and import again",
                    from - 1,
                    cluster.stream
                ))
            })?;
                messages += 1;
                from = last + 1;
                #[cfg(feature = "fault-injection")]
                crate::faults::hold_while(store.dir(), "HOLD_IMPORT").await;
            }
            Ok(messages)
        }
        .await;
    cancel.cancel();
    let _ = leasing.await;
    published
}

/// The stream and the lease bucket, asked again while NATS cannot take
/// them yet (for up to [`SETUP_WAIT`]); a stream unfit to hold the log is
/// refused at once.
async fn set_up(
    js: &jetstream::Context,
    cluster: &ClusterConfig,
) -> Result<(jetstream::stream::Stream, jetstream::kv::Store), ClusterError> {
    let deadline = Instant::now() + SETUP_WAIT;
    let mut said = None;
    loop {
        let attempt = async {
            let stream = stream::ensure_stream(js, cluster).await?;
            Ok((stream, stream::ensure_lease_bucket(js, cluster).await?))
        };
        let error = match attempt.await {
            Ok(set) => return Ok(set),
            Err(e @ ClusterError::Unfit(_)) => return Err(e),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(e) => e.to_string(),
        };
        if said.as_ref() != Some(&error) {
            tracing::warn!(error = %error, "NATS cannot take the import's setup yet; retrying");
            said = Some(error);
        }
        tokio::time::sleep(SETUP_RETRY).await;
    }
}

/// Returns once the import holds the leader lease, waiting for it to be
/// taken back after a lapse (the import's own value names it as holder
/// until it expires, within `lease_ttl_ms`). Refused when a node holds it
/// instead, or when it is not back within [`LEASE_WAIT`]. `done` is the
/// last record published.
async fn hold_lease(
    role: &mut watch::Receiver<Role>,
    me: &str,
    cluster: &ClusterConfig,
    done: u64,
) -> Result<(), ClusterError> {
    let settled = tokio::time::timeout(
        LEASE_WAIT,
        role.wait_for(|r| match r {
            Role::Leader { .. } => true,
            Role::Follower { leader: Some(h) } => h.node != me,
            _ => false,
        }),
    )
    .await;
    let stream = &cluster.stream;
    let taken = match settled {
        Ok(Ok(r)) => match &*r {
            Role::Follower { leader: Some(h) } => format!(
                "node {} ({}) took the leader lease: a node runs on stream {stream}",
                h.node, h.advertise
            ),
            _ => return Ok(()),
        },
        _ => format!("the leader lease lapsed and NATS did not give it back within {LEASE_WAIT:?}"),
    };
    let left = if done == 0 {
        "nothing was published yet".to_owned()
    } else {
        format!(
            "records 1-{done} are in stream {stream}: stop every node, remove the stream (nats \
             stream rm {stream}) and import again"
        )
    };
    Err(refuse(format!("{taken}; {left}")))
}

/// The lines of records `from..` for one message: as many whole batches as
/// fit in [`MAX_MESSAGE`] bytes, never beyond `head`, and the last seq.
fn next_message(store: &Store, from: u64, head: u64) -> Result<(Vec<u8>, u64), ClusterError> {
    let mut lines = Vec::new();
    // Where the message may end: after the last record that ends a batch.
    let mut end: Option<(usize, u64)> = None;
    let mut batch_end = 0;
    for seq in from..=head {
        let line = store
            .stored_line(seq)
            .map_err(|e| refuse(e.to_string()))?
            .ok_or_else(|| refuse(format!("record {seq} is no longer in the log")))?;
        if lines.len() + line.len() + 1 > MAX_MESSAGE {
            break;
        }
        let record: Record<IgnoredAny> =
            parse_row(&line).map_err(|e| refuse(format!("record {seq} cannot be read: {e}")))?;
        if let Some(n) = record.batch {
            batch_end = seq.saturating_add(u64::from(n).saturating_sub(1));
        }
        lines.extend_from_slice(&line);
        lines.push(b'\n');
        if seq >= batch_end {
            end = Some((lines.len(), seq));
        }
    }
    let Some((len, last)) = end else {
        return Err(refuse(format!(
            "the batch starting at or before record {from} is larger than a stream message \
             ({MAX_MESSAGE} bytes) or runs past the end of the log"
        )));
    };
    lines.truncate(len);
    Ok((lines, last))
}
