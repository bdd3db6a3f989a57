//! The trace of refused calls: every refusal of the token check (no token,
//! an unknown one, a role missing) is logged at WARN with the peer address,
//! the method and the reason, and never the token.
//!
//! Rate limited, so a flood of wrong tokens cannot flood the log: in each
//! interval ([`INTERVAL`]) the first refusal is logged in full and the rest
//! are only counted; when the interval ends, one summary line gives their
//! number and the last of them. An interval without refusals logs nothing.
//! Callers without a valid token are counted together, and each known
//! token apart, so a flood of bad tokens never hides that a real token was
//! refused a role; the tokens are configured, so the lines stay bounded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often the refusals counted but not logged are summarised; the most
/// refusal lines the server writes is two per interval for calls without a
/// valid token, and two for each token.
pub(crate) const INTERVAL: Duration = Duration::from_secs(60);

/// One refusal, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The caller's address, when the transport knows it.
    pub peer: Option<SocketAddr>,
    pub method: String,
    /// Why, without the token: "no token", "unknown token", or the token's
    /// name and the role it lacks.
    pub reason: String,
}

/// The refusals of the current interval.
#[derive(Debug, Default)]
struct Window {
    /// Whether this interval's first refusal was logged in full.
    logged: bool,
    /// Refusals counted since then, not logged one by one.
    unlogged: u64,
    /// The last of those.
    last: Option<Refusal>,
}

/// What to log for a refusal or at the end of an interval.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Full(Refusal),
    Summary { count: u64, last: Refusal },
}

/// Each caller's window: `None` for calls without a valid token, else the
/// token's name.
type Windows = HashMap<Option<String>, Window>;

/// The shared, rate-limited refusal log of one server.
#[derive(Debug, Clone, Default)]
pub(crate) struct Refusals {
    windows: Arc<Mutex<Windows>>,
}

impl Refusals {
    /// A log whose summaries a task writes every [`INTERVAL`] while the log
    /// is in use; without a runtime (unit tests), summaries are only
    /// written by [`Refusals::end_interval`].
    pub(crate) fn new() -> Refusals {
        let refusals = Refusals::default();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(summarise(Arc::downgrade(&refusals.windows)));
        }
        refusals
    }

    /// Notes one refusal of a call made with the known token `token` (or
    /// none), logging it if it is that caller's first in the interval.
    pub(crate) fn refused(&self, token: Option<&str>, refusal: Refusal) {
        if let Some(line) = self.note(token, refusal) {
            write(line);
        }
    }

    fn note(&self, token: Option<&str>, refusal: Refusal) -> Option<Line> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(token.map(str::to_owned)).or_default();
        if !w.logged {
            w.logged = true;
            return Some(Line::Full(refusal));
        }
        w.unlogged += 1;
        w.last = Some(refusal);
        None
    }

    /// Ends the interval: the summary of what was counted, per caller.
    fn end_interval(&self) -> Vec<Line> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *windows)
            .into_values()
            .filter_map(|w| {
                Some(Line::Summary {
                    count: w.unlogged,
                    last: w.last?,
                })
            })
            .collect()
    }
}

/// Writes the summaries until the log is dropped.
async fn summarise(windows: Weak<Mutex<Windows>>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(windows) = windows.upgrade() else {
            return;
        };
        (Refusals { windows })
            .end_interval()
            .into_iter()
            .for_each(write);
    }
}

fn write(line: Line) {
    let peer = |r: &Refusal| {
        r.peer
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    };
    match line {
        Line::Full(r) => tracing::warn!(
            peer = %peer(&r),
            method = %r.method,
            reason = %r.reason,
            "call refused by the token check; more refusals in the next {}s are counted \
             and summarised",
            INTERVAL.as_secs()
        ),
        Line::Summary { count, last } => tracing::warn!(
            count,
            last_peer = %peer(&last),
            last_method = %last.method,
            last_reason = %last.reason,
            "{count} more calls refused by the token check in the last {}s",
            INTERVAL.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(i: u16) -> Refusal {
        Refusal {
            peer: Some(SocketAddr::from(([127, 0, 0, 1], 40_000 + i))),
            method: "/auditlog.v1.AuditService/Log".into(),
            reason: "unknown token".into(),
        }
    }

    #[test]
    fn the_first_refusal_of_an_interval_is_logged_and_the_rest_summarised() {
        let log = Refusals::default();
        assert_eq!(log.end_interval(), [], "a quiet interval logs nothing");
        assert_eq!(log.note(None, refusal(0)), Some(Line::Full(refusal(0))));
        for i in 1..=500 {
            assert_eq!(log.note(None, refusal(i)), None);
        }
        // A known token refused a role is not lost in the flood.
        assert_eq!(
            log.note(Some("dashboard"), refusal(7)),
            Some(Line::Full(refusal(7)))
        );
        assert_eq!(log.note(Some("dashboard"), refusal(8)), None);
        let mut summaries = log.end_interval();
        summaries.sort_by_key(|l| match l {
            Line::Summary { count, .. } => *count,
            Line::Full(_) => 0,
        });
        assert_eq!(
            summaries,
            [
                Line::Summary {
                    count: 1,
                    last: refusal(8)
                },
                Line::Summary {
                    count: 500,
                    last: refusal(500)
                }
            ]
        );
        // The next interval starts afresh.
        assert_eq!(log.end_interval(), []);
        assert_eq!(log.note(None, refusal(9)), Some(Line::Full(refusal(9))));
        assert_eq!(log.end_interval(), [], "one refusal, logged in full");
    }
}
