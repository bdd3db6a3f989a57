//! The Merkle tree over the log (RFC 6962, hashing and proofs in the
//! `auditlog-proof` crate): derived data, kept beside the segments in
//! `<data_dir>/tree/` (format in `levels`), built by its own thread from
//! what the log holds (`builder`), never trusted over the log.
//!
//! The leaves are the records in seq order: the leaf of the record with seq
//! `s` is its stored line without the newline, at leaf index `s - 1` (seqs
//! start at 1), so a tree of size `n` holds seqs `1..=n`. A seq of a cut
//! (acknowledged, then found missing at a start; VerifyIntegrity reports
//! it) keeps the leaf the tree held for it, else has the gap leaf
//! (`builder`, `auditlog_proof::gap`), so the tree, and proofs of the
//! records after it, go on across the cut.
//!
//! Invariants: a leaf enters the tree only after its record is durable and
//! indexed. Its line is either the one the writer wrote, handed over in
//! memory by the syncer with the group ([`Tree::feed`]), or read back from
//! the log and checked to pass its MAC (at start, and whenever the hand-over
//! queue was dropped); the writer never waits for the tree (the syncer only
//! queues the group's bytes, already built, moved and not copied, and wakes
//! the builder only if it is waiting); the syncer publishes a group's seqs under the same lock as
//! it hands the group over ([`Tree::feed`]), so the builder neither waits
//! for a seq it was handed nor reads back one it is about to be handed;
//! [`Tree::size`] is published only once every level holds the
//! subtrees it completes, so a reader never reads a node that is not
//! written; retention purges records, never the tree, so proofs for later
//! records go on working.

mod builder;
mod check;
mod levels;
mod vouch;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use auditlog_proof::{Hash, Nodes};
use bytes::Bytes;

pub(super) use builder::{run, stored_line};
pub(super) use check::{Leaves, Plan, check};
use levels::Levels;

/// Why the tree cannot answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TreeError {
    #[error("the Merkle tree is still being read or rebuilt from the log; retry shortly")]
    Building,
    #[error("the Merkle tree is not available: {0}")]
    Unavailable(String),
    #[error(
        "tree size {size} is beyond the tree, which holds {tree} records; ask for a size up to {tree} (0 for the latest)"
    )]
    TooLarge { size: u64, tree: u64 },
    #[error(
        "seq {seq} is not in the tree of size {size} (it holds seqs 1 to {size}); ask against a later checkpoint once it covers seq {seq}"
    )]
    NotInTree { seq: u64, size: u64 },
    #[error("tree size {first} is larger than tree size {second}; give the older size first")]
    Order { first: u64, second: u64 },
    #[error("reading the Merkle tree failed: {0}")]
    Io(#[from] std::io::Error),
    /// A proof built from the tree's files does not verify against the
    /// signed root: it is not served (`vouch`).
    #[error("{0}")]
    Damaged(String),
}

/// The tree's handle, shared by its builder and the readers of proofs.
pub(crate) struct Tree {
    /// `None` until the builder has opened and repaired the files.
    levels: RwLock<Option<Levels>>,
    /// Leaves in the tree, published after every level is written.
    size: AtomicU64,
    /// The same, for those who wait for the tree to grow (a fresh
    /// checkpoint), also woken when it stops ([`Tree::reaches`]).
    grown: tokio::sync::watch::Sender<u64>,
    /// Why the tree stopped growing, when it did.
    trouble: Mutex<Option<String>>,
    wake: Mutex<Wake>,
    woken: Condvar,
    stop: AtomicBool,
}

/// What wakes the builder: a flag, and the groups handed over since it last
/// looked.
#[derive(Default)]
struct Wake {
    woken: bool,
    /// The builder is waiting on the condvar: only then does a hand-over
    /// wake it (a futex call), never while it is still at work.
    waiting: bool,
    fed: Fed,
    /// The last seq ever handed over, dropped or not.
    through: u64,
}

/// Durable groups handed over by the syncer, so the builder hashes the lines
/// the writer wrote instead of reading them back from the log.
#[derive(Default)]
pub(super) struct Fed {
    /// Each group's first seq and its lines (each ending in a newline), in
    /// seq order.
    pub(super) groups: VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// Groups were dropped (or taken and not appended): the builder reads
    /// the log back to find them.
    pub(super) dropped: bool,
    /// The last seq handed over when this was taken.
    pub(super) through: u64,
    /// The last seq indexed when this was taken: every seq up to it was
    /// either handed over by then or is to be read back.
    pub(super) head: u64,
}

/// The most bytes the hand-over queue holds; past it, groups are dropped and
/// read back from the log instead, so a builder that falls behind (a slow
/// disk under the level files) never makes the server hold the log twice.
#[cfg(not(test))]
const MAX_FED_BYTES: usize = 64 << 20;
/// Small in tests, so a batch overflows it and both ways in are exercised.
#[cfg(test)]
const MAX_FED_BYTES: usize = 16 << 10;

/// The level files as a source of complete subtrees.
struct Reader<'a>(&'a Levels);

impl Nodes for Reader<'_> {
    type Error = std::io::Error;
    fn node(&self, level: u32, index: u64) -> std::io::Result<Hash> {
        self.0.read(level, index)
    }
}

impl Tree {
    pub(super) fn new() -> Tree {
        Tree {
            levels: RwLock::new(None),
            size: AtomicU64::new(0),
            grown: tokio::sync::watch::Sender::new(0),
            trouble: Mutex::new(None),
            wake: Mutex::new(Wake::default()),
            woken: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    /// The number of records in the tree: seqs `1..=size`.
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Returns once the tree holds `size` leaves, or is stuck.
    pub(crate) async fn reaches(&self, size: u64) {
        let mut grown = self.grown.subscribe();
        // The sender lives as long as `self`: this ends only as described.
        let _ = grown
            .wait_for(|&leaves| leaves >= size || self.trouble().is_some())
            .await;
    }

    /// Publishes the number of leaves, once every level holds them.
    fn publish_size(&self, leaves: u64) {
        self.size.store(leaves, Ordering::Release);
        self.grown.send_replace(leaves);
    }

    /// Why the tree stopped growing, if it did.
    pub(crate) fn trouble(&self) -> Option<String> {
        self.trouble.lock().ok().and_then(|t| t.clone())
    }

    /// Runs `f` over the level files, for a tree of at least `size` leaves.
    fn with<R>(
        &self,
        size: u64,
        f: impl FnOnce(Reader<'_>) -> Result<R, TreeError>,
    ) -> Result<R, TreeError> {
        let guard = self.levels.read().unwrap_or_else(|e| e.into_inner());
        let tree = self.size();
        let Some(levels) = guard.as_ref() else {
            return Err(self
                .trouble()
                .map_or(TreeError::Building, TreeError::Unavailable));
        };
        if size > tree {
            return Err(TreeError::TooLarge { size, tree });
        }
        f(Reader(levels))
    }

    /// Handles on the level files as they are open (`None` before the
    /// builder has opened them), for a reader of its own.
    fn handles(&self) -> Option<std::io::Result<Vec<std::fs::File>>> {
        let guard = self.levels.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(Levels::handles)
    }

    /// The root hash of the tree of the first `size` records.
    pub(crate) fn root(&self, size: u64) -> Result<Hash, TreeError> {
        self.with(size, |r| Ok(auditlog_proof::merkle::root(&r, size)?))
    }

    /// The leaf hash of the record `seq`, as the tree holds it.
    pub(crate) fn leaf(&self, seq: u64) -> Result<Hash, TreeError> {
        self.with(seq, |r| Ok(r.0.read(0, seq - 1)?))
    }

    /// The inclusion proof of the record `seq` in the tree of `size`.
    pub(crate) fn inclusion(&self, seq: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        if seq == 0 || seq > size {
            return Err(TreeError::NotInTree { seq, size });
        }
        self.with(size, |r| {
            auditlog_proof::inclusion_proof(&r, seq - 1, size)?
                .map_err(|_| TreeError::NotInTree { seq, size })
        })
    }

    /// The consistency proof between the trees of `first` and `second`
    /// (unchecked: the server serves `Store::checked_consistency`).
    #[cfg(test)]
    pub(crate) fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, TreeError> {
        if first > second {
            return Err(TreeError::Order { first, second });
        }
        self.with(second, |r| {
            auditlog_proof::consistency_proof(&r, first, second)?
                .map_err(|_| TreeError::Order { first, second })
        })
    }

    /// Wakes the builder: more records are durable and indexed.
    pub(super) fn notify(&self) {
        if let Ok(mut w) = self.wake.lock() {
            w.woken = true;
            self.woken.notify_one();
        }
    }

    /// Hands the builder durable, indexed groups (each its first and last
    /// seq and its lines as written), then runs `publish`, which makes their
    /// seqs visible (`indexed_seq`), under the same lock the builder takes
    /// them with. A group is dropped (and read back later) past
    /// [`MAX_FED_BYTES`] waiting.
    pub(super) fn feed(&self, groups: Vec<(u64, u64, Bytes)>, publish: impl FnOnce()) {
        if self.stopped() {
            // No builder takes them (shut down, or switched off).
            publish();
            return;
        }
        let mut w = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        for (first, last, lines) in groups {
            w.through = w.through.max(last);
            if w.fed.bytes + lines.len() > MAX_FED_BYTES {
                w.fed = Fed {
                    dropped: true,
                    ..Fed::default()
                };
            } else {
                w.fed.bytes += lines.len();
                w.fed.groups.push_back((first, lines));
            }
        }
        publish();
        w.woken = true;
        if w.waiting {
            self.woken.notify_one();
        }
    }

    /// The groups handed over since the last take, with the last seq
    /// handed over and the last one published (`indexed`) at the take.
    fn take_fed(&self, indexed: &AtomicU64) -> Fed {
        let mut w = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        Fed {
            through: w.through,
            head: indexed.load(Ordering::Acquire),
            ..std::mem::take(&mut w.fed)
        }
    }

    /// Makes the builder's next turn read the log back: groups it took were
    /// not appended.
    fn lost_fed(&self) {
        if let Ok(mut w) = self.wake.lock() {
            w.fed.dropped = true;
        }
    }

    /// A store without a builder (a benchmark's, `bench::Switches`): the
    /// tree stays empty and says why.
    pub(super) fn switch_off(&self) {
        self.stop.store(true, Ordering::Release);
        self.set_trouble(Some("it is switched off (a benchmark's server)".to_owned()));
    }

    /// Ends the builder (shutdown).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.notify();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Lets groups gather for `span` after a wake (`builder::GATHER`): a
    /// hand-over meanwhile does not wake the builder (it is not `waiting`),
    /// but a stop does, so a shutdown does not wait the span out.
    fn gather(&self, span: Duration) {
        let until = Instant::now() + span;
        let Ok(mut w) = self.wake.lock() else {
            return;
        };
        while !self.stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            w = match self.woken.wait_timeout(w, left) {
                Ok((w, _)) => w,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Waits until woken, stopped, or `at_most` has passed.
    fn wait(&self, at_most: Duration) {
        let Ok(mut w) = self.wake.lock() else {
            return;
        };
        if !w.woken && !self.stopped() {
            w.waiting = true;
            w = match self.woken.wait_timeout(w, at_most) {
                Ok((w, _)) => w,
                Err(e) => e.into_inner().0,
            };
            w.waiting = false;
        }
        w.woken = false;
    }

    fn set_trouble(&self, why: Option<String>) {
        if let Some(why) = &why {
            tracing::error!(reason = %why, "the Merkle tree stopped growing");
        }
        let stuck = why.is_some();
        if let Ok(mut t) = self.trouble.lock() {
            *t = why;
        }
        if stuck {
            // Those waiting for the tree to grow stop waiting.
            self.grown.send_modify(|_| ());
        }
    }
}

#[cfg(test)]
mod tests;
