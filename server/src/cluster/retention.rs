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
//!    record after `through_seq` (read in order along the chain, never
//!    trusting a header alone: `first_kept`): what is left starts with
//!    records still kept, the purge event among them. It runs again at every round from
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

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::{self, message::StreamMessage, stream};
use futures::StreamExt as _;

use super::leader::SEQ_HEADER;
use super::{ClusterError, Node};
use crate::keys::Keyring;
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
        let keep = first_kept(
            &stream,
            self.config.subject(),
            &self.keyring,
            (state.first_sequence, state.last_sequence),
            through,
        )
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

/// How long the scan for the first message kept may wait for the next one.
const SCAN_WAIT: Duration = Duration::from_secs(10);

/// The first stream message in `first..=last` of the log's own chain whose
/// last record is after `through`, `None` when none is.
///
/// Read in order, not by a binary search over the messages' headers:
/// anyone allowed to publish to the subject can put a message anywhere
/// whose header names any seqs, and a search that lands on one (a replay of
/// old records, say) would purge messages holding records retention keeps.
/// A message counts only if an auditlog leader wrote it (`follower.rs`)
/// and it continues the chain from the one before: its first record right
/// after that one's last. Each message is read here once, in the round
/// that purges it (the first one kept ends the scan).
async fn first_kept(
    stream: &stream::Stream,
    subject: String,
    keyring: &Keyring,
    (first, last): (u64, u64),
    through: u64,
) -> Result<Option<u64>, String> {
    if last < first {
        return Ok(None);
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject,
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| format!("reading the stream from message {first}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("reading the stream from message {first}: {e}"))?;
    let mut next_record = None;
    loop {
        let message = match tokio::time::timeout(SCAN_WAIT, messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(format!("reading the stream: {e}")),
            Ok(None) | Err(_) => {
                return Err(format!("the stream gave no message after {next_record:?}"));
            }
        };
        let seq = message
            .info()
            .map_err(|e| format!("reading the stream: {e}"))?
            .stream_sequence;
        if seq > last {
            return Ok(None);
        }
        let records = super::follower::foreign(&message, keyring, 1, false)
            .is_none()
            .then(|| seqs_of(message.headers.as_ref()))
            .flatten();
        if let Some((from, to)) = records
            && next_record.is_none_or(|n| n == from)
        {
            if to > through {
                return Ok(Some(seq));
            }
            next_record = Some(to.saturating_add(1));
        }
        if seq == last {
            return Ok(None);
        }
    }
}

/// The record seqs `(first, last)` an `Auditlog-Seq` header names.
pub(super) fn seqs_of(headers: Option<&async_nats::HeaderMap>) -> Option<(u64, u64)> {
    let (first, last) = headers?.get(SEQ_HEADER)?.as_str().split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// The record seqs `(first, last)` a stream message holds.
pub(super) fn records_of(message: &StreamMessage) -> Option<(u64, u64)> {
    seqs_of(Some(&message.headers))
}
