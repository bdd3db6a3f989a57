//! Who runs the writer, and when: its thread's loop (`Writer::run`), one
//! turn of it (`Writer::turn`), and a caller alone committing its own
//! request (`Writer::commit_alone`), with the moving average of callers per
//! group that decides when a caller may ([`Callers`]). The module doc of
//! `writer` says why a caller alone commits itself.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Append, Command, IDLE_CHECK, MAX_GROUP_EVENTS, Writer};

/// What the writer's wait for a request ended with.
enum Received {
    Command(Command),
    /// Nothing came before the segment fell due for sealing by age, or
    /// before [`IDLE_CHECK`].
    Idle,
    /// Every sender is gone: shutdown.
    Closed,
}

impl Writer {
    /// Serves requests until every sender is gone, then returns. The writer
    /// is locked for each turn and unlocked while it waits, so a caller
    /// alone can commit in between (`commit_alone`); it is taken out of
    /// `state` when the thread stops, so nothing commits after that, and
    /// dropped at the end, which ends the syncer and the sealer.
    pub(in crate::store) fn run(state: &Mutex<Option<Writer>>, mut rx: mpsc::Receiver<Command>) {
        // The clock the idle writer waits on: a runtime of this thread's own,
        // with only a timer.
        let clock = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "no timer for the idle writer; an idle log is sealed, and a deleted \
                     audit.log noticed, at the next write"
                );
                None
            }
        };
        loop {
            let wait = lock(state).as_mut().map(|writer| {
                writer.seal_if_due();
                writer
                    .due_in()
                    .map_or(IDLE_CHECK, |due| due.min(IDLE_CHECK))
            });
            let Some(wait) = wait else { return };
            // A segment that a caller's commit starts meanwhile falls due
            // no sooner than its age limit, which is at least a second:
            // this wait is at most one.
            match receive(&mut rx, clock.as_ref(), wait) {
                Received::Command(first) => {
                    if let Some(writer) = lock(state).as_mut() {
                        writer.turn(first, &mut rx);
                    }
                }
                Received::Idle => {
                    if let Some(writer) = lock(state).as_ref() {
                        writer.check_in_place();
                    }
                }
                Received::Closed => break,
            }
        }
        let Some(mut writer) = lock(state).take() else {
            return;
        };
        writer.flush();
        // Under `Fsync` every group is already synced; under `OsBuffered`
        // this makes a clean stop durable.
        if !writer.shared.poisoned.load(Ordering::Acquire) {
            if let Err(e) = writer.file.sync_data() {
                tracing::error!(error = %e, "final sync of the log failed");
            } else if let Err(e) = writer.trim() {
                tracing::warn!(error = %e, "could not cut the zeros past the log's end at stop");
            }
        }
    }

    /// One turn: `first` and every request waiting behind it.
    fn turn(&mut self, first: Command, rx: &mut mpsc::Receiver<Command>) {
        // A caller's own commit may have filled the segment
        // (`commit_alone`): it is sealed before anything more goes in.
        self.seal_if_full();
        let mut group = Vec::new();
        let mut applies = Vec::new();
        let mut rotations = Vec::new();
        let mut events = 0;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Append(a) => {
                    events += a.events.len();
                    group.push(a);
                }
                Command::Apply(a) => applies.push(a),
                Command::Rotate { wait, reply } => rotations.push((wait, reply)),
                Command::Turn => {}
            }
            if events < MAX_GROUP_EVENTS {
                next = rx.try_recv().ok();
            }
        }
        // Only the turn's last group can be alone; a rotation waits.
        let nothing_after = rx.is_empty() && rotations.is_empty();
        self.alone = nothing_after && applies.is_empty();
        if !group.is_empty() {
            self.commit(group);
        }
        let last = applies.len();
        for (i, a) in applies.into_iter().enumerate() {
            self.alone = nothing_after && i + 1 == last;
            self.apply(a);
        }
        self.seal_if_full();
        for (wait, reply) in rotations {
            self.rotate_on_request(wait, reply);
        }
    }

    /// Commits `append` here and now, on the caller's thread, if nothing
    /// else is being written: the syncer holds no group, and callers have
    /// lately come one at a time (else `Err`, and the caller queues it).
    /// The caller holds the writer's lock and has seen no request queued.
    /// `Ok(true)`: the active segment is now full, and the writer thread
    /// should take a turn to seal it.
    ///
    /// Under concurrent load the pipeline drains now and then, and a caller
    /// arriving just then finds the writer idle; committing there holds a
    /// tokio worker through the `fdatasync` while other callers' requests
    /// and answers wait (their connection's task may sit in that worker's
    /// queue). With 16 callers on two cores, doing it whenever the last
    /// group had one caller (under 2 % of calls) cost a fifth of the commits
    /// a second. The average of callers per group tells the two apart.
    pub(in crate::store) fn commit_alone(&mut self, append: Append) -> Result<bool, Append> {
        // A full segment is left for the writer thread to seal first (the
        // caller who filled it sent it a `Turn`): a segment never grows a
        // group past its size limit.
        if self.replica
            || self.syncer.busy()
            || !self.callers.one_at_a_time()
            || self.len >= self.max_segment_bytes
        {
            return Err(append);
        }
        // Nothing in the syncer's hands and nothing behind it: the syncer's
        // half runs here too (`ToSync::group`).
        self.alone = true;
        self.commit(vec![append]);
        Ok(self.len >= self.max_segment_bytes)
    }
}

/// How many callers a group commit has served lately: a moving average
/// (each group weighs an eighth) in 256ths of a caller, fine enough that
/// rounding down cannot hold it above the threshold once callers come one
/// at a time again (in sixteenths it could stall at 1.4).
#[derive(Default)]
pub(super) struct Callers(u32);

impl Callers {
    pub(super) fn served(&mut self, callers: usize) {
        let callers = u32::try_from(callers).unwrap_or(u32::MAX).min(1024);
        self.0 = self.0 - self.0 / 8 + callers * 256 / 8;
    }

    /// Whether callers have come one at a time: under 1.25 on average,
    /// which three groups of two in a row after a long run of ones end.
    fn one_at_a_time(&self) -> bool {
        self.0 < 320
    }
}

/// The writer, locked; `None` once its thread has stopped. A lock poisoned
/// by a commit that panicked on a caller's thread leaves the writer's state
/// in doubt: the store refuses writes from then on, as after a failed
/// fsync.
fn lock(state: &Mutex<Option<Writer>>) -> MutexGuard<'_, Option<Writer>> {
    state.lock().unwrap_or_else(|poisoned| {
        let writer = poisoned.into_inner();
        if let Some(w) = writer.as_ref()
            && !w.shared.poisoned.load(Ordering::Acquire)
        {
            w.shared
                .poison("a write panicked part way; restart the server".to_owned());
        }
        writer
    })
}

/// Waits for the next request, but no longer than `wait`.
fn receive(
    rx: &mut mpsc::Receiver<Command>,
    clock: Option<&tokio::runtime::Runtime>,
    wait: Duration,
) -> Received {
    // A request already waiting is taken without the clock: the timed wait
    // is only for a writer with nothing to do.
    match rx.try_recv() {
        Ok(command) => return Received::Command(command),
        Err(mpsc::error::TryRecvError::Disconnected) => return Received::Closed,
        Err(mpsc::error::TryRecvError::Empty) => {}
    }
    let next = match clock {
        Some(clock) => {
            match clock.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
                Ok(next) => next,
                Err(_) => return Received::Idle,
            }
        }
        None => rx.blocking_recv(),
    };
    next.map_or(Received::Closed, Received::Command)
}

#[cfg(test)]
mod tests {
    /// A caller commits its own request only while callers come one at a
    /// time: a few groups of several callers stop it, and a run of lone
    /// callers brings it back.
    #[test]
    fn callers_one_at_a_time_follow_the_recent_groups() {
        let mut callers = super::Callers::default();
        assert!(callers.one_at_a_time(), "a fresh writer has seen no crowd");
        for _ in 0..50 {
            callers.served(1);
        }
        assert!(callers.one_at_a_time());
        callers.served(2);
        assert!(callers.one_at_a_time(), "one group of two is a coincidence");
        callers.served(2);
        assert!(callers.one_at_a_time(), "nor are two");
        callers.served(2);
        assert!(!callers.one_at_a_time(), "three in a row are a crowd");
        for _ in 0..30 {
            callers.served(16);
        }
        let mut lone = 0;
        while !callers.one_at_a_time() {
            callers.served(1);
            lone += 1;
        }
        assert!((10..40).contains(&lone), "{lone} lone groups to come back");
        for _ in 0..1000 {
            callers.served(1);
        }
        assert!(callers.one_at_a_time(), "a long run of lone callers stays");
        callers.served(usize::MAX);
        assert!(!callers.one_at_a_time());
    }
}
