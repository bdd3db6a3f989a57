//! How long a handler may wait inside a call before it answers with what it
//! has: for a read's `min_seq` to be held here, for a receipt's proof or a
//! fresh checkpoint, for a forwarded write's leader and replica. Every
//! such wait ends at one instant, from when the call began: the sooner of
//! the caller's deadline (its `grpc-timeout` header) and the limit the call
//! runs under ([`call_limit`], the server's `handler_timeout_secs` when
//! sooner), less a margin for the answer; without a deadline, a default;
//! never past a cap. So the caller gets the answer that says why (the node
//! is behind, the proof is late) instead of the transport's bare timeout,
//! or DEADLINE_EXCEEDED's "a write may still have been applied" for a
//! write that was.

use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

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

/// When a wait of this kind inside `req` must end.
pub(super) fn wait_until<T>(req: &tonic::Request<T>, patience: Patience) -> Instant {
    Instant::now() + wait_of(req.metadata(), call_limit(req), patience)
}

/// How long a wait may take in a call with `metadata` running under `limit`.
pub(super) fn wait_of(metadata: &MetadataMap, limit: Option<Duration>, p: Patience) -> Duration {
    let less_margin = |t: Duration| t.saturating_sub((t / 10).clamp(MARGIN.0, MARGIN.1));
    let wait = call_timeout(metadata).map_or(p.without_deadline, |t| less_margin(t).min(p.most));
    limit.map_or(wait, |limit| wait.min(less_margin(limit)))
}

/// The limit the call runs under, which the deadline layer puts in the
/// request's extensions (`limits::CallLimit`): the sooner of the caller's
/// deadline and the server's `handler_timeout_secs`.
pub(super) fn call_limit<T>(req: &tonic::Request<T>) -> Option<Duration> {
    req.extensions()
        .get::<crate::limits::CallLimit>()
        .map(|limit| limit.0)
}

/// The call's own deadline (its `grpc-timeout` header), if it has one.
pub(super) fn call_timeout(metadata: &MetadataMap) -> Option<Duration> {
    metadata
        .get("grpc-timeout")
        .and_then(|v| crate::limits::parse_grpc_timeout(v.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_timeout(v: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", v.parse().unwrap());
        m
    }

    #[test]
    fn a_wait_ends_a_tenth_before_the_deadline_within_bounds() {
        let wait = |v: &str| wait_of(&with_timeout(v), None, PROOF);
        assert_eq!(wait("10S"), Duration::from_secs(9));
        assert_eq!(
            wait("30S"),
            Duration::from_secs(29),
            "the margin is at most 1 s"
        );
        assert_eq!(
            wait("200m"),
            Duration::from_millis(150),
            "and at least 50 ms"
        );
        assert_eq!(wait("20m"), Duration::ZERO);
        assert_eq!(wait("2H"), PROOF.most);
        assert_eq!(wait_of(&with_timeout("2H"), None, MIN_SEQ), MIN_SEQ.most);
        // The longest deadline a header can say stays an instant away.
        for p in [MIN_SEQ, PROOF, FORWARD] {
            let wait = wait_of(&with_timeout("99999999H"), None, p);
            assert!(Instant::now().checked_add(wait).is_some() && wait <= p.most);
        }
    }

    #[test]
    fn without_a_deadline_that_reads_the_wait_is_the_default() {
        for bad in ["123456789S", "5x", "S"] {
            let m = with_timeout(bad);
            assert_eq!(wait_of(&m, None, PROOF), PROOF.without_deadline, "{bad}");
        }
        let none = MetadataMap::new();
        assert_eq!(wait_of(&none, None, FORWARD), FORWARD.without_deadline);
        assert_eq!(wait_of(&none, None, MIN_SEQ), MIN_SEQ.without_deadline);
    }

    #[test]
    fn the_limit_the_call_runs_under_bounds_every_wait() {
        let limit = Some(Duration::from_secs(1));
        let none = MetadataMap::new();
        for p in [MIN_SEQ, PROOF, FORWARD] {
            assert_eq!(wait_of(&none, limit, p), Duration::from_millis(900));
            assert_eq!(
                wait_of(&with_timeout("10S"), limit, p),
                Duration::from_millis(900)
            );
        }
        let far = Some(Duration::from_secs(60));
        assert_eq!(
            wait_of(&with_timeout("10S"), far, PROOF),
            Duration::from_secs(9)
        );
    }
}
