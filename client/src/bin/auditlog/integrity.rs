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
    } else {
        for line in report.text_lines() {
            say!("{line}");
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
