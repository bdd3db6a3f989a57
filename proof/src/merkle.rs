//! RFC 6962 Merkle tree hashing (§2.1), its inclusion proofs (§2.1.1) and
//! consistency proofs (§2.1.2), and their verification as RFC 9162 gives it
//! (§2.1.3.2 and §2.1.4.2).
//!
//! - leaf hash = SHA-256(0x00 ‖ leaf bytes);
//! - node hash = SHA-256(0x01 ‖ left ‖ right);
//! - the root of `n > 1` leaves splits them at `k`, the largest power of two
//!   smaller than `n`: the left subtree holds leaves `[0, k)`, the right one
//!   `[k, n)`; the root of no leaves is SHA-256 of the empty string.
//!
//! Proofs are built from a [`Nodes`] source that gives the hash of any
//! *complete* subtree: `2^level` leaves starting at a multiple of
//! `2^level`. An incomplete subtree (the right edge of a tree whose size is
//! not a power of two) is hashed from the complete ones it splits into, so
//! a proof needs O(log n) nodes from the source.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf's, a node's or a root.
pub type Hash = [u8; 32];

/// Why a proof cannot be built, or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {first} is larger than tree size {second}")]
    SizesOutOfOrder { first: u64, second: u64 },
    #[error("the proof has {got} hashes; a proof for these sizes has {want}")]
    WrongLength { got: usize, want: usize },
    #[error("the proof does not lead to the root hash given: {0}")]
    Mismatch(&'static str),
}

/// Where a proof's hashes come from: the hash of the complete subtree of
/// `2^level` leaves starting at leaf `index << level`.
pub trait Nodes {
    type Error;
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The hash of one leaf.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// The hash of an interior node from its children's.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of a tree with no leaves: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (for `n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The root of `leaves` (leaf hashes), computed in memory.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The hash of the subtree of leaves `[start, end)` of any tree holding
/// them, where `start` is a multiple of the largest power of two not above
/// `end - start` (as every subtree of the RFC's shape is).
pub fn subtree<N: Nodes>(nodes: &N, start: u64, end: u64) -> Result<Hash, N::Error> {
    let n = end - start;
    if n.is_power_of_two() {
        let level = n.trailing_zeros();
        return nodes.node(level, start >> level);
    }
    let k = split(n);
    let left = subtree(nodes, start, start + k)?;
    let right = subtree(nodes, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the first `size` leaves.
pub fn root<N: Nodes>(nodes: &N, size: u64) -> Result<Hash, N::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree(nodes, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of the first `size`
/// leaves (RFC 6962 §2.1.1), the sibling nearest the leaf first.
pub fn inclusion_proof<N: Nodes>(
    nodes: &N,
    index: u64,
    size: u64,
) -> Result<Result<Vec<Hash>, ProofError>, N::Error> {
    if index >= size {
        return Ok(Err(ProofError::IndexOutOfRange { index, size }));
    }
    let mut path = Vec::new();
    let (mut start, mut end) = (0, size);
    // Walk down from the root, noting each sibling; the proof lists them
    // from the leaf up.
    while end - start > 1 {
        let k = split(end - start);
        if index < start + k {
            path.push(subtree(nodes, start + k, end)?);
            end = start + k;
        } else {
            path.push(subtree(nodes, start, start + k)?);
            start += k;
        }
    }
    path.reverse();
    Ok(Ok(path))
}

/// The consistency proof between the trees of the first `first` and the
/// first `second` leaves (RFC 6962 §2.1.2). Empty when `first` is 0 or
/// equals `second`.
pub fn consistency_proof<N: Nodes>(
    nodes: &N,
    first: u64,
    second: u64,
) -> Result<Result<Vec<Hash>, ProofError>, N::Error> {
    if first > second {
        return Ok(Err(ProofError::SizesOutOfOrder { first, second }));
    }
    let mut path = Vec::new();
    if first == 0 || first == second {
        return Ok(Ok(path));
    }
    // SUBPROOF(m, D[start:end], whole), unrolled: each step notes the
    // subtree it does not descend into; the proof lists them bottom up.
    let (mut m, mut start, mut end, mut whole) = (first, 0, second, true);
    while m != end - start {
        let k = split(end - start);
        if m <= k {
            path.push(subtree(nodes, start + k, end)?);
            end = start + k;
        } else {
            path.push(subtree(nodes, start, start + k)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    if !whole {
        path.push(subtree(nodes, start, end)?);
    }
    path.reverse();
    Ok(Ok(path))
}

/// The root an inclusion proof leads to from `leaf` (RFC 9162 §2.1.3.2).
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: inclusion_len(index, size),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: inclusion_len(index, size),
        });
    }
    Ok(r)
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves whose
/// root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion(index, size, leaf, proof)? != *root {
        return Err(ProofError::Mismatch(
            "the record is not at this index in the tree the root names",
        ));
    }
    Ok(())
}

/// How many hashes the inclusion proof of `index` in `size` has.
fn inclusion_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    // `inner` is 64 for a size past 2^63: nothing is left above it.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Checks that the tree of `second` leaves with root `second_root` extends
/// the tree of `first` leaves with root `first_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    // RFC 6962's root of no leaves is SHA-256 of nothing: a "tree of size
    // 0" with another root commits to nothing and would seem to be extended
    // by any tree at all.
    if first == 0 && *first_root != empty_root() {
        return Err(ProofError::Mismatch(
            "a tree of size 0 whose root is not the empty tree's (SHA-256 of nothing)",
        ));
    }
    if first == second || first == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        if first == second && first_root != second_root {
            return Err(ProofError::Mismatch(
                "two different roots for the same tree size",
            ));
        }
        return Ok(());
    }
    let Some((head, rest)) = proof.split_first() else {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    };
    // With `first` a power of two, the first tree is a complete subtree of
    // the second, and its root starts the path.
    let (start, rest) = if first.is_power_of_two() {
        (first_root, proof)
    } else {
        (head, rest)
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::Mismatch("the proof is longer than the tree"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::Mismatch("the proof is shorter than the tree"));
    }
    if fr != *first_root {
        return Err(ProofError::Mismatch(
            "the older tree is not a prefix of the newer one",
        ));
    }
    if sr != *second_root {
        return Err(ProofError::Mismatch(
            "the proof does not lead to the newer tree's root",
        ));
    }
    Ok(())
}

/// Leaves `[begin, end)` of a tree, kept in O(log n) memory as the hashes of
/// the complete subtrees they split into (the largest such subtrees, left to
/// right): the "compact range" of transparency-dev's tlog code. Leaves are
/// pushed one at a time, and ranges that meet are joined, so the parts of a
/// long stream of leaves can be hashed apart (on several threads) and then
/// put together. A range from leaf 0 has the tree's root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    begin: u64,
    end: u64,
    /// (level, hash) of each complete subtree, left to right.
    nodes: Vec<(u32, Hash)>,
}

impl CompactRange {
    /// The empty range at leaf `begin`.
    pub fn new(begin: u64) -> CompactRange {
        CompactRange {
            begin,
            end: begin,
            nodes: Vec::new(),
        }
    }

    /// The first leaf in the range.
    pub fn begin(&self) -> u64 {
        self.begin
    }

    /// The leaf after the last one in the range: where the next one goes.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Adds the leaf hash at index [`end`](Self::end).
    pub fn push(&mut self, leaf: Hash) {
        self.push_node(0, leaf, &mut |_, _, _| {});
    }

    /// [`push`](Self::push), calling `joined(level, index, hash)` for each
    /// complete subtree the leaf completes, bottom up: the node of `2^level`
    /// leaves from leaf `index << level`, as [`Nodes`] names it (level 1 and
    /// up). Pushed and appended with [`append_seen`](Self::append_seen),
    /// however the leaves were split into ranges, every complete subtree of
    /// the leaves is hashed, and seen, exactly once: a caller can check a
    /// stored tree's nodes against them with no hashing of its own.
    pub fn push_seen(&mut self, leaf: Hash, joined: &mut impl FnMut(u32, u64, &Hash)) {
        self.push_node(0, leaf, joined);
    }

    /// Adds the complete subtree of `2^level` leaves starting at `end`,
    /// joining it with its left sibling while the range holds that whole.
    fn push_node(
        &mut self,
        mut level: u32,
        mut hash: Hash,
        joined: &mut impl FnMut(u32, u64, &Hash),
    ) {
        let mut index = self.end >> level;
        self.end += 1 << level;
        // A right child (odd index) whose sibling is in the range: that
        // sibling is the last node, at the same level (the range is made of
        // the largest subtrees, and the parent was not in it yet).
        while index % 2 == 1 {
            match self.nodes.last() {
                Some(&(l, left)) if l == level => {
                    self.nodes.pop();
                    hash = node_hash(&left, &hash);
                    level += 1;
                    index /= 2;
                    joined(level, index, &hash);
                }
                _ => break,
            }
        }
        self.nodes.push((level, hash));
    }

    /// Appends `other`, which must begin where this range ends; `Err` with
    /// `other` given back when it does not.
    pub fn append(&mut self, other: CompactRange) -> Result<(), CompactRange> {
        self.append_seen(other, &mut |_, _, _| {})
    }

    /// [`append`](Self::append), calling `joined` for each complete subtree
    /// the two ranges complete together, as [`push_seen`](Self::push_seen)
    /// does.
    pub fn append_seen(
        &mut self,
        other: CompactRange,
        joined: &mut impl FnMut(u32, u64, &Hash),
    ) -> Result<(), CompactRange> {
        if other.begin != self.end {
            return Err(other);
        }
        for (level, hash) in other.nodes {
            self.push_node(level, hash, joined);
        }
        Ok(())
    }

    /// The root of the tree of leaves `[0, end)`: `None` for a range that
    /// does not begin at leaf 0.
    pub fn root(&self) -> Option<Hash> {
        if self.begin != 0 {
            return None;
        }
        let mut nodes = self.nodes.iter().rev();
        let Some(&(_, mut root)) = nodes.next() else {
            return Some(empty_root());
        };
        for (_, left) in nodes {
            root = node_hash(left, &root);
        }
        Some(root)
    }
}

/// A tree held in memory, for tests and small callers: every level of
/// complete subtrees.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Appends one leaf hash, completing the subtrees it closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(hash);
            let row = &self.levels[level];
            if row.len() % 2 == 1 {
                return;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }
}

impl Nodes for MemoryTree {
    type Error = std::convert::Infallible;
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        // Callers only ask for subtrees inside the tree.
        Ok(self.levels[level as usize][index as usize])
    }
}

#[cfg(test)]
mod tests;
