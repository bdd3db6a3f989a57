//! The page's blocks below the summary, in page order: the activity chart,
//! the lead funnel, events by type and workflow, errors, performance, and
//! the newest events.

use std::fmt::{self, Write as _};

use auditlog_client::pb;

use super::{
    Data, FUNNEL, PERFORMANCE, business_events, count, esc, millis, percent, ratio, section_head,
    stage_leads, time_text, timing_samples, truncate,
};
use crate::format::{datetime, detail_str, details_json, ranked, timestamp_text};
use crate::report::chart::{self, Bar};

pub(super) fn timeline(out: &mut String, d: &Data) -> fmt::Result {
    let p = d.period;
    let unit = p.unit();
    section_head(
        out,
        "activity",
        "Activity",
        &format!(
            r#"Events logged per {unit}, timing samples included; errors in red. Peak: {} events in one {unit}."#,
            count(d.stats.timeline.iter().map(|b| b.events).max().unwrap_or(0))
        ),
    )?;
    let bars: Vec<Bar> = d
        .stats
        .timeline
        .iter()
        .map(|b| {
            let start = b.start.as_ref().and_then(datetime);
            Bar {
                label: start.map(|s| p.bucket_label(s)).unwrap_or_default(),
                span: start.map(|s| p.bucket_span(s)).unwrap_or_default(),
                key: timestamp_text(b.start.as_ref()),
                events: b.events,
                errors: b.errors,
            }
        })
        .collect();
    if bars.is_empty() {
        writeln!(out, r#"<p class="empty">No timeline for this period.</p>"#)?;
    } else {
        chart::timeline(out, &bars, p.axis_title())?;
        writeln!(
            out,
            r#"<div class="legend"><span class="swatch ok"></span>Events<span class="swatch err"></span>Errors<span class="total">Total in chart: <strong data-metric="timeline-total">{}</strong></span></div>"#,
            count(bars.iter().map(|b| b.events).sum())
        )?;
    }
    writeln!(out, "</section>")
}

pub(super) fn funnel(out: &mut String, d: &Data) -> fmt::Result {
    let s = &d.stats;
    section_head(
        out,
        "funnel",
        "Lead funnel",
        "Distinct leads that reached each stage in this period, as a share of the \
         leads ingested and of the stage before. A lead ingested before the period \
         still counts at the later stages it reached in it, so a share can exceed 100%.",
    )?;
    let ingested = stage_leads(s, FUNNEL[0].0);
    writeln!(
        out,
        r#"<table class="funnel"><thead><tr><th>Stage</th><th class="num">Leads</th><th class="bar-col">Of ingested</th><th class="num">From previous stage</th></tr></thead><tbody>"#
    )?;
    let mut previous: Option<u64> = None;
    for (event_type, name) in FUNNEL {
        let leads = stage_leads(s, event_type);
        let of_top = ratio(leads, ingested);
        let width = of_top.unwrap_or(0.0).clamp(0.0, 100.0);
        let step = match previous {
            None => "<span class=\"muted\">start</span>".to_owned(),
            Some(prev) => format!(
                r#"<span data-metric="funnel-step" data-key="{event_type}">{}</span>"#,
                percent(ratio(leads, prev))
            ),
        };
        writeln!(
            out,
            r#"<tr><td><div class="stage">{}</div><div class="code">{event_type}</div></td><td class="num" data-metric="funnel-leads" data-key="{event_type}">{}</td><td class="bar-col"><div class="meter"><div class="fill" style="width:{width:.1}%"></div></div><span class="meter-label" data-metric="funnel-rate" data-key="{event_type}">{}</span></td><td class="num">{step}</td></tr>"#,
            esc(name),
            count(leads),
            percent(of_top),
        )?;
        previous = Some(leads);
    }
    writeln!(out, "</tbody></table></section>")
}

/// A two-column table of names and counts with a share bar.
fn count_table(
    out: &mut String,
    heading: &str,
    name_col: &str,
    metric: &str,
    rows: &[(&str, u64)],
    whole: u64,
    extra: Option<(&str, u64)>,
) -> fmt::Result {
    writeln!(out, r#"<div class="half"><h3>{}</h3>"#, esc(heading))?;
    if rows.is_empty() && extra.is_none_or(|(_, n)| n == 0) {
        writeln!(out, r#"<p class="empty">None in this period.</p></div>"#)?;
        return Ok(());
    }
    writeln!(
        out,
        r#"<table><thead><tr><th>{}</th><th class="num">Events</th><th class="bar-col">Share</th></tr></thead><tbody>"#,
        esc(name_col)
    )?;
    let row = |out: &mut String, name: &str, n: u64, attrs: String, class: &str| {
        let share = ratio(n, whole);
        writeln!(
            out,
            r#"<tr class="{class}"><td class="name">{}</td><td class="num" {attrs}>{}</td><td class="bar-col"><div class="meter"><div class="fill" style="width:{:.1}%"></div></div><span class="meter-label">{}</span></td></tr>"#,
            esc(name),
            count(n),
            share.unwrap_or(0.0).clamp(0.0, 100.0),
            percent(share),
        )
    };
    for (name, n) in rows {
        row(
            out,
            name,
            *n,
            format!(r#"data-metric="{metric}" data-key="{}""#, esc(name)),
            "",
        )?;
    }
    if let Some((label, n)) = extra.filter(|(_, n)| *n > 0) {
        row(
            out,
            label,
            n,
            format!(r#"data-metric="{metric}-none""#),
            "muted",
        )?;
    }
    writeln!(out, "</tbody></table></div>")
}

pub(super) fn breakdowns(out: &mut String, d: &Data) -> fmt::Result {
    let s = &d.stats;
    section_head(
        out,
        "breakdown",
        "Events by type and workflow",
        &format!(
            "What was logged, and in which workflow. The {} timing samples \
             (<code>performance</code> events) are left out of the types and \
             counted under Performance; the workflows include them.",
            count(timing_samples(s))
        ),
    )?;
    writeln!(out, r#"<div class="columns">"#)?;
    let mut types = ranked(&s.by_type);
    types.retain(|(t, _)| *t != PERFORMANCE);
    count_table(
        out,
        "By event type",
        "Event type",
        "type-count",
        &types,
        business_events(s),
        None,
    )?;
    let in_workflows: u64 = s.by_workflow.values().sum();
    count_table(
        out,
        "By workflow",
        "Workflow",
        "workflow-count",
        &ranked(&s.by_workflow),
        s.total_events,
        Some(("(no workflow)", s.total_events.saturating_sub(in_workflows))),
    )?;
    writeln!(out, "</div></section>")
}

pub(super) fn errors(out: &mut String, d: &Data) -> fmt::Result {
    let s = &d.stats;
    section_head(
        out,
        "errors",
        "Errors",
        &format!(
            "{} error events, {} of the events (timing samples left out), by <code>error_type</code>; then the latest ones.",
            count(s.error_count),
            percent(ratio(s.error_count, business_events(s)))
        ),
    )?;
    writeln!(out, r#"<div class="columns wide-right">"#)?;
    count_table(
        out,
        "By error type",
        "Error type",
        "error-type-count",
        &ranked(&s.errors_by_type),
        s.error_count,
        None,
    )?;
    writeln!(out, r#"<div class="half"><h3>Latest errors</h3>"#)?;
    if d.latest_errors.is_empty() {
        writeln!(out, r#"<p class="empty">No errors in this period.</p>"#)?;
    } else {
        writeln!(
            out,
            r#"<table class="events"><thead><tr><th>Time (UTC)</th><th>Error</th><th>Where</th></tr></thead><tbody>"#
        )?;
        for e in &d.latest_errors {
            let kind = detail_str(e, "error_type");
            let message = detail_str(e, "error_message");
            writeln!(
                out,
                r#"<tr data-metric="latest-error" data-key="{}"><td class="time">{}</td><td><div class="err-type">{}</div><div class="msg">{}</div></td><td class="where">{}</td></tr>"#,
                e.seq,
                esc(&time_text(e.timestamp.as_ref())),
                esc(&truncate(
                    if kind.is_empty() { "unknown" } else { &kind },
                    80
                )),
                esc(&truncate(&message, 240)),
                where_text(e)?,
            )?;
        }
        writeln!(out, "</tbody></table>")?;
    }
    writeln!(out, "</div></div></section>")
}

/// The details as `key: value · key: value` (strings unquoted, anything
/// else as JSON); empty when there are none.
fn details_summary(e: &pb::Event) -> String {
    let details = details_json(e);
    details
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}: {s}"),
            other => format!("{k}: {other}"),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The workflow and lead of an event, escaped, for a table cell.
fn where_text(e: &pb::Event) -> Result<String, fmt::Error> {
    let mut s = String::new();
    if !e.workflow.is_empty() {
        write!(s, r#"<div>{}</div>"#, esc(&truncate(&e.workflow, 60)))?;
    }
    if !e.lead_id.is_empty() {
        write!(
            s,
            r#"<div class="code">{}</div>"#,
            esc(&truncate(&e.lead_id, 60))
        )?;
    }
    Ok(s)
}

pub(super) fn performance(out: &mut String, d: &Data) -> fmt::Result {
    let ops = &d.performance.operations;
    section_head(
        out,
        "performance",
        "Performance",
        &format!(
            "How long tracked operations took in this period, from the log's \
             {} timing samples (<code>performance</code> events): exact \
             percentiles, nearest rank.",
            count(timing_samples(&d.stats))
        ),
    )?;
    if ops.is_empty() {
        writeln!(
            out,
            r#"<p class="empty">No operations were timed in this period.</p></section>"#
        )?;
        return Ok(());
    }
    writeln!(
        out,
        r#"<table class="perf"><thead><tr><th>Operation</th><th class="num">Samples</th><th class="num">Average</th><th class="num">p50</th><th class="num">p95</th><th class="num">p99</th><th class="num">Max</th></tr></thead><tbody>"#
    )?;
    for o in ops {
        let key = esc(&o.operation);
        writeln!(
            out,
            r#"<tr><td class="name code">{key}</td><td class="num" data-metric="perf-count" data-key="{key}">{}</td><td class="num">{}</td><td class="num" data-metric="perf-p50" data-key="{key}">{}</td><td class="num strong" data-metric="perf-p95" data-key="{key}">{}</td><td class="num" data-metric="perf-p99" data-key="{key}">{}</td><td class="num">{}</td></tr>"#,
            count(o.count),
            millis(o.avg_ms),
            millis(o.p50_ms),
            millis(o.p95_ms),
            millis(o.p99_ms),
            millis(o.max_ms),
        )?;
    }
    writeln!(out, "</tbody></table></section>")
}

pub(super) fn recent(out: &mut String, d: &Data) -> fmt::Result {
    section_head(
        out,
        "recent",
        "Recent events",
        &format!(
            "The {} newest events of the period, newest first; timing samples are left out.",
            d.recent.len()
        ),
    )?;
    if d.recent.is_empty() {
        writeln!(
            out,
            r#"<p class="empty">No events in this period.</p></section>"#
        )?;
        return Ok(());
    }
    writeln!(
        out,
        r#"<table class="events recent"><thead><tr><th>Time (UTC)</th><th class="num">Seq</th><th>Type</th><th>Workflow / lead</th><th>Actor</th><th>Details</th></tr></thead><tbody>"#
    )?;
    for e in &d.recent {
        let class = if e.event_type == "error" {
            " class=\"is-error\""
        } else {
            ""
        };
        writeln!(
            out,
            r#"<tr{class} data-metric="recent-event" data-key="{}"><td class="time">{}</td><td class="num">{}</td><td><span class="pill">{}</span></td><td class="where">{}</td><td>{}</td><td class="details">{}</td></tr>"#,
            e.seq,
            esc(&time_text(e.timestamp.as_ref())),
            e.seq,
            esc(&truncate(&e.event_type, 64)),
            where_text(e)?,
            esc(&truncate(&e.actor, 40)),
            esc(&truncate(&details_summary(e), 160)),
        )?;
    }
    writeln!(out, "</tbody></table></section>")
}
