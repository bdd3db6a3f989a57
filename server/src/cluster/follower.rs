//! Every node, the leader included, applies the stream to its own store:
//! an ordered consumer from the message after the last one applied, each
//! message handed to `Store::apply` (which checks every line's MAC, seq,
//! prev and timestamp, and skips lines it already holds after checking them
//! equal).
//!
//! `<data_dir>/cluster.pos` holds the stream sequence of the last message
//! applied, written after the store synced it and at most once a second:
//! after a crash the consumer starts at or before the first message not yet
//! in the store, never after it; what is re-delivered is compared and
//! skipped.
//!
//! Anyone allowed to publish to the stream's subject can put a message
//! there that no leader wrote: bytes that are not record lines, an
//! `Auditlog-Seq` header that does not name the records, records whose
//! MAC does not verify with the cluster's key, or records under a retired
//! key after the signing key's (whoever kept the old key after a rotation).
//! Such a message is skipped
//! (logged as an error naming it), never applied and never a reason to stop
//! following: a leader signs on after it (`write.rs`), and the log goes on.
//! A message that is a leader's group but does not continue this replica's
//! chain is divergence, and stops the replica as before. A replay of real
//! groups is compared with the stored lines and changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::stream::RawMessageErrorKind;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{ClusterConfig, ClusterError};
use crate::keys::Keyring;
use crate::store::record::{MacCheck, Record};
use crate::store::retired_after_signing;
use crate::store::{Store, StoreError};

/// The file keeping the last stream message applied.
const POS_FILE: &str = "cluster.pos";

/// How long the consumer may deliver nothing before it is created again.
const QUIET_RESTART: Duration = Duration::from_secs(3);

/// How often `cluster.pos` is rewritten while messages arrive.
const POS_EVERY: Duration = Duration::from_secs(1);

/// How far the replica has taken the stream in, read by the lag watch and
/// the metrics.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The stream sequence of the last message applied (or skipped).
    pub(crate) applied: AtomicU64,
    /// Messages skipped since start because no leader wrote them.
    pub(crate) skipped: AtomicU64,
}

/// Applies the stream to `store` until shutdown or a group the store
/// refuses (a replica that diverged is reported, not served silently:
/// `failed` gets the reason, and health says NOT_SERVING).
pub(crate) async fn run(
    js: async_nats::jetstream::Context,
    config: Arc<ClusterConfig>,
    store: Arc<Store>,
    keyring: Keyring,
    progress: Arc<Progress>,
    failed: impl Fn(String) + Send,
    cancel: CancellationToken,
) {
    let pos_path = store.dir().join(POS_FILE);
    let start = read_pos(&pos_path);
    progress.applied.store(start, Ordering::Release);
    loop {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = follow(&js, &config, &store, &keyring, &progress, &pos_path) => outcome,
        };
        match outcome {
            Err(ClusterError::PurgedPast(reason)) => {
                tracing::error!(error = %reason, "replica stopped");
                failed(reason);
                return;
            }
            Err(ClusterError::Store(e)) => {
                let reason = format!(
                    "the replica refused stream message {}: {e}; it no longer follows the \
                     stream",
                    progress.applied.load(Ordering::Acquire) + 1
                );
                tracing::error!(error = %reason, "replica stopped");
                failed(reason);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "following the stream failed; starting again");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            Ok(()) => {}
        }
    }
}

async fn follow(
    js: &async_nats::jetstream::Context,
    config: &ClusterConfig,
    store: &Store,
    keyring: &Keyring,
    progress: &Progress,
    pos_path: &Path,
) -> Result<(), ClusterError> {
    let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(format!("following the stream: {e}"));
    let stream = js.get_stream(&config.stream).await.map_err(|e| nats(&e))?;
    let applied = progress.applied.load(Ordering::Acquire);
    let chain = store.chain_seq();
    let lost = store.acknowledged_head() > chain;
    let after = if lost {
        taken_in(&stream, applied, chain).await?
    } else {
        applied
    };
    if after != applied {
        progress.applied.store(after, Ordering::Release);
    }
    check_not_purged_past(&stream, after, store.head()).await?;
    let deliver_policy = if after == 0 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        }
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: config.subject(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| nats(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| nats(&e))?;
    let mut saved = Instant::now();
    loop {
        // An ordered consumer whose NATS server died can stall without an
        // error: after a quiet spell it is created again from the position
        // applied, which costs one request when nothing is being written.
        let Ok(next) = tokio::time::timeout(QUIET_RESTART, messages.next()).await else {
            return Ok(());
        };
        let Some(message) = next else {
            return Ok(());
        };
        let message = message.map_err(|e| nats(&e))?;
        let seq = message.info().map_err(|e| nats(&e))?.stream_sequence;
        // A test makes the replica fall behind the stream for real.
        #[cfg(feature = "fault-injection")]
        crate::faults::hold_while(store.dir(), "HOLD_APPLY").await;
        match store.apply(message.payload.to_vec()).await {
            Ok(_) => {}
            Err(e @ StoreError::Refused { .. }) => {
                let signed_active = store.signed_active();
                let Some(why) = foreign(&message, keyring, store.head(), signed_active) else {
                    return Err(ClusterError::Store(e));
                };
                tracing::error!(
                    stream_seq = seq,
                    why,
                    "skipped stream message {seq}: no auditlog leader wrote it (someone with \
                     NATS access published to the stream's subject); the log goes on without it"
                );
                progress.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(ClusterError::Store(e)),
        }
        progress.applied.store(seq, Ordering::Release);
        if saved.elapsed() >= POS_EVERY {
            write_pos(pos_path, seq);
            saved = Instant::now();
        }
    }
}

/// Why `message`, which the replica refused, is no group an auditlog leader
/// published; `None` when it could be one (the replica and the stream
/// diverged). A leader's message is whole record lines, in seq order, named
/// by its `Auditlog-Seq` header, each signed with the cluster's key. A MAC
/// that does not verify counts only once the replica holds records (whose
/// MACs verified with this node's key): on an empty replica it more likely
/// means this node was given the wrong key, which must stop it, loudly.
/// Nor does a leader sign with a retired key: after a record under the
/// signing key (in the message, or the replica's newest when
/// `signed_active`), one under a retired key is no leader's.
pub(super) fn foreign(
    message: &async_nats::jetstream::Message,
    keyring: &Keyring,
    head: u64,
    mut signed_active: bool,
) -> Option<String> {
    let Some((first, last)) = super::retention::seqs_of(message.headers.as_ref()) else {
        return Some(format!(
            "it has no {} header naming its records",
            super::leader::SEQ_HEADER
        ));
    };
    let Some(lines) = message.payload.strip_suffix(b"\n") else {
        return Some("it does not end with a newline: it is not record lines".into());
    };
    let mut seq = first;
    for line in lines.split(|&b| b == b'\n') {
        let Ok(record) = Record::parse(line) else {
            return Some(format!("the line for seq {seq} is not a record"));
        };
        if record.seq != seq {
            return Some(format!(
                "its header names records {first}-{last}, but it holds seq {} there",
                record.seq
            ));
        }
        let signing = keyring.active().0;
        match record.check_mac(line, keyring) {
            MacCheck::Invalid if head > 0 => {
                return Some(format!(
                    "the MAC of its record {seq} does not verify with key {:?}: it was not \
                     signed with the cluster's key",
                    record.key_id
                ));
            }
            MacCheck::Valid if record.key_id.as_str() == signing => signed_active = true,
            MacCheck::Valid if signed_active => {
                return Some(format!(
                    "its record {seq}: {}",
                    retired_after_signing(&record.key_id, signing)
                ));
            }
            _ => {}
        }
        seq = seq.saturating_add(1);
    }
    (seq - 1 != last).then(|| {
        format!(
            "its header names records {first}-{last}, but it holds {first}-{}",
            seq - 1
        )
    })
}

/// Where to follow from when the store lost records it had applied (its
/// chain ends at `chain`, before the head it acknowledged: its log was cut
/// while the node was down, `store::head::at_start`): the latest message at
/// or before `applied` that ends at or before `chain`, found by halving
/// between the stream's first message and `applied`, so the follower takes
/// the lost records in again. `applied` itself when its message ends
/// there already. A message that names no records (one no leader wrote, or
/// gone) counts as past `chain`: starting earlier only re-delivers what the
/// store compares and skips. When the next message does not continue the
/// chain, retention purged the lost records from the stream too: they
/// exist nowhere any more, and the replica stops, saying to seed the node.
async fn taken_in(
    stream: &async_nats::jetstream::stream::Stream,
    applied: u64,
    chain: u64,
) -> Result<u64, ClusterError> {
    let records = |seq: u64| async move {
        match stream.get_raw_message(seq).await {
            Ok(message) => Ok(super::retention::records_of(&message)),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(ClusterError::Nats(format!(
                "reading stream message {seq} to find where the replica stands: {e}"
            ))),
        }
    };
    let past_chain = |records: Option<(u64, u64)>| records.is_none_or(|(_, last)| last > chain);
    // The answer is in [lo - 1, hi]: lo - 1 ends at or before the chain
    // (or is before the stream), hi + 1 does not.
    let (mut lo, mut hi) = (stream.cached_info().state.first_sequence.max(1), applied);
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        if past_chain(records(mid).await?) {
            hi = mid - 1;
        } else {
            lo = mid + 1;
        }
    }
    let from = lo - 1;
    if let Some((first, _)) = records(lo).await?
        && first > chain + 1
    {
        return Err(ClusterError::PurgedPast(format!(
            "this replica's log ends at seq {chain}, before records it had applied (cut while \
             the node was down), and the stream no longer holds seqs {} to {}: seed this \
             node's data directory from another node's (docs/cluster.md, \"A node that was \
             down too long\")",
            chain + 1,
            first - 1
        )));
    }
    if from == applied {
        return Ok(applied);
    }
    tracing::warn!(
        chain,
        applied,
        from = from + 1,
        "this replica holds records up to seq {chain} but had applied stream messages up to \
         {applied}: its log lost records while the node was down; taking the stream in again \
         from message {}",
        from + 1
    );
    Ok(from)
}

/// Refuses to follow a stream whose retention purge took messages this
/// replica never applied: the first message left would start after the
/// replica's `head`, and applying it would leave a gap. Messages purged
/// that the replica holds anyway (`cluster.pos` is written lazily) are
/// fine: the first one left is compared and skipped as usual.
async fn check_not_purged_past(
    stream: &async_nats::jetstream::stream::Stream,
    after: u64,
    head: u64,
) -> Result<(), ClusterError> {
    let first = stream.cached_info().state.first_sequence;
    if first <= after + 1 {
        return Ok(());
    }
    let message = stream.get_raw_message(first).await.map_err(|e| {
        ClusterError::Nats(format!("reading the stream's first message {first}: {e}"))
    })?;
    let Some((first_record, _)) = super::retention::records_of(&message) else {
        return Ok(());
    };
    if first_record <= head + 1 {
        return Ok(());
    }
    Err(ClusterError::PurgedPast(format!(
        "the stream now starts at seq {first_record} (retention purged the messages before \
         stream message {first}), but this replica holds only up to seq {head}: the records \
         in between are gone from the stream; seed this node's data directory from another \
         node's (docs/cluster.md, \"A node that was down too long\")"
    )))
}

fn read_pos(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Replaces `cluster.pos`; a failure only means more is re-delivered after
/// a restart.
fn write_pos(path: &Path, seq: u64) {
    let tmp: PathBuf = path.with_extension("pos.tmp");
    let written =
        std::fs::write(&tmp, format!("{seq}\n")).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(error = %e, path = %path.display(), "cannot write the stream position");
    }
}
