//! `auditlog stats`: totals by type and workflow, leads, errors, and the
//! first and last event.

use std::io::Write as _;

use auditlog_client::Client;

use crate::CliError;
use crate::format::{self, Table, timestamp_text};

pub(crate) async fn run(
    client: &Client,
    workflow: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let s = client.stats(workflow).await?;
    if json {
        say!("{}", format::stats_json(&s));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    if let Some(w) = workflow {
        writeln!(out, "workflow:        {w}")?;
    }
    writeln!(out, "events:          {}", s.total_events)?;
    writeln!(out, "leads processed: {}", s.leads_processed)?;
    writeln!(out, "errors:          {}", s.error_count)?;
    writeln!(
        out,
        "first event:     {}",
        timestamp_text(s.first_event.as_ref())
    )?;
    writeln!(
        out,
        "last event:      {}",
        timestamp_text(s.last_event.as_ref())
    )?;
    writeln!(out, "head seq:        {}", s.head_seq)?;
    for (title, map) in [("by type", &s.by_type), ("by workflow", &s.by_workflow)] {
        if map.is_empty() {
            continue;
        }
        writeln!(out, "\n{title}:")?;
        let mut table = Table::new(vec!["NAME", "EVENTS"]);
        for (name, n) in format::ranked(map) {
            table.row(vec![name.to_owned(), n.to_string()]);
        }
        table.print(&mut out)?;
    }
    Ok(())
}
