//! Proofs checked before they are served. A proof is built from hashes the
//! tree's files hold, written once and read back each time. A changed one
//! (a leaf, or a node above) that is not among the few a root is read from
//! leaves every root as it was and breaks each proof that reads it: the
//! proof would tell an auditor that a record is not in the log. So each
//! proof is checked here, with the `auditlog-proof` code an auditor runs (a
//! few dozen hashes), against the root it must lead to, and one that does
//! not verify is refused ([`TreeError::Damaged`], DATA_LOSS) rather than
//! served, naming the tree's entry found damaged among those it read and
//! what rebuilds it.
//!
//! The root is the latest signed checkpoint's: at its size the tree's root
//! must be it, at another size the tree's root there must be consistent
//! with it (a consistency proof, checked too). Before any checkpoint is
//! signed, or past a tree cut back below the latest one, it is the tree's
//! own root.

use std::cell::RefCell;

use auditlog_proof::merkle::{consistency_proof, inclusion_proof};
use auditlog_proof::{Hash, Nodes, leaf_hash, node_hash, verify_consistency, verify_inclusion};

use super::TreeError;
use super::builder::stored_line;
use super::check::rebuild_advice;
use super::levels::Levels;
use crate::store::Store;

/// The latest signed checkpoint's tree size and root, if there is one.
type Signed = Option<(u64, Hash)>;

/// An inclusion proof that verifies: its hashes, the root of its tree size
/// (the signed one at the signed size) and the leaf the tree holds.
pub(crate) struct Inclusion {
    pub(crate) proof: Vec<Hash>,
    pub(crate) root: Hash,
    pub(crate) leaf: Hash,
}

/// The level files, noting every entry read: a proof that does not verify
/// is traced to them.
struct Recorder<'a> {
    levels: &'a Levels,
    read: RefCell<Vec<(u32, u64)>>,
}

impl Nodes for Recorder<'_> {
    type Error = std::io::Error;
    fn node(&self, level: u32, index: u64) -> std::io::Result<Hash> {
        self.read.borrow_mut().push((level, index));
        self.levels.read(level, index)
    }
}

/// Why a proof built is not served.
enum Refused {
    /// It does not verify: why, and whether to look for the damaged entry
    /// among those it read (not when the record changed and the tree's leaf
    /// is the one signed).
    Fails {
        why: String,
        locate: bool,
    },
    Tree(TreeError),
}

impl Refused {
    fn fails(why: String) -> Refused {
        Refused::Fails { why, locate: true }
    }
}

impl From<std::io::Error> for Refused {
    fn from(e: std::io::Error) -> Refused {
        Refused::Tree(TreeError::Io(e))
    }
}

/// The root a proof in the tree of `size` is checked against, in words.
fn against(size: u64, signed: Signed) -> String {
    match signed {
        Some((l, _)) if l == size => format!("the latest signed checkpoint's root (tree size {l})"),
        Some((l, _)) => format!(
            "the tree's root at size {size}, consistent with the latest signed checkpoint (tree \
             size {l})"
        ),
        None => format!("the tree's root at size {size} (no checkpoint is signed yet)"),
    }
}

/// The tree's root at `size`, checked against the latest signed checkpoint.
fn vouched_root(r: &Recorder<'_>, size: u64, signed: Signed) -> Result<Hash, Refused> {
    let root = auditlog_proof::merkle::root(r, size)?;
    let Some((l, signed_root)) = signed else {
        return Ok(root);
    };
    if size == l {
        if root != signed_root {
            return Err(Refused::fails(format!(
                "the tree's root at size {l}, read from its files, is not the latest signed \
                 checkpoint's"
            )));
        }
        return Ok(root);
    }
    let (first, second, first_root, second_root) = if size < l {
        (size, l, root, signed_root)
    } else {
        (l, size, signed_root, root)
    };
    let proof = consistency_proof(r, first, second)?
        .map_err(|_| Refused::Tree(TreeError::Order { first, second }))?;
    verify_consistency(first, second, &first_root, &second_root, &proof).map_err(|e| {
        Refused::fails(format!(
            "the tree's root at size {size}, read from its files, is not consistent with the \
             latest signed checkpoint (tree size {l}): {e}"
        ))
    })?;
    Ok(root)
}

/// The first entry (in seq order) under entry `index` of `level` that is
/// damaged, if that one disagrees with what is below it: a leaf with its
/// record's hash (`record`; `None` when the log no longer holds it, which
/// cannot be told), a node with the hash of its two children. A node that
/// disagrees with its children and has no damaged child is the damaged
/// one. At most `budget` entries are looked at.
fn damaged_under(
    levels: &Levels,
    level: u32,
    index: u64,
    record: &dyn Fn(u64) -> Option<Hash>,
    budget: &mut u32,
) -> std::io::Result<Option<(u32, u64)>> {
    if *budget == 0 {
        return Ok(None);
    }
    *budget -= 1;
    let held = levels.read(level, index)?;
    if level == 0 {
        return Ok(record(index + 1).filter(|r| *r != held).map(|_| (0, index)));
    }
    let left = levels.read(level - 1, 2 * index)?;
    let right = levels.read(level - 1, 2 * index + 1)?;
    if node_hash(&left, &right) == held {
        return Ok(None);
    }
    for child in [2 * index, 2 * index + 1] {
        if let Some(found) = damaged_under(levels, level - 1, child, record, budget)? {
            return Ok(Some(found));
        }
    }
    Ok(Some((level, index)))
}

/// The entry `index` of `level` in words: the hash of which seqs, where.
fn entry(level: u32, index: u64) -> String {
    let (first, last) = ((index << level) + 1, (index + 1) << level);
    let seqs = match first == last {
        true => format!("seq {first}"),
        false => format!("seqs {first} to {last}"),
    };
    format!("the tree's hash of {seqs} (entry {index} of tree/level-{level:02})")
}

impl Store {
    /// The inclusion proof of `seq` in the tree of `size`, that tree's root
    /// and the leaf the tree holds for `seq`, checked against `signed`
    /// before they are served: the proof leads from the record's leaf hash
    /// (its stored `line`, when the log holds it; else the tree's leaf) to
    /// the root, and the tree's leaf is the record's. Blocking.
    pub(crate) fn checked_inclusion(
        &self,
        seq: u64,
        size: u64,
        line: Option<&[u8]>,
        signed: Signed,
    ) -> Result<Inclusion, TreeError> {
        if seq == 0 || seq > size {
            return Err(TreeError::NotInTree { seq, size });
        }
        let record = line.map(leaf_hash);
        self.checked(size, signed, |r, signed| {
            let proof = inclusion_proof(r, seq - 1, size)?
                .map_err(|_| Refused::Tree(TreeError::NotInTree { seq, size }))?;
            let root = vouched_root(r, size, signed)?;
            let leaf = r.node(0, seq - 1)?;
            if verify_inclusion(seq - 1, size, &record.unwrap_or(leaf), &proof, &root).is_err() {
                // The tree's own leaf leads there: the tree is as signed,
                // and the record is what changed.
                if record.is_some() && verify_inclusion(seq - 1, size, &leaf, &proof, &root).is_ok()
                {
                    return Err(Refused::Fails {
                        why: format!(
                            "seq {seq} is not the record the tree holds for it, whose leaf leads \
                             to {}: the record was changed after it was written (its HMAC \
                             signature checks out, so by someone holding the key); run \
                             VerifyIntegrity",
                            against(size, signed)
                        ),
                        locate: false,
                    });
                }
                return Err(Refused::fails(format!(
                    "the inclusion proof of seq {seq} in the tree of size {size}, built from \
                     them, does not lead to {}",
                    against(size, signed)
                )));
            }
            if record.is_some_and(|record| record != leaf) {
                return Err(Refused::fails(format!(
                    "it would carry the leaf hash the tree holds for seq {seq}"
                )));
            }
            Ok(Inclusion { proof, root, leaf })
        })
    }

    /// The consistency proof between the trees of `first` and `second`,
    /// checked against `signed` before it is served: it verifies between
    /// the two roots, each the signed one or consistent with it. Blocking.
    pub(crate) fn checked_consistency(
        &self,
        first: u64,
        second: u64,
        signed: Signed,
    ) -> Result<Vec<Hash>, TreeError> {
        if first > second {
            return Err(TreeError::Order { first, second });
        }
        self.checked(second, signed, |r, signed| {
            let proof = consistency_proof(r, first, second)?
                .map_err(|_| Refused::Tree(TreeError::Order { first, second }))?;
            let first_root = vouched_root(r, first, signed)?;
            let second_root = vouched_root(r, second, signed)?;
            verify_consistency(first, second, &first_root, &second_root, &proof).map_err(|e| {
                Refused::fails(format!(
                    "the consistency proof between tree sizes {first} and {second}, built from \
                     them, does not verify between {} and {} ({e})",
                    against(first, signed),
                    against(second, signed)
                ))
            })?;
            Ok(proof)
        })
    }

    /// Runs `build` over the tree's files (holding at least `size` leaves,
    /// and the signed size when the tree reaches it); a proof that does not
    /// verify becomes [`TreeError::Damaged`], naming the damaged entry
    /// found among those it read.
    fn checked<R>(
        &self,
        size: u64,
        signed: Signed,
        build: impl FnOnce(&Recorder<'_>, Signed) -> Result<R, Refused>,
    ) -> Result<R, TreeError> {
        let tree = &self.shared.tree;
        // A checkpoint past the tree (cut back at start, and not regrown
        // yet) cannot be checked against until it is.
        let signed = signed.filter(|(l, _)| *l <= tree.size());
        let need = size.max(signed.map_or(0, |(l, _)| l));
        tree.with(need, |reader| {
            let recorder = Recorder {
                levels: reader.0,
                read: RefCell::new(Vec::new()),
            };
            let refused = match build(&recorder, signed) {
                Ok(built) => return Ok(built),
                Err(refused) => refused,
            };
            let read = recorder.read.take();
            let message = match refused {
                Refused::Tree(TreeError::Io(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    let Some(&(level, index)) = read.last() else {
                        return Err(TreeError::Io(e));
                    };
                    format!(
                        "the Merkle tree's files are damaged, so this proof is not served: {} \
                         cannot be read ({e}): the file was cut. The records are not affected, \
                         and {}",
                        entry(level, index),
                        rebuild_advice(&self.shared, (index << level) + 1)
                    )
                }
                Refused::Tree(e) => return Err(e),
                Refused::Fails { why, locate: false } => why,
                Refused::Fails { why, locate: true } => match self.locate(reader.0, read) {
                    Some((level, index)) => format!(
                        "the Merkle tree's files are damaged, so this proof is not served: {why}; \
                         {} is not the hash of {}. The records are not affected, and {}; \
                         VerifyIntegrity reports the first place where the tree's files and the \
                         records differ",
                        entry(level, index),
                        if level == 0 {
                            "its record"
                        } else {
                            "the two hashes below it"
                        },
                        rebuild_advice(&self.shared, (index << level) + 1)
                    ),
                    None => format!(
                        "this proof is not served: {why}; none of the tree's hashes it read \
                         differs from the records or from the hashes below it, so the tree, or \
                         the log, changed after the latest checkpoint was signed: run \
                         VerifyIntegrity"
                    ),
                },
            };
            tracing::error!(error = %message, "refused a proof the Merkle tree's files do not vouch for");
            Err(TreeError::Damaged(message))
        })
    }

    /// The first damaged entry (in seq order) at or under those a proof
    /// `read`.
    fn locate(&self, levels: &Levels, mut read: Vec<(u32, u64)>) -> Option<(u32, u64)> {
        read.sort_unstable();
        read.dedup();
        let record = |seq: u64| {
            stored_line(&self.shared, seq)
                .ok()
                .flatten()
                .map(|line| leaf_hash(&line))
        };
        let mut budget = 256;
        let mut first: Option<(u32, u64)> = None;
        for (level, index) in read {
            if let Ok(Some(found)) = damaged_under(levels, level, index, &record, &mut budget)
                && first.is_none_or(|(l, i)| (found.1 << found.0, found.0) < (i << l, l))
            {
                first = Some(found);
            }
        }
        first
    }
}
