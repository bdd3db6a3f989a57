//! `auditlog log`: appends one event and prints its receipt.

use auditlog_client::{Client, NewEvent};

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
        let value: serde_json::Value = serde_json::from_str(&d)
            .map_err(|e| CliError::Usage(format!("--details is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(CliError::Usage(
                "--details must be a JSON object, like '{\"key\": \"value\"}'".into(),
            ));
        }
        event = event.details(value);
    }
    let receipt = client.log(event).await?;
    if json {
        say!("{}", receipt_json(&receipt));
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
