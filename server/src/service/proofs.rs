//! The proof RPCs: the latest signed checkpoint, an inclusion proof of a
//! record, a consistency proof between two tree sizes. A size of 0 means
//! the latest signed checkpoint's, so a proof asked for without one is
//! always against a root the caller can get signed.
//!
//! Also the proofs a `Log`/`LogBatch` caller asks for with its receipts
//! (`with_proof`): the handler waits, after the write is acknowledged and
//! off the write path, for the first checkpoint whose tree holds every
//! receipt, at most until shortly before the call's deadline
//! (`deadline::PROOF`). The receipts are never withheld: without a
//! checkpoint in time, the answer says why instead of carrying proofs.

use std::sync::Arc;

use auditlog_proof::{Hash, gap_leaf, gap_line};
use auditlog_proto::v1 as pb;
use tokio::time::Instant;
use tonic::Status;

use super::AuditSvc;
use super::edge::{self, blocking, tree_status};
use crate::checkpoint::Signed;

/// One receipt's proof: its seq, the proof's hashes, its stored line.
pub(super) type ReceiptProof = (u64, Vec<Hash>, Option<Vec<u8>>);

impl AuditSvc {
    /// The first checkpoint covering `seqs` and each one's inclusion proof
    /// in it, waiting at most until `until`; why not, as text for the caller, when
    /// there is none in time or the tree cannot prove them.
    pub(super) async fn receipt_proofs(
        &self,
        seqs: Vec<u64>,
        until: Instant,
    ) -> Result<pb::ReceiptProofs, String> {
        let running = self.running().map_err(|s| s.message().to_owned())?;
        let (checkpoints, store) = (Arc::clone(&running.checkpoints), Arc::clone(&running.store));
        let last = seqs.iter().copied().max().unwrap_or(0);
        let waited = Instant::now();
        let signed = tokio::select! {
            signed = checkpoints.covering(last, until) => signed,
            () = self.shutdown.cancelled() => None,
        };
        let Some(signed) = signed else {
            let latest = checkpoints.latest().map_or(0, |l| l.size);
            let trouble = store
                .tree()
                .trouble()
                .map(|t| format!("; the Merkle tree is stuck: {t}"))
                .unwrap_or_default();
            return Err(format!(
                "no signed checkpoint covered seq {last} within {} ms (the latest covers seqs 1 to \
                 {latest}){trouble}; the events are written: ask GetInclusionProof for their seqs \
                 later",
                waited.elapsed().as_millis()
            ));
        };
        let (size, root) = (signed.size, signed.root);
        let proved = blocking("receipt proofs", move || {
            seqs.into_iter()
                .map(|seq| {
                    let line = store.stored_line(seq).map_err(edge::status_of)?;
                    let proved = store
                        .checked_inclusion(seq, size, line.as_deref(), Some((size, root)))
                        .map_err(tree_status)?;
                    Ok((seq, proved.proof, line))
                })
                .collect::<Result<Vec<ReceiptProof>, Status>>()
        })
        .await
        .map_err(|s| s.message().to_owned())?;
        Ok(edge::receipt_proofs_pb(
            signed,
            checkpoints.origin(),
            checkpoints.verifier_key(),
            proved,
        ))
    }

    /// The latest checkpoint, or `None` when none was ever signed.
    fn latest_checkpoint(&self) -> Result<Option<Signed>, Status> {
        Ok(self.running()?.checkpoints.latest())
    }

    /// With `fresh`, the checkpoint covers every record written before the
    /// call: the tree follows the log a moment behind (it gathers group
    /// commits for 100 ms), so the call first waits, at most until `until`, for
    /// the tree to reach the head it saw, then signs what the tree holds.
    /// Without the wait a caller that had just written got the previous
    /// checkpoint, or none at all on a new log.
    pub(super) async fn get_checkpoint_impl(
        &self,
        req: pb::GetCheckpointRequest,
        until: Instant,
    ) -> Result<pb::GetCheckpointResponse, Status> {
        let running = self.running()?;
        let checkpoints = Arc::clone(&running.checkpoints);
        let signed = if req.fresh {
            let (c, store) = (Arc::clone(&checkpoints), Arc::clone(&running.store));
            tokio::select! {
                _ = tokio::time::timeout_at(until, store.tree().reaches(store.head())) => {}
                () = self.shutdown.cancelled() => {}
            }
            blocking("checkpoint", move || {
                c.sign(store.tree()).map_err(tree_status)
            })
            .await?
        } else {
            checkpoints.latest()
        };
        let signed = signed.ok_or_else(edge::no_checkpoint)?;
        Ok(edge::checkpoint_pb(
            signed,
            checkpoints.origin(),
            checkpoints.verifier_key(),
            checkpoints.retired(),
        ))
    }

    /// With `tree_size` 0 (the latest checkpoint), a seq in the log that
    /// no checkpoint covers yet waits, at most until `until`, for the first one
    /// that does, as a receipt's proof does: checkpoints follow the log by
    /// up to about 600 ms (the tree's gather, the signer's 500 ms tick), and
    /// a caller asking for the proof of what it has just written should get
    /// it, not an error telling it to retry.
    pub(super) async fn get_inclusion_proof_impl(
        &self,
        req: pb::GetInclusionProofRequest,
        until: Instant,
    ) -> Result<pb::GetInclusionProofResponse, Status> {
        let seq = req.seq;
        if seq == 0 {
            return Err(edge::invalid(
                "seq",
                "is required: the seq of the record to prove (seqs start at 1)",
            ));
        }
        let running = self.running()?;
        let (store, checkpoints) = (Arc::clone(&running.store), Arc::clone(&running.checkpoints));
        let mut latest = checkpoints.latest();
        if req.tree_size == 0 && seq <= store.head() && latest.as_ref().is_none_or(|l| seq > l.size)
        {
            tokio::select! {
                covering = checkpoints.covering(seq, until) => latest = covering.or(latest),
                () = self.shutdown.cancelled() => {}
            }
        }
        let signed = latest.as_ref().map(|l| (l.size, l.root));
        let size = match req.tree_size {
            0 => {
                let head = store.head();
                if seq > head {
                    return Err(edge::beyond_head(seq, head));
                }
                let latest = latest.ok_or_else(edge::no_checkpoint)?;
                if seq > latest.size {
                    return Err(edge::not_covered(seq, latest.size));
                }
                latest.size
            }
            size if seq > size => {
                return Err(edge::invalid(
                    "seq",
                    &format!(
                        "is {seq}, beyond tree_size {size}: a tree of size {size} holds seqs 1 to {size}"
                    ),
                ));
            }
            size => size,
        };
        blocking("inclusion proof", move || {
            let line = store.stored_line(seq).map_err(edge::status_of)?;
            // Checked against the signed root before it is served: a proof
            // the tree's files do not vouch for is refused (DATA_LOSS).
            let proved = store
                .checked_inclusion(seq, size, line.as_deref(), signed)
                .map_err(tree_status)?;
            // A seq the log will never hold: its gap line when the tree
            // holds the gap leaf, so the proof shows the record is missing.
            let leaf = proved.leaf;
            let line = line.or_else(|| (leaf == gap_leaf(seq)).then(|| gap_line(seq)));
            Ok(edge::inclusion_pb(
                seq,
                size,
                proved.proof,
                proved.root,
                leaf,
                line,
            ))
        })
        .await
    }

    pub(super) async fn get_consistency_proof_impl(
        &self,
        req: pb::GetConsistencyProofRequest,
    ) -> Result<pb::GetConsistencyProofResponse, Status> {
        let store = self.store()?;
        let latest = self.latest_checkpoint()?;
        let signed = latest.as_ref().map(|l| (l.size, l.root));
        let second = match req.second_size {
            0 => latest.ok_or_else(edge::no_checkpoint)?.size,
            size => size,
        };
        let first = req.first_size;
        if first > second {
            return Err(edge::invalid(
                "first_size",
                &format!(
                    "is {first}, larger than second_size {second}: give the older, smaller tree \
                     size first"
                ),
            ));
        }
        blocking("consistency proof", move || {
            let proof = store
                .checked_consistency(first, second, signed)
                .map_err(tree_status)?;
            Ok(edge::consistency_pb(first, second, proof))
        })
        .await
    }
}
