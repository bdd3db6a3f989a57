//! The write path's spans, for tracing (`telemetry`): one `commit` per
//! group commit, made by the writer, and one `fsync` per `fdatasync` of
//! the groups waiting, made by the syncer. Both run on plain threads, so a
//! span's parent is given, never taken from the thread: a group's is the
//! RPC span of its first request, and the other requests' spans are
//! linked (`follows_from`); the `fsync` span is the child of the first
//! group's `commit` span and links the others.
//!
//! Invariant: per group, never per event; with tracing off every request
//! carries `Span::none()` (no allocation), and no span is made.

use tracing::Span;

use super::syncer::Written;
use super::writer::Append;

/// The span of a group commit, from its forming until it is durable and
/// indexed; none when no request came with a span.
pub(super) fn commit(group: &[Append]) -> Span {
    let mut traced = group.iter().map(|a| &a.trace).filter(|s| !s.is_none());
    let Some(first) = traced.next() else {
        return Span::none();
    };
    let events: usize = group.iter().map(|a| a.events.len()).sum();
    // Counts as i64: the exporter writes an unsigned field as a string.
    let span = tracing::info_span!(
        parent: first,
        "commit",
        otel.name = "auditlog.store.commit",
        requests = count(group.len()),
        events = count(events),
    );
    for other in traced {
        span.follows_from(other);
    }
    span
}

/// The span of one `fdatasync` for `groups`; none when no group has one.
pub(super) fn fsync(groups: &[Written]) -> Span {
    let mut traced = groups.iter().map(|g| &g.span).filter(|s| !s.is_none());
    let Some(first) = traced.next() else {
        return Span::none();
    };
    let span = tracing::info_span!(
        parent: first,
        "fsync",
        otel.name = "auditlog.store.fsync",
        groups = count(groups.len()),
    );
    for other in traced {
        span.follows_from(other);
    }
    span
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
