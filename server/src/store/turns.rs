//! Verifications, one at a time and behind the writes: VerifyIntegrity
//! calls and the scheduled verification of the alerts alike.
//!
//! A verification reads and hashes the whole range it checks; several at once
//! compete with the writer for the disk and the CPU (8 in parallel on 273 k
//! events once raised Log's median tenfold). So one runs at a time, up to
//! `max_queued_verifications` calls wait for it, and one more is refused at
//! once (`StoreError::VerificationBusy`, RESOURCE_EXHAUSTED); the scheduled
//! verification waits for its turn without counting against that queue. Each runs on a thread of its own at the lowest
//! CPU priority (nice 19, that thread only), like the sealer: a priority once
//! lowered cannot be raised again without privileges, so a thread shared
//! with other work could not be used.
//!
//! A caller that gives up does not stop a verification that has started: it
//! keeps its turn until it ends, so the bound holds whatever callers do.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Checkpoint, Report, Store, StoreError};

/// The latest signed checkpoint's size and root, and the file it is in.
type TreeHead = (u64, auditlog_proof::Hash, &'static str);

/// The turns of the verifications.
#[derive(Debug, Clone)]
pub(crate) struct Verifications {
    /// The one running turn.
    running: Arc<Semaphore>,
    /// The running one and those waiting for it.
    admitted: Arc<Semaphore>,
    max_queued: usize,
}

impl Verifications {
    pub(crate) fn new(max_queued: usize) -> Verifications {
        Verifications {
            running: Arc::new(Semaphore::new(1)),
            admitted: Arc::new(Semaphore::new(1 + max_queued)),
            max_queued,
        }
    }

    /// Verifies `from_seq..=to_seq` of `store` once it is this call's turn,
    /// or refuses at once when too many are waiting. With `tree`, a clean
    /// report also checks the Merkle tree and the latest signed checkpoint
    /// (if any) against the log.
    pub(crate) async fn verify(
        &self,
        store: Arc<Store>,
        from_seq: u64,
        to_seq: u64,
        checkpoints: Vec<Checkpoint>,
        tree: Option<Option<TreeHead>>,
    ) -> Result<Report, StoreError> {
        let admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| StoreError::VerificationBusy {
                max_queued: self.max_queued,
            })?;
        self.run(Some(admitted), store, from_seq, to_seq, checkpoints, tree)
            .await
    }

    /// Verifies the whole log of `store` once it is its turn, however many
    /// calls wait: the scheduled verification, which must not be refused.
    pub(crate) async fn verify_scheduled(&self, store: Arc<Store>) -> Result<Report, StoreError> {
        self.run(None, store, 0, 0, Vec::new(), None).await
    }

    async fn run(
        &self,
        admitted: Option<OwnedSemaphorePermit>,
        store: Arc<Store>,
        from_seq: u64,
        to_seq: u64,
        checkpoints: Vec<Checkpoint>,
        tree: Option<Option<TreeHead>>,
    ) -> Result<Report, StoreError> {
        let running = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let (answer, report) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("verify".into())
            .spawn(move || {
                let turn: (Option<OwnedSemaphorePermit>, OwnedSemaphorePermit) =
                    (admitted, running);
                super::priority::background("verify");
                #[cfg(feature = "fault-injection")]
                hold_if_asked(store.dir());
                let report = store.verify_with_tree(from_seq, to_seq, &checkpoints, tree);
                drop(turn);
                let _ = answer.send(report);
            })
            .map_err(|e| {
                StoreError::Read(std::io::Error::other(format!(
                    "cannot start a verification thread: {e}"
                )))
            })?;
        report.await.map_err(|_| {
            StoreError::Read(std::io::Error::other(
                "the verification thread ended without a report",
            ))
        })?
    }
}

/// A test hook: while `<data_dir>/HOLD_VERIFICATION` exists, a verification
/// waits before it starts, marked by a file `VERIFYING.<thread id>` holding
/// nothing, so a test can see how many run at once and at what priority.
#[cfg(feature = "fault-injection")]
fn hold_if_asked(dir: &std::path::Path) {
    let hold = dir.join("HOLD_VERIFICATION");
    if !crate::faults::hooks_on() || !hold.exists() {
        return;
    }
    let tid = rustix::thread::gettid().as_raw_nonzero();
    let marker = dir.join(format!("VERIFYING.{tid}"));
    let _ = std::fs::write(&marker, b"");
    while hold.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(marker);
}
