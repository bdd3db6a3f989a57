//! The edge between the domain and the wire: the only place that builds a
//! `tonic::Status` or a protobuf value from the server's own types.
//!
//! Every store error becomes a status in one function, [`status_of`], and
//! every piece of blocking store work runs through [`blocking`], which maps
//! a failed task the same way each time. Handlers and validation call these
//! instead of writing statuses or messages of their own.

use std::collections::HashMap;
use std::io::ErrorKind;

mod proofs;
pub(crate) use proofs::tree_status;
pub(super) use proofs::{
    beyond_head, checkpoint_pb, consistency_pb, inclusion_pb, no_checkpoint, not_covered,
    receipt_proofs_pb,
};

use auditlog_proto::json::StructFromJson;
use auditlog_proto::v1 as pb;
use prost_types::Timestamp;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::alerts::{ChannelStatus, RuleStatus};
use crate::cluster::ClusterError;
use crate::keys::Secret;
use crate::performance::{OperationStats, Source};
use crate::store::{self, Name, Purge, Record, Sealed, Stats, StoreError};
use crate::store::{FindingKind, Report};
use crate::webhooks::{EndpointStatus, NoSecret};

/// Maps a cluster-mode write error to the status a caller sees: all but
/// the store's own are worth retrying (on this or another node).
pub(crate) fn cluster_status(e: ClusterError) -> Status {
    match e {
        ClusterError::Store(e) => status_of(e),
        ClusterError::Leader(status) => *status,
        ClusterError::TooLarge(m) => Status::invalid_argument(m),
        ClusterError::Unfit(m) => Status::failed_precondition(m),
        e => Status::unavailable(e.to_string()),
    }
}

/// Maps a store error to the status a caller sees.
pub(crate) fn status_of(e: StoreError) -> Status {
    let code = match &e {
        StoreError::DiskFull(_) | StoreError::VerificationBusy { .. } => Code::ResourceExhausted,
        StoreError::Write(_)
        | StoreError::Poisoned(_)
        | StoreError::SealBroken(_)
        | StoreError::HeadUnwritable(_)
        | StoreError::Closed
        | StoreError::Behind { .. } => Code::Unavailable,
        StoreError::WrongRole(_) | StoreError::Refused { .. } => Code::FailedPrecondition,
        // Retrying is no use until someone restores the file or restarts.
        StoreError::ActiveFileGone(_) => Code::FailedPrecondition,
        StoreError::Corrupt { .. }
        | StoreError::SegmentDamaged { .. }
        | StoreError::DataDirGone { .. } => Code::DataLoss,
        // A file shorter than what was read from it, or gone: records lost,
        // not a fault of the server's (the store names the file where it
        // knows it: `SegmentDamaged`).
        StoreError::Read(e)
            if matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::NotFound) =>
        {
            Code::DataLoss
        }
        StoreError::Read(_)
        | StoreError::Open { .. }
        | StoreError::Key(_)
        | StoreError::WrongKey { .. }
        | StoreError::UnheldKey { .. }
        | StoreError::Rotate(_)
        | StoreError::Manifest(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

/// The status of a read whose `min_seq` this node did not hold by the end
/// of its wait. In a cluster, [`StoreError::Behind`]'s UNAVAILABLE: the
/// replica is catching up and another node may hold the seq. On a single
/// node there is no replica to catch up and no other node: every seq it
/// acknowledged is in its log, so a seq past the head is one it never
/// gave, and retrying cannot help. OUT_OF_RANGE says so and names the
/// head, which a client does not retry.
pub(super) fn min_seq_status(e: StoreError, single_node: bool) -> Status {
    match e {
        StoreError::Behind { head, wanted } if single_node => Status::out_of_range(format!(
            "min_seq {wanted} is past this log's head {head}: no event with that seq has been \
             acknowledged here; pass a seq from a receipt this server gave"
        )),
        e => status_of(e),
    }
}

/// The status of a VerifyIntegrity whose `from_seq` is past the log's
/// acknowledged `head` plus one (`validate::check_verify_start`). On a
/// single node no event with such a seq was ever acknowledged, and a clean
/// report that checked nothing would read as a verified range: OUT_OF_RANGE
/// names the head, as a Query's `min_seq` past it does. In a cluster this
/// node's replica may only be behind: UNAVAILABLE, retried.
pub(super) fn verify_past_head(from_seq: u64, head: u64, single_node: bool) -> Status {
    if single_node {
        Status::out_of_range(format!(
            "from_seq {from_seq} is past this log's head {head}: no event with that seq has \
             been acknowledged here, so there is nothing to verify; pass a from_seq up to \
             the head (0 for the whole log)"
        ))
    } else {
        Status::unavailable(format!(
            "from_seq {from_seq} is past this node's head {head}: its replica is catching up; \
             retry, or verify on another node"
        ))
    }
}

/// Runs blocking work (reading the log for an answer) off the async
/// runtime, at most [`reads_at_once`] at a time; the others wait their turn
/// without a thread, within their deadline. A task that panicked answers
/// INTERNAL naming `what` it was.
pub(super) async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let _turn = TURNS
        .get_or_init(|| tokio::sync::Semaphore::new(reads_at_once()))
        .acquire()
        .await
        .map_err(|_| internal("the read turns were closed"))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("{what} task failed: {e}")))?
}

/// How many answers are read from the log at once: twice the cores, at
/// least 4. Each may build a page of up to 3 MiB and its records first, and
/// the cores bound how many make progress anyway. Without a bound every
/// call in flight read at once, on its own blocking thread: 250 `Query`
/// calls for 3 MiB pages took the server from 60 to 419 MB RSS
/// (2026-12-06).
fn reads_at_once() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get() * 2)
        .max(4)
}

/// UNAVAILABLE once shutdown has begun.
pub(super) fn shutting_down() -> Status {
    Status::unavailable(
        "the server is shutting down; retry against another instance or after restart",
    )
}

/// UNAVAILABLE while the log is being recovered at start.
pub(super) fn recovering() -> Status {
    Status::unavailable("the server is still recovering its log; retry shortly")
}

/// FAILED_PRECONDITION for ApplyRetention on a server that keeps everything.
pub(super) fn retention_off() -> Status {
    Status::failed_precondition(
        "retention is off (retention_days = 0); set retention_days to purge old segments",
    )
}

/// A request that does not decode, in tonic's words (INTERNAL "failed to
/// decode Protobuf message: ..."), which `wire.rs` rewrites for the caller.
pub(super) fn undecodable(e: &prost::DecodeError) -> Status {
    Status::internal(e.to_string())
}

/// A Backup stream's message announcing the next file.
pub(super) fn backup_file_pb(path: String, size: u64, held: bool) -> pb::BackupResponse {
    let file = pb::BackupFile { path, size, held };
    pb::BackupResponse {
        part: Some(pb::backup_response::Part::File(file)),
    }
}

/// A Backup stream's message with the next bytes of the current file.
pub(super) fn backup_data_pb(bytes: Vec<u8>) -> pb::BackupResponse {
    pb::BackupResponse {
        part: Some(pb::backup_response::Part::Data(bytes)),
    }
}

/// A Backup stream's last message.
pub(super) fn backup_done_pb(done: pb::BackupDone) -> pb::BackupResponse {
    pb::BackupResponse {
        part: Some(pb::backup_response::Part::Done(done)),
    }
}

/// FAILED_PRECONDITION for Backup in cluster mode.
pub(super) fn backup_in_cluster() -> Status {
    Status::failed_precondition(
        "Backup copies a single node's data directory; in cluster mode the log is the \
         replicated JetStream stream, and each node's directory a replica of it: back up the \
         stream with NATS's own tools (nats stream backup), or a node's directory with that \
         node stopped",
    )
}

/// RESOURCE_EXHAUSTED for a Backup while another runs.
pub(super) fn backup_running() -> Status {
    Status::resource_exhausted(
        "a backup is already running (one at a time): wait for it to finish and ask again",
    )
}

/// The status that ends a backup whose file could not be read whole.
pub(super) fn backup_read_failed(path: &str, why: &str) -> Status {
    Status::internal(format!(
        "the backup stopped: {path} could not be read ({why}); what was sent is not a whole \
         backup: run it again"
    ))
}

/// INTERNAL for a state the code rules out: `what` says which.
pub(super) fn internal(what: &str) -> Status {
    Status::internal(what.to_owned())
}

/// An INVALID_ARGUMENT status with one field violation.
pub(super) fn invalid(field: &str, reason: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field} {reason}"),
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

/// PERMISSION_DENIED for an event whose actor (the field `field`) the
/// token `token` may not claim: it may log only as one of `allowed`.
pub(super) fn actor_denied(field: &str, actor: &str, token: &str, allowed: &[String]) -> Status {
    Status::permission_denied(format!(
        "{field} is {actor:?}, which token {token:?} may not log as: it may log only as {} \
         (its actors in the server config); name one of them, or leave the actor empty if \
         the token's own name is among them",
        allowed
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `INVALID_ARGUMENT` carrying `violations` as field violations, with a
/// message of `prefix` and every violation; `Ok` when there are none.
pub(super) fn check_violations(violations: ErrorDetails, prefix: &str) -> Result<(), Status> {
    let Some(bad) = violations
        .bad_request()
        .filter(|b| !b.field_violations.is_empty())
    else {
        return Ok(());
    };
    let summary = bad
        .field_violations
        .iter()
        .map(|v| format!("{} {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    Err(Status::with_error_details(
        Code::InvalidArgument,
        format!("{prefix}{summary}"),
        violations,
    ))
}

/// Microseconds since the epoch of a request's timestamp; `field` names it
/// in the refusal.
pub(super) fn micros_of(t: &Timestamp, field: &str) -> Result<i64, Status> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(invalid(field, "has nanos outside 0..1e9"));
    }
    t.seconds
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(i64::from(t.nanos / 1000)))
        .ok_or_else(|| invalid(field, "is out of range"))
}

pub(super) fn timestamp_pb(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

pub(super) fn receipt_pb(r: store::Receipt) -> pb::Receipt {
    pb::Receipt {
        seq: r.seq,
        id: r.id.into_string(),
        timestamp: Some(timestamp_pb(r.timestamp)),
        signature: r.signature.into_string(),
        duplicate: r.duplicate,
    }
}

/// The proofs asked for with receipts: none asked, the proofs, or why not.
pub(super) type AskedProofs = Option<Result<pb::ReceiptProofs, String>>;

pub(super) fn track_pb(receipt: Option<store::Receipt>) -> pb::TrackPerformanceResponse {
    pb::TrackPerformanceResponse {
        receipt: receipt.map(receipt_pb),
    }
}

pub(super) fn export_item_pb(
    record: Record,
    matched_fields: Vec<String>,
) -> pb::ExportSubjectResponse {
    pb::ExportSubjectResponse {
        event: Some(event_pb(record)),
        matched_fields,
    }
}

/// A record as the protobuf event (ExportSubject's; streams and Query pages
/// encode theirs without a `Struct`: `event_bytes`).
pub(super) fn event_pb(r: Record) -> pb::Event {
    // The text is a JSON object by construction.
    let details = serde_json::from_str::<StructFromJson>(r.details.as_str())
        .map_or_else(|_| Default::default(), |s| s.0);
    pb::Event {
        seq: r.seq,
        id: r.id.into_string(),
        timestamp: Some(timestamp_pb(r.timestamp)),
        event_type: r.event_type.into_string(),
        actor: r.actor.into_string(),
        caller: r.caller.map(Name::into_string).unwrap_or_default(),
        lead_id: r.lead_id.map(Name::into_string).unwrap_or_default(),
        workflow: r.workflow.map(Name::into_string).unwrap_or_default(),
        details: Some(details),
        idempotency_key: r.idempotency_key.map(Name::into_string).unwrap_or_default(),
        key_id: r.key_id.into_string(),
        prev: r.prev.into_string(),
        signature: r.signature.into_string(),
        details_json: String::new(),
    }
}

/// A verification report as VerifyIntegrity answers it; `elapsed` is how
/// long the walk took.
pub(crate) fn verify_pb(
    report: Report,
    elapsed: std::time::Duration,
) -> pb::VerifyIntegrityResponse {
    pb::VerifyIntegrityResponse {
        events_per_second: report.events_checked as f64 / elapsed.as_secs_f64().max(1e-9),
        segments_checked: report.segments_checked,
        ok: report.findings.is_empty(),
        events_checked: report.events_checked,
        head_seq: report.head_seq,
        head_signature: report.head_signature,
        problems: report
            .findings
            .into_iter()
            .map(|f| pb::Problem {
                kind: problem_kind(f.kind) as i32,
                seq: f.seq,
                line: f.line,
                file: f.file,
                message: f.message,
            })
            .collect(),
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    }
}

fn problem_kind(k: FindingKind) -> pb::ProblemKind {
    match k {
        FindingKind::Malformed => pb::ProblemKind::Malformed,
        FindingKind::BadSignature => pb::ProblemKind::BadSignature,
        FindingKind::ChainBreak => pb::ProblemKind::ChainBreak,
        FindingKind::SeqGap => pb::ProblemKind::SeqGap,
        FindingKind::SeqOutOfOrder => pb::ProblemKind::SeqOutOfOrder,
        FindingKind::Truncated => pb::ProblemKind::Truncated,
        FindingKind::UnknownKey => pb::ProblemKind::UnknownKey,
        FindingKind::CheckpointMismatch => pb::ProblemKind::CheckpointMismatch,
        FindingKind::SegmentMissing => pb::ProblemKind::SegmentMissing,
        FindingKind::SegmentModified => pb::ProblemKind::SegmentModified,
        FindingKind::SegmentUnreadable => pb::ProblemKind::SegmentUnreadable,
        FindingKind::SegmentUnlisted => pb::ProblemKind::SegmentUnlisted,
        FindingKind::ManifestModified => pb::ProblemKind::ManifestModified,
        FindingKind::WrongKey => pb::ProblemKind::WrongKey,
        FindingKind::HeadModified => pb::ProblemKind::HeadModified,
        FindingKind::TreeMismatch => pb::ProblemKind::TreeMismatch,
        FindingKind::RetiredKey => pb::ProblemKind::RetiredKey,
    }
}

/// The index's aggregates, with the `error` counts per type when asked for.
pub(super) fn stats_pb(stats: Stats, errors_by_type: HashMap<String, u64>) -> pb::GetStatsResponse {
    pb::GetStatsResponse {
        total_events: stats.total_events,
        by_type: stats.by_type.into_iter().collect(),
        by_workflow: stats.by_workflow.into_iter().collect(),
        leads_processed: stats.leads_processed,
        error_count: stats.error_count,
        first_event: stats.first_timestamp.map(timestamp_pb),
        last_event: stats.last_timestamp.map(timestamp_pb),
        head_seq: stats.head_seq,
        timeline: stats
            .timeline
            .into_iter()
            .map(|b| pb::TimeBucket {
                start: Some(timestamp_pb(b.start)),
                events: b.events,
                errors: b.errors,
            })
            .collect(),
        errors_by_type,
        leads_by_type: stats.leads_by_type.into_iter().collect(),
    }
}

pub(super) fn performance_pb(
    stats: Vec<OperationStats>,
    window: u32,
) -> pb::GetPerformanceStatsResponse {
    pb::GetPerformanceStatsResponse {
        operations: stats
            .into_iter()
            .map(|s| pb::OperationStats {
                operation: s.operation,
                source: match s.source {
                    Source::Tracked => pb::PerformanceSource::Tracked,
                    Source::Server => pb::PerformanceSource::Server,
                } as i32,
                count: s.summary.count,
                min_ms: s.summary.min,
                max_ms: s.summary.max,
                avg_ms: s.summary.avg,
                p50_ms: s.summary.p50,
                p95_ms: s.summary.p95,
                p99_ms: s.summary.p99,
            })
            .collect(),
        window,
    }
}

pub(super) fn rotate_pb(sealed: Option<Sealed>) -> pb::RotateResponse {
    match sealed {
        Some(s) => pb::RotateResponse {
            rotated: true,
            file: s.file,
            first_seq: s.first_seq,
            last_seq: s.last_seq,
        },
        None => pb::RotateResponse::default(),
    }
}

pub(super) fn retention_pb(purge: Option<Purge>) -> pb::ApplyRetentionResponse {
    match purge {
        Some(p) => pb::ApplyRetentionResponse {
            segments: p.segments,
            first_seq: p.first_seq,
            through_seq: p.through_seq,
            event_seq: p.event_seq,
        },
        None => pb::ApplyRetentionResponse::default(),
    }
}

pub(super) fn test_alerts_pb(results: Vec<(String, Result<(), String>)>) -> pb::TestAlertsResponse {
    pb::TestAlertsResponse {
        channels: results
            .into_iter()
            .map(|(channel, r)| pb::ChannelResult {
                channel,
                ok: r.is_ok(),
                error: r.err().unwrap_or_default(),
            })
            .collect(),
    }
}

pub(super) fn alert_status_pb(
    (channels, rules, dropped, missed): (Vec<ChannelStatus>, Vec<RuleStatus>, u64, u64),
) -> pb::GetAlertStatusResponse {
    pb::GetAlertStatusResponse {
        channels: channels
            .into_iter()
            .map(|c| pb::AlertChannelStatus {
                channel: c.channel,
                sent: c.sent,
                failed: c.failed,
                last_error: c.last_error,
            })
            .collect(),
        rules: rules
            .into_iter()
            .map(|r| pb::AlertRuleStatus {
                name: r.name,
                in_window: r.in_window,
                fired: r.fired,
                last_fired: (r.last_fired > 0).then(|| timestamp_pb(r.last_fired)),
            })
            .collect(),
        dropped,
        missed,
    }
}

/// Each endpoint's delivery state, with how far it is behind `head`.
pub(super) fn webhook_status_pb(
    endpoints: Vec<EndpointStatus>,
    head: u64,
) -> pb::GetWebhookStatusResponse {
    pb::GetWebhookStatusResponse {
        endpoints: endpoints
            .into_iter()
            .map(|w| pb::WebhookStatus {
                behind: head.saturating_sub(w.delivered_seq),
                name: w.name,
                url: w.url,
                delivered_seq: w.delivered_seq,
                delivered: w.delivered,
                failures: w.failures,
                consecutive_failures: w.consecutive_failures,
                last_error: w.last_error,
                last_error_at: (w.last_error_at > 0).then(|| timestamp_pb(w.last_error_at)),
                secret_generated: w.secret_generated,
                skipped: w.skipped,
                paused: w.paused,
            })
            .collect(),
    }
}

/// GetWebhookSecret's answer: the generated secret of endpoint `name`, or
/// why there is none to show.
pub(super) fn webhook_secret_pb(
    name: &str,
    secret: Result<&Secret, NoSecret>,
) -> Result<pb::GetWebhookSecretResponse, Status> {
    match secret {
        Ok(secret) => Ok(pb::GetWebhookSecretResponse {
            name: name.to_owned(),
            secret: secret.expose().to_owned(),
        }),
        Err(NoSecret::Unknown(names)) if names.is_empty() => Err(Status::not_found(format!(
            "no webhook named {name:?}: none is configured ([[webhooks]] in the server config)"
        ))),
        Err(NoSecret::Unknown(names)) => Err(Status::not_found(format!(
            "no webhook named {name:?}; the configured ones are {}",
            names.join(", ")
        ))),
        Err(NoSecret::Configured) => Err(Status::failed_precondition(format!(
            "webhook {name:?} signs with the secret set in the server config (secret or \
             secret_file), which is not shown; read it there. Only a secret the server \
             generated (for a webhook configured without one) is shown"
        ))),
    }
}

/// What mailing a report came to: how many recipients took it, or why none.
pub(super) fn mail_report_pb(
    sent: Option<Result<usize, String>>,
) -> Result<pb::MailReportResponse, Status> {
    match sent {
        Some(Ok(recipients)) => Ok(pb::MailReportResponse {
            recipients: u32::try_from(recipients).unwrap_or(u32::MAX),
        }),
        Some(Err(e)) => Err(Status::unavailable(format!(
            "the SMTP server did not take the mail: {e}; check [alerts.email] (auditlog alerts \
             test sends a test mail)"
        ))),
        None => Err(Status::failed_precondition(
            "no email channel is configured: set [alerts.email] (host, from, to) in the server \
             config to mail reports",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_min_seq_past_the_head_is_out_of_range_on_a_single_node_only() {
        let behind = || StoreError::Behind {
            head: 1016,
            wanted: 1_000_000_000,
        };
        let single = min_seq_status(behind(), true);
        assert_eq!(single.code(), Code::OutOfRange, "{single:?}");
        assert!(
            single
                .message()
                .starts_with("min_seq 1000000000 is past this log's head 1016: "),
            "{single:?}"
        );
        let follower = min_seq_status(behind(), false);
        assert_eq!(follower.code(), Code::Unavailable, "{follower:?}");
        assert!(follower.message().contains("catching up"), "{follower:?}");
        let closed = min_seq_status(StoreError::Closed, true);
        assert_eq!(closed.code(), Code::Unavailable, "{closed:?}");
    }
}
