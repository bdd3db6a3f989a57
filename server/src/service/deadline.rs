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

/// When a read's wait for `min_seq` ends.
pub(super) fn wait_until(metadata: &MetadataMap) -> Instant {
    let now = Instant::now();
    let wait = match call_timeout(metadata) {
        Some(t) => t.saturating_sub(MARGIN.min(t / 10)).min(MAX_WAIT),
        None => MAX_WAIT,
    };
    now + wait
}

/// The call's own deadline (its `grpc-timeout` header), if it has one.
pub(super) fn call_timeout(metadata: &MetadataMap) -> Option<Duration> {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_timeout)
}

/// A `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_unit_and_bad_ones_are_ignored() {
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
        for bad in ["", "S", "12", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }
}
