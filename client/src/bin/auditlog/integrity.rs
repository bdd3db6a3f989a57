//! `auditlog integrity`: has the server verify the log's signatures and
//! chain (and any receipts kept as checkpoints); a finding prints and
//! exits 1.

use auditlog_client::{Client, pb};

use crate::{CliError, progress};

pub(crate) async fn run(
    client: &Client,
    from_seq: u64,
    to_seq: u64,
    checkpoints: &[String],
    json: bool,
) -> Result<(), CliError> {
    let checkpoints = checkpoints
        .iter()
        .map(|c| {
            let (seq, sig) = c.split_once(':').ok_or_else(|| {
                CliError::Usage(format!("--checkpoint {c:?} is not SEQ:SIGNATURE"))
            })?;
            let seq = seq.parse().map_err(|_| {
                CliError::Usage(format!("--checkpoint {c:?}: {seq:?} is not a seq number"))
            })?;
            Ok(pb::Checkpoint {
                seq,
                signature: sig.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    let progress = progress::step("verifying the log's signatures and chain".to_owned());
    let report = client
        .verify_with(pb::VerifyIntegrityRequest {
            from_seq,
            to_seq,
            checkpoints,
        })
        .await;
    progress.finish_and_clear();
    let report = report?;
    if json {
        say!("{}", report.to_json());
    } else if report.ok {
        say!("{}", ok_line(&report));
    } else {
        say!(
            "FAILED: {} problem(s) in {} events checked",
            report.problems.len(),
            report.events_checked
        );
        for p in &report.problems {
            say!(
                "  {:<20} seq {:<8} line {:<8} {}",
                pb::ProblemKind::short_name(p.kind),
                p.seq,
                p.line,
                p.message
            );
        }
    }
    if report.ok {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "integrity check failed: {} problem(s) found",
            report.problems.len()
        )))
    }
}

/// The line for a clean report: what was verified, how fast, and the head
/// it ends at (an empty log has none to name).
fn ok_line(report: &pb::VerifyIntegrityResponse) -> String {
    let rate = if report.events_checked > 0 && report.events_per_second.is_finite() {
        format!(" ({:.0} events/s)", report.events_per_second)
    } else {
        String::new()
    };
    let head = match (report.head_seq, report.head_signature.as_str()) {
        (0, "") => "head seq 0 (empty log)".to_owned(),
        (seq, "") => format!("head seq {seq}"),
        (seq, signature) => format!("head seq {seq} signature {signature}"),
    };
    format!(
        "OK: {} events in {} segment file(s) verified in {} ms{rate}; {head}",
        report.events_checked, report.segments_checked, report.elapsed_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_report_names_its_head_or_says_the_log_is_empty() {
        let mut report = pb::VerifyIntegrityResponse {
            ok: true,
            events_checked: 5,
            segments_checked: 1,
            elapsed_ms: 2,
            events_per_second: 2500.0,
            head_seq: 5,
            head_signature: "ab12".into(),
            ..Default::default()
        };
        assert_eq!(
            ok_line(&report),
            "OK: 5 events in 1 segment file(s) verified in 2 ms (2500 events/s); head seq 5 \
             signature ab12"
        );
        report.events_checked = 0;
        report.events_per_second = f64::NAN;
        report.head_seq = 0;
        report.head_signature.clear();
        assert_eq!(
            ok_line(&report),
            "OK: 0 events in 1 segment file(s) verified in 2 ms; head seq 0 (empty log)"
        );
    }
}
