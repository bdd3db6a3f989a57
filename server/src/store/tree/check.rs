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
//! The tree's files are compared too, hash by hash: every leaf with the
//! hash of its line, every node above with the hash the recomputation
//! makes of the same leaves. A root is read from a few nodes (and a proof
//! from a few more), so a changed hash elsewhere leaves the roots as they
//! were and breaks only the proofs that read it; this finds it, and names
//! the first seq where the tree and the records part ([`Damage`]).
//!
//! The log is read once: the chain check's workers hash each line as a
//! leaf while they hold it ([`Leaves`]), each part of the log into compact
//! ranges of its own, joined here in seq order. The nodes are compared as
//! the compact ranges make them, with no hashing of their own (the level
//! files read in order, a window at a time: 32 bytes a leaf, about as much
//! again for the levels above). What is compared (the sizes, the head, the
//! tree's files) is fixed before the log is read ([`Plan`]). Nothing here
//! is an error: what cannot be recomputed is a finding.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use auditlog_proof::merkle::root_from_inclusion;
use auditlog_proof::{CompactRange, Hash, gap_leaf, leaf_hash};

use super::builder::{cut_through, purged_through};
use crate::store::chain::{Finding, FindingKind};
use crate::store::shared::Shared;
use stored::{Damage, Stored, compare};

mod stored;

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
    /// The tree's level files as the server has them open (`None`: not
    /// open yet), to compare hash by hash.
    files: Option<Result<Arc<Vec<File>>, String>>,
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
            files: shared
                .tree
                .handles()
                .map(|h| h.map(Arc::new).map_err(|e| e.to_string())),
        }
    }

    /// The tree's files to compare, read through windows of their own.
    fn stored(&self) -> Option<Stored> {
        match &self.files {
            Some(Ok(files)) => Some(Stored::new(Arc::clone(files), self.tree_size)),
            _ => None,
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
            stored: self.stored(),
            damage: None,
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
    /// The tree's files, compared with each leaf and node made; dropped
    /// once this part is read ([`Leaves::read`]).
    stored: Option<Stored>,
    /// The first place this part found them differ.
    damage: Option<Damage>,
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
            stored: self.stored.as_ref().map(Stored::fresh),
            damage: None,
        }
    }

    /// Takes `line`, the line of `seq` as stored (valid MAC or not: the
    /// chain check reports those), as the next leaf, and compares it, and
    /// every node it completes, with the tree's files.
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
        let Leaves {
            runs,
            stored,
            damage,
            sizes,
            ..
        } = self;
        if let Some(run) = runs.last_mut() {
            let leaf = leaf_hash(line);
            match stored {
                Some(stored) => {
                    compare(stored, damage, 0, index, &leaf);
                    run.leaves.push_seen(leaf, &mut |level, index, node| {
                        compare(stored, damage, level, index, node);
                    });
                }
                None => run.leaves.push(leaf),
            }
            if sizes.contains(&run.leaves.end()) {
                run.prefixes.push(run.leaves.clone());
            }
        }
    }

    /// This part of the log is read: lets go of its windows on the tree's
    /// files (what it found is kept).
    pub(in crate::store) fn read(&mut self) {
        self.stored = None;
    }

    /// Adds the leaves of the part of the log read after these.
    pub(in crate::store) fn extend(&mut self, later: Leaves) {
        self.runs.extend(later.runs);
        self.damage = match (self.damage.take(), later.damage) {
            (Some(a), Some(b)) => Some(if b.begin() < a.begin() { b } else { a }),
            (a, b) => a.or(b),
        };
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

/// The tree recomputed leaf by leaf, and its roots at the sizes compared;
/// the nodes made joining the parts (and over the seqs the log lacks)
/// compared with the tree's files, as the parts compared theirs.
struct Roots<'a> {
    plan: &'a Plan,
    tree: CompactRange,
    found: Found,
    stored: Option<Stored>,
    /// The first place the tree's files and the records part, the parts'
    /// included.
    damage: Option<Damage>,
}

impl Roots<'_> {
    /// Pushes `leaf` (taken from the tree, or a gap leaf), comparing the
    /// nodes it completes.
    fn push(&mut self, leaf: Hash) {
        let Roots {
            tree,
            stored,
            damage,
            ..
        } = self;
        match stored {
            Some(stored) => tree.push_seen(leaf, &mut |level, index, node| {
                compare(stored, damage, level, index, node);
            }),
            None => tree.push(leaf),
        }
    }
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
                Ok(leaf) => self.push(leaf),
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
        let Roots {
            tree,
            stored,
            damage,
            ..
        } = self;
        let appended = match stored {
            Some(stored) => tree.append_seen(run.leaves, &mut |level, index, node| {
                compare(stored, damage, level, index, node);
            }),
            None => tree.append(run.leaves),
        };
        appended.map_err(|_| {
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
    if let Some(Err(why)) = &plan.files {
        findings.push(finding(
            1,
            "tree",
            format!(
                "the Merkle tree's files cannot be read to compare them with the log ({why}); {}",
                rebuild_advice(shared, 1)
            ),
        ));
    }
    let tree_size = plan.tree_size;
    let Leaves { runs, damage, .. } = leaves;
    let mut roots = Roots {
        plan,
        tree: CompactRange::new(0),
        found: Found::default(),
        stored: plan.stored(),
        damage,
    };
    let recomputed = runs
        .into_iter()
        .try_for_each(|run| {
            roots.fill(shared, run.leaves.begin())?;
            roots.append(run)
        })
        .and_then(|()| roots.fill(shared, plan.upto()));
    // The first place the tree's files and the records part, and what it
    // says: the tree's files changed, or the record did.
    let mut changed_record = None;
    let mut tree_damaged = false;
    if let Some(damage) = &roots.damage {
        match judge(shared, plan, damage) {
            Judged::Tree(f) => {
                tree_damaged = true;
                findings.push(f);
            }
            Judged::Record(f) => findings.push(f),
            Judged::Signed(seq) => changed_record = Some(seq),
        }
    }
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
    // below says. Otherwise the tree's files themselves were changed (found
    // above hash by hash, when their handles could be had).
    let tree_signed = latest.is_some_and(|(size, root, _)| tree.root(size).ok() == Some(root));
    if let Some(recomputed) = tree_root
        && tree_size > 0
        && !tree_signed
        && !tree_damaged
        && tree.root(tree_size).ok() != Some(recomputed)
    {
        findings.push(finding(
            tree_size,
            "tree",
            format!(
                "the Merkle tree's files disagree with the log's first {tree_size} records: they \
                 were changed; {}",
                rebuild_advice(shared, 1)
            ),
        ));
    }
    if let (Some((size, root, file)), Some(recomputed)) = (latest, latest_root)
        && root != recomputed
    {
        let first = changed_record
            .take()
            .map(|seq| format!("; the first record that is not the one signed is seq {seq}"))
            .unwrap_or_default();
        findings.push(finding(
            size,
            file,
            format!(
                "the log's first {size} records no longer hash to the root of the latest signed \
                 checkpoint (tree size {size}): records were changed, inserted or removed after \
                 it was signed, even if their HMAC signatures check out{first}"
            ),
        ));
    }
    if let (Some(seq), Some((size, _, file))) = (changed_record, latest) {
        findings.push(finding(
            seq,
            file,
            format!(
                "seq {seq} is not the record the latest signed checkpoint (tree size {size}) \
                 holds, which the Merkle tree still has: it was changed after it was signed, \
                 even if its HMAC signature checks out"
            ),
        ));
    }
    findings
}

/// What the first place the tree's files and the records part says.
enum Judged {
    /// The tree's files were changed or damaged there.
    Tree(Finding),
    /// A record no longer hashes to the leaf the tree took for it, which
    /// the hashes above it were made from, past the latest signed
    /// checkpoint.
    Record(Finding),
    /// The same for a record the latest signed checkpoint covers: the
    /// tree's leaf is the one signed; the checkpoint's finding says it.
    Signed(u64),
}

fn judge(shared: &Shared, plan: &Plan, damage: &Damage) -> Judged {
    let (first, last) = damage.seqs();
    let file = format!("tree/level-{:02}", damage.level);
    let index = damage.index;
    let refused = "so the proofs that read it do not verify (the server refuses them with \
                   DATA_LOSS)";
    if let Some(why) = &damage.unreadable {
        return Judged::Tree(finding(
            first,
            &file,
            format!(
                "entry {index} of {file} (the hash of seqs {first} to {last}) cannot be read \
                 ({why}): the tree's files were cut or damaged, {refused}; {}",
                rebuild_advice(shared, first)
            ),
        ));
    }
    if damage.level > 0 {
        // Below it, the leaves of seqs the log no longer holds are the
        // tree's own: whether one of them or it changed cannot be told.
        let purged = purged_through(shared).min(last);
        let cut = shared.head.lock().ok().and_then(|h| {
            h.cuts
                .iter()
                .find(|c| c.first <= last && c.last >= first)
                .map(|c| (c.first.max(first), c.last.min(last)))
        });
        let unheld = match cut {
            _ if purged >= first => Some((first, purged, "purged by retention")),
            Some((from, to)) => Some((from, to, "cut from it")),
            None => None,
        };
        let message = match unheld {
            None => format!(
                "the Merkle tree's hash of seqs {first} to {last} (entry {index} of {file}) is \
                 not the hash of those records, though the tree's hashes below it are: {file} \
                 was changed or damaged there, {refused}; {}",
                rebuild_advice(shared, first)
            ),
            Some((from, to, why)) => format!(
                "the Merkle tree's hash of seqs {first} to {last} (entry {index} of {file}) is \
                 not the hash of the tree's hashes below it, which alone hold seqs {from} to \
                 {to} (the log no longer does: {why}): it or one of them was changed or \
                 damaged, {refused}; {}",
                rebuild_advice(shared, first)
            ),
        };
        return Judged::Tree(finding(first, &file, message));
    }
    // A leaf: either it or the record changed. The hashes above it were
    // made from the leaf the tree took: when they lead from the leaf it
    // holds to the latest signed root (past the signed size, to the tree's
    // own root), that leaf is the one taken, and the record changed since.
    let seq = first;
    let tree = &shared.tree;
    let leads = |size: u64, root: Option<Hash>| {
        let held = tree.leaf(seq)?;
        let proof = tree.inclusion(seq, size)?;
        let root = match root {
            Some(root) => root,
            None => tree.root(size)?,
        };
        Ok::<_, super::TreeError>(
            root_from_inclusion(seq - 1, size, &held, &proof).is_ok_and(|r| r == root),
        )
    };
    let signed = plan
        .latest
        .as_ref()
        .filter(|(size, _, _)| seq <= *size)
        .map(|(size, root, _)| (*size, *root));
    let taken = match signed {
        Some((size, root)) => leads(size, Some(root)),
        None => leads(plan.tree_size, None),
    };
    match (taken.unwrap_or(false), signed) {
        (true, Some(_)) => Judged::Signed(seq),
        (true, None) => Judged::Record(finding(
            seq,
            "tree",
            format!(
                "seq {seq} no longer hashes to the leaf the Merkle tree took for it, from which \
                 the tree's hashes above it were made: the record was rewritten after it was \
                 written (its HMAC signature checks out, so by someone holding the key), and no \
                 signed checkpoint covers it yet"
            ),
        )),
        (false, _) => Judged::Tree(finding(
            seq,
            &file,
            format!(
                "the Merkle tree's hash of seq {seq} (entry {index} of {file}) is not the hash of \
                 its record, and the tree's hashes above it were not made from it either: {file} \
                 was changed or damaged there, {refused}; {}",
                rebuild_advice(shared, seq)
            ),
        )),
    }
}

/// What rebuilds the tree's files from `seq` on, as the log now stands:
/// they are derived from the records, but only the tree still has the
/// hashes of purged seqs and of a cut's.
pub(super) fn rebuild_advice(shared: &Shared, seq: u64) -> String {
    let restore = "restore <data_dir>/tree/ from a backup (a restart does not repair it)";
    let purged = purged_through(shared);
    if seq <= purged {
        return format!(
            "retention purged seqs 1 to {purged}, whose hashes only the tree has, so it cannot \
             be rebuilt from the log: {restore}"
        );
    }
    let cut = shared.head.lock().ok().and_then(|h| {
        h.cuts
            .iter()
            .find(|c| c.last >= seq)
            .map(|c| (c.first, c.last))
    });
    if let Some((first, last)) = cut {
        return format!(
            "the log no longer holds seqs {first} to {last} (a cut), so a tree rebuilt from it \
             would have gap leaves there and no longer match the checkpoints signed over them: \
             {restore}"
        );
    }
    format!(
        "the tree is derived from the records: to rebuild it from seq {seq} on, stop the server, \
         cut the tree back to the seqs before it (`truncate -s {} <data_dir>/tree/level-00`) and \
         start it, which cuts the levels above to match and takes seq {seq} onwards from the log \
         again (a restart alone does not: it checks only the tree's last 256 leaves)",
        (seq - 1) * 32
    )
}
