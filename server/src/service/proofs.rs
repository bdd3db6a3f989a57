//! The proof RPCs: the latest signed checkpoint, an inclusion proof of a
//! record, a consistency proof between two tree sizes. A size of 0 means
//! the latest signed checkpoint's, so a proof asked for without one is
//! always against a root the caller can get signed.

use std::sync::Arc;

use auditlog_proto::v1 as pb;
use tonic::Status;

use super::AuditSvc;
use super::edge::{self, blocking, tree_status};
use crate::checkpoint::Signed;

impl AuditSvc {
    /// The latest checkpoint, or `None` when none was ever signed.
    fn latest_checkpoint(&self) -> Result<Option<Signed>, Status> {
        Ok(self.running()?.checkpoints.latest())
    }

    pub(super) async fn get_checkpoint_impl(
        &self,
        req: pb::GetCheckpointRequest,
    ) -> Result<pb::GetCheckpointResponse, Status> {
        let running = self.running()?;
        let checkpoints = Arc::clone(&running.checkpoints);
        let signed = if req.fresh {
            let (c, store) = (Arc::clone(&checkpoints), Arc::clone(&running.store));
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
        ))
    }

    pub(super) async fn get_inclusion_proof_impl(
        &self,
        req: pb::GetInclusionProofRequest,
    ) -> Result<pb::GetInclusionProofResponse, Status> {
        let seq = req.seq;
        if seq == 0 {
            return Err(edge::invalid(
                "seq",
                "is required: the seq of the record to prove (seqs start at 1)",
            ));
        }
        let store = self.store()?;
        let size = match req.tree_size {
            0 => {
                let head = store.head();
                if seq > head {
                    return Err(edge::beyond_head(seq, head));
                }
                let latest = self.latest_checkpoint()?.ok_or_else(edge::no_checkpoint)?;
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
            let tree = store.tree();
            let proof = tree.inclusion(seq, size).map_err(tree_status)?;
            let root = tree.root(size).map_err(tree_status)?;
            let leaf = tree.leaf(seq).map_err(tree_status)?;
            let line = store.stored_line(seq).map_err(edge::status_of)?;
            Ok(edge::inclusion_pb(seq, size, proof, root, leaf, line))
        })
        .await
    }

    pub(super) async fn get_consistency_proof_impl(
        &self,
        req: pb::GetConsistencyProofRequest,
    ) -> Result<pb::GetConsistencyProofResponse, Status> {
        let store = self.store()?;
        let second = match req.second_size {
            0 => {
                self.latest_checkpoint()?
                    .ok_or_else(edge::no_checkpoint)?
                    .size
            }
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
                .tree()
                .consistency(first, second)
                .map_err(tree_status)?;
            Ok(edge::consistency_pb(first, second, proof))
        })
        .await
    }
}
