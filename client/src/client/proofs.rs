//! The checkpoint and proof RPCs, and their checks on the client's side:
//! a checkpoint's signature against a verifier key the caller trusts, and a
//! record's inclusion proof against that checkpoint, with the record's leaf
//! hash computed here from its stored line. Nothing the server says is taken
//! on trust but the key the caller gives.

use auditlog_proof::{Checkpoint, VerifierKey, leaf_hash, verify_inclusion};

use super::Client;
use crate::{Error, pb};

/// A signed checkpoint whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// What it says: origin, tree size, root hash.
    pub checkpoint: Checkpoint,
    /// The signed note, as the server sent it.
    pub note: String,
}

/// A record proved to be in the log under a verified checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenRecord {
    pub seq: u64,
    /// The record's stored line (empty when retention purged it: then only
    /// its leaf hash is proved).
    pub line: Vec<u8>,
    /// The checkpoint the proof is against.
    pub checkpoint: VerifiedCheckpoint,
    /// How many hashes the proof had.
    pub proof_len: usize,
}

impl Client {
    /// The latest signed checkpoint and the server's verifier key; with
    /// `fresh`, one covering every record written before the call (the
    /// server waits for its tree to reach them, within the call's deadline
    /// or 5 s, and signs it).
    pub async fn checkpoint(&self, fresh: bool) -> Result<pb::GetCheckpointResponse, Error> {
        Ok(self
            .audit()
            .get_checkpoint(pb::GetCheckpointRequest { fresh })
            .await?
            .into_inner())
    }

    /// The inclusion proof of `seq` in the tree of `tree_size` (0: the
    /// latest signed checkpoint's size; the server waits for the first
    /// checkpoint covering a seq written so recently that none does yet).
    pub async fn inclusion_proof(
        &self,
        seq: u64,
        tree_size: u64,
    ) -> Result<pb::GetInclusionProofResponse, Error> {
        Ok(self
            .audit()
            .get_inclusion_proof(pb::GetInclusionProofRequest { seq, tree_size })
            .await?
            .into_inner())
    }

    /// The consistency proof between tree sizes `first` and `second` (0:
    /// the latest signed checkpoint's size).
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<pb::GetConsistencyProofResponse, Error> {
        Ok(self
            .audit()
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                first_size: first,
                second_size: second,
            })
            .await?
            .into_inner())
    }

    /// The latest checkpoint, its signature checked with `key` (and its
    /// origin with the key's name).
    pub async fn verified_checkpoint(
        &self,
        key: &VerifierKey,
        fresh: bool,
    ) -> Result<VerifiedCheckpoint, Error> {
        let response = self.checkpoint(fresh).await?;
        let note = response
            .checkpoint
            .map(|c| c.note)
            .ok_or_else(|| Error::Proof("the server sent no checkpoint".into()))?;
        let checkpoint = key
            .open_checkpoint(&note)
            .map_err(|e| Error::Proof(e.to_string()))?;
        Ok(VerifiedCheckpoint { checkpoint, note })
    }

    /// Proves that record `seq` is in the log: the latest checkpoint
    /// (signed now if none covers `seq` yet) checked with `key`, the
    /// record's inclusion proof checked against its root, from the leaf
    /// hash of the line the server sent.
    pub async fn prove_inclusion(
        &self,
        seq: u64,
        key: &VerifierKey,
    ) -> Result<ProvenRecord, Error> {
        let mut checkpoint = self.verified_checkpoint(key, false).await;
        if checkpoint.as_ref().is_ok_and(|c| c.checkpoint.size < seq) || checkpoint.is_err() {
            checkpoint = self.verified_checkpoint(key, true).await;
        }
        let checkpoint = checkpoint?;
        let size = checkpoint.checkpoint.size;
        if seq > size {
            return Err(Error::Proof(format!(
                "seq {seq} is not in the log's latest checkpoint, which holds seqs 1 to {size}"
            )));
        }
        let response = self.inclusion_proof(seq, size).await?;
        let leaf = if response.line.is_empty() {
            response.leaf_hash.as_slice().try_into().map_err(|_| {
                Error::Proof("the server sent neither the record's line nor its leaf hash".into())
            })?
        } else {
            leaf_hash(&response.line)
        };
        let hashes = response
            .hashes
            .iter()
            .map(|h| h.as_slice().try_into())
            .collect::<Result<Vec<[u8; 32]>, _>>()
            .map_err(|_| Error::Proof("a proof hash is not 32 bytes".into()))?;
        verify_inclusion(seq - 1, size, &leaf, &hashes, &checkpoint.checkpoint.root).map_err(
            |e| {
                Error::Proof(format!(
                    "seq {seq} does not verify against the signed checkpoint of size {size}: {e}"
                ))
            },
        )?;
        Ok(ProvenRecord {
            seq,
            line: response.line,
            checkpoint,
            proof_len: hashes.len(),
        })
    }
}
