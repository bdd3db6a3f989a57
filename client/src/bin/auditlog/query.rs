//! `auditlog query` and `auditlog history`: pages of events, printed as
//! one table (or as JSON).

use std::io::Write as _;

use auditlog_client::{Client, pb};

use crate::CliError;
use crate::cli::QueryArgs;
use crate::format::{self, Table, event_json, timestamp_text};

pub(crate) async fn run(client: &Client, args: QueryArgs, json: bool) -> Result<(), CliError> {
    let mut q = args.filter.query()?.limit(args.limit);
    if args.oldest_first {
        q = q.oldest_first();
    }
    if let Some(t) = args.page_token {
        q = q.page_token(t);
    }
    let page = client.query(q).await?;
    if json {
        let value = serde_json::json!({
            "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
            "next_page_token": page.next_page_token,
        });
        say!("{value}");
        return Ok(());
    }
    if page.events.is_empty() {
        eprintln!("no matching events");
        return Ok(());
    }
    print_events(&page.events, false, args.verbose)?;
    if !page.next_page_token.is_empty() {
        eprintln!(
            "more events: add --page-token {} for the next page",
            page.next_page_token
        );
    }
    Ok(())
}

/// `auditlog history`: a lead's full timeline, oldest first.
pub(crate) async fn history(
    client: &Client,
    lead: &str,
    verbose: bool,
    json: bool,
) -> Result<(), CliError> {
    let events = client.lead_history(lead).await?;
    if events.is_empty() && !json {
        eprintln!("no events for lead {lead:?}");
    }
    print_events(&events, json, verbose)
}

/// Prints events as a table, or as a JSON array.
fn print_events(events: &[pb::Event], json: bool, verbose: bool) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    if json {
        let all: Vec<_> = events.iter().map(event_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(all))?;
        return Ok(());
    }
    let mut headers = vec!["TIME", "SEQ", "TYPE", "LEAD", "WORKFLOW", "ACTOR"];
    if verbose {
        headers.push("DETAILS");
    }
    let mut table = Table::new(headers);
    for e in events {
        let mut row = vec![
            timestamp_text(e.timestamp.as_ref()),
            e.seq.to_string(),
            e.event_type.clone(),
            e.lead_id.clone(),
            e.workflow.clone(),
            e.actor.clone(),
        ];
        if verbose {
            row.push(format::details_text(e));
        }
        table.row(row);
    }
    table.print(&mut out)?;
    Ok(())
}
