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
        let deadline = Instant::now() + APPLY_WAIT;
        if leading.as_ref().map(|l| l.term) != Some(term) {
            *leading = None;
            *leading = Some(self.take_over(term, store, deadline).await?);
        }
        if let Some(receipts) = already_written(store, &events)? {
            return Ok(receipts);
        }
        let Some(state) = leading.as_mut() else {
            return Err(ClusterError::NotLeader("leader changed, retry".into()));
        };
        let (lines, receipts) = state.signer.sign_group(events);
        let (Some(first), Some(last)) = (receipts.first(), receipts.last()) else {
            return Ok(receipts);
        };
        let (first, last) = (first.seq, last.seq);
        if let Err(e) = state.publisher.publish(&lines, first, last).await {
            *leading = None;
            if matches!(e, ClusterError::Deposed(_)) {
                tracing::warn!(error = %e, "stepping down: another leader appended");
            }
            return Err(e);
        }
        drop(leading);
        store
            .wait_for(last, deadline)
            .await
            .map_err(ClusterError::Store)?;
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
            publisher: Publisher::after(
                js,
                self.config.stream.clone(),
                self.config.subject(),
                stream_seq,
            ),
        })
    }
}

/// The receipts of a group whose every event carries an idempotency key
/// already in the log (a retry, perhaps after a failover); `None` when any
/// is new.
fn already_written(
    store: &Store,
    events: &[NewEvent],
) -> Result<Option<Vec<Receipt>>, ClusterError> {
    let mut receipts = Vec::with_capacity(events.len());
    for event in events {
        let Some(key) = &event.idempotency_key else {
            return Ok(None);
        };
        match store.idempotent_receipt(key).map_err(ClusterError::Store)? {
            Some(mut receipt) => {
                receipt.duplicate = true;
                receipts.push(receipt);
            }
            None => return Ok(None),
        }
    }
    Ok(Some(receipts))
}
