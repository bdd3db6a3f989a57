//! `auditlog query` and `auditlog history`: events read a page at a time
//! up to the limit asked for, printed as one table (or as JSON).
//!
//! The JSON of `query`, `history` and `errors` is one shape:
//! `{"events": [...], "next_page_token": "..."}`, the token empty when
//! nothing more matches.

use auditlog_client::{Client, Query, pb};

use crate::CliError;
use crate::cli::QueryArgs;
use crate::format::{self, Table, event_json, timestamp_text};

/// The most events one Query call returns.
const PAGE: u32 = 1000;

pub(crate) async fn run(client: &Client, args: QueryArgs, json: bool) -> Result<(), CliError> {
    let mut q = args.filter.query()?.details_as_json();
    if args.oldest_first {
        q = q.oldest_first();
    }
    if let Some(t) = args.page_token {
        q = q.page_token(t);
    }
    let page = fetch(client, q, args.limit, None).await?;
    if json {
        say!("{}", events_json(&page));
        return Ok(());
    }
    if page.events.is_empty() {
        eprintln!("no matching events");
        return Ok(());
    }
    print_events(&page.events, args.verbose)?;
    if !page.next_page_token.is_empty() {
        eprintln!(
            "more events: add --page-token {} for the next page",
            page.next_page_token
        );
    }
    Ok(())
}

/// Up to `limit` events matching `query` (and `keep`, when given), one
/// Query call of at most 1,000 after another.
///
/// Without `keep` each call asks for exactly what is still missing, so the
/// returned `next_page_token` continues right after the last event
/// returned. With `keep`, which filters on the client, pages are full and
/// the token continues after the last page read.
pub(crate) async fn fetch(
    client: &Client,
    mut query: Query,
    limit: u32,
    keep: Option<&dyn Fn(&pb::Event) -> bool>,
) -> Result<pb::QueryResponse, CliError> {
    let mut out = pb::QueryResponse::default();
    loop {
        let missing = limit.saturating_sub(out.events.len() as u32);
        query.request.limit = match keep {
            None => missing.clamp(1, PAGE),
            Some(_) => PAGE,
        };
        let page = client.query(query.clone()).await?;
        match keep {
            None => out.events.extend(page.events),
            Some(keep) => out
                .events
                .extend(page.events.into_iter().filter(|e| keep(e))),
        }
        out.next_page_token = page.next_page_token;
        if out.next_page_token.is_empty() || out.events.len() >= limit as usize {
            out.events.truncate(limit as usize);
            return Ok(out);
        }
        query.request.page_token.clone_from(&out.next_page_token);
    }
}

/// `auditlog history`: a lead's full timeline, oldest first.
pub(crate) async fn history(
    client: &Client,
    lead: &str,
    verbose: bool,
    json: bool,
) -> Result<(), CliError> {
    let events = client.lead_history_as_json(lead).await?;
    if json {
        let page = pb::QueryResponse {
            events,
            next_page_token: String::new(),
        };
        say!("{}", events_json(&page));
        return Ok(());
    }
    if events.is_empty() {
        eprintln!("no events for lead {lead:?}");
        return Ok(());
    }
    print_events(&events, verbose)
}

/// Events and the token that continues after them, as the JSON of query,
/// history and errors.
pub(crate) fn events_json(page: &pb::QueryResponse) -> serde_json::Value {
    serde_json::json!({
        "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    })
}

/// Prints events as a table; the CALLER column (the token that wrote each
/// event) appears when any event has one, i.e. when the server has tokens.
fn print_events(events: &[pb::Event], verbose: bool) -> Result<(), CliError> {
    let mut headers = vec!["TIME", "SEQ", "TYPE", "LEAD", "WORKFLOW", "ACTOR"];
    let callers = events.iter().any(|e| !e.caller.is_empty());
    if callers {
        headers.push("CALLER");
    }
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
        if callers {
            row.push(e.caller.clone());
        }
        if verbose {
            row.push(format::details_text(e));
        }
        table.row(row);
    }
    table.print(&mut std::io::stdout().lock())?;
    Ok(())
}
