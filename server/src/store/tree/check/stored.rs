//! The tree's files as the check compares them, hash by hash: each level
//! read through a window of consecutive entries ([`Stored`]), and the first
//! entry where they and the hashes recomputed from the log part
//! ([`Damage`]).

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;

use auditlog_proof::Hash;

/// The tree's level files as the check reads them: each level through a
/// window of consecutive entries, refilled a chunk at a time (the log is
/// read in seq order, and so is each level).
#[derive(Debug)]
pub(super) struct Stored {
    files: Arc<Vec<File>>,
    /// The tree's size at the plan: level `k` holds `size >> k` entries,
    /// which do not change while the tree grows.
    size: u64,
    windows: Vec<Window>,
}

/// Consecutive entries of one level, from `first`.
#[derive(Debug, Default)]
struct Window {
    first: u64,
    hashes: Vec<Hash>,
}

/// Entries a window reads at once (32 KiB).
const WINDOW: u64 = 1024;

impl Stored {
    pub(super) fn new(files: Arc<Vec<File>>, size: u64) -> Stored {
        Stored {
            files,
            size,
            windows: Vec::new(),
        }
    }

    /// The same files, with windows of its own.
    pub(super) fn fresh(&self) -> Stored {
        Stored::new(Arc::clone(&self.files), self.size)
    }

    /// Entry `index` of `level`, or `None` when the tree did not hold it at
    /// the plan.
    fn get(&mut self, level: u32, index: u64) -> Option<std::io::Result<Hash>> {
        if level >= 64 || index >= self.size >> level {
            return None;
        }
        let k = level as usize;
        if self.windows.len() <= k {
            self.windows.resize_with(k + 1, Window::default);
        }
        let window = &mut self.windows[k];
        let offset = index.wrapping_sub(window.first);
        if offset >= window.hashes.len() as u64 {
            let Some(file) = self.files.get(k) else {
                return Some(Err(std::io::Error::other(format!(
                    "tree/level-{level:02} is missing"
                ))));
            };
            let count = WINDOW.min((self.size >> level) - index) as usize;
            window.first = index;
            window.hashes.resize(count, [0; 32]);
            if file
                .read_exact_at(window.hashes.as_flattened_mut(), index * 32)
                .is_err()
            {
                // The file ends, or fails, within the window: this entry
                // alone, so the error names the first one missing.
                window.hashes.truncate(1);
                if let Err(e) = file.read_exact_at(window.hashes.as_flattened_mut(), index * 32) {
                    window.hashes.clear();
                    return Some(Err(e));
                }
            }
            return Some(Ok(window.hashes[0]));
        }
        Some(Ok(window.hashes[offset as usize]))
    }
}

/// The first place where the tree's files and the records part: the
/// entry `index` of level `level`, the hash of seqs
/// `(index << level) + 1 ..= (index + 1) << level`. The first in seq order
/// whose own hash differs: the nodes above a changed hash differ too, and
/// are not it.
#[derive(Debug, Clone)]
pub(super) struct Damage {
    pub(super) level: u32,
    pub(super) index: u64,
    /// The entry could not be read: why.
    pub(super) unreadable: Option<String>,
}

impl Damage {
    /// The leaf index of its first leaf.
    pub(super) fn begin(&self) -> u64 {
        self.index << self.level
    }

    pub(super) fn seqs(&self) -> (u64, u64) {
        (self.begin() + 1, (self.index + 1) << self.level)
    }
}

/// Compares the tree's entry `index` of `level` with `hash`, recomputed
/// from the log, unless it lies after the first damage found (it can then
/// only be that damage seen from above, or a later one).
pub(super) fn compare(
    stored: &mut Stored,
    damage: &mut Option<Damage>,
    level: u32,
    index: u64,
    hash: &Hash,
) {
    let after = |d: &Damage| (index + 1) << level > d.begin();
    if damage.as_ref().is_some_and(after) {
        return;
    }
    let unreadable = match stored.get(level, index) {
        None => return,
        Some(Ok(held)) if held == *hash => return,
        Some(Ok(_)) => None,
        Some(Err(e)) => Some(e.to_string()),
    };
    *damage = Some(Damage {
        level,
        index,
        unreadable,
    });
}
