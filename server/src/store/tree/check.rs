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
//!
//! The log is read once: the chain check's workers hash each line as a
//! leaf while they hold it ([`Leaves`]), each part of the log into compact
//! ranges of its own, joined here in seq order. What is compared (the
//! sizes, the head) is fixed before the log is read ([`Plan`]). Nothing here
//! is an error: what cannot be recomputed is a finding.

use std::sync::atomic::Ordering;

use auditlog_proof::{CompactRange, Hash, gap_leaf, leaf_hash};

use super::builder::{cut_through, purged_through};
use crate::store::chain::{Finding, FindingKind};
use crate::store::shared::Shared;

fn finding(seq: u64, file: &str, message: String) -> Finding {
    Finding {
        kind: FindingKind::TreeMismatch,
        seq,
        line: 0,
        file: file.to_owned(),
        message,
    }
}

/// What the check compares, fixed before the log is read: the tree and the
/// log go on growing while it is.
#[derive(Debug, Clone)]
pub(in crate::store) struct Plan {
    /// The latest signed checkpoint: its tree size and root, and the file
    /// it is kept in.
    latest: Option<(u64, Hash, String)>,
    tree_size: u64,
    /// The last seq the log must hold (acknowledged or indexed).
    head: u64,
    /// The last seq retention purged: only the tree has those.
    purged: u64,
    trouble: Option<String>,
}

impl Plan {
    pub(in crate::store) fn new(shared: &Shared, latest: Option<(u64, Hash, &str)>) -> Plan {
        // Seqs cut from the log up to the acknowledged head are reported as
        // cuts; the tree still holds them.
        let acknowledged = shared.head.lock().map_or(0, |h| h.seq);
        Plan {
            latest: latest.map(|(size, root, file)| (size, root, file.to_owned())),
            tree_size: shared.tree.size(),
            head: shared.indexed_seq.load(Ordering::Acquire).max(acknowledged),
            purged: purged_through(shared),
            trouble: shared.tree.trouble(),
        }
    }

    fn latest_size(&self) -> u64 {
        self.latest.as_ref().map_or(0, |l| l.0)
    }

    /// The last seq the recomputed tree reaches.
    fn upto(&self) -> u64 {
        self.latest_size().max(self.tree_size).min(self.head)
    }

    /// Where the leaves of the lines read go: the chain's workers fill one
    /// each.
    pub(in crate::store) fn leaves(&self) -> Leaves {
        Leaves {
            upto: self.upto(),
            sizes: [self.tree_size, self.latest_size()],
            runs: Vec::new(),
        }
    }
}

/// The leaves of the log's lines as verification reads them (in file order,
/// on several threads), so the tree is recomputed without reading the log a
/// second time: runs of consecutive seqs, each a compact range (O(log n)
/// hashes, whatever its length) with its prefixes that end at a tree size
/// the check needs the root of.
#[derive(Debug, Default)]
pub(in crate::store) struct Leaves {
    /// Seqs past it are not wanted.
    upto: u64,
    /// The tree sizes whose roots are compared (the tree's, the latest
    /// checkpoint's).
    sizes: [u64; 2],
    runs: Vec<Run>,
}

#[derive(Debug)]
struct Run {
    leaves: CompactRange,
    prefixes: Vec<CompactRange>,
}

impl Leaves {
    /// The leaves of this part of the log, to be read after `self`'s.
    pub(in crate::store) fn part(&self) -> Leaves {
        Leaves {
            upto: self.upto,
            sizes: self.sizes,
            runs: Vec::new(),
        }
    }

    /// Takes `line`, the line of `seq` as stored (valid MAC or not: the
    /// chain check reports those), as the next leaf.
    pub(in crate::store) fn line(&mut self, seq: u64, line: &[u8]) {
        let Some(index) = seq.checked_sub(1).filter(|_| seq <= self.upto) else {
            return;
        };
        if self.runs.last().is_none_or(|r| r.leaves.end() != index) {
            self.runs.push(Run {
                leaves: CompactRange::new(index),
                prefixes: Vec::new(),
            });
        }
        if let Some(run) = self.runs.last_mut() {
            run.leaves.push(leaf_hash(line));
            if self.sizes.contains(&run.leaves.end()) {
                run.prefixes.push(run.leaves.clone());
            }
        }
    }

    /// Adds the leaves of the part of the log read after these.
    pub(in crate::store) fn extend(&mut self, later: Leaves) {
        self.runs.extend(later.runs);
    }
}

/// The roots recomputed at the sizes compared.
#[derive(Default)]
struct Found {
    tree_root: Option<Hash>,
    latest_root: Option<Hash>,
}

impl Found {
    fn note(&mut self, plan: &Plan, range: &CompactRange) {
        if range.end() == plan.tree_size {
            self.tree_root = range.root();
        }
        if plan.latest.is_some() && range.end() == plan.latest_size() {
            self.latest_root = range.root();
        }
    }
}

/// The tree recomputed leaf by leaf, and its roots at the sizes compared.
struct Roots<'a> {
    plan: &'a Plan,
    tree: CompactRange,
    found: Found,
}

impl Roots<'_> {
    /// The leaves of seqs missing from the log, up to `through`: purged ones
    /// and those the chain check reports missing have the leaf the tree
    /// holds, a cut's seq the tree does not hold has its gap leaf, as the
    /// builder appends them.
    fn fill(&mut self, shared: &Shared, through: u64) -> Result<(), Finding> {
        while self.tree.end() < through {
            let seq = self.tree.end() + 1;
            let leaf = if seq <= self.plan.tree_size || seq <= self.plan.purged {
                shared.tree.leaf(seq).map_err(|e| e.to_string())
            } else if cut_through(shared, seq).is_some() {
                Ok(gap_leaf(seq))
            } else {
                Err("not a cut the server recorded".into())
            };
            match leaf {
                Ok(leaf) => self.tree.push(leaf),
                Err(why) if seq <= self.plan.purged => {
                    return Err(finding(
                        seq,
                        "tree",
                        format!(
                            "seq {seq} was purged and the tree does not hold its hash ({why}); \
                             the tree's root cannot be recomputed"
                        ),
                    ));
                }
                Err(why) => {
                    return Err(finding(
                        seq,
                        "tree",
                        format!(
                            "seq {seq} is missing from the log and the tree holds no leaf for it \
                             ({why}), so the tree cannot be recomputed past {}",
                            seq - 1
                        ),
                    ));
                }
            }
            self.found.note(self.plan, &self.tree);
        }
        Ok(())
    }

    /// Appends a run of leaves read from the log.
    fn append(&mut self, run: Run) -> Result<(), Finding> {
        let seq = run.leaves.begin() + 1;
        for prefix in run.prefixes {
            let mut upto = self.tree.clone();
            if upto.append(prefix).is_ok() {
                self.found.note(self.plan, &upto);
            }
        }
        self.tree.append(run.leaves).map_err(|_| {
            finding(
                seq,
                "tree",
                format!(
                    "the log holds seq {seq} again after seq {}: the tree cannot be recomputed",
                    self.tree.end()
                ),
            )
        })?;
        self.found.note(self.plan, &self.tree);
        Ok(())
    }
}

/// What disagrees among the log (its `leaves`, as verification read them),
/// the tree and the latest signed checkpoint, as `plan` found them before
/// the log was read.
pub(in crate::store) fn check(shared: &Shared, plan: &Plan, leaves: Leaves) -> Vec<Finding> {
    let tree = &shared.tree;
    let mut findings = Vec::new();
    if let Some(why) = &plan.trouble {
        findings.push(finding(
            plan.tree_size + 1,
            "tree",
            format!(
                "the Merkle tree stopped growing at {} records: {why}",
                plan.tree_size
            ),
        ));
    }
    let head = plan.head;
    if let Some((size, _, file)) = &plan.latest
        && *size > head
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
    let tree_size = plan.tree_size;
    let mut roots = Roots {
        plan,
        tree: CompactRange::new(0),
        found: Found::default(),
    };
    let recomputed = leaves
        .runs
        .into_iter()
        .try_for_each(|run| {
            roots.fill(shared, run.leaves.begin())?;
            roots.append(run)
        })
        .and_then(|()| roots.fill(shared, plan.upto()));
    if let Err(f) = recomputed {
        findings.push(f);
        return findings;
    }
    let Found {
        tree_root,
        latest_root,
    } = roots.found;
    let latest = plan
        .latest
        .as_ref()
        .map(|(size, root, file)| (*size, *root, file.as_str()));
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
    findings
}
