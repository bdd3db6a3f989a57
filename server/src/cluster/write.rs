//! The leader's write path: sign a group, publish it fenced, answer once
//! the node's own replica applied it (acknowledged means replicated, and a
//! read on this node right after sees it).
//!
//! Groups are signed and published one at a time, under one lock: the
//! signer's chain and the publisher's expected sequence move together. On
//! taking over (a new term), the leader reads the stream's tail, waits until
//! its replica holds it (so the idempotency index is complete) and continues
//! the chain from the replica's head. Any failed publish drops that state:
//! the next write takes over again from the stream, whatever happened.
//!
//! Idempotency across the gap between publish and apply: a group can be in
//! the stream (acknowledged by the quorum) while this node's replica has not
//! applied it yet, and the caller may have been told UNAVAILABLE (its wait
//! for the replica ran out, or the publish's acknowledgement was slow). Its
//! retry must get the original receipt, so the leader remembers the keys it
//! published in its term until its replica holds them; a key is looked up in
//! the replica's index and then there. A new term starts only once the
//! replica holds the whole stream, so nothing published before it is
//! missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::leader::Publisher;
use super::{ClusterError, Node, Role, stream};
use crate::store::{NewEvent, Receipt, Signer, Store};

/// How long a write may wait for the replica (on takeover, and for its own
/// group to be applied).
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// What the leader keeps between writes of one term.
pub(crate) struct Leading {
    term: u64,
    signer: Signer,
    publisher: Publisher,
    /// Receipts of keyed events published in this term that the replica
    /// may not hold yet, by idempotency key.
    published: HashMap<String, Receipt>,
}

impl Leading {
    /// Forgets the published keys the replica now holds (at or below
    /// `head`).
    fn forget_applied(&mut self, head: u64) {
        self.published.retain(|_, r| r.seq > head);
    }
}

impl Node {
    /// Appends `events` through the cluster: on the leader, signed,
    /// published and applied; elsewhere refused with where the leader is.
    pub(crate) async fn append(
        &self,
        store: &Arc<Store>,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Receipt>, ClusterError> {
        let role = self.role.borrow().clone();
        let term = match role {
            Role::Leader { term } => term,
            Role::Follower { leader: Some(h) } => {
                return Err(ClusterError::NotLeader(format!(
                    "this node follows; the leader is {} at {}",
                    h.node, h.advertise
                )));
            }
            _ => return Err(ClusterError::NotLeader("no leader is elected yet".into())),
        };
        let mut leading = self.leading.lock().await;
        if leading.as_ref().map(|l| l.term) != Some(term) {
            *leading = None;
            let deadline = Instant::now() + APPLY_WAIT;
            *leading = Some(self.take_over(term, store, deadline).await?);
        }
        let Some(state) = leading.as_mut() else {
            return Err(ClusterError::NotLeader("leader changed, retry".into()));
        };
        state.forget_applied(store.head());
        if let Some(receipts) = already_written(store, &state.published, &events)? {
            drop(leading);
            let last = receipts.iter().map(|r| r.seq).max().unwrap_or(0);
            wait_applied(store, last).await?;
            return Ok(receipts);
        }
        let keys: Vec<Option<String>> = events.iter().map(|e| e.idempotency_key.clone()).collect();
        let (lines, receipts) = state.signer.sign_group(events);
        let (Some(first), Some(last)) = (receipts.first(), receipts.last()) else {
            return Ok(receipts);
        };
        let (first, last) = (first.seq, last.seq);
        if let Err(e) = state.publisher.publish(&lines, first, last).await {
            // Whether the group is in the stream is unknown: the next write
            // takes over from the stream's tail, which tells.
            *leading = None;
            if matches!(e, ClusterError::Deposed(_)) {
                tracing::warn!(error = %e, "stepping down: another leader appended");
            }
            return Err(e);
        }
        for (receipt, key) in receipts.iter().zip(&keys) {
            if let Some(key) = key {
                state.published.insert(key.clone(), receipt.clone());
            }
        }
        drop(leading);
        wait_applied(store, last).await?;
        Ok(receipts)
    }

    async fn take_over(
        &self,
        term: u64,
        store: &Store,
        deadline: Instant,
    ) -> Result<Leading, ClusterError> {
        let js = async_nats::jetstream::new(self.client.clone());
        let stream = js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| ClusterError::Nats(format!("opening the stream: {e}")))?;
        let tail = stream::tail(&stream, &self.config.subject()).await?;
        let (stream_seq, last_record) = match &tail {
            Some(t) => (t.stream_seq, t.last_record),
            None => (0, 0),
        };
        if last_record > 0 {
            store
                .wait_for(last_record, deadline)
                .await
                .map_err(ClusterError::Store)?;
        }
        let head = store.chain_head().map_err(ClusterError::Store)?;
        let head_seq = head.as_ref().map_or(0, |h| h.seq);
        if head_seq != last_record {
            return Err(ClusterError::Nats(format!(
                "this node's replica ends at seq {head_seq} but the stream at {last_record}; \
                 not signing on"
            )));
        }
        tracing::info!(
            term,
            head = head_seq,
            stream_seq,
            "leading: signing on from the stream's tail"
        );
        Ok(Leading {
            term,
            signer: Signer::after(&self.keyring, head),
            published: HashMap::new(),
            publisher: Publisher::after(
                js,
                self.config.stream.clone(),
                self.config.subject(),
                stream_seq,
            ),
        })
    }
}

/// Waits (at most [`APPLY_WAIT`]) until this node's replica holds `seq`,
/// so that a read on this node right after the answer sees the write.
async fn wait_applied(store: &Store, seq: u64) -> Result<(), ClusterError> {
    store
        .wait_for(seq, Instant::now() + APPLY_WAIT)
        .await
        .map_err(ClusterError::Store)
}

/// The receipts of a group whose every event carries an idempotency key
/// already written (a retry, perhaps after a failover or after an answer
/// that never reached the caller): found in the replica's index or among
/// the keys `published` in this term. `None` when any is new.
fn already_written(
    store: &Store,
    published: &HashMap<String, Receipt>,
    events: &[NewEvent],
) -> Result<Option<Vec<Receipt>>, ClusterError> {
    let mut receipts = Vec::with_capacity(events.len());
    for event in events {
        let Some(key) = &event.idempotency_key else {
            return Ok(None);
        };
        let found = match store.idempotent_receipt(key).map_err(ClusterError::Store)? {
            Some(receipt) => Some(receipt),
            None => published.get(key).cloned(),
        };
        match found {
            Some(mut receipt) => {
                receipt.duplicate = true;
                receipts.push(receipt);
            }
            None => return Ok(None),
        }
    }
    Ok(Some(receipts))
}
