//! The leader's write path: gather the callers waiting into one group, sign
//! it, publish it fenced, answer each caller once the node's own replica
//! applied its events (acknowledged means replicated, and a read on this
//! node right after sees it).
//!
//! Group commit (`gather.rs`): a caller queues its events; if no round of
//! publishes is running it starts one, a task of its own that no caller's
//! cancellation stops. The round takes everyone waiting as one group, signs
//! and publishes it, hands the answers to a task that waits for the
//! replica, and takes the next group, until nobody waits. So one publish
//! is in flight at a time, and every append that arrives meanwhile goes
//! into the next one. A failed publish fails every caller of its group
//! with UNAVAILABLE (whether it reached the stream is unknown: a retry with
//! the same idempotency key finds out).
//!
//! Groups are signed and published one at a time, under one lock: the
//! signer's chain and the publisher's expected sequence move together. On
//! taking over (a new term), the leader reads the stream's tail, waits until
//! its replica holds it (so the idempotency index is complete) and continues
//! the chain from the replica's head. Any failed publish drops that state:
//! the next group takes over again from the stream, whatever happened.
//!
//! Idempotency across the gap between publish and apply: a group can be in
//! the stream (acknowledged by the quorum) while this node's replica has not
//! applied it yet, and the caller may have been told UNAVAILABLE (its wait
//! for the replica ran out, or the publish's acknowledgement was slow). Its
//! retry must get the original receipt, so the leader remembers the keys it
//! published in its term until its replica holds them; a key is looked up in
//! the replica's index and then there (and, inside a group, among the keys
//! the group itself writes first). A new term starts only once the replica
//! holds the whole stream, so nothing published before it is missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::gather::{self, Reply, Waiting};
use super::leader::Publisher;
use super::{ClusterError, Node, Role, stream};
use crate::store::{Name, NewEvent, Receipt, Signer, Store};

/// How long a write may wait for the replica (on takeover, and for its own
/// group to be applied).
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// How often a new leader looks whether its replica took in the stream.
const CONSUMED_POLL: Duration = Duration::from_millis(25);

/// What the leader keeps between groups of one term.
pub(crate) struct Leading {
    term: u64,
    signer: Signer,
    publisher: Publisher,
    /// Receipts of keyed events published in this term that the replica
    /// may not hold yet, by idempotency key.
    published: HashMap<Name, Receipt>,
}

impl Leading {
    /// Forgets the published keys the replica now holds (at or below
    /// `head`).
    fn forget_applied(&mut self, head: u64) {
        self.published.retain(|_, r| r.seq > head);
    }
}

impl Node {
    /// Appends `events` through the cluster: on the leader, gathered with
    /// the other callers waiting into one signed group, published and
    /// applied; elsewhere refused with where the leader is.
    pub(crate) async fn append(
        &self,
        store: &Arc<Store>,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Receipt>, ClusterError> {
        self.leader_term()?;
        if let Some(why) = self.stream_fault() {
            return Err(ClusterError::Unfit(why));
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        if self.queue.push(Waiting { events, reply }) {
            tokio::spawn(self.clone().publish_rounds(Arc::clone(store)));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ClusterError::Unavailable(
                "the leader stopped before this write was answered; whether it was written is                  unknown: retry it with its idempotency key"
                    .into(),
            ))
        })
    }

    /// The term this node leads in, or why it does not.
    fn leader_term(&self) -> Result<u64, ClusterError> {
        match &*self.role.borrow() {
            Role::Leader { term } => Ok(*term),
            Role::Follower { leader: Some(h) } if h.node == self.config.node() => {
                Err(ClusterError::NotLeader(format!(
                    "the leader lease still names this node in a term it no longer holds (it \
                     restarted, or NATS did not answer its renewals in time); a leader is \
                     elected again within cluster.lease_ttl_ms ({} ms): retry",
                    self.config.lease_ttl().as_millis()
                )))
            }
            Role::Follower { leader: Some(h) } => Err(ClusterError::NotLeader(format!(
                "this node follows; the leader is {} at {}",
                h.node, h.advertise
            ))),
            Role::Follower { leader: None } => {
                Err(ClusterError::NotLeader("no leader is elected yet".into()))
            }
            Role::Unknown => Err(ClusterError::NotLeader(
                "no leader is known: NATS did not answer this node's last lease round (NATS \
                 unreachable, paused or partitioned, or the lease bucket gone)"
                    .into(),
            )),
        }
    }

    /// Publishes groups until nobody waits.
    async fn publish_rounds(self, store: Arc<Store>) {
        while let Some(callers) = self.queue.take() {
            self.publish_group(&store, callers).await;
        }
    }

    /// Signs and publishes one group; its callers are answered once the
    /// replica holds their events (by a task of its own, so the next group
    /// is published meanwhile), or at once with why it failed.
    async fn publish_group(&self, store: &Arc<Store>, callers: Vec<Waiting>) {
        let mut leading = self.leading.lock().await;
        let ready = async {
            let term = self.leader_term()?;
            if leading.as_ref().map(|l| l.term) != Some(term) {
                *leading = None;
                let deadline = Instant::now() + APPLY_WAIT;
                *leading = Some(self.take_over(term, store, deadline).await?);
            }
            Ok::<_, ClusterError>(())
        };
        if let Err(e) = ready.await {
            fail_all(callers.into_iter().map(|w| w.reply), &e);
            return;
        }
        let Some(state) = leading.as_mut() else {
            return;
        };
        state.forget_applied(store.head());
        let published = &state.published;
        let group = gather::gather(&mut state.signer, callers, |key| {
            match store.idempotent_receipt(key)? {
                Some(r) => Ok(Some(r)),
                None => Ok(published.get(key).cloned()),
            }
        });
        if let Some((first, last)) = group.seqs {
            let sent = state
                .publisher
                .publish(&group.lines, first, last, &group.batch_ends)
                .await;
            if let Err(e) = sent {
                // Whether the group is in the stream is unknown: the next
                // group takes over from the stream's tail, which tells.
                *leading = None;
                if matches!(e, ClusterError::Deposed(_)) {
                    tracing::warn!(error = %e, "stepping down: another leader appended");
                }
                fail_all(group.answers.into_iter().map(|(reply, _)| reply), &e);
                return;
            }
            state.published.extend(group.new_keys);
        }
        drop(leading);
        tokio::spawn(answer_when_applied(Arc::clone(store), group.answers));
    }

    async fn take_over(
        &self,
        term: u64,
        store: &Store,
        deadline: Instant,
    ) -> Result<Leading, ClusterError> {
        let js = async_nats::jetstream::new(self.client.clone());
        let stream_seq = self.wait_consumed(&js, store, deadline).await?;
        let head = store.chain_head().map_err(ClusterError::Store)?;
        let head_seq = head.as_ref().map_or(0, |h| h.seq);
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

impl Node {
    /// Waits until this node's replica has taken in every message of the
    /// stream (applied it, or skipped it as no leader's: `follower.rs`), and
    /// returns the stream's last sequence, which the next publish expects.
    /// The chain goes on from the replica's head, whatever the last
    /// message's header claims: a message someone else published at the
    /// tail (garbage, a forgery, a replay) neither stops the leader nor
    /// moves where it signs on.
    async fn wait_consumed(
        &self,
        js: &async_nats::jetstream::Context,
        store: &Store,
        deadline: Instant,
    ) -> Result<u64, ClusterError> {
        loop {
            if let Some(why) = self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return Err(ClusterError::Unavailable(format!(
                    "this node cannot lead: {why}"
                )));
            }
            // Read before the stream's state (as `watch_lag` does): a
            // message taken in while the answer is on its way must not
            // read as one the stream lost.
            let applied = self.progress.applied.load(Ordering::Acquire);
            let head = store.head();
            let stream = js
                .get_stream(&self.config.stream)
                .await
                .map_err(|e| ClusterError::Nats(format!("opening the stream: {e}")))?;
            let last = stream.cached_info().state.last_sequence;
            if applied == last {
                return Ok(last);
            }
            if stream::lost_by(last, applied, head) {
                return Err(ClusterError::Unfit(stream::lost(
                    &self.config.stream,
                    last,
                    applied,
                    head,
                )));
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Unavailable(format!(
                    "this node's replica has taken in stream messages up to {applied} of \
                     {last}; not signing on until it holds them all: retry"
                )));
            }
            tokio::time::sleep(CONSUMED_POLL).await;
        }
    }
}

/// Answers each caller once this node's replica holds its last event (at
/// most [`APPLY_WAIT`] each), so that a read on this node right after the
/// answer sees the write.
async fn answer_when_applied(store: Arc<Store>, answers: Vec<(Reply, Vec<Receipt>)>) {
    for (reply, receipts) in answers {
        let last = receipts.iter().map(|r| r.seq).max().unwrap_or(0);
        let applied = store
            .wait_for(last, Instant::now() + APPLY_WAIT)
            .await
            .map_err(ClusterError::Store);
        let _ = reply.send(applied.map(|()| receipts));
    }
}

/// Fails every caller of a group with `e`'s reason.
fn fail_all(replies: impl Iterator<Item = Reply>, e: &ClusterError) {
    for reply in replies {
        let _ = reply.send(Err(e.for_each_caller()));
    }
}
