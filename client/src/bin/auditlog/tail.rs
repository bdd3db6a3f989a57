//! `auditlog tail`: follows live events (after any history from
//! `--from-seq`) until Ctrl-C or until the server ends the stream.

use std::io::Write as _;

use auditlog_client::Client;
use futures::StreamExt as _;

use crate::CliError;
use crate::cli::FilterArgs;
use crate::format::{self, event_json, printable, timestamp_text};

pub(crate) async fn run(
    client: &Client,
    filter: &FilterArgs,
    from_seq: Option<u64>,
    verbose: bool,
    json: bool,
) -> Result<(), CliError> {
    let from = match from_seq {
        Some(s) => s,
        None => client.stats(None).await?.head_seq + 1,
    };
    let mut stream = client.stream(filter.query()?, from, true).await?;
    if !json {
        eprintln!("following events from seq {from} (Ctrl-C to stop)");
    }
    let mut out = std::io::stdout().lock();
    loop {
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            next = stream.next() => next,
        };
        let event = match next {
            Some(e) => e?,
            None => return Err(CliError::Failed("the server ended the stream".into())),
        };
        if json {
            writeln!(out, "{}", event_json(&event))?;
        } else {
            let mut line = format!(
                "{}  {:>6}  {:<18} lead={} workflow={} actor={}",
                timestamp_text(event.timestamp.as_ref()),
                event.seq,
                printable(&event.event_type, false),
                printable(&event.lead_id, false),
                printable(&event.workflow, false),
                printable(&event.actor, false),
            );
            if !event.caller.is_empty() {
                line.push_str(" caller=");
                line.push_str(&printable(&event.caller, false));
            }
            if verbose {
                line.push_str("  ");
                line.push_str(&printable(&format::details_text(&event), false));
            }
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
}
