//! Self-verifying bundles: records exported with a signed checkpoint, an
//! inclusion proof per record and the verifier key, checked offline with
//! nothing else (no server, no HMAC key). The format is specified in
//! docs/bundle-format.md; this module is its reference verifier.
//!
//! A bundle proves that each of its records is, byte for byte, the record
//! at that seq in the log whose checkpoint it carries. It proves nothing
//! about records it does not carry, except this: when it lists the seqs the
//! server returned for its selection (`seqs`), a listed seq without its
//! record is reported. That list is the exporter's, not signed by the log:
//! it catches a record lost or removed from the file, not a forger who also
//! edits the list.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{Checkpoint, Hash, NoteError, VerifierKey, gap_seq, leaf_hash, verify_inclusion};

/// The `format` of the bundles this module writes and reads.
pub const FORMAT: &str = "auditlog-bundle/1";

/// A bundle, as its JSON file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`FORMAT`].
    pub format: String,
    /// What was exported, for people: `lead LEAD-1`, `subject …`, a range.
    pub selection: String,
    /// The log's verifier key, `name+keyid+base64`, as the exporter got it.
    pub verifier_key: String,
    /// The signed checkpoint note the proofs are against.
    pub checkpoint: String,
    /// The seqs the server returned for the selection, ascending; every one
    /// must have its record in `records`. Absent: no completeness claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seqs: Option<Vec<u64>>,
    pub records: Vec<BundleRecord>,
}

/// One record and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRecord {
    pub seq: u64,
    /// Always `seq - 1`.
    pub leaf_index: u64,
    /// The record's stored line, exactly as in the log, without newline.
    pub line: String,
    /// SHA-256(0x00 ‖ line) in standard base64, as the server computed it:
    /// a hint that tells a changed line from a changed proof, never trusted.
    pub leaf_hash: String,
    /// The inclusion proof's hashes, nearest the leaf first, standard base64.
    pub proof: Vec<String>,
}

impl BundleRecord {
    /// The record at `seq` with its stored line, its leaf hash as the
    /// server sent it, and its proof.
    pub fn new(seq: u64, line: String, leaf: &Hash, proof: &[Hash]) -> BundleRecord {
        let b64 = base64::engine::general_purpose::STANDARD;
        BundleRecord {
            seq,
            leaf_index: seq.saturating_sub(1),
            line,
            leaf_hash: b64.encode(leaf),
            proof: proof.iter().map(|h| b64.encode(h)).collect(),
        }
    }
}

/// Why a whole bundle is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not a bundle: {0}")]
    Json(String),
    #[error("unknown bundle format {0:?} (this verifier reads \"{FORMAT}\")")]
    Format(String),
    #[error("the bundle's verifier key: {0}")]
    Key(NoteError),
    #[error("the bundle's checkpoint is refused: {0}")]
    Checkpoint(NoteError),
}

/// One record that does not verify, or a listed one that is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordProblem {
    pub seq: u64,
    pub what: String,
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.what)
    }
}

/// What checking a bundle found (its checkpoint's signature held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    pub checkpoint: Checkpoint,
    /// Records that verified.
    pub verified: usize,
    /// How many seqs the bundle listed, when it claims completeness.
    pub listed: Option<usize>,
    pub problems: Vec<RecordProblem>,
}

impl BundleReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Bundle {
    /// Reads a bundle's JSON.
    pub fn parse(json: &[u8]) -> Result<Bundle, BundleError> {
        let bundle: Bundle =
            serde_json::from_slice(json).map_err(|e| BundleError::Json(e.to_string()))?;
        if bundle.format != FORMAT {
            return Err(BundleError::Format(bundle.format));
        }
        Ok(bundle)
    }

    /// The key the bundle carries (which proves only self-consistency
    /// unless it is checked against one obtained out of band).
    pub fn own_key(&self) -> Result<VerifierKey, BundleError> {
        VerifierKey::parse(&self.verifier_key).map_err(BundleError::Key)
    }

    /// Checks the bundle with `key`: the checkpoint's signature and origin,
    /// then every record's leaf hash, from its line, against the root
    /// through its proof, then that every listed seq has its record.
    pub fn verify(&self, key: &VerifierKey) -> Result<BundleReport, BundleError> {
        let checkpoint = key
            .open_checkpoint(&self.checkpoint)
            .map_err(BundleError::Checkpoint)?;
        let mut problems = Vec::new();
        let mut verified = 0;
        let mut seen = std::collections::BTreeSet::new();
        for record in &self.records {
            let problem = |what: String| RecordProblem {
                seq: record.seq,
                what,
            };
            if !seen.insert(record.seq) {
                problems.push(problem("appears twice in the bundle".into()));
                continue;
            }
            match check_record(record, &checkpoint) {
                Ok(()) => verified += 1,
                Err(what) => problems.push(problem(what)),
            }
        }
        if let Some(seqs) = &self.seqs {
            let listed: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
            for seq in listed.difference(&seen) {
                problems.push(RecordProblem {
                    seq: *seq,
                    what: "listed among the selection's seqs but its record is missing from the \
                           bundle (dropped)"
                        .into(),
                });
            }
            for seq in seen.difference(&listed) {
                problems.push(RecordProblem {
                    seq: *seq,
                    what: "in the bundle but not among the selection's seqs it lists".into(),
                });
            }
        }
        problems.sort_by_key(|p| p.seq);
        Ok(BundleReport {
            checkpoint,
            verified,
            listed: self.seqs.as_ref().map(Vec::len),
            problems,
        })
    }
}

/// Checks one record against the checkpoint; the error says why it fails.
fn check_record(record: &BundleRecord, checkpoint: &Checkpoint) -> Result<(), String> {
    let size = checkpoint.size;
    if record.seq == 0 || record.seq > size {
        return Err(format!(
            "not in the checkpoint, which holds seqs 1 to {size}"
        ));
    }
    if record.leaf_index != record.seq - 1 {
        return Err(format!(
            "leaf_index {} is not seq - 1 ({})",
            record.leaf_index,
            record.seq - 1
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut proof = Vec::with_capacity(record.proof.len());
    for (i, h) in record.proof.iter().enumerate() {
        let hash: Hash = b64
            .decode(h)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| format!("proof hash {i} is not base64 of 32 bytes"))?;
        proof.push(hash);
    }
    let leaf = leaf_hash(record.line.as_bytes());
    if verify_inclusion(record.seq - 1, size, &leaf, &proof, &checkpoint.root).is_ok() {
        if gap_seq(record.line.as_bytes()).is_some() {
            return Err(
                "is not a record: its line is a gap line, the log's mark that it holds no record \
                 at this seq (cut; docs/proofs.md)"
                    .into(),
            );
        }
        return Ok(());
    }
    if b64.encode(leaf) != record.leaf_hash {
        return Err(
            "the line was changed: its hash is not the leaf hash recorded at export, and it \
             does not prove against the checkpoint's root"
                .into(),
        );
    }
    Err(format!(
        "the inclusion proof is wrong: the line's leaf hash does not lead to the root of the \
         checkpoint of size {size} through it"
    ))
}

#[cfg(test)]
mod tests;
