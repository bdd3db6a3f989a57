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
use crate::store::sealer::{self, Job, Sealed};
use crate::store::segment::SegmentFile;
use crate::store::shared::LOG_FILE;

/// How long after a failed seal by age the writer tries again.
const AGE_RETRY: Duration = Duration::from_secs(30);

impl Writer {
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
        let retry = self.age_retry_at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        });
        Some(due.max(retry))
    }

    /// Seals the active segment if its first record is old enough.
    pub(super) fn seal_if_due(&mut self) {
        if self.due_in() != Some(Duration::ZERO) {
            return;
        }
        match self.rotate(None) {
            Ok(_) => self.age_retry_at = None,
            Err(e) => {
                tracing::error!(
                    error = %e,
                    retry_secs = AGE_RETRY.as_secs(),
                    "rotation by age failed; writing on"
                );
                self.age_retry_at = Some(Instant::now() + AGE_RETRY);
            }
        }
    }

    pub(super) fn rotate_on_request(
        &mut self,
        wait: bool,
        reply: oneshot::Sender<Result<Option<Sealed>, StoreError>>,
    ) {
        if self.len == 0 {
            let _ = reply.send(Ok(None));
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
        let (first_seq, last_seq) = (self.segment_first, self.next_seq - 1);
        let dir = self.shared.dir.clone();
        let result = sealer::seal(&dir).and_then(|(plain_name, file)| {
            let segment = self.shared.add_segment(SegmentFile::Plain {
                name: LOG_FILE.to_owned(),
                file: file.try_clone()?,
            });
            Ok((plain_name, file, segment))
        });
        let (plain_name, file, segment) = match result {
            Ok(r) => r,
            Err(e) => {
                let err = StoreError::Rotate(e.to_string());
                if let Some(done) = done {
                    let _ = done.send(Err(StoreError::Rotate(e.to_string())));
                }
                return Err(err);
            }
        };
        let sealed = Sealed {
            file: plain_name.clone(),
            first_seq,
            last_seq,
        };
        let job = Job {
            segment: self.segment,
            plain: plain_name,
            done,
        };
        self.file = Arc::new(file);
        self.len = 0;
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
