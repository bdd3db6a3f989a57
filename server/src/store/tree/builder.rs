//! The tree's builder: one thread that opens the tree's files at start,
//! checks them against the log, and then appends every record the syncer
//! has made durable and indexed, reading its line back from the log.
//!
//! While running, the syncer hands it each durable group's lines as the
//! writer wrote them (`Tree::feed`), which it hashes without reading them
//! back, a turn's groups together, and appends with one write per level
//! file per turn (groups gather for [`GATHER`] after a wake); whatever the hand-over misses (the records recovered at start, or
//! groups dropped while it was far behind) is read back from the log, each
//! line checked to be the record expected and to pass its MAC.
//!
//! Start-up rules, in order:
//! 1. A torn hash at the end of a level file is cut (`levels`).
//! 2. A tree with more leaves than the log has records (a copy of the data
//!    directory with a newer tree, or records lost under `os_buffered`
//!    durability) is cut back to the log's head, or to the last seq the
//!    server acknowledged (`head`) when that is further: the writer goes on
//!    after it, so the leaves up to it are of seqs cut from the log for
//!    good, and they stay, so that the checkpoints signed over them stay
//!    consistent with every later one.
//! 3. The last [`CHECKED_LEAVES`] leaves still in the log are recomputed
//!    from their lines; the tree is cut back to the first that disagrees.
//! 4. Every level above is brought in line with the one below (`levels`).
//! 5. The records after the tree's last leaf are appended from the log.
//!
//! Gaps: the seqs of a cut (`head`: acknowledged records a start found
//! missing from the log's end; the writer went on after them) will never be
//! in the log, and VerifyIntegrity reports them at every run. The tree
//! keeps its leaf index at seq - 1 across them: such a seq keeps the leaf
//! the tree held for it (rule 2), else gets the gap leaf
//! (`auditlog_proof::gap`), which proves to anyone that the signed tree
//! holds no record there. A seq missing for another reason (removed from
//! inside the log, a segment missing) stops the tree before it, as a
//! damaged record does: it may come back, and a leaf once signed cannot.
//!
//! A tree that is missing leaves the log no longer has (the tree directory
//! deleted after retention purged a prefix) cannot be rebuilt: the builder
//! says so in [`super::Tree::trouble`] and the proofs are refused, naming
//! the cause. So is a record whose line fails its MAC check: no checkpoint
//! is ever signed over a line the server did not write.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use auditlog_proof::{Hash, gap_leaf, leaf_hash};

use super::levels::Levels;
use crate::store::error::StoreError;
use crate::store::index::Meta;
use crate::store::record::{MacCheck, RecordHead, lines_of};
use crate::store::shared::Shared;
use crate::store::{Filter, Order};

/// How many of the tree's last leaves are checked against the log at start.
const CHECKED_LEAVES: u64 = 256;
/// Records read from the log per append.
const BATCH: usize = 4096;
/// How long the builder sleeps when nothing wakes it: it also retries after
/// a failed read this often.
const IDLE: Duration = Duration::from_secs(1);
/// How long the builder lets groups gather after it is woken, so that under
/// load it takes many group commits per turn: a turn's fixed cost (a wake,
/// a write per level file) was most of the tree's cost per event at a few
/// thousand events a second with 20 ms (docs/benchmarks.md). The syncer only
/// wakes a builder that waits, so there is no wake per `fdatasync` either.
/// Checkpoints are signed every 500 ms, so a receipt is still covered by one
/// within a second.
const GATHER: Duration = Duration::from_millis(100);

/// How often a tree that stays behind the log says so again.
const BEHIND_REPEAT: Duration = Duration::from_secs(60);

/// The builder thread's body: runs until the store shuts down.
pub(in crate::store) fn run(shared: &Shared) {
    let tree = &shared.tree;
    match open(shared) {
        Ok(levels) => {
            tree.publish_size(levels.leaves());
            *tree.levels.write().unwrap_or_else(|e| e.into_inner()) = Some(levels);
        }
        Err(e) => {
            tree.set_trouble(Some(format!(
                "its files in {} cannot be opened or repaired ({e}); fix or delete the directory and restart",
                shared.dir.join("tree").display()
            )));
            return;
        }
    }
    tracing::debug!(size = tree.size(), "Merkle tree opened");
    // The leaf hashes of a turn, in a buffer kept from turn to turn.
    let mut hashes = Vec::new();
    // When the last "behind" line was logged, while the tree is behind.
    let mut behind: Option<Instant> = None;
    while !tree.stopped() {
        match catch_up(shared, &mut hashes) {
            Ok(()) => {
                if tree.trouble().is_some() {
                    tree.set_trouble(None);
                }
                if behind.take().is_some() {
                    tracing::info!(size = tree.size(), "the Merkle tree caught up with the log");
                }
            }
            Err(Stuck::Lasting(why)) => tree.set_trouble(Some(why)),
            // A full disk, say: the next turn retries, and the tree only
            // lags (no checkpoint is signed past it meanwhile). Said when
            // it starts and then once a minute, not at every turn.
            Err(Stuck::Passing(why)) => {
                if behind.is_none_or(|at| at.elapsed() >= BEHIND_REPEAT) {
                    tracing::warn!(reason = %why, "the Merkle tree is behind the log; retrying");
                    behind = Some(Instant::now());
                }
            }
        }
        tree.wait(IDLE);
        tree.gather(GATHER);
    }
}

/// Start-up rules 1 to 4.
fn open(shared: &Shared) -> Result<Levels, StoreError> {
    let io = StoreError::Read;
    let mut levels = Levels::open(&shared.dir.join("tree")).map_err(io)?;
    let indexed = shared.indexed_seq.load(Ordering::Acquire);
    let acknowledged = shared.head.lock().map_or(0, |h| h.seq);
    let head = indexed.max(acknowledged);
    if levels.leaves() > head {
        tracing::warn!(
            tree = levels.leaves(),
            log = head,
            "the Merkle tree is ahead of the log; cutting it back"
        );
        levels.truncate(head).map_err(io)?;
    }
    if levels.leaves() > indexed {
        tracing::warn!(
            from = indexed + 1,
            to = levels.leaves(),
            "the Merkle tree keeps its leaves of acknowledged seqs cut from the log"
        );
    }
    let n = levels.leaves();
    let from = n.saturating_sub(CHECKED_LEAVES);
    let (metas, _) = shared.select_page(
        &Filter::default(),
        Order::OldestFirst,
        Some(from),
        n,
        CHECKED_LEAVES as usize,
    );
    let hashes = leaf_hashes(shared, &metas);
    // A record that cannot be read is left to catch_up to report.
    if let Ok(hashes) = hashes {
        for (meta, hash) in metas.iter().zip(hashes) {
            if levels.read(0, meta.seq - 1).map_err(io)? != hash {
                tracing::warn!(
                    seq = meta.seq,
                    "the Merkle tree disagrees with the log; rebuilding it from there"
                );
                levels.truncate(meta.seq - 1).map_err(io)?;
                break;
            }
        }
    }
    levels.repair().map_err(io)?;
    Ok(levels)
}

/// Why the tree could not grow: until someone acts, or for now.
enum Stuck {
    Lasting(String),
    Passing(String),
}

/// One turn: hashes every group handed over since the last and appends
/// them with one write per level file, then reads back from the log what
/// the hand-over missed.
fn catch_up(shared: &Shared, hashes: &mut Vec<Hash>) -> Result<(), Stuck> {
    let tree = &shared.tree;
    let fed = tree.take_fed(&shared.indexed_seq);
    hashes.clear();
    let turn = hash_fed(shared, hashes, fed.groups).and_then(|()| {
        append_hashed(tree, hashes)?;
        // What the hand-over did not bring: the records recovered at start
        // (never handed over) and dropped groups. The head was read with the
        // groups, under the lock the syncer publishes under, so a group
        // handed over since is taken next turn and never read back here.
        if fed.dropped || fed.through < fed.head {
            read_back(shared, fed.head)?;
        }
        Ok(())
    });
    if turn.is_err() {
        // Whatever was taken and not appended is read back from the log.
        tree.lost_fed();
    }
    turn
}

/// Hashes the lines of the groups the syncer handed over into `hashes`,
/// which continue the tree's last leaf; a gap before a group (records
/// recovered at start) is read back from the log first, after appending
/// the hashes so far.
fn hash_fed(
    shared: &Shared,
    hashes: &mut Vec<Hash>,
    groups: VecDeque<(u64, bytes::Bytes)>,
) -> Result<(), Stuck> {
    let tree = &shared.tree;
    for (first, lines) in groups {
        let next = tree.size() + hashes.len() as u64 + 1;
        if first < next {
            continue; // Already read back from the log.
        }
        if first > next {
            append_hashed(tree, hashes)?;
            read_back(shared, first - 1)?;
        }
        for (line, seq) in lines_of(&lines).zip(first..) {
            // The writer's own bytes; a seq that does not follow is a bug,
            // and the log is read back instead.
            if RecordHead::peek_seq(line) != Some(seq) {
                debug_assert!(false, "a fed group's seq {seq} does not follow");
                return Err(Stuck::Passing(format!(
                    "a group handed over does not hold seq {seq} where expected; reading the log back"
                )));
            }
            hashes.push(leaf_hash(line));
        }
        // The group's seqs were published as it was handed over
        // (`Tree::feed`): the tree never holds a seq before the log shows it.
        debug_assert!(
            shared.indexed_seq.load(Ordering::Acquire) >= tree.size() + hashes.len() as u64
        );
    }
    Ok(())
}

/// Appends `hashes` (leaf hashes continuing the tree) and empties it.
fn append_hashed(tree: &super::Tree, hashes: &mut Vec<Hash>) -> Result<(), Stuck> {
    if hashes.is_empty() {
        return Ok(());
    }
    let appended = append(tree, tree.size(), hashes);
    hashes.clear();
    appended
}

/// Appends every indexed record after the tree's last leaf up to `upto`,
/// read back from the log and checked.
fn read_back(shared: &Shared, upto: u64) -> Result<(), Stuck> {
    let tree = &shared.tree;
    loop {
        let size = tree.size();
        if size >= upto {
            return Ok(());
        }
        let (mut metas, _) = shared.select_page(
            &Filter::default(),
            Order::OldestFirst,
            Some(size),
            upto,
            BATCH,
        );
        // Every seq up to `upto` that the index lacks is a gap: the index
        // already holds everything up to there that the log ever will.
        let next = metas.first().map_or(upto + 1, |m| m.seq);
        if next > size + 1 {
            append(tree, size, &gap_leaves(shared, size, next - 1)?)?;
            continue;
        }
        // Only the records that continue the tree without a gap.
        let contiguous = metas
            .iter()
            .zip(size + 1..)
            .take_while(|(m, seq)| m.seq == *seq)
            .count();
        metas.truncate(contiguous);
        let hashes = leaf_hashes(shared, &metas).map_err(|e| {
            let why =
                format!("{e}; the tree stays at {size} records until the record reads back whole");
            match e {
                StoreError::Corrupt { .. } => Stuck::Lasting(why),
                _ => Stuck::Passing(why),
            }
        })?;
        append(tree, size, &hashes)?;
    }
}

/// The gap leaves of the seqs after `size` up to `last` (at most
/// [`BATCH`] of them), which the index lacks. Only a cut (`head`) is a gap:
/// its seqs were acknowledged, and the writer went on after them, so the log
/// will never hold them. A purged seq is none: its record was in the log,
/// and only a tree that held it has its leaf. Nor is a seq missing for any
/// other reason (lines removed from inside the log, a segment missing): it
/// may come back (a file restored), and a gap leaf, once signed, could not
/// be taken back.
fn gap_leaves(shared: &Shared, size: u64, last: u64) -> Result<Vec<Hash>, Stuck> {
    let first = size + 1;
    if first <= purged_through(shared) {
        return Err(Stuck::Lasting(format!(
            "seq {first} was purged by retention before the tree held it, so the tree cannot go \
             past {size}; restore the data directory's tree/ from a backup if it was deleted"
        )));
    }
    let Some(cut_last) = cut_through(shared, first) else {
        return Err(Stuck::Lasting(format!(
            "seq {first} is not in the log (damaged, or removed from inside it), so the tree \
             cannot go past {size}; run VerifyIntegrity to locate it, and restore the file that \
             held it"
        )));
    };
    let last = last.min(cut_last).min(size + BATCH as u64);
    tracing::warn!(
        first,
        last,
        "seqs cut from the log get the Merkle tree's gap leaf; VerifyIntegrity reports the cut"
    );
    Ok((first..=last).map(gap_leaf).collect())
}

/// The last seq of the cut that holds `seq` (`head`: acknowledged seqs a
/// start found missing from the log), if one does.
pub(super) fn cut_through(shared: &Shared, seq: u64) -> Option<u64> {
    let head = shared.head.lock().unwrap_or_else(|e| e.into_inner());
    head.cuts
        .iter()
        .find(|c| (c.first..=c.last).contains(&seq))
        .map(|c| c.last)
}

/// The last seq retention purged (0: none).
pub(super) fn purged_through(shared: &Shared) -> u64 {
    shared
        .manifest
        .lock()
        .map_or(0, |m| m.purged.as_ref().map_or(0, |p| p.through_seq))
}

/// Appends `hashes` after the tree's first `size` leaves.
fn append(tree: &super::Tree, size: u64, hashes: &[Hash]) -> Result<(), Stuck> {
    let mut guard = tree.levels.write().unwrap_or_else(|e| e.into_inner());
    let Some(levels) = guard.as_mut() else {
        return Err(Stuck::Lasting("the tree's files are not open".into()));
    };
    let added = hashes.len() as u64;
    if let Err(e) = levels.append(hashes) {
        // Cut back whatever part was written; the next turn retries.
        let _ = levels.truncate(size).and_then(|()| levels.repair());
        return Err(Stuck::Passing(format!("appending to the tree failed: {e}")));
    }
    tree.publish_size(size + added);
    Ok(())
}

/// The stored line of `seq` (without its newline), checked as
/// [`leaf_hashes`] checks it; `None` when the log no longer holds it.
pub(in crate::store) fn stored_line(
    shared: &Shared,
    seq: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(meta) = shared.index().get(seq) else {
        return Ok(None);
    };
    let (segment, meta) = shared.locate(&meta)?;
    shared.with_line(&segment, &meta, 0, |line| {
        let head = RecordHead::peek(line).filter(|h| h.seq == seq);
        match head.map(|h| h.check_mac(line, &shared.keyring)) {
            Some(MacCheck::Valid) => Ok(Some(line.to_vec())),
            _ => Err(StoreError::Corrupt {
                seq,
                reason: "its line is not the record the server wrote (wrong seq or MAC)".into(),
            }),
        }
    })
}

/// The leaf hashes of the records at `metas`, read back from the log, each
/// line checked to be the record expected and to pass its MAC check. Each
/// compressed chunk is inflated once, as far as the last record read from
/// it.
fn leaf_hashes(shared: &Shared, metas: &[Meta]) -> Result<Vec<Hash>, StoreError> {
    shared.map_lines(metas, |line, meta| {
        let head = RecordHead::peek(line).filter(|h| h.seq == meta.seq);
        match head.map(|h| h.check_mac(line, &shared.keyring)) {
            Some(MacCheck::Valid) => Ok(leaf_hash(line)),
            _ => Err(StoreError::Corrupt {
                seq: meta.seq,
                reason: "its line is not the record the server wrote (wrong seq or MAC)".into(),
            }),
        }
    })
}
