//! What a cluster needs of the store: a replica's appends of groups signed
//! by the leader ([`Store::apply`], checked in `writer/apply.rs`), waiting
//! for a seq to be committed ([`Store::wait_for`]), where the chain stands
//! ([`Store::chain_head`]) and the receipt a repeated idempotency key gets
//! ([`Store::idempotent_receipt`]).
//!
//! Invariant: a replica only ever appends what verifies under its keyring
//! and continues its own chain (seq after seq, `prev` after signature,
//! timestamps never decreasing); a group with anything else is refused whole
//! and nothing of it is written. Applied groups go through the same write,
//! `fdatasync`, index, broadcast and tree as the local writer's.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::error::StoreError;
use super::shared::Shared;
use super::signer::ChainHead;
use super::{Receipt, Store, retention, writer};

impl Store {
    /// Appends a group of lines signed elsewhere (each ending in `\n`, byte
    /// for byte as the leader signed them) once each line's MAC, seq
    /// (contiguous after the head), `prev` and timestamp order are checked;
    /// written, made durable, indexed and broadcast exactly like a local
    /// group. Lines at or below the head are compared with the stored line
    /// and skipped (refused if different). Returns the head after. Only a
    /// store opened with `replica` applies.
    #[allow(dead_code, reason = "cluster mode (issue 16) calls it")]
    pub(crate) async fn apply(&self, lines: Vec<u8>) -> Result<u64, StoreError> {
        if self
            .shared
            .poisoned
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(self.shared.poison_error());
        }
        let (reply, answer) = oneshot::channel();
        let purge = retention::may_hold_purge(&lines);
        self.sender()?
            .send(writer::Command::Apply(writer::Apply { lines, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)??;
        if purge {
            // The leader's purge event is durable and indexed here: delete
            // what it covers. A failure leaves the files for the next purge
            // event or the next start, which settle again.
            let shared = Arc::clone(&self.shared);
            let settled = tokio::task::spawn_blocking(move || retention::settle(&shared)).await;
            match settled {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "applying a retention purge failed; retried at the next purge event or start")
                }
                Err(e) => tracing::error!(error = %e, "the retention purge task failed"),
            }
        }
        Ok(self.head())
    }

    /// Waits until the head is at least `seq` (woken by each commit), or
    /// answers [`StoreError::Behind`] at `deadline`.
    pub(crate) async fn wait_for(&self, seq: u64, deadline: Instant) -> Result<(), StoreError> {
        let mut head = self.shared.committed.subscribe();
        let reached = tokio::time::timeout_at(deadline, async {
            head.wait_for(|&h| h >= seq).await.map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => Ok(()),
            // The sender lives as long as the store.
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Behind {
                head: *head.borrow(),
                wanted: seq,
            }),
        }
    }

    /// The last committed record's seq, signature and timestamp (after a
    /// purge of everything, the last purged one's, timestamp 0); `None` for
    /// an empty log. Blocking (reads the last record).
    #[allow(dead_code, reason = "cluster mode (issue 16) calls it")]
    pub(crate) fn chain_head(&self) -> Result<Option<ChainHead>, StoreError> {
        self.shared.chain_head()
    }

    /// The seq the chain ends at (0 for an empty log): the last record's,
    /// or after a purge of everything the last purged one's. Unlike
    /// [`Store::acknowledged_head`], never past what the log holds: a
    /// replica's next group must start after it. Reads no record.
    pub(crate) fn chain_seq(&self) -> u64 {
        self.shared.chain_seq()
    }

    /// The receipt of the event first written with `key`, if the index has
    /// one (marked `duplicate`): what a repeated key is answered. Blocking.
    #[allow(dead_code, reason = "cluster mode (issue 16) calls it")]
    pub(crate) fn idempotent_receipt(&self, key: &str) -> Result<Option<Receipt>, StoreError> {
        self.shared.idempotent_receipt(key)
    }
}

impl Shared {
    /// See [`Store::chain_head`].
    pub(super) fn chain_head(&self) -> Result<Option<ChainHead>, StoreError> {
        let last = self.index().last();
        if let Some(m) = last {
            let record = self.read_record(&m)?;
            return Ok(Some(ChainHead {
                seq: m.seq,
                signature: record.signature.into_string(),
                timestamp: m.timestamp,
            }));
        }
        // After a purge of everything sealed, the chain continues from the
        // last purged record.
        let purged = self.manifest.lock().ok().and_then(|m| m.purged.clone());
        Ok(purged.map(|p| ChainHead {
            seq: p.through_seq,
            signature: p.last_signature,
            timestamp: 0,
        }))
    }

    /// See [`Store::chain_seq`].
    pub(super) fn chain_seq(&self) -> u64 {
        if let Some(last) = self.index().last() {
            return last.seq;
        }
        let manifest = self.manifest.lock();
        manifest
            .ok()
            .and_then(|m| m.purged.as_ref().map(|p| p.through_seq))
            .unwrap_or(0)
    }

    /// See [`Store::idempotent_receipt`].
    pub(super) fn idempotent_receipt(&self, key: &str) -> Result<Option<Receipt>, StoreError> {
        let meta = {
            let index = self.index();
            match index.idempotent_seq(key).and_then(|s| index.get(s)) {
                Some(m) => m,
                None => return Ok(None),
            }
        };
        let record = self.read_record(&meta)?;
        // The index finds keys by hash: another key with the same hash is
        // not this one.
        if record.idempotency_key.as_deref() != Some(key) {
            return Ok(None);
        }
        Ok(Some(Receipt {
            seq: record.seq,
            id: record.id,
            timestamp: record.timestamp,
            signature: record.signature,
            duplicate: true,
        }))
    }
}

#[cfg(test)]
mod tests;
