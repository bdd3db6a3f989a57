//! The cache of decompressed chunks that reads share: a compressed
//! segment's members (and its lead copy's), keyed by segment and member,
//! so that reading neighbouring records inflates a member once.
//!
//! Invariant: after every insertion it holds at most [`CACHE_BYTES`] (the
//! oldest entries go first), and a cached chunk is only served to a read
//! that needs no more of it than was inflated.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// How many bytes of decompressed chunks reads keep.
const CACHE_BYTES: usize = 32 << 20;

/// Decompressed chunks, evicted oldest first past [`CACHE_BYTES`].
#[derive(Default)]
pub(super) struct ChunkCache {
    map: HashMap<(u32, u32), Arc<Vec<u8>>>,
    order: VecDeque<(u32, u32)>,
    bytes: usize,
}

impl ChunkCache {
    /// The cached chunk, if it holds at least its first `need` bytes.
    pub(super) fn get(&self, key: (u32, u32), need: usize) -> Option<Arc<Vec<u8>>> {
        self.map.get(&key).filter(|c| c.len() >= need).cloned()
    }

    pub(super) fn put(&mut self, key: (u32, u32), chunk: Arc<Vec<u8>>) {
        self.bytes += chunk.len();
        match self.map.insert(key, chunk) {
            Some(old) => self.bytes -= old.len(),
            None => self.order.push_back(key),
        }
        while self.bytes > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(c) = self.map.remove(&old) {
                self.bytes -= c.len();
            }
        }
    }
}
