//! The test surface of `benches/segments.rs`: exactly the pieces of the
//! store its cost model measures one by one on the segment files (inflate a
//! member, check a MAC, parse a record), re-exported so the store's modules
//! stay private. Not part of the API, and hidden from the docs, as
//! `fuzzing` is.
//!
//! Invariant: nothing here is used by the server itself; it only names
//! what the store already does, so a bench figure measures the code that
//! runs.

pub use crate::keys::Keyring;
pub use crate::store::record::{MacCheck, Record, RecordHead};
pub use crate::store::segment::SegmentIndex;
pub use crate::store::segment::members::{CHUNK_BYTES, Chunk, read_chunk};
