//! The tree's files: `<data_dir>/tree/level-NN`, one per level, each an
//! append-only array of 32-byte hashes. Entry `i` of level `k` is the hash
//! of the complete subtree of leaves `[i·2^k, (i+1)·2^k)`: level 0 holds the
//! leaf hashes, and level `k` holds `⌊n / 2^k⌋` entries for a tree of `n`
//! leaves. Any subtree the RFC's shape needs is one entry or O(log n) of
//! them, so a proof reads O(log n) hashes whatever the size of the log.
//!
//! The files are derived data, never trusted over the log: they are not
//! fsynced, and [`Levels::repair`] brings them back to a consistent shape
//! after a crash (a torn tail is cut to whole hashes, a level longer than
//! the one below allows is cut, a shorter one is refilled from the one
//! below, and the last entries of each level are checked against their
//! children).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use auditlog_proof::{Hash, node_hash};

/// The most levels a tree of up to 2^63 leaves has.
const MAX_LEVELS: usize = 64;
/// How many of the last entries of each level are checked against their
/// children at start.
const CHECKED_TAIL: u64 = 64;

/// The open level files and what is known of them.
pub(super) struct Levels {
    dir: PathBuf,
    files: Vec<File>,
    /// Entries in each level.
    counts: Vec<u64>,
    /// The last entry of each level whose count is odd: the left half of
    /// the next pair.
    frontier: Vec<Option<Hash>>,
    /// Two buffers an append reuses for a level's new entries and their
    /// parents, so the builder allocates nothing per turn.
    scratch: (Vec<Hash>, Vec<Hash>),
}

impl Levels {
    /// Opens the level files in `dir` (creating it), as they are.
    pub(super) fn open(dir: &Path) -> std::io::Result<Levels> {
        std::fs::create_dir_all(dir)?;
        let mut levels = Levels {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            counts: Vec::new(),
            frontier: Vec::new(),
            scratch: (Vec::new(), Vec::new()),
        };
        for k in 0..MAX_LEVELS {
            let path = levels.path(k);
            if !path.exists() {
                break;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let len = file.metadata()?.len();
            levels.files.push(file);
            levels.counts.push(len / 32);
            if len % 32 != 0 {
                // A torn hash at the end: cut it.
                levels.files[k].set_len(len / 32 * 32)?;
            }
        }
        Ok(levels)
    }

    fn path(&self, level: usize) -> PathBuf {
        self.dir.join(format!("level-{level:02}"))
    }

    /// The number of leaves.
    pub(super) fn leaves(&self) -> u64 {
        self.counts.first().copied().unwrap_or(0)
    }

    /// Entry `index` of `level`.
    pub(super) fn read(&self, level: u32, index: u64) -> std::io::Result<Hash> {
        let file = self
            .files
            .get(level as usize)
            .ok_or_else(|| std::io::Error::other(format!("tree level {level} is missing")))?;
        let mut hash = [0u8; 32];
        file.read_exact_at(&mut hash, index * 32)?;
        Ok(hash)
    }

    /// Another handle on each level file, for a reader of its own (the
    /// check VerifyIntegrity runs), which reads with `pread` and so shares
    /// no position with these.
    pub(super) fn handles(&self) -> std::io::Result<Vec<File>> {
        self.files.iter().map(File::try_clone).collect()
    }

    fn file(&mut self, level: usize) -> std::io::Result<&File> {
        while self.files.len() <= level {
            let path = self.path(self.files.len());
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            self.files.push(file);
            self.counts.push(0);
        }
        Ok(&self.files[level])
    }

    /// Cuts the tree back to its first `leaves` leaves.
    pub(super) fn truncate(&mut self, leaves: u64) -> std::io::Result<()> {
        for k in 0..self.files.len() {
            let keep = (leaves >> k).min(self.counts[k]);
            if keep < self.counts[k] {
                self.files[k].set_len(keep * 32)?;
                self.counts[k] = keep;
            }
        }
        Ok(())
    }

    /// Brings every level above the leaves in line with the one below it:
    /// cut where it is longer or disagrees with its children near its end,
    /// refilled where it is shorter. Then reads the frontier.
    pub(super) fn repair(&mut self) -> std::io::Result<()> {
        let leaves = self.leaves();
        self.truncate(leaves)?;
        let mut k = 1;
        while leaves >> k > 0 {
            self.file(k)?;
            let want = self.counts[k - 1] / 2;
            let have = self.counts[k].min(want);
            let mut good = have;
            for i in have.saturating_sub(CHECKED_TAIL)..have {
                let children = (
                    self.read(k as u32 - 1, 2 * i)?,
                    self.read(k as u32 - 1, 2 * i + 1)?,
                );
                if self.read(k as u32, i)? != node_hash(&children.0, &children.1) {
                    tracing::warn!(
                        level = k,
                        entry = i,
                        "tree node disagrees with its children; recomputing"
                    );
                    good = i;
                    break;
                }
            }
            if good < self.counts[k] {
                self.files[k].set_len(good * 32)?;
                self.counts[k] = good;
            }
            let mut fill = Vec::new();
            for i in good..want {
                let left = self.read(k as u32 - 1, 2 * i)?;
                let right = self.read(k as u32 - 1, 2 * i + 1)?;
                fill.extend_from_slice(&node_hash(&left, &right));
            }
            self.files[k].write_all_at(&fill, good * 32)?;
            self.counts[k] = want;
            k += 1;
        }
        // Levels above the top are empty.
        for k in k..self.files.len() {
            self.files[k].set_len(0)?;
            self.counts[k] = 0;
        }
        self.frontier = (0..self.files.len())
            .map(|k| {
                let n = self.counts[k];
                if n % 2 == 1 {
                    self.read(k as u32, n - 1).map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect::<std::io::Result<_>>()?;
        Ok(())
    }

    /// Appends `leaves` (leaf hashes) and every subtree they complete, with
    /// one write per level.
    pub(super) fn append(&mut self, leaves: &[Hash]) -> std::io::Result<()> {
        let (mut new, mut parents) = std::mem::take(&mut self.scratch);
        new.clear();
        new.extend_from_slice(leaves);
        let appended = self.append_levels(&mut new, &mut parents);
        self.scratch = (new, parents);
        appended
    }

    /// Appends `new` to level 0, their parents to level 1, and so on up.
    fn append_levels(
        &mut self,
        new: &mut Vec<Hash>,
        parents: &mut Vec<Hash>,
    ) -> std::io::Result<()> {
        let mut level = 0;
        while !new.is_empty() {
            let count = {
                self.file(level)?;
                self.counts[level]
            };
            if self.frontier.len() <= level {
                self.frontier.resize(level + 1, None);
            }
            self.files[level].write_all_at(new.as_flattened(), count * 32)?;
            self.counts[level] = count + new.len() as u64;
            parents.clear();
            let mut left = self.frontier[level].take();
            for hash in new.iter() {
                match left.take() {
                    Some(l) => parents.push(node_hash(&l, hash)),
                    None => left = Some(*hash),
                }
            }
            self.frontier[level] = left;
            std::mem::swap(new, parents);
            level += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use auditlog_proof::{MemoryTree, Nodes, leaf_hash};

    use super::*;

    fn leaf(i: u64) -> Hash {
        leaf_hash(&i.to_be_bytes())
    }

    fn check(levels: &Levels, n: u64) {
        let mut memory = MemoryTree::default();
        for i in 0..n {
            memory.push(leaf(i));
        }
        assert_eq!(levels.leaves(), n);
        for k in 0..64u32 {
            for i in 0..n >> k {
                let want = match memory.node(k, i) {
                    Ok(h) => h,
                    Err(never) => match never {},
                };
                assert_eq!(levels.read(k, i).unwrap(), want, "level {k} entry {i}");
            }
        }
    }

    #[test]
    fn appends_in_any_batches_give_the_same_levels_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut levels = Levels::open(dir.path()).unwrap();
        levels.repair().unwrap();
        let mut n = 0;
        for batch in [1u64, 2, 3, 1, 8, 5, 13, 1, 1, 30] {
            levels
                .append(&(n..n + batch).map(leaf).collect::<Vec<_>>())
                .unwrap();
            n += batch;
            check(&levels, n);
        }
        drop(levels);
        let mut levels = Levels::open(dir.path()).unwrap();
        levels.repair().unwrap();
        levels.append(&[leaf(n)]).unwrap();
        check(&levels, n + 1);
    }

    #[test]
    fn a_torn_or_damaged_tail_is_cut_and_refilled() {
        let dir = tempfile::tempdir().unwrap();
        let mut levels = Levels::open(dir.path()).unwrap();
        levels.repair().unwrap();
        levels
            .append(&(0..37).map(leaf).collect::<Vec<_>>())
            .unwrap();
        drop(levels);
        // A torn hash on the leaves, a missing upper level, a wrong node.
        let level0 = dir.path().join("level-00");
        let mut bytes = std::fs::read(&level0).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&level0, bytes).unwrap();
        std::fs::remove_file(dir.path().join("level-03")).unwrap();
        let level1 = dir.path().join("level-01");
        let mut bytes = std::fs::read(&level1).unwrap();
        bytes[32 * 17] ^= 1;
        std::fs::write(&level1, bytes).unwrap();
        let mut levels = Levels::open(dir.path()).unwrap();
        levels.repair().unwrap();
        check(&levels, 37);
        levels.truncate(20).unwrap();
        levels.repair().unwrap();
        check(&levels, 20);
        levels
            .append(&(20..40).map(leaf).collect::<Vec<_>>())
            .unwrap();
        check(&levels, 40);
    }
}
