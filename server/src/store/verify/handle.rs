//! The store handle's verification calls: [`Store::verify`], and with the
//! Merkle tree and the latest signed checkpoint checked from the same
//! reading of the log ([`Store::verify_with_tree`]).

use crate::store::chain::{FindingKind, Report};
use crate::store::{Checkpoint, Store, StoreError, tree};

impl Store {
    /// Re-reads every segment and checks every record, the chain across
    /// segments, the manifest, and each checkpoint. Blocking.
    pub fn verify(
        &self,
        from_seq: u64,
        to_seq: u64,
        checkpoints: &[Checkpoint],
    ) -> Result<Report, StoreError> {
        self.verify_with_tree(from_seq, to_seq, checkpoints, None)
    }

    /// [`verify`](Self::verify), and with `tree` (the latest signed
    /// checkpoint's size and root and the file it is in, if there is one),
    /// a report that finds nothing but the cuts a start found also checks
    /// the Merkle tree and that checkpoint against the log, from the same
    /// reading of it. Blocking.
    pub(crate) fn verify_with_tree(
        &self,
        from_seq: u64,
        to_seq: u64,
        checkpoints: &[Checkpoint],
        tree: Option<Option<(u64, auditlog_proof::Hash, &str)>>,
    ) -> Result<Report, StoreError> {
        let plan = tree.map(|latest| tree::Plan::new(&self.shared, latest));
        let (mut report, leaves) = super::verify(
            &self.shared,
            from_seq,
            to_seq,
            checkpoints,
            plan.as_ref().map(tree::Plan::leaves),
        )
        .map_err(|e| self.unverifiable(e))?;
        if let (Some(plan), Some(leaves)) = (plan, leaves)
            && self.cuts_only(&report)
        {
            let findings = tree::check(&self.shared, &plan, leaves);
            report.findings.extend(findings);
        }
        let whole = from_seq <= 1 && to_seq == 0;
        self.shared.metrics.integrity.verified(&report, whole);
        Ok(report)
    }

    /// Why verification could not run, said plainly where the cause is the
    /// data directory itself gone (deleted or moved under the server):
    /// verification lists it first, and that failed as "No such file or
    /// directory", INTERNAL, until 2026-12-06 (found by an outside attack).
    /// Anything else is as it came.
    fn unverifiable(&self, e: StoreError) -> StoreError {
        let dir = &self.shared.dir;
        match e {
            StoreError::Read(source)
                if source.kind() == std::io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(dir)
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
            {
                StoreError::DataDirGone {
                    dir: dir.display().to_string(),
                    source,
                }
            }
            e => e,
        }
    }

    /// Whether the report finds nothing but the cuts a start found: the
    /// tree goes on across them (its leaves of the cut seqs, or gap leaves),
    /// so it and the latest checkpoint are still checked, and a rewrite
    /// after a cut still shows.
    fn cuts_only(&self, report: &Report) -> bool {
        let cuts = self
            .shared
            .head
            .lock()
            .map(|h| h.cuts.clone())
            .unwrap_or_default();
        report.findings.iter().all(|f| match f.kind {
            FindingKind::Truncated => cuts.iter().any(|c| c.first == f.seq),
            // The first record after the cut, which follows the last before
            // it.
            FindingKind::SeqGap => cuts.iter().any(|c| c.last.checked_add(1) == Some(f.seq)),
            _ => false,
        })
    }

    /// The log against its Merkle tree and the latest signed checkpoint
    /// (`latest`: its tree size, root, and the file it is kept in): what
    /// disagrees, whatever else the log's chain shows. Blocking.
    #[cfg(test)]
    pub(crate) fn check_tree(
        &self,
        latest: Option<(u64, auditlog_proof::Hash, &str)>,
    ) -> Result<Vec<crate::store::chain::Finding>, StoreError> {
        let plan = tree::Plan::new(&self.shared, latest);
        let (_, leaves) = super::verify(&self.shared, 0, 0, &[], Some(plan.leaves()))?;
        Ok(tree::check(&self.shared, &plan, leaves.unwrap_or_default()))
    }
}
