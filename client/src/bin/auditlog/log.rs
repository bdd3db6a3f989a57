//! `auditlog log`: appends one event and prints its receipt.

use auditlog_client::{Client, NewEvent, pb};

use crate::CliError;
use crate::cli::LogArgs;
use crate::format::{receipt_json, timestamp_text};

pub(crate) async fn run(client: &Client, args: LogArgs, json: bool) -> Result<(), CliError> {
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
    if let Some(d) = args.details {
        event = event.details(serde_json::Value::Object(details_of(&d)?));
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
