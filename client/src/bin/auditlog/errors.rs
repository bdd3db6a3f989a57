//! `auditlog errors`: the recent `error` events with their type and
//! message, and with `--verbose` their tracebacks.

use std::io::Write as _;

use auditlog_client::{Client, Query};

use crate::CliError;
use crate::format::{self, Table, event_json, timestamp_text};

pub(crate) async fn run(
    client: &Client,
    limit: u32,
    verbose: bool,
    json: bool,
) -> Result<(), CliError> {
    let page = client
        .query(Query::new().event_type("error").limit(limit))
        .await?;
    if json {
        let all: Vec<_> = page.events.iter().map(event_json).collect();
        say!("{}", serde_json::Value::Array(all));
        return Ok(());
    }
    if page.events.is_empty() {
        eprintln!("no error events");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let mut table = Table::new(vec![
        "TIME",
        "SEQ",
        "ERROR TYPE",
        "MESSAGE",
        "LEAD",
        "WORKFLOW",
    ]);
    for e in &page.events {
        table.row(vec![
            timestamp_text(e.timestamp.as_ref()),
            e.seq.to_string(),
            format::detail_str(e, "error_type"),
            format::detail_str(e, "error_message"),
            e.lead_id.clone(),
            e.workflow.clone(),
        ]);
    }
    table.print(&mut out)?;
    if verbose {
        for e in &page.events {
            let tb = format::detail_str(e, "traceback");
            if !tb.is_empty() {
                writeln!(out, "\n--- seq {} traceback ---\n{tb}", e.seq)?;
            }
        }
    }
    Ok(())
}
