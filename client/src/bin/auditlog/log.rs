//! `auditlog log`: appends one event and prints its receipt.

use auditlog_client::proof::VerifierKey;
use auditlog_client::{Client, NewEvent, ProvenReceipts, pb};

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
    if args.proof {
        let key = args
            .key
            .or_else(|| std::env::var("AUDITLOG_VERIFIER_KEY").ok())
            .filter(|k| !k.is_empty());
        let key = key
            .as_deref()
            .map(VerifierKey::parse)
            .transpose()
            .map_err(|e| CliError::Usage(format!("--key: {e}")))?;
        let proven = client.log_with_proof(event, key.as_ref()).await?;
        return print_proven(proven, key.is_some(), json);
    }
    let receipt = client.log(event).await?;
    print_receipt(&receipt, json)
}

/// A receipt and its checked proof; an error after the receipt when the
/// proof did not come or does not verify.
fn print_proven(proven: ProvenReceipts, trusted: bool, json: bool) -> Result<(), CliError> {
    let Some(receipt) = proven.receipts.first() else {
        return Err(CliError::Failed("the server sent no receipt".into()));
    };
    let seq = receipt.seq;
    let proof = match proven.proof {
        Ok(p) => p,
        Err(e) => {
            print_receipt(receipt, json)?;
            return Err(CliError::Failed(format!(
                "seq {seq} is written, but its proof did not check out: {e}"
            )));
        }
    };
    let c = &proof.checkpoint.checkpoint;
    let hashes = proof.proof_lens.first().copied().unwrap_or(0);
    let untrusted = if trusted {
        ""
    } else {
        " (checked with the key the server sent: pass --key to check against a key you trust)"
    };
    if json {
        let mut out = receipt_json(receipt);
        out["proof"] = serde_json::json!({
            "origin": c.origin,
            "tree_size": c.size,
            "root_hash": crate::proofs::hex(&c.root),
            "note": proof.checkpoint.note,
            "signed_by": proof.signed_by,
            "proof_hashes": hashes,
            "key_given": trusted,
            "verified": true,
        });
        say!("{out}");
        return Ok(());
    }
    print_receipt(receipt, false)?;
    say!(
        "OK: seq {seq} is in {} under the checkpoint of tree size {} signed by {} (root {}, {hashes} \
         proof hashes){untrusted}",
        c.origin,
        c.size,
        proof.signed_by,
        crate::proofs::hex(&c.root),
    );
    say!("{}", proof.checkpoint.note.trim_end());
    Ok(())
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
