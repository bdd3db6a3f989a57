//! The statuses and protobuf values of the proof RPCs (GetCheckpoint,
//! GetInclusionProof, GetConsistencyProof).

use auditlog_proof::Hash;
use auditlog_proto::v1 as pb;
use tonic::Status;

use crate::checkpoint::{RetiredKey, Signed};
use crate::store::tree::TreeError;

/// The one mapping from tree errors to statuses.
pub(crate) fn tree_status(e: TreeError) -> Status {
    let message = e.to_string();
    match e {
        TreeError::Building => Status::unavailable(message),
        TreeError::Unavailable(_) => Status::failed_precondition(message),
        TreeError::TooLarge { .. } | TreeError::NotInTree { .. } => Status::out_of_range(message),
        TreeError::Order { .. } => super::invalid("first_size", &message),
        TreeError::Io(_) => {
            tracing::error!(error = %message, "reading the Merkle tree failed");
            Status::internal(message)
        }
        // Logged where it is found (`store::tree::vouch`).
        TreeError::Damaged(_) => Status::data_loss(message),
    }
}

/// No checkpoint has been signed yet.
pub(in crate::service) fn no_checkpoint() -> Status {
    Status::failed_precondition(
        "no checkpoint has been signed yet: the log is empty or its tree is still being built; \
         log an event, or retry in a second",
    )
}

/// `seq` is in the log but no signed checkpoint covers it yet, even after
/// the call waited for one.
pub(in crate::service) fn not_covered(seq: u64, size: u64) -> Status {
    Status::failed_precondition(format!(
        "seq {seq} is not covered by the latest signed checkpoint (tree size {size}) yet, after \
         waiting for one: the Merkle tree is behind the log (the server's log says why); retry \
         later, with a longer deadline"
    ))
}

/// `seq` is beyond the log's head.
pub(in crate::service) fn beyond_head(seq: u64, head: u64) -> Status {
    Status::out_of_range(format!(
        "seq {seq} is not in the log, whose last seq is {head}"
    ))
}

pub(in crate::service) fn checkpoint_pb(
    signed: Signed,
    origin: &str,
    verifier_key: String,
    retired: &[RetiredKey],
) -> pb::GetCheckpointResponse {
    pb::GetCheckpointResponse {
        checkpoint: Some(pb::SignedCheckpoint {
            note: signed.note,
            origin: origin.to_owned(),
            tree_size: signed.size,
            root_hash: signed.root.to_vec(),
        }),
        verifier_key,
        retired_keys: retired
            .iter()
            .map(|r| pb::RetiredCheckpointKey {
                verifier_key: r.verifier_key.clone(),
                from_size: r.from_size,
                to_size: r.to_size,
                handover_note: r.handover.clone(),
                successor_key: r.successor.clone(),
            })
            .collect(),
    }
}

/// A checkpoint and the proofs of receipts in it, for Log and LogBatch.
pub(in crate::service) fn receipt_proofs_pb(
    signed: Signed,
    origin: &str,
    verifier_key: String,
    proved: Vec<crate::service::proofs::ReceiptProof>,
) -> pb::ReceiptProofs {
    let checkpoint = checkpoint_pb(signed, origin, verifier_key, &[]);
    pb::ReceiptProofs {
        checkpoint: checkpoint.checkpoint,
        verifier_key: checkpoint.verifier_key,
        proofs: proved
            .into_iter()
            .map(|(seq, hashes, line)| pb::InclusionProof {
                seq,
                hashes: hashes.into_iter().map(|h| h.to_vec()).collect(),
                line: line.unwrap_or_default(),
            })
            .collect(),
    }
}

pub(in crate::service) fn inclusion_pb(
    seq: u64,
    size: u64,
    proof: Vec<Hash>,
    root: Hash,
    leaf: Hash,
    line: Option<Vec<u8>>,
) -> pb::GetInclusionProofResponse {
    pb::GetInclusionProofResponse {
        seq,
        leaf_index: seq - 1,
        tree_size: size,
        hashes: proof.into_iter().map(|h| h.to_vec()).collect(),
        root_hash: root.to_vec(),
        line: line.unwrap_or_default(),
        leaf_hash: leaf.to_vec(),
    }
}

pub(in crate::service) fn consistency_pb(
    first: u64,
    second: u64,
    proof: Vec<Hash>,
) -> pb::GetConsistencyProofResponse {
    pb::GetConsistencyProofResponse {
        first_size: first,
        second_size: second,
        hashes: proof.into_iter().map(|h| h.to_vec()).collect(),
    }
}
