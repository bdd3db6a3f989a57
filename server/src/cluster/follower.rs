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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{ClusterConfig, ClusterError};
use crate::store::Store;

/// The file keeping the last stream message applied.
const POS_FILE: &str = "cluster.pos";

/// How long the consumer may deliver nothing before it is created again.
const QUIET_RESTART: Duration = Duration::from_secs(3);

/// How often `cluster.pos` is rewritten while messages arrive.
const POS_EVERY: Duration = Duration::from_secs(1);

/// Applies the stream to `store` until shutdown or a group the store
/// refuses (a replica that diverged is reported, not served silently:
/// `failed` gets the reason, and health says NOT_SERVING).
pub(crate) async fn run(
    js: async_nats::jetstream::Context,
    config: Arc<ClusterConfig>,
    store: Arc<Store>,
    applied: Arc<AtomicU64>,
    failed: impl Fn(String) + Send,
    cancel: CancellationToken,
) {
    let pos_path = store.dir().join(POS_FILE);
    let start = read_pos(&pos_path);
    applied.store(start, Ordering::Release);
    loop {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = follow(&js, &config, &store, &applied, &pos_path) => outcome,
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
                    applied.load(Ordering::Acquire) + 1
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
    applied: &AtomicU64,
    pos_path: &Path,
) -> Result<(), ClusterError> {
    let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(format!("following the stream: {e}"));
    let stream = js.get_stream(&config.stream).await.map_err(|e| nats(&e))?;
    let after = applied.load(Ordering::Acquire);
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
        #[cfg(feature = "fault-injection")]
        hold_if_asked(store.dir()).await;
        store
            .apply(message.payload.to_vec())
            .await
            .map_err(ClusterError::Store)?;
        applied.store(seq, Ordering::Release);
        if saved.elapsed() >= POS_EVERY {
            write_pos(pos_path, seq);
            saved = Instant::now();
        }
    }
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

/// A test hook: while `<data_dir>/HOLD_APPLY` exists, the replica applies
/// nothing more, so a test can make it fall behind the stream for real.
#[cfg(feature = "fault-injection")]
async fn hold_if_asked(dir: &Path) {
    let hold = dir.join("HOLD_APPLY");
    while crate::faults::hooks_on() && hold.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
