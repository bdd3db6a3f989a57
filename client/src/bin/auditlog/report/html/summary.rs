//! The top of the page: four cards with the period's key figures, and a
//! few sentences a reader takes away without reading the tables. The
//! figures leave timing samples (`performance` events) out: the event count
//! and the error rate are of the business events, and the number of
//! samples is said beside them.

use std::fmt::{self, Write as _};

use auditlog_client::pb;

use super::{
    Data, FUNNEL, PERFORMANCE, business_events, count, esc, millis, percent, ratio, stage_leads,
    timing_samples,
};
use crate::format::{datetime, ranked};

fn card(out: &mut String, label: &str, metric: &str, value: &str, note: &str) -> fmt::Result {
    writeln!(
        out,
        r#"<div class="card {metric}"><div class="label">{}</div><div class="value" data-metric="{metric}">{}</div><div class="note">{note}</div></div>"#,
        esc(label),
        esc(value),
    )
}

pub(super) fn summary(out: &mut String, d: &Data) -> fmt::Result {
    let s = &d.stats;
    let ingested = stage_leads(s, FUNNEL[0].0);
    let (last_type, last_name) = FUNNEL[FUNNEL.len() - 1];
    let converted = stage_leads(s, last_type);
    let events = business_events(s);
    let types = s.by_type.keys().filter(|t| *t != PERFORMANCE).count();
    writeln!(out, r#"<section class="cards">"#)?;
    card(
        out,
        "Events",
        "total-events",
        &count(events),
        &format!(
            r#"across {} event types, besides <span data-metric="performance-events">{}</span> timing samples"#,
            count(types as u64),
            count(timing_samples(s))
        ),
    )?;
    card(
        out,
        "Errors",
        "error-count",
        &count(s.error_count),
        &format!(
            r#"<span data-metric="error-rate">{}</span> of the events"#,
            percent(ratio(s.error_count, events))
        ),
    )?;
    card(
        out,
        "New leads",
        "leads-ingested",
        &count(ingested),
        &format!(
            r#"<span data-metric="leads-active">{}</span> leads active in the period"#,
            count(s.leads_processed)
        ),
    )?;
    card(
        out,
        "Conversion",
        "conversion-rate",
        &percent(ratio(converted, ingested)),
        &format!(
            "{} leads reached “{}”, for {} new leads",
            count(converted),
            esc(last_name),
            count(ingested)
        ),
    )?;
    writeln!(out, "</section>")?;
    highlights(out, d)
}

/// A few sentences a reader takes away without reading the tables.
fn highlights(out: &mut String, d: &Data) -> fmt::Result {
    let s = &d.stats;
    let mut items: Vec<String> = Vec::new();
    if s.total_events == 0 {
        items.push("No events were logged in this period.".to_owned());
    } else if business_events(s) == 0 {
        items.push("Only timing samples were logged in this period.".to_owned());
    }
    if let Some(b) = s
        .timeline
        .iter()
        .filter(|b| b.events > 0)
        .max_by(|a, b| a.events.cmp(&b.events).then(b_start(b).cmp(&b_start(a))))
        && let Some(start) = b.start.as_ref().and_then(datetime)
    {
        items.push(format!(
            "Busiest {}: <strong>{}</strong> with {} events.",
            d.period.unit(),
            esc(&d.period.bucket_span(start)),
            count(b.events)
        ));
    }
    let kinds = ranked(&s.errors_by_type);
    if let Some((_, top)) = kinds.first() {
        let tied: Vec<String> = kinds
            .iter()
            .filter(|(_, n)| n == top)
            .map(|(kind, _)| format!("<strong>{}</strong>", esc(kind)))
            .collect();
        let (noun, each) = if tied.len() == 1 {
            ("error", "")
        } else {
            ("errors", " each")
        };
        items.push(format!(
            "Most frequent {noun}: {} ({}{each} of {}).",
            tied.join(", "),
            count(*top),
            count(s.error_count)
        ));
    } else if business_events(s) > 0 {
        items.push("No errors were logged.".to_owned());
    }
    if let Some(slowest) = d
        .performance
        .operations
        .iter()
        .filter(|o| o.p95_ms.is_finite())
        .max_by(|a, b| a.p95_ms.total_cmp(&b.p95_ms))
    {
        items.push(format!(
            "Slowest operation (p95): <strong>{}</strong> at {}.",
            esc(&slowest.operation),
            millis(slowest.p95_ms)
        ));
    }
    if items.is_empty() {
        return Ok(());
    }
    writeln!(out, r#"<section class="highlights"><ul>"#)?;
    for item in items {
        writeln!(out, "<li>{item}</li>")?;
    }
    writeln!(out, "</ul></section>")
}

fn b_start(b: &pb::TimeBucket) -> i64 {
    b.start.as_ref().map_or(0, |t| t.seconds)
}
