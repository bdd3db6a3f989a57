//! The test surface of `benches/segments.rs`: exactly the pieces of the
//! store its cost model measures one by one on the segment files (inflate a
//! member, check a MAC, parse a record, answer a line as a Query page
//! does), re-exported so the store's modules stay private. Not part of the API, and hidden from the docs, as
//! `fuzzing` is.
//!
//! Invariant: nothing here is used by the server itself; it only names
//! what the store already does, so a bench figure measures the code that
//! runs. The exceptions are [`Switches`], which `benches/ingest.rs` sets
//! on a [`crate::Config`] to measure what a part of the server costs by
//! running without it, and [`without_fault_hooks`], which the benches call
//! so that a test build's hooks cost nothing; no config file, flag or
//! environment variable can set either.

pub use crate::keys::Keyring;
pub use crate::store::record::{MacCheck, RecordHead};
pub use crate::store::segment::SegmentIndex;
pub use crate::store::segment::members::{CHUNK_BYTES, Chunk, read_chunk};

/// What a Query page does with each line once its MAC is checked: decode it
/// and encode the protobuf `Event` it answers with. The encoded length, or
/// why the line is not a record.
pub fn answer_line(line: &[u8]) -> Result<usize, String> {
    use crate::store::record::Decoded as _;
    crate::service::EventBytes::from_line(line)
        .map(|event| event.len())
        .map_err(|e| e.to_string())
}

/// Switches the fault-injection hooks off for this process, in the builds
/// that have them (tests and `fault-injection`, which the benches get as a
/// dev-dependency's feature): a benchmark measures the server, not a
/// system call per `fdatasync` looking for a trigger file. A no-op in other
/// builds.
pub fn without_fault_hooks() {
    #[cfg(any(test, feature = "fault-injection"))]
    crate::faults::switch_off();
}

/// Parts of the server a benchmark may switch off to measure their cost
/// (`Config::bench`); all on by default. A server with one off is not a
/// server to run: it is only ever built by a benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switches {
    /// The Merkle tree's builder and the checkpoint signer.
    pub(crate) tree: bool,
}

impl Default for Switches {
    fn default() -> Switches {
        Switches { tree: true }
    }
}

impl Switches {
    /// No Merkle tree builder and no checkpoint signer: the log is written
    /// and published as usual, but no leaf is hashed, no tree file written
    /// and no checkpoint signed (the proof RPCs answer that the tree is
    /// unavailable).
    pub fn without_tree() -> Switches {
        Switches { tree: false }
    }
}
