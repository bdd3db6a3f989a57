//! The report page: one HTML document with its CSS inline and its chart as
//! inline SVG, so it opens offline, fetches nothing and prints as it shows.
//!
//! Every string that comes from the log (types, workflows, leads, actors,
//! details, error messages, operation names) is written through [`esc`]:
//! the page contains no markup but ours. Key figures carry `data-metric`
//! (and `data-key` for one row of a breakdown) so tests read them from the
//! rendered DOM.

use std::fmt::{self, Write as _};

use auditlog_client::pb;
use time::OffsetDateTime;

use super::chart::{self, Bar};
use super::period::{Period, minute_text};
use crate::format::{datetime, detail_str, details_json, ranked, timestamp_text};

/// The lead funnel: event type and the stage's name, in pipeline order.
pub(crate) const FUNNEL: [(&str, &str); 5] = [
    ("lead_ingested", "Ingested"),
    ("lead_qualified", "Qualified (scored)"),
    ("lead_routed", "Routed"),
    ("crm_create", "CRM record created"),
    ("email_sent", "Email sent"),
];

/// What the page shows, as the server computed it.
pub(crate) struct Data {
    pub(crate) period: Period,
    pub(crate) generated: OffsetDateTime,
    pub(crate) server: String,
    /// GetStats over the period, with timeline, error types and funnel.
    pub(crate) stats: pb::GetStatsResponse,
    /// GetPerformanceStats over the period.
    pub(crate) performance: pb::GetPerformanceStatsResponse,
    /// The period's newest `error` events, newest first.
    pub(crate) latest_errors: Vec<pb::Event>,
    /// The period's newest events, newest first.
    pub(crate) recent: Vec<pb::Event>,
}

/// `s` with `& < > " '` as character references, for text and attributes.
pub(crate) fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

/// A string that is escaped as it is written.
pub(crate) struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `part` as a percentage of `whole`; `None` when `whole` is 0.
pub(crate) fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

/// A percentage with one decimal (`42.9%`), or `n/a`.
pub(crate) fn percent(p: Option<f64>) -> String {
    match p {
        Some(p) if p.is_finite() => format!("{p:.1}%"),
        _ => "n/a".to_owned(),
    }
}

/// A duration in milliseconds, with as many decimals as are useful.
pub(crate) fn millis(v: f64) -> String {
    if !v.is_finite() {
        "n/a".to_owned()
    } else if v >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// A timestamp as `2026-11-28 20:14:03`; empty when unset or out of range.
fn time_text(t: Option<&prost_types::Timestamp>) -> String {
    let full = timestamp_text(t);
    // `2026-11-28T20:14:03.123456Z` -> `2026-11-28 20:14:03`.
    match (full.get(..10), full.get(11..19)) {
        (Some(d), Some(t)) if full.len() >= 19 => format!("{d} {t}"),
        _ => full,
    }
}

/// At most `max` characters of `s`, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Renders the page.
pub(crate) fn render(d: &Data) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(64 * 1024);
    let p = d.period;
    let title = format!(
        "Audit log {} report: {}",
        p.kind(),
        match p {
            Period::Day(_) => p.label(),
            Period::Week(_) => p.title(),
        }
    );
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, r#"<html lang="en">"#)?;
    writeln!(out, "<head>")?;
    writeln!(out, r#"<meta charset="utf-8">"#)?;
    writeln!(
        out,
        r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#
    )?;
    writeln!(out, "<title>{}</title>", esc(&title))?;
    writeln!(out, "<style>{CSS}</style>")?;
    writeln!(out, "</head>")?;
    writeln!(out, "<body>")?;
    header(&mut out, d)?;
    writeln!(out, r#"<main class="page">"#)?;
    summary(&mut out, d)?;
    timeline(&mut out, d)?;
    funnel(&mut out, d)?;
    breakdowns(&mut out, d)?;
    errors(&mut out, d)?;
    performance(&mut out, d)?;
    recent(&mut out, d)?;
    writeln!(out, "</main>")?;
    footer(&mut out, d)?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")?;
    Ok(out)
}

fn header(out: &mut String, d: &Data) -> fmt::Result {
    let p = d.period;
    let kind = match p {
        Period::Day(_) => "Daily activity report",
        Period::Week(_) => "Weekly activity report",
    };
    writeln!(out, r#"<header class="top"><div class="page">"#)?;
    writeln!(out, r#"<div class="eyebrow">Audit log · {kind}</div>"#)?;
    writeln!(
        out,
        r#"<h1 data-metric="period" data-key="{}">{}</h1>"#,
        esc(&p.label()),
        esc(&p.title())
    )?;
    writeln!(
        out,
        r#"<div class="sub"><span>{}</span><span class="dot">·</span><span>Generated <span data-metric="generated">{}</span></span></div>"#,
        esc(&p.span()),
        esc(&minute_text(d.generated))
    )?;
    writeln!(out, "</div></header>")
}

fn card(out: &mut String, label: &str, metric: &str, value: &str, note: &str) -> fmt::Result {
    writeln!(
        out,
        r#"<div class="card {metric}"><div class="label">{}</div><div class="value" data-metric="{metric}">{}</div><div class="note">{note}</div></div>"#,
        esc(label),
        esc(value),
    )
}

fn stage_leads(s: &pb::GetStatsResponse, event_type: &str) -> u64 {
    s.leads_by_type.get(event_type).copied().unwrap_or(0)
}

fn summary(out: &mut String, d: &Data) -> fmt::Result {
    let s = &d.stats;
    let ingested = stage_leads(s, FUNNEL[0].0);
    let (last_type, last_name) = FUNNEL[FUNNEL.len() - 1];
    let converted = stage_leads(s, last_type);
    writeln!(out, r#"<section class="cards">"#)?;
    card(
        out,
        "Events",
        "total-events",
        &count(s.total_events),
        &format!("across {} event types", esc(&count(s.by_type.len() as u64))),
    )?;
    card(
        out,
        "Errors",
        "error-count",
        &count(s.error_count),
        &format!(
            r#"<span data-metric="error-rate">{}</span> of all events"#,
            percent(ratio(s.error_count, s.total_events))
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
    } else if s.total_events > 0 {
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

fn section_head(out: &mut String, id: &str, title: &str, intro: &str) -> fmt::Result {
    writeln!(
        out,
        r#"<section class="block" id="{id}"><h2>{}</h2><p class="intro">{intro}</p>"#,
        esc(title)
    )
}

fn timeline(out: &mut String, d: &Data) -> fmt::Result {
    let p = d.period;
    let unit = p.unit();
    section_head(
        out,
        "activity",
        "Activity",
        &format!(
            r#"Events logged per {unit}; errors in red. Peak: {} events in one {unit}."#,
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

fn funnel(out: &mut String, d: &Data) -> fmt::Result {
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

fn breakdowns(out: &mut String, d: &Data) -> fmt::Result {
    let s = &d.stats;
    section_head(
        out,
        "breakdown",
        "Events by type and workflow",
        "What was logged, and in which workflow.",
    )?;
    writeln!(out, r#"<div class="columns">"#)?;
    count_table(
        out,
        "By event type",
        "Event type",
        "type-count",
        &ranked(&s.by_type),
        s.total_events,
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

fn errors(out: &mut String, d: &Data) -> fmt::Result {
    let s = &d.stats;
    section_head(
        out,
        "errors",
        "Errors",
        &format!(
            "{} error events, {} of all events, by <code>error_type</code>; then the latest ones.",
            count(s.error_count),
            percent(ratio(s.error_count, s.total_events))
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

fn performance(out: &mut String, d: &Data) -> fmt::Result {
    let ops = &d.performance.operations;
    section_head(
        out,
        "performance",
        "Performance",
        "How long tracked operations took in this period (from the log's \
         <code>performance</code> events): exact percentiles, nearest rank.",
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

fn recent(out: &mut String, d: &Data) -> fmt::Result {
    section_head(
        out,
        "recent",
        "Recent events",
        &format!(
            "The {} newest events of the period, newest first.",
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

fn footer(out: &mut String, d: &Data) -> fmt::Result {
    writeln!(
        out,
        r#"<footer class="page">Figures computed by the auditlog server at {} (GetStats, GetPerformanceStats, Query) for {} to {} (UTC, end exclusive). Log head: seq {}. Generated {} by auditlog {}. Verify the log itself with <code>auditlog integrity</code>.</footer>"#,
        esc(&d.server),
        esc(&minute_text(d.period.start())),
        esc(&minute_text(d.period.end())),
        d.stats.head_seq,
        esc(&minute_text(d.generated)),
        env!("CARGO_PKG_VERSION"),
    )
}

/// The page's style: system fonts only, nothing fetched; print keeps the
/// colours and avoids splitting a card, chart or table row.
const CSS: &str = r#"
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f3f4f6; --accent: #2563eb; --accent-soft: #dbeafe; --err: #dc2626; --err-soft: #fee2e2; --ok: #16a34a; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
html { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans", "DejaVu Sans", sans-serif; font-size: 15px; color: var(--ink); background: var(--bg); }
body { margin: 0; line-height: 1.45; }
.page { max-width: 1120px; margin: 0 auto; padding: 0 28px; }
header.top { background: #0f172a; color: #fff; padding: 26px 0 30px; }
header.top .eyebrow { text-transform: uppercase; letter-spacing: .08em; font-size: 12px; color: #93c5fd; font-weight: 600; }
header.top h1 { margin: 6px 0 6px; font-size: 30px; font-weight: 700; }
header.top .sub { color: #cbd5e1; font-size: 14px; }
header.top .dot { margin: 0 8px; }
main.page { padding-top: 22px; padding-bottom: 8px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 16px; margin-top: -44px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; box-shadow: 0 1px 3px rgba(15, 23, 42, .08); border-top: 4px solid var(--accent); }
.card.error-count { border-top-color: var(--err); }
.card.conversion-rate { border-top-color: var(--ok); }
.card .label { font-size: 13px; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 32px; font-weight: 700; margin: 4px 0 2px; font-variant-numeric: tabular-nums; }
.card .note { font-size: 13px; color: var(--muted); }
.highlights { margin: 16px 0 0; background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 10px 18px; }
.highlights ul { margin: 0; padding-left: 18px; }
.highlights li { margin: 3px 0; }
.block { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px 20px; margin: 18px 0; }
.block h2 { margin: 0; font-size: 19px; }
.block h3 { margin: 4px 0 8px; font-size: 15px; color: var(--muted); }
.intro { margin: 4px 0 14px; color: var(--muted); font-size: 14px; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 28px; }
.columns.wide-right { grid-template-columns: 2fr 3fr; }
table { width: 100%; border-collapse: collapse; font-size: 14px; }
th { text-align: left; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--line); padding: 6px 8px; }
td { border-bottom: 1px solid var(--line); padding: 7px 8px; vertical-align: top; }
tbody tr:nth-child(even) td { background: #fafafa; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.strong { font-weight: 700; }
.muted, tr.muted td { color: var(--muted); }
.code, code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.funnel .code, .where .code { color: var(--muted); }
.stage { font-weight: 600; }
.bar-col { width: 38%; white-space: nowrap; }
.meter { display: inline-block; vertical-align: middle; width: calc(100% - 64px); height: 12px; background: var(--accent-soft); border-radius: 6px; overflow: hidden; }
.meter .fill { height: 100%; background: var(--accent); border-radius: 6px; }
#errors .meter { background: var(--err-soft); }
#errors .meter .fill { background: var(--err); }
.funnel .meter { height: 18px; border-radius: 4px; }
.funnel .meter .fill { border-radius: 4px; }
.meter-label { display: inline-block; width: 58px; text-align: right; font-variant-numeric: tabular-nums; font-size: 13px; }
.empty { color: var(--muted); font-style: italic; margin: 6px 0; }
.chart { width: 100%; height: auto; display: block; }
.chart .grid { stroke: var(--line); stroke-width: 1; }
.chart .axis { stroke: #9ca3af; stroke-width: 1.5; }
.chart .bar { fill: var(--accent); }
.chart .bar-err { fill: var(--err); }
.chart text { font-family: inherit; fill: #4b5563; }
.chart .ytick { font-size: 12px; text-anchor: end; }
.chart .xtick { font-size: 12px; text-anchor: middle; }
.chart .value { font-size: 11px; text-anchor: middle; fill: var(--ink); font-weight: 600; }
.chart .axis-title { font-size: 13px; text-anchor: middle; fill: var(--muted); font-weight: 600; }
.legend { display: flex; align-items: center; gap: 6px; font-size: 13px; color: var(--muted); margin-top: 4px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-left: 10px; }
.swatch.ok { background: var(--accent); margin-left: 64px; }
.swatch.err { background: var(--err); }
.legend .total { margin-left: auto; }
.events .time { white-space: nowrap; font-variant-numeric: tabular-nums; color: #374151; }
.err-type { font-weight: 600; color: var(--err); }
.msg { color: #374151; overflow-wrap: anywhere; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 10px; background: var(--accent-soft); color: #1e40af; font-size: 12.5px; white-space: nowrap; }
tr.is-error .pill { background: var(--err-soft); color: #991b1b; }
.details { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12px; color: #4b5563; overflow-wrap: anywhere; }
.where { overflow-wrap: anywhere; min-width: 100px; }
.recent .details { width: 36%; }
th { white-space: nowrap; }
footer.page { color: var(--muted); font-size: 12.5px; padding-top: 4px; padding-bottom: 28px; }
@media (max-width: 820px) {
  .cards { grid-template-columns: 1fr 1fr; }
  .columns, .columns.wide-right { grid-template-columns: 1fr; }
}
@page { size: A4; margin: 12mm; }
@media print {
  html { background: #fff; font-size: 11.5px; }
  .page { max-width: none; padding: 0; }
  header.top { background: #fff; color: var(--ink); padding: 0 0 10px; border-bottom: 3px solid #0f172a; }
  header.top .eyebrow { color: var(--accent); }
  header.top .sub { color: var(--muted); }
  .cards { grid-template-columns: repeat(4, 1fr); gap: 10px; margin-top: 12px; }
  .card .value { font-size: 24px; }
  .columns { grid-template-columns: 1fr 1fr; gap: 18px; }
  .columns.wide-right { grid-template-columns: 2fr 3fr; }
  .card, .highlights, .block { box-shadow: none; }
  .block { padding: 10px 0; margin: 10px 0; border: 0; border-top: 1px solid var(--line); border-radius: 0; }
  .card, .highlights, #activity, #funnel, tr, .chart { break-inside: avoid; }
  h2, h3, .intro { break-after: avoid; }
  thead { display: table-header-group; }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            esc(r#"<script>alert("x") & 'y'</script>"#).to_string(),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(esc("plain é ✓").to_string(), "plain é ✓");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(percent(ratio(1, 3)), "33.3%");
        assert_eq!(percent(ratio(5, 0)), "n/a");
        assert_eq!(millis(0.123), "0.12 ms");
        assert_eq!(millis(12.34), "12.3 ms");
        assert_eq!(millis(1234.0), "1234 ms");
        assert_eq!(millis(12_345.0), "12.3 s");
        assert_eq!(millis(f64::NAN), "n/a");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("ééé", 3), "ééé");
    }

    #[test]
    fn the_css_has_no_angle_brackets_and_fetches_nothing() {
        assert!(!CSS.contains(['<', '>']));
        for word in ["url(", "@import", "@font-face", "http"] {
            assert!(!CSS.contains(word), "{word}");
        }
    }
}
