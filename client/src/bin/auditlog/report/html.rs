//! The report page: one HTML document with its CSS inline and its chart as
//! inline SVG, so it opens offline, fetches nothing and prints as it shows.
//!
//! Every string that comes from the log (types, workflows, leads, actors,
//! details, error messages, operation names) is written through [`esc`]:
//! the page contains no markup but ours. Key figures carry `data-metric`
//! (and `data-key` for one row of a breakdown) so tests read them from the
//! rendered DOM.
//!
//! This module holds the page's skeleton (head, header, the order of the
//! sections, footer), the escaping and the way figures read; `summary` the
//! key figures and highlights at the top, `sections` each block below them,
//! `style` the CSS.

mod sections;
mod style;
mod summary;

use std::fmt::{self, Write as _};

use auditlog_client::pb;
use time::OffsetDateTime;

use super::period::{Period, minute_text};
use crate::format::timestamp_text;
use style::CSS;

/// The lead funnel: event type and the stage's name, in pipeline order.
pub(crate) const FUNNEL: [(&str, &str); 5] = [
    ("lead_ingested", "Ingested"),
    ("lead_qualified", "Qualified (scored)"),
    ("lead_routed", "Routed"),
    ("crm_create", "CRM record created"),
    ("email_sent", "Email sent"),
];

/// The event type of timing samples. They are shown apart from the
/// business event types (they can be nearly half of a day's events): the
/// key figures and the table by type leave them out, the Performance block
/// counts them.
pub(crate) const PERFORMANCE: &str = "performance";

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

/// A duration in milliseconds, with as many decimals as are useful; from a
/// billion seconds up (a `performance` event can carry any number), in
/// scientific notation.
pub(crate) fn millis(v: f64) -> String {
    if !v.is_finite() {
        "n/a".to_owned()
    } else if v >= 1e12 {
        format!("{:.2e} s", v / 1000.0)
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

/// How many timing samples (`performance` events) the period holds.
fn timing_samples(s: &pb::GetStatsResponse) -> u64 {
    s.by_type.get(PERFORMANCE).copied().unwrap_or(0)
}

/// How many events the period holds, timing samples left out.
fn business_events(s: &pb::GetStatsResponse) -> u64 {
    s.total_events.saturating_sub(timing_samples(s))
}

fn stage_leads(s: &pb::GetStatsResponse, event_type: &str) -> u64 {
    s.leads_by_type.get(event_type).copied().unwrap_or(0)
}

fn section_head(out: &mut String, id: &str, title: &str, intro: &str) -> fmt::Result {
    writeln!(
        out,
        r#"<section class="block" id="{id}"><h2>{}</h2><p class="intro">{intro}</p>"#,
        esc(title)
    )
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
            _ => p.title(),
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
    summary::summary(&mut out, d)?;
    sections::timeline(&mut out, d)?;
    sections::funnel(&mut out, d)?;
    sections::breakdowns(&mut out, d)?;
    sections::errors(&mut out, d)?;
    sections::performance(&mut out, d)?;
    sections::recent(&mut out, d)?;
    writeln!(out, "</main>")?;
    footer(&mut out, d)?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")?;
    Ok(out)
}

fn header(out: &mut String, d: &Data) -> fmt::Result {
    let p = d.period;
    let kind = p.kind_title();
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
        assert_eq!(millis(86_400_000.0), "86400.0 s");
        assert_eq!(millis(1e300), "1.00e297 s");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("ééé", 3), "ééé");
    }
}
