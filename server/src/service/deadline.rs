//! How long a handler may wait inside a call before it answers with what it
//! has: for a read's `min_seq` to be held here, for a receipt's proof or a
//! fresh checkpoint, for a forwarded write's leader and replica. Every
//! such wait ends at one instant, counted from when the call began: the
//! limit it runs under (`limits::CallLimit`, which the deadline layer puts
//! in the request: the sooner of the caller's deadline and the server's
//! `handler_timeout_secs`), less a margin for the answer; never past a cap,
//! nor, when the caller gave no deadline, past a default. So the caller
//! gets the answer that says why (the node is behind, the proof is late)
//! instead of the transport's bare timeout, or DEADLINE_EXCEEDED's "a
//! write may still have been applied" for a write that was.

use std::time::Duration;

use tokio::time::Instant;

use crate::limits::CallLimit;

/// How long one kind of wait may take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Patience {
    /// The wait of a call without a deadline.
    pub(super) without_deadline: Duration,
    /// The longest wait, whatever the deadline.
    pub(super) most: Duration,
}

/// A read's wait for `min_seq`: a node is behind by moments, or not about
/// to catch up.
pub(super) const MIN_SEQ: Patience = Patience {
    without_deadline: Duration::from_secs(5),
    most: Duration::from_secs(5),
};

/// A receipt's proof, a fresh checkpoint, an inclusion proof of a record
/// not yet in a checkpoint: the tree follows the log by its gather, and a
/// caller who gives a long deadline may mean to wait for a slow one.
pub(super) const PROOF: Patience = Patience {
    without_deadline: Duration::from_secs(5),
    most: Duration::from_secs(60),
};

/// A write forwarded to the leader, and this replica catching up to it
/// (the leader's answer is given the whole of the call's time; this bounds
/// the wait for the replica after it).
pub(super) const FORWARD: Patience = Patience {
    without_deadline: Duration::from_secs(10),
    most: Duration::from_secs(600),
};

/// The part of the time left for answering once a wait ends: a tenth of
/// it, within these bounds.
const MARGIN: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// The limit `req` runs under; `None` only for a call that did not pass the
/// deadline layer (none does in the server).
pub(super) fn call_limit<T>(req: &tonic::Request<T>) -> Option<CallLimit> {
    req.extensions().get::<CallLimit>().copied()
}

/// When a wait of this kind inside `req` must end.
pub(super) fn wait_until<T>(req: &tonic::Request<T>, patience: Patience) -> Instant {
    until(call_limit(req), patience)
}

/// When a wait of this kind must end in a call running under `limit`.
pub(super) fn until(limit: Option<CallLimit>, patience: Patience) -> Instant {
    match limit {
        Some(limit) => limit.started + wait_of(limit, patience),
        None => Instant::now() + patience.without_deadline,
    }
}

/// How long, from its start, a wait may take in a call running under
/// `limit`.
fn wait_of(limit: CallLimit, p: Patience) -> Duration {
    let wait = limit
        .limit
        .saturating_sub((limit.limit / 10).clamp(MARGIN.0, MARGIN.1));
    wait.min(if limit.callers_deadline {
        p.most
    } else {
        p.without_deadline
    })
}

/// What is left of the call's time (to give a forwarded call); without a
/// limit, `otherwise`.
pub(super) fn time_left(limit: Option<CallLimit>, otherwise: Duration) -> Duration {
    limit.map_or(otherwise, |l| {
        (l.started + l.limit).saturating_duration_since(Instant::now())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call that may run `limit`, with a deadline of the caller's or not.
    fn call(limit: Duration, callers_deadline: bool) -> CallLimit {
        CallLimit {
            started: Instant::now(),
            limit,
            callers_deadline,
        }
    }

    #[test]
    fn a_wait_ends_a_tenth_before_the_deadline_within_bounds() {
        let wait = |limit: Duration| wait_of(call(limit, true), PROOF);
        assert_eq!(wait(Duration::from_secs(10)), Duration::from_secs(9));
        assert_eq!(
            wait(Duration::from_secs(30)),
            Duration::from_secs(29),
            "the margin is at most 1 s"
        );
        assert_eq!(
            wait(Duration::from_millis(200)),
            Duration::from_millis(150),
            "and at least 50 ms"
        );
        assert_eq!(wait(Duration::from_millis(20)), Duration::ZERO);
        let hours = Duration::from_secs(2 * 3600);
        assert_eq!(wait(hours), PROOF.most);
        assert_eq!(wait_of(call(hours, true), MIN_SEQ), MIN_SEQ.most);
        // The longest limit a call can have stays an instant away.
        for p in [MIN_SEQ, PROOF, FORWARD] {
            let limit = call(Duration::from_secs(99_999_999 * 3600), true);
            let wait = wait_of(limit, p);
            assert!(limit.started.checked_add(wait).is_some() && wait <= p.most);
        }
    }

    #[test]
    fn without_a_callers_deadline_the_wait_is_the_default() {
        // The server's limit alone (a header that does not read counts as
        // none: `limits::parse_grpc_timeout`).
        let server = call(Duration::from_secs(60), false);
        assert_eq!(wait_of(server, PROOF), PROOF.without_deadline);
        assert_eq!(wait_of(server, FORWARD), FORWARD.without_deadline);
        assert_eq!(wait_of(server, MIN_SEQ), MIN_SEQ.without_deadline);
    }

    #[test]
    fn the_limit_the_call_runs_under_bounds_every_wait() {
        let second = Duration::from_secs(1);
        for p in [MIN_SEQ, PROOF, FORWARD] {
            // The server's 1 s, the caller with no deadline or a later one.
            assert_eq!(wait_of(call(second, false), p), Duration::from_millis(900));
            assert_eq!(wait_of(call(second, true), p), Duration::from_millis(900));
        }
        // The caller's 10 s under the server's 60 s.
        let ten = call(Duration::from_secs(10), true);
        assert_eq!(wait_of(ten, PROOF), Duration::from_secs(9));
        assert_eq!(
            until(Some(ten), PROOF),
            ten.started + Duration::from_secs(9)
        );
    }
}
