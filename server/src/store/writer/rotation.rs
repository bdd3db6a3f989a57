//! The writer's rotation: sealing the active segment when asked, when it
//! is full (see `commit`), or when its first record is old enough, and
//! handing the sealed file to the sealer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Writer;
use crate::clock::now_micros;
use crate::store::error::StoreError;
use crate::store::sealer::{self, Job, SealError, Sealed};
use crate::store::segment::SegmentFile;
use crate::store::shared::{LOG_FILE, Poison};

/// How long after a failed seal by size or by age the writer tries again.
const SEAL_RETRY: Duration = Duration::from_secs(30);

impl Writer {
    /// What a failed seal leaves: the writer's idea of its file follows the
    /// disk. Unchanged, it writes on; with the new file in place but the
    /// directory not synced, it takes the new file and the store refuses
    /// writes (as after any failed fsync); with no `audit.log` at all, the
    /// store refuses writes until a restart finishes the seal.
    fn seal_failed(&mut self, failure: SealError) -> StoreError {
        match failure {
            SealError::Unchanged(e) => StoreError::Rotate(format!(
                "{e}; nothing changed: the log is still written to {LOG_FILE}; rotate again once \
                 the cause is fixed (a seal by size or age is tried again by itself)"
            )),
            SealError::Broken {
                sealed,
                error,
                undo,
            } => {
                let reason = format!(
                    "sealing renamed {LOG_FILE} to {sealed}, then could neither put a new \
                     {LOG_FILE} in place ({error}) nor rename {sealed} back ({undo})"
                );
                self.shared.poison_with(Poison::SealBroken(reason));
                self.shared.poison_error()
            }
            SealError::Unsynced {
                sealed,
                active,
                error,
            } => {
                self.file = Arc::new(active.file);
                self.len = 0;
                self.ahead = super::space::Ahead::at(0);
                self.shared.active_len.store(0, Ordering::Release);
                self.segment = self.shared.add_segment(SegmentFile::Plain {
                    name: LOG_FILE.to_owned(),
                    file: active.reader,
                });
                self.segment_first = 0;
                self.segment_first_timestamp = None;
                let reason =
                    format!("fsync of the data directory failed after sealing {sealed} ({error})");
                self.shared.poison_with(Poison::Fsync(reason));
                self.shared.poison_error()
            }
        }
    }

    /// How long until the active segment is due to be sealed by age (zero:
    /// now); `None` when it never is. A poisoned store seals nothing: the
    /// page cache it would compress from can no longer be trusted.
    pub(super) fn due_in(&self) -> Option<Duration> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return None;
        }
        let due = age_due_in(
            self.segment_first_timestamp,
            self.max_segment_age,
            now_micros(),
        )?;
        let retry = self.seal_retry_at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        });
        Some(due.max(retry))
    }

    /// Seals the active segment if its first record is old enough.
    pub(super) fn seal_if_due(&mut self) {
        if self.due_in() == Some(Duration::ZERO) {
            self.seal_on_schedule("age");
        }
    }

    /// Seals the active segment if it is full, unless a seal failed less
    /// than [`SEAL_RETRY`] ago.
    pub(super) fn seal_if_full(&mut self) {
        let waiting = self.seal_retry_at.is_some_and(|at| Instant::now() < at);
        if self.len >= self.max_segment_bytes
            && !waiting
            && !self.shared.poisoned.load(Ordering::Acquire)
        {
            self.seal_on_schedule("size");
        }
    }

    /// An automatic seal; after a failure, the next is [`SEAL_RETRY`] later.
    fn seal_on_schedule(&mut self, by: &str) {
        match self.rotate(None) {
            Ok(_) => self.seal_retry_at = None,
            Err(e) => {
                tracing::error!(
                    error = %e,
                    retry_secs = SEAL_RETRY.as_secs(),
                    "rotation by {by} failed"
                );
                self.seal_retry_at = Some(Instant::now() + SEAL_RETRY);
            }
        }
    }

    /// Poisons the store if its file is no longer `audit.log`, whole up to
    /// where the writer has written.
    pub(super) fn check_in_place(&self) {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return;
        }
        if let Err(reason) = self.shared.check_in_place(&self.file, self.len) {
            self.shared.poison_with(Poison::FileGone(reason));
        }
    }

    pub(super) fn rotate_on_request(
        &mut self,
        wait: bool,
        reply: oneshot::Sender<Result<Option<Sealed>, StoreError>>,
    ) {
        if self.len == 0 {
            // Nothing to seal; one that waits still waits for the segments
            // sealed before (a write that filled one sealed it).
            // A sealer gone (the store stopping) has nothing left to wait for.
            let unsent = if wait {
                self.sealer.send(Job::Barrier(reply)).err().map(|e| e.0)
            } else {
                Some(Job::Barrier(reply))
            };
            if let Some(Job::Barrier(reply)) = unsent {
                let _ = reply.send(Ok(None));
            }
            return;
        }
        if wait {
            if let Err(e) = self.rotate(Some(reply)) {
                tracing::error!(error = %e, "requested rotation failed");
            }
        } else {
            let sealed = self.rotate(None);
            let _ = reply.send(sealed.map(Some));
        }
    }

    /// Seals the active segment and starts a new one; the sealer compresses
    /// the sealed file and, if given, answers `done` when it has.
    pub(super) fn rotate(
        &mut self,
        done: Option<oneshot::Sender<Result<Option<Sealed>, StoreError>>>,
    ) -> Result<Sealed, StoreError> {
        // The sealed file must be whole and durable, and indexed, before the
        // sealer reads it.
        self.flush();
        // A poisoned store renames nothing (what it holds is for a restart to
        // recover), and neither does a writer whose file is no longer the one
        // at `audit.log`.
        self.check_in_place();
        if self.shared.poisoned.load(Ordering::Acquire) {
            let err = self.shared.poison_error();
            if let Some(done) = done {
                let _ = done.send(Err(err.duplicate()));
            }
            return Err(err);
        }
        // The sealed file ends with its last record: the zeros ahead of it
        // go first, durably, so the sealer and a restart read only records.
        if let Err(e) = self.trim() {
            self.shared.poison(format!(
                "cutting the zeros past the log's end before sealing failed: {e}"
            ));
            let err = self.shared.poison_error();
            if let Some(done) = done {
                let _ = done.send(Err(err.duplicate()));
            }
            return Err(err);
        }
        let (first_seq, last_seq) = (self.segment_first, self.signer.next_seq() - 1);
        let dir = self.shared.dir.clone();
        let (plain_name, new) = match sealer::seal(&dir) {
            Ok(sealed) => sealed,
            Err(failure) => {
                let err = self.seal_failed(failure);
                if let Some(done) = done {
                    let _ = done.send(Err(err.duplicate()));
                }
                return Err(err);
            }
        };
        let segment = self.shared.add_segment(SegmentFile::Plain {
            name: LOG_FILE.to_owned(),
            file: new.reader,
        });
        let file = new.file;
        let sealed = Sealed {
            file: plain_name.clone(),
            first_seq,
            last_seq,
        };
        let job = Job::Seal {
            segment: self.segment,
            plain: plain_name,
            done,
        };
        self.file = Arc::new(file);
        self.len = 0;
        self.ahead = super::space::Ahead::at(0);
        self.shared.active_len.store(0, Ordering::Release);
        self.segment = segment;
        self.segment_first = 0;
        self.segment_first_timestamp = None;
        tracing::info!(file = %sealed.file, first_seq, last_seq, "sealed a segment");
        if let Err(e) = self.sealer.send(job) {
            // The sealer only stops at shutdown; the next start compresses it.
            tracing::warn!(error = %e, "sealer is gone; compression left for the next start");
        }
        Ok(sealed)
    }
}

/// How long until a segment whose first record has `first_timestamp` (µs
/// since the epoch; `None`: the segment is empty) is `max_age` old at `now`:
/// zero when it is already, `None` when it never falls due (empty, or
/// `max_age` is `None`). A clock stepped back makes the segment younger,
/// never negative.
fn age_due_in(
    first_timestamp: Option<i64>,
    max_age: Option<Duration>,
    now: i64,
) -> Option<Duration> {
    let (first, max_age) = (first_timestamp?, max_age?);
    let age = u64::try_from(now.saturating_sub(first)).unwrap_or(0);
    Some(max_age.saturating_sub(Duration::from_micros(age)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::age_due_in;

    #[test]
    fn a_segment_falls_due_once_its_first_record_is_old_enough() {
        let day = Some(Duration::from_secs(86_400));
        let t = 1_000_000_000_000;
        let due = |first, max_age, now| age_due_in(first, max_age, now);
        // Empty, or age sealing off: never.
        assert_eq!(due(None, day, t), None);
        assert_eq!(due(Some(t), None, t + 1), None);
        // Counted from the first record, to the microsecond.
        assert_eq!(due(Some(t), day, t), Some(Duration::from_secs(86_400)));
        assert_eq!(
            due(Some(t), day, t + 86_400_000_000 - 1),
            Some(Duration::from_micros(1))
        );
        assert_eq!(due(Some(t), day, t + 86_400_000_000), Some(Duration::ZERO));
        assert_eq!(
            due(Some(t), day, t + 10 * 86_400_000_000),
            Some(Duration::ZERO)
        );
        // A clock stepped back before the first record: a full age to go.
        assert_eq!(
            due(Some(t), day, t - 5_000_000),
            Some(Duration::from_secs(86_400))
        );
    }
}
