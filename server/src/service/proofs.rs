//! The proof RPCs: the latest signed checkpoint, an inclusion proof of a
//! record, a consistency proof between two tree sizes. A size of 0 means
//! the latest signed checkpoint's, so a proof asked for without one is
//! always against a root the caller can get signed.
//!
//! Also the proofs a `Log`/`LogBatch` caller asks for with its receipts
//! (`with_proof`): the handler waits, after the write is acknowledged and
//! off the write path, for the first checkpoint whose tree holds every
//! receipt, at most the call's deadline less a margin (else
//! [`DEFAULT_PROOF_WAIT`]). The receipts are never withheld: without a
//! checkpoint in time, the answer says why instead of carrying proofs.

use std::sync::Arc;
use std::time::Duration;

use auditlog_proof::{Hash, gap_leaf, gap_line};
use auditlog_proto::v1 as pb;
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::AuditSvc;
use super::edge::{self, blocking, tree_status};
use crate::checkpoint::Signed;

/// How long a receipt's proof is waited for when the call has no deadline.
pub(super) const DEFAULT_PROOF_WAIT: Duration = Duration::from_secs(5);
/// The longest wait for a receipt's proof, whatever the deadline.
const MAX_PROOF_WAIT: Duration = Duration::from_secs(60);

/// How long a call may wait for its receipts' proofs (or a checkpoint):
/// its deadline (`grpc-timeout`) less a tenth (at least 50 ms) so the
/// answer still arrives in time, else [`DEFAULT_PROOF_WAIT`]; and never
/// past the limit the call runs under (the server's `handler_timeout_secs`
/// may be the sooner) less the same margin.
pub(super) fn proof_wait<T>(req: &tonic::Request<T>) -> Duration {
    proof_wait_of(req.metadata(), super::deadline::call_limit(req))
}

fn proof_wait_of(metadata: &MetadataMap, limit: Option<Duration>) -> Duration {
    let less_margin = |d: Duration| d.saturating_sub((d / 10).max(Duration::from_millis(50)));
    let wait = match super::deadline::call_timeout(metadata) {
        Some(deadline) => less_margin(deadline).min(MAX_PROOF_WAIT),
        None => DEFAULT_PROOF_WAIT,
    };
    limit.map_or(wait, |limit| wait.min(less_margin(limit)))
}

/// One receipt's proof: its seq, the proof's hashes, its stored line.
pub(super) type ReceiptProof = (u64, Vec<Hash>, Option<Vec<u8>>);

impl AuditSvc {
    /// The first checkpoint covering `seqs` and each one's inclusion proof
    /// in it, waiting at most `wait`; why not, as text for the caller, when
    /// there is none in time or the tree cannot prove them.
    pub(super) async fn receipt_proofs(
        &self,
        seqs: Vec<u64>,
        wait: Duration,
    ) -> Result<pb::ReceiptProofs, String> {
        let running = self.running().map_err(|s| s.message().to_owned())?;
        let (checkpoints, store) = (Arc::clone(&running.checkpoints), Arc::clone(&running.store));
        let last = seqs.iter().copied().max().unwrap_or(0);
        let signed = tokio::select! {
            signed = checkpoints.covering(last, wait) => signed,
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
                wait.as_millis()
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
    /// commits for 100 ms), so the call first waits, at most `wait`, for
    /// the tree to reach the head it saw, then signs what the tree holds.
    /// Without the wait a caller that had just written got the previous
    /// checkpoint, or none at all on a new log.
    pub(super) async fn get_checkpoint_impl(
        &self,
        req: pb::GetCheckpointRequest,
        wait: Duration,
    ) -> Result<pb::GetCheckpointResponse, Status> {
        let running = self.running()?;
        let checkpoints = Arc::clone(&running.checkpoints);
        let signed = if req.fresh {
            let (c, store) = (Arc::clone(&checkpoints), Arc::clone(&running.store));
            tokio::select! {
                () = tree_reaches(&store, store.head(), wait) => {}
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
    /// no checkpoint covers yet waits, at most `wait`, for the first one
    /// that does, as a receipt's proof does: checkpoints follow the log by
    /// up to about 600 ms (the tree's gather, the signer's 500 ms tick), and
    /// a caller asking for the proof of what it has just written should get
    /// it, not an error telling it to retry.
    pub(super) async fn get_inclusion_proof_impl(
        &self,
        req: pb::GetInclusionProofRequest,
        wait: Duration,
    ) -> Result<pb::GetInclusionProofResponse, Status> {
        let seq = req.seq;
        if seq == 0 {
            return Err(edge::invalid(
                "seq",
                "is required: the seq of the record to prove (seqs start at 1)",
            ));
        }
        let store = self.store()?;
        let mut latest = self.latest_checkpoint()?;
        if req.tree_size == 0 && seq <= store.head() && latest.as_ref().is_none_or(|l| seq > l.size)
        {
            let checkpoints = Arc::clone(&self.running()?.checkpoints);
            tokio::select! {
                covering = checkpoints.covering(seq, wait) => latest = covering.or(latest),
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

/// Returns once the tree holds `head` records, it is stuck, or `wait` has
/// passed, whichever comes first. Polls: the tree has no waiters of its
/// own, and a fresh checkpoint is asked for rarely (a bundle, a witness).
async fn tree_reaches(store: &crate::store::Store, head: u64, wait: Duration) {
    let until = tokio::time::Instant::now() + wait;
    while store.tree().size() < head
        && store.tree().trouble().is_none()
        && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_the_deadline_less_a_margin() {
        let wait = |v: &str| {
            let mut m = MetadataMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            proof_wait_of(&m, None)
        };
        assert_eq!(wait("10S"), Duration::from_secs(9));
        assert_eq!(wait("200m"), Duration::from_millis(150));
        assert_eq!(wait("20m"), Duration::ZERO);
        assert_eq!(wait("2H"), MAX_PROOF_WAIT);
        assert_eq!(wait("123456789S"), DEFAULT_PROOF_WAIT);
        assert_eq!(wait("5x"), DEFAULT_PROOF_WAIT);
        assert_eq!(wait("S"), DEFAULT_PROOF_WAIT);
        assert_eq!(proof_wait_of(&MetadataMap::new(), None), DEFAULT_PROOF_WAIT);
        // The server's limit, when sooner, bounds the wait too.
        let limit = Some(Duration::from_secs(1));
        assert_eq!(
            proof_wait_of(&MetadataMap::new(), limit),
            Duration::from_millis(900)
        );
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", "10S".parse().unwrap());
        assert_eq!(proof_wait_of(&m, limit), Duration::from_millis(900));
        assert_eq!(
            proof_wait_of(&m, Some(Duration::from_secs(60))),
            Duration::from_secs(9)
        );
    }
}
