//! The tree checked against the log, for VerifyIntegrity: the root is
//! recomputed from every line in the log (lines hashed as they are, valid
//! MAC or not; the chain check reports those) and compared with the tree's
//! files and with the latest signed checkpoint. A purged prefix is taken
//! from the tree's leaves, the only copy left of it.
//!
//! The HMAC chain cannot tell a rewrite by someone holding the key; a
//! checkpoint signed before the rewrite does, which is what this reports.
//! VerifyIntegrity runs it over a whole log whose chain checked out clean:
//! where the chain already locates damage, the report is not clean anyway.
//! Nothing here is an `Err` but a failure to read the index: a line that
//! cannot be read is a finding.

use std::sync::atomic::Ordering;

use auditlog_proof::{Hash, RootBuilder};

use super::builder::leaf_hashes;
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
    let head = shared.indexed_seq.load(Ordering::Acquire);
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
    let first = shared
        .index()
        .select(&Filter::default(), Order::OldestFirst, None, u64::MAX, 1);
    let first = first.first().map_or(head + 1, |m| m.seq);
    for seq in 1..first.min(upto + 1) {
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
        let contiguous = metas
            .iter()
            .zip(after + 1..)
            .take_while(|(m, seq)| m.seq == *seq)
            .count();
        if contiguous == 0 {
            // A gap: the chain check reports it; nothing more to recompute.
            findings.push(finding(
                after + 1,
                "tree",
                format!(
                    "seq {} is missing from the log, so the tree cannot be recomputed past {after}",
                    after + 1
                ),
            ));
            return Ok(findings);
        }
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
