//! `auditlog errors`: the recent `error` events with their type and
//! message, and with `--verbose` their tracebacks; filtered by time,
//! workflow and error type.

use std::io::Write as _;

use auditlog_client::{Client, Query, pb};
use clap::Args;

use crate::CliError;
use crate::cli::RangeArgs;
use crate::format::{self, Table, timestamp_text};
use crate::query::{events_json, fetch};

/// The flags of `auditlog errors`.
#[derive(Debug, Args)]
pub(crate) struct ErrorsArgs {
    /// How many (at least 1); more than 1,000 are fetched a page of 1,000
    /// at a time.
    #[arg(
        long,
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..),
        allow_negative_numbers = true
    )]
    limit: u32,
    /// Only this error type, the event's `details.error_type` (repeatable:
    /// any of them).
    #[arg(long = "type", value_name = "ERROR_TYPE")]
    types: Vec<String>,
    /// Only this workflow.
    #[arg(long)]
    workflow: Option<String>,
    #[command(flatten)]
    range: RangeArgs,
    /// Also print each traceback.
    #[arg(long, short)]
    verbose: bool,
}

pub(crate) async fn run(client: &Client, args: ErrorsArgs, json: bool) -> Result<(), CliError> {
    let mut q = Query::new().event_type("error").details_as_json();
    if let Some(w) = &args.workflow {
        q = q.workflow(w);
    }
    let (since, until) = args.range.times()?;
    if let Some(t) = since {
        q = q.since(t);
    }
    if let Some(t) = until {
        q = q.until(t);
    }
    // The server filters on the event's fields; the error type is in its
    // details, so that filter runs here.
    let of_type = |e: &pb::Event| args.types.contains(&format::detail_str(e, "error_type"));
    let keep: Option<&dyn Fn(&pb::Event) -> bool> = if args.types.is_empty() {
        None
    } else {
        Some(&of_type)
    };
    let page = fetch(client, q, args.limit, keep).await?;
    if json {
        say!("{}", events_json(&page));
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
    if args.verbose {
        for e in &page.events {
            let tb = format::detail_str(e, "traceback");
            if !tb.is_empty() {
                let tb = format::printable(&tb, true);
                writeln!(out, "\n--- seq {} traceback ---\n{tb}", e.seq)?;
            }
        }
    }
    Ok(())
}
