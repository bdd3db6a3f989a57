//! `auditlog log`: appends one event and prints its receipt.

use auditlog_client::{Client, NewEvent, pb};

use crate::CliError;
use crate::cli::LogArgs;
use crate::format::{receipt_json, timestamp_text};

pub(crate) async fn run(client: &Client, args: LogArgs, json: bool) -> Result<(), CliError> {
    let event_type = args.event_type.clone();
    let mut event = NewEvent::new(args.event_type);
    if let Some(l) = args.lead {
        event = event.lead(l);
    }
    if let Some(w) = args.workflow {
        event = event.workflow(w);
    }
    if let Some(a) = args.actor {
        event = event.actor(a);
    }
    if let Some(k) = args.idempotency_key {
        event = event.idempotency_key(k);
    }
    let mut details = serde_json::Map::new();
    if let Some(d) = args.details {
        details = details_of(&d)?;
        event = event.details(serde_json::Value::Object(details.clone()));
    }
    if event_type == "error" {
        let missing: Vec<&str> = ["error_type", "error_message"]
            .into_iter()
            .filter(|k| details.get(*k).is_none_or(|v| v.is_null() || v == ""))
            .collect();
        if !missing.is_empty() {
            // Logged all the same: an audit log keeps what it is given.
            eprintln!(
                "auditlog: warning: this error event has no {} in --details, so `auditlog errors` \
                 shows it blank; pass e.g. --details '{{\"error_type\":\"Timeout\",\"error_message\":\"CRM did not answer\"}}'",
                missing.join(" or ")
            );
        }
    }
    let receipt = client.log(event).await?;
    print_receipt(&receipt, json)
}

/// The `--details` flag's JSON object.
pub(crate) fn details_of(
    text: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, CliError> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(CliError::Usage(
            "--details must be a JSON object, like '{\"key\": \"value\"}'".into(),
        )),
        Err(e) => Err(CliError::Usage(format!("--details is not valid JSON: {e}"))),
    }
}

/// A receipt as text, or as JSON with `--json`.
pub(crate) fn print_receipt(receipt: &pb::Receipt, json: bool) -> Result<(), CliError> {
    if json {
        say!("{}", receipt_json(receipt));
    } else {
        let dup = if receipt.duplicate {
            "  (duplicate: already logged with this idempotency key)"
        } else {
            ""
        };
        say!(
            "seq {}  id {}  time {}\nsignature {}{dup}",
            receipt.seq,
            receipt.id,
            timestamp_text(receipt.timestamp.as_ref()),
            receipt.signature
        );
    }
    Ok(())
}
