//! How long a read that asked for `min_seq` may wait for this node to hold
//! it: the call's own deadline (its `grpc-timeout` header), never more than
//! [`MAX_WAIT`]. The wait ends a little before the deadline, so the caller
//! gets the answer that says how far behind the node is rather than the
//! transport's bare timeout: in a cluster UNAVAILABLE (the replica is
//! catching up), on a single node OUT_OF_RANGE naming the head (a seq it
//! never acknowledged; `edge::min_seq_status`).

use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// The longest a read waits for `min_seq`, and the wait of a call without a
/// deadline.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(5);
/// The part of the call's time left for answering once the wait ends.
const MARGIN: Duration = Duration::from_millis(100);

/// When a read's wait for `min_seq` ends: within the call's deadline, and
/// within the limit it runs under ([`call_limit`]).
pub(super) fn wait_until<T>(req: &tonic::Request<T>) -> Instant {
    let now = Instant::now();
    let less_margin = |t: Duration| t.saturating_sub(MARGIN.min(t / 10));
    let wait = match call_timeout(req.metadata()) {
        Some(t) => less_margin(t).min(MAX_WAIT),
        None => MAX_WAIT,
    };
    now + call_limit(req).map_or(wait, |limit| wait.min(less_margin(limit)))
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
