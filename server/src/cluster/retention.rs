//! Retention in cluster mode: only the leader decides a purge, and the
//! stream's own storage follows.
//!
//! 1. The leader finds what retention calls for in its own replica (the
//!    single-node rule: its oldest sealed segments older than the period,
//!    `Store::retention_due`), signs the `auditlog.purge` event and
//!    publishes it fenced, like any write (idempotency key from the range,
//!    so a purge redone after a failover is logged once).
//! 2. Every node, the leader included, applies that event from the stream
//!    and deletes its own segments up to the event's `through_seq`
//!    (`store/retention.rs` `settle`).
//! 3. The leader then purges the stream below the first message holding a
//!    record after `through_seq`: what is left starts with records still
//!    kept, the purge event among them. It runs again at every round from
//!    the newest purge event in the log, so a stream purge that failed is
//!    done at the next one.
//!
//! A node whose replica stopped before a purged stretch of the stream (one
//! that was down, or a new one) cannot be fed from the stream any more:
//! `follower.rs` notices (the stream's first record comes after the
//! replica's head), health says NOT_SERVING with the reason, and the node
//! is seeded from another node's data directory (docs/cluster.md).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::StreamMessage, stream};

use super::leader::SEQ_HEADER;
use super::{ClusterError, Node};
use crate::store::{Purge, Store};

impl Node {
    /// One retention round on this node: on the leader, the purge (if one
    /// is due) logged through the stream, then the stream purged up to the
    /// newest purge event; on a follower, [`ClusterError::NotLeader`]
    /// naming the leader.
    pub(crate) async fn apply_retention(
        &self,
        store: &Arc<Store>,
        max_age: Duration,
    ) -> Result<Option<Purge>, ClusterError> {
        if !self.leads() {
            return Err(ClusterError::NotLeader(format!(
                "retention is decided by the cluster's leader, and this node follows{}; call \
                 ApplyRetention there",
                self.leader_named()
            )));
        }
        let due = {
            let store = Arc::clone(store);
            tokio::task::spawn_blocking(move || store.retention_due(max_age))
                .await
                .map_err(|e| ClusterError::Nats(format!("retention task failed: {e}")))?
                .map_err(ClusterError::Store)?
        };
        let purge = match due {
            Some((purge, event)) => {
                let receipts = self.append(store, vec![event]).await?;
                let event_seq = receipts.first().map_or(0, |r| r.seq);
                tracing::info!(
                    through_seq = purge.through_seq,
                    event_seq,
                    "leader: retention purge logged through the stream"
                );
                Some(Purge { event_seq, ..purge })
            }
            None => None,
        };
        let through = {
            let store = Arc::clone(store);
            tokio::task::spawn_blocking(move || store.purged_through())
                .await
                .map_err(|e| ClusterError::Nats(format!("retention task failed: {e}")))?
                .map_err(ClusterError::Store)?
        };
        if let Some(through) = through {
            self.reclaim(through).await?;
        }
        Ok(purge)
    }

    /// " (the leader is NODE at ADDRESS)" when the lease names one.
    fn leader_named(&self) -> String {
        match &*self.role.borrow() {
            super::Role::Follower { leader: Some(h) } => {
                format!(" (the leader is {} at {})", h.node, h.advertise)
            }
            _ => String::new(),
        }
    }

    /// Purges the stream's messages that hold only records up to
    /// `through`; returns how many went.
    async fn reclaim(&self, through: u64) -> Result<u64, ClusterError> {
        let nats = |e: &dyn std::fmt::Display| {
            ClusterError::Nats(format!("purging the stream up to seq {through}: {e}"))
        };
        let js = jetstream::new(self.client.clone());
        let mut stream = js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| nats(&e))?;
        let state = stream.info().await.map_err(|e| nats(&e))?.state.clone();
        let keep = first_kept(&stream, state.first_sequence, state.last_sequence, through)
            .await
            .map_err(|e| nats(&e))?;
        let Some(keep) = keep.filter(|&k| k > state.first_sequence) else {
            return Ok(0);
        };
        let purged = stream
            .purge()
            .sequence(keep)
            .await
            .map_err(|e| nats(&e))?
            .purged;
        tracing::info!(
            purged,
            first_kept = keep,
            through_seq = through,
            "leader: stream storage reclaimed"
        );
        Ok(purged)
    }
}

/// The first stream message in `first..=last` whose last record is after
/// `through` (records grow with stream sequence: a binary search), `None`
/// when none is.
async fn first_kept(
    stream: &stream::Stream,
    first: u64,
    last: u64,
    through: u64,
) -> Result<Option<u64>, String> {
    if last < first || last_record(stream, last).await? <= through {
        return Ok(None);
    }
    if last_record(stream, first).await? > through {
        return Ok(Some(first));
    }
    let (mut low, mut high) = (first, last);
    while low < high {
        let mid = low + (high - low) / 2;
        if last_record(stream, mid).await? > through {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    Ok(Some(low))
}

/// The last record seq a stream message holds, from its
/// `Auditlog-Seq: <first>-<last>` header.
async fn last_record(stream: &stream::Stream, seq: u64) -> Result<u64, String> {
    let message = stream
        .get_raw_message(seq)
        .await
        .map_err(|e| format!("reading stream message {seq}: {e}"))?;
    records_of(&message)
        .map(|(_, last)| last)
        .ok_or_else(|| format!("stream message {seq} has no {SEQ_HEADER} header"))
}

/// The record seqs `(first, last)` a stream message holds.
pub(super) fn records_of(message: &StreamMessage) -> Option<(u64, u64)> {
    let value = message.headers.get(SEQ_HEADER)?;
    let (first, last) = value.as_str().split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}
