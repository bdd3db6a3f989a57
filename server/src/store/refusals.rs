//! Appends the store refuses, counted rather than logged one by one: the
//! log says once that writes stopped (and why), then at most every
//! [`SUMMARY_EVERY`] how many appends were refused since, and once that
//! writes resumed. A full disk refuses hundreds of appends a second; this
//! keeps that to a line per ten seconds. It also remembers whether writes
//! stopped for a full disk, which the health of writes reads.
//!
//! Invariant: the counting is pure ([`Window`]); only [`Refusals`] logs.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::error::StoreError;

/// How often, at most, a summary of refused appends is logged.
pub(super) const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Refused appends since writes stopped, shared by every caller.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// Whether writes are stopped now: the one load a successful append
    /// pays.
    stopped: AtomicBool,
    window: Mutex<Window>,
}

/// What to log about refused appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Note {
    /// Writes stopped, or now fail for another reason.
    Stopped { reason: String },
    /// `refused` appends in the last `secs` seconds, still for `reason`.
    Summary {
        refused: u64,
        secs: u64,
        reason: String,
    },
    /// Writes work again after `refused` appends over `secs` seconds.
    Resumed { refused: u64, secs: u64 },
}

/// The counting behind [`Refusals`], over a clock the caller passes.
#[derive(Debug, Default)]
pub(super) struct Window {
    stop: Option<Stop>,
}

#[derive(Debug)]
struct Stop {
    reason: String,
    disk_full: bool,
    since: Instant,
    total: u64,
    /// Refused since the last note.
    unreported: u64,
    last_note: Instant,
}

impl Window {
    /// One append refused for `reason` at `now`.
    pub(super) fn refused(&mut self, reason: &str, disk_full: bool, now: Instant) -> Option<Note> {
        match &mut self.stop {
            Some(stop) if stop.reason == reason => {
                stop.total += 1;
                stop.unreported += 1;
                let secs = now.saturating_duration_since(stop.last_note);
                if secs < SUMMARY_EVERY {
                    return None;
                }
                let note = Note::Summary {
                    refused: stop.unreported,
                    secs: secs.as_secs(),
                    reason: reason.to_owned(),
                };
                stop.unreported = 0;
                stop.last_note = now;
                Some(note)
            }
            _ => {
                let (since, total) = self.stop.as_ref().map_or((now, 0), |s| (s.since, s.total));
                self.stop = Some(Stop {
                    reason: reason.to_owned(),
                    disk_full,
                    since,
                    total: total + 1,
                    unreported: 0,
                    last_note: now,
                });
                Some(Note::Stopped {
                    reason: reason.to_owned(),
                })
            }
        }
    }

    /// An append written at `now`.
    pub(super) fn written(&mut self, now: Instant) -> Option<Note> {
        let stop = self.stop.take()?;
        Some(Note::Resumed {
            refused: stop.total,
            secs: now.saturating_duration_since(stop.since).as_secs(),
        })
    }

    /// Why writes stopped, when it was a full disk.
    fn disk_full(&self) -> Option<&str> {
        self.stop
            .as_ref()
            .filter(|s| s.disk_full)
            .map(|s| s.reason.as_str())
    }
}

impl Refusals {
    /// Counts an append that failed with `error`, if it is a refusal of the
    /// store's (not a shutdown, not a read).
    pub(super) fn refused(&self, error: &StoreError) {
        let disk_full = matches!(error, StoreError::DiskFull(_));
        let refusal = disk_full
            || matches!(
                error,
                StoreError::Write(_)
                    | StoreError::Poisoned(_)
                    | StoreError::ActiveFileGone(_)
                    | StoreError::SealBroken(_)
            );
        if !refusal {
            return;
        }
        self.stopped.store(true, Ordering::Release);
        let note = self
            .window
            .lock()
            .ok()
            .and_then(|mut w| w.refused(&error.to_string(), disk_full, Instant::now()));
        log(note);
    }

    /// Notes an append written.
    pub(super) fn written(&self) {
        if !self.stopped.load(Ordering::Acquire) {
            return;
        }
        self.stopped.store(false, Ordering::Release);
        let note = self
            .window
            .lock()
            .ok()
            .and_then(|mut w| w.written(Instant::now()));
        log(note);
    }

    /// Why writes stopped, when the last append was refused for a full disk.
    pub(super) fn disk_full(&self) -> Option<String> {
        if !self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let window = self.window.lock().ok()?;
        window.disk_full().map(str::to_owned)
    }
}

fn log(note: Option<Note>) {
    match note {
        None => {}
        Some(Note::Stopped { reason }) => {
            tracing::error!(error = %reason, "writes stopped: appends are refused");
        }
        Some(Note::Summary {
            refused,
            secs,
            reason,
        }) => tracing::warn!(
            error = %reason,
            "{refused} appends refused in the last {secs} s"
        ),
        Some(Note::Resumed { refused, secs }) => tracing::info!(
            refused,
            "writes resumed after {refused} refused appends over {secs} s"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Note, SUMMARY_EVERY, Window};

    /// A flood of refusals is one line when writes stop, one summary per
    /// window with the count since the last line, a new line when the
    /// reason changes, and one when writes resume.
    #[test]
    fn a_flood_of_refusals_is_a_line_per_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut w = Window::default();
        assert_eq!(w.written(at(0)), None, "nothing to resume from");
        assert_eq!(
            w.refused("disk full", true, at(0)),
            Some(Note::Stopped {
                reason: "disk full".into()
            })
        );
        assert_eq!(w.disk_full(), Some("disk full"));
        // 300 a second for just under a window: silent.
        let window = SUMMARY_EVERY.as_millis() as u64;
        for i in 1..window * 3 / 10 {
            assert_eq!(w.refused("disk full", true, at(i * 10 / 3)), None, "{i}");
        }
        let summary = w.refused("disk full", true, at(window));
        assert_eq!(
            summary,
            Some(Note::Summary {
                refused: window * 3 / 10,
                secs: SUMMARY_EVERY.as_secs(),
                reason: "disk full".into()
            })
        );
        // The next window counts from the summary.
        assert_eq!(w.refused("disk full", true, at(window + 1)), None);
        assert_eq!(
            w.refused("disk full", true, at(2 * window)),
            Some(Note::Summary {
                refused: 2,
                secs: SUMMARY_EVERY.as_secs(),
                reason: "disk full".into()
            })
        );
        // Another reason is a state change, said at once.
        assert_eq!(
            w.refused("fsync failed", false, at(2 * window + 5)),
            Some(Note::Stopped {
                reason: "fsync failed".into()
            })
        );
        assert_eq!(w.disk_full(), None);
        let total = window * 3 / 10 + 3 + 1;
        assert_eq!(
            w.written(at(3 * window)),
            Some(Note::Resumed {
                refused: total,
                secs: 3 * SUMMARY_EVERY.as_secs()
            })
        );
        assert_eq!(w.written(at(3 * window)), None, "said once");
        assert_eq!(w.disk_full(), None);
    }
}
