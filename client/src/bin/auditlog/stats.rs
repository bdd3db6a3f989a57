//! `auditlog stats`: totals by type and workflow, leads, errors, the first
//! and last event, and a timeline per hour or day, over a time range, a
//! workflow and event types.
//!
//! `performance` events (timings) are shown apart: the text's figures count
//! the business events, and one line counts the timings, which would
//! otherwise crowd them (they can be most of a day's events).

use std::collections::HashMap;
use std::io::Write as _;

use auditlog_client::{Client, pb};
use clap::{Args, ValueEnum};

use crate::CliError;
use crate::cli::RangeArgs;
use crate::format::{self, Table, timestamp_text};

/// The event type of timings.
const PERFORMANCE: &str = "performance";

/// The flags of `auditlog stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only this workflow.
    #[arg(long)]
    workflow: Option<String>,
    /// Only this event type (repeatable: any of them).
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    #[command(flatten)]
    range: RangeArgs,
    /// Also a timeline: events and errors per hour or per day (UTC).
    #[arg(long, value_enum, value_name = "BUCKET")]
    by: Option<Bucket>,
}

/// A timeline's bucket.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    fn seconds(self) -> u32 {
        match self {
            Bucket::Hour => 3600,
            Bucket::Day => 86_400,
        }
    }
}

pub(crate) async fn run(client: &Client, args: StatsArgs, json: bool) -> Result<(), CliError> {
    let (since, until) = args.range.times()?;
    let request = pb::GetStatsRequest {
        workflow: args.workflow.clone().unwrap_or_default(),
        since: since.map(Into::into),
        until: until.map(Into::into),
        bucket_seconds: args.by.map_or(0, Bucket::seconds),
        event_types: args.types.clone(),
        ..pb::GetStatsRequest::default()
    };
    let mut s = client.stats_with(request.clone()).await?;
    if json {
        let mut value = format::stats_json(&s);
        if args.by.is_some() {
            value["timeline"] = s
                .timeline
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "start": timestamp_text(b.start.as_ref()),
                        "events": b.events,
                        "errors": b.errors,
                    })
                })
                .collect();
        }
        say!("{value}");
        return Ok(());
    }
    // Timings apart: their counts per workflow and per bucket come from a
    // second call over them alone, and are taken off the figures.
    let timings = s.by_type.get(PERFORMANCE).copied().unwrap_or(0);
    let shown_apart = timings > 0 && args.types.iter().all(|t| t != PERFORMANCE);
    if shown_apart {
        let only = client
            .stats_with(pb::GetStatsRequest {
                event_types: vec![PERFORMANCE.to_owned()],
                ..request
            })
            .await?;
        s.by_type.remove(PERFORMANCE);
        s.total_events = s.total_events.saturating_sub(only.total_events);
        subtract(&mut s.by_workflow, &only.by_workflow);
        // The two timelines may start at different buckets.
        let by_start: HashMap<i64, u64> = only
            .timeline
            .iter()
            .filter_map(|b| Some((b.start.as_ref()?.seconds, b.events)))
            .collect();
        for b in &mut s.timeline {
            if let Some(n) = b.start.as_ref().and_then(|t| by_start.get(&t.seconds)) {
                b.events = b.events.saturating_sub(*n);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if let Some(w) = &args.workflow {
        writeln!(out, "workflow:        {w}")?;
    }
    if !args.types.is_empty() {
        writeln!(out, "types:           {}", args.types.join(", "))?;
    }
    if let Some(t) = since {
        writeln!(out, "since:           {}", timestamp_text(Some(&t.into())))?;
    }
    if let Some(t) = until {
        writeln!(out, "until:           {}", timestamp_text(Some(&t.into())))?;
    }
    writeln!(out, "events:          {}", s.total_events)?;
    if shown_apart {
        writeln!(
            out,
            "performance:     {timings} timing events, not counted here (see auditlog performance)"
        )?;
    }
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
    if let Some(by) = args.by {
        let title = match by {
            Bucket::Hour => "per hour (UTC)",
            Bucket::Day => "per day (UTC)",
        };
        writeln!(out, "\n{title}:")?;
        let mut table = Table::new(vec!["START", "EVENTS", "ERRORS"]);
        for b in &s.timeline {
            table.row(vec![
                timestamp_text(b.start.as_ref()),
                b.events.to_string(),
                b.errors.to_string(),
            ]);
        }
        table.print(&mut out)?;
    }
    Ok(())
}

/// `counts` less `less`, dropping names left at zero.
fn subtract(counts: &mut HashMap<String, u64>, less: &HashMap<String, u64>) {
    for (name, n) in less {
        if let Some(c) = counts.get_mut(name) {
            *c = c.saturating_sub(*n);
        }
    }
    counts.retain(|_, n| *n > 0);
}
