//! The tree checked against the log, for VerifyIntegrity: the root is
//! recomputed from every line in the log (lines hashed as they are, valid
//! MAC or not; the chain check reports those) and compared with the tree's
//! files and with the latest signed checkpoint. A purged prefix is taken
//! from the tree's leaves, the only copy left of it, and so is a seq missing
//! from the log (which the chain check reports), or, for a cut's seq the
//! tree does not hold, its gap leaf.
//!
//! The HMAC chain cannot tell a rewrite by someone holding the key; a
//! checkpoint signed before the rewrite does, which is what this reports.
//! VerifyIntegrity runs it over a whole log whose chain checked out clean
//! but for missing seqs (a cut, a gap): where the chain already locates
//! damage in a record, the report is not clean anyway.
//! Nothing here is an `Err` but a failure to read the index: a line that
//! cannot be read is a finding.

use std::sync::atomic::Ordering;

use auditlog_proof::{Hash, RootBuilder, gap_leaf};

use super::builder::{cut_through, leaf_hashes, purged_through};
use crate::store::chain::{Finding, FindingKind};
use crate::store::error::StoreError;
use crate::store::shared::Shared;
use crate::store::{Filter, Order};

/// Records read per batch.
const BATCH: usize = 4096;

fn finding(seq: u64, file: &str, message: String) -> Finding {
    Finding {
        kind: FindingKind::TreeMismatch,
        seq,
        line: 0,
        file: file.to_owned(),
        message,
    }
}

/// What disagrees among the log, the tree and the latest signed checkpoint
/// (`latest`: its tree size and root, and the file it is kept in).
pub(in crate::store) fn check(
    shared: &Shared,
    latest: Option<(u64, Hash, &str)>,
) -> Result<Vec<Finding>, StoreError> {
    let tree = &shared.tree;
    let mut findings = Vec::new();
    if let Some(why) = tree.trouble() {
        findings.push(finding(
            tree.size() + 1,
            "tree",
            format!(
                "the Merkle tree stopped growing at {} records: {why}",
                tree.size()
            ),
        ));
    }
    // Seqs cut from the log up to the acknowledged head are reported as
    // cuts; the tree still holds them.
    let acknowledged = shared.head.lock().map_or(0, |h| h.seq);
    let head = shared.indexed_seq.load(Ordering::Acquire).max(acknowledged);
    if let Some((size, _, file)) = latest
        && size > head
    {
        findings.push(finding(
            head + 1,
            file,
            format!(
                "the latest signed checkpoint covers {size} records but the log holds only \
                 {head}: records were cut from the end, or the data directory was rolled back \
                 to an older copy"
            ),
        ));
    }
    let tree_size = tree.size();
    let upto = latest.map_or(0, |l| l.0).max(tree_size).min(head);
    let mut roots = RootBuilder::default();
    let mut tree_root = None;
    let mut latest_root = None;
    let mut note = |roots: &RootBuilder| {
        if roots.size() == tree_size {
            tree_root = Some(roots.root());
        }
        if latest.is_some_and(|l| l.0 == roots.size()) {
            latest_root = Some(roots.root());
        }
    };
    // The purged prefix: only the tree has it.
    for seq in 1..=purged_through(shared).min(upto) {
        match tree.leaf(seq) {
            Ok(leaf) => roots.push(leaf),
            Err(e) => {
                findings.push(finding(
                    seq,
                    "tree",
                    format!(
                        "seq {seq} was purged and the tree does not hold its hash ({e}); the \
                         tree's root cannot be recomputed"
                    ),
                ));
                return Ok(findings);
            }
        }
        note(&roots);
    }
    while roots.size() < upto {
        let after = roots.size();
        let (metas, _) = shared.select_page(
            &Filter::default(),
            Order::OldestFirst,
            Some(after),
            upto,
            BATCH,
        );
        // Missing seqs (the chain check reports them): the leaf the tree
        // holds, else a cut's gap leaf, as the builder appends them.
        let next = metas.first().map_or(upto + 1, |m| m.seq);
        if next > after + 1 {
            for seq in after + 1..next.min(after + 1 + BATCH as u64) {
                let leaf = if seq <= tree_size {
                    tree.leaf(seq).map_err(|e| e.to_string())
                } else if cut_through(shared, seq).is_some() {
                    Ok(gap_leaf(seq))
                } else {
                    Err("not a cut the server recorded".into())
                };
                match leaf {
                    Ok(leaf) => roots.push(leaf),
                    Err(why) => {
                        findings.push(finding(
                            seq,
                            "tree",
                            format!(
                                "seq {seq} is missing from the log and the tree holds no leaf \
                                 for it ({why}), so the tree cannot be recomputed past {after}"
                            ),
                        ));
                        return Ok(findings);
                    }
                }
                note(&roots);
            }
            continue;
        }
        let contiguous = metas
            .iter()
            .zip(after + 1..)
            .take_while(|(m, seq)| m.seq == *seq)
            .count();
        let leaves = match leaf_hashes(shared, &metas[..contiguous], false) {
            Ok(leaves) => leaves,
            Err(e) => {
                findings.push(finding(
                    after + 1,
                    "tree",
                    format!("the tree cannot be recomputed past {after}: {e}"),
                ));
                return Ok(findings);
            }
        };
        for leaf in leaves {
            roots.push(leaf);
            note(&roots);
        }
    }
    // A tree that still agrees with the signed checkpoint was built from the
    // log as it was: the log changed since, which the checkpoint's finding
    // below says. Otherwise the tree's files themselves were changed.
    let tree_signed = latest.is_some_and(|(size, root, _)| tree.root(size).ok() == Some(root));
    if let Some(recomputed) = tree_root
        && tree_size > 0
        && !tree_signed
        && tree.root(tree_size).ok() != Some(recomputed)
    {
        findings.push(finding(
            tree_size,
            "tree",
            format!(
                "the Merkle tree's files disagree with the log's first {tree_size} records: they \
                 were changed; stop the server and delete the data directory's tree/ to rebuild \
                 it"
            ),
        ));
    }
    if let (Some((size, root, file)), Some(recomputed)) = (latest, latest_root)
        && root != recomputed
    {
        findings.push(finding(
            size,
            file,
            format!(
                "the log's first {size} records no longer hash to the root of the latest signed \
                 checkpoint (tree size {size}): records were changed, inserted or removed after \
                 it was signed, even if their HMAC signatures check out"
            ),
        ));
    }
    Ok(findings)
}
