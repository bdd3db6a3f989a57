//! auditlog-proof: everything needed to check auditlog's proofs without the
//! server and without its HMAC key, shared by the server (which builds the
//! proofs) and the CLI (which checks them).
//!
//! - [`merkle`]: RFC 6962 tree hashing, inclusion and consistency proofs and
//!   their verification (RFC 9162 §2.1.3.2, §2.1.4.2).
//! - [`bundle`]: self-verifying bundles of records with their proofs,
//!   checked offline (docs/bundle-format.md).
//! - [`note`]: C2SP tlog-checkpoint bodies and C2SP signed notes with
//!   Ed25519: signing, verifier keys, verification.
//! - [`gap`]: the leaf of a seq the log does not hold.
//! - [`mirror`]: a witness's copy of the log, checked against a signed
//!   checkpoint.
//!
//! The tree is over auditlog's records in seq order: the leaf of a record is
//! its stored line exactly as it is in the log file, without the newline,
//! and its leaf index is its seq minus one (seqs start at 1). A seq the log
//! will never hold (cut: VerifyIntegrity reports it) keeps the leaf the tree
//! had for it, else has the gap leaf ([`gap`]). See
//! docs/proofs.md.

pub mod bundle;
pub mod gap;
pub mod merkle;
pub mod mirror;
pub mod note;

pub use bundle::{Bundle, BundleError, BundleRecord, BundleReport, RecordProblem};
pub use gap::{gap_leaf, gap_line, gap_seq};
pub use merkle::{
    CompactRange, Hash, MemoryTree, Nodes, ProofError, consistency_proof, empty_root,
    inclusion_proof, leaf_hash, node_hash, root_of, verify_consistency, verify_inclusion,
};
pub use mirror::{MirrorError, stored_seq};
pub use note::{Checkpoint, NoteError, NoteSigner, VerifierKey, note_signers};

/// The leaf index of the record with seq `seq` (seqs start at 1).
pub fn leaf_index(seq: u64) -> Option<u64> {
    seq.checked_sub(1)
}
