//! The activity timeline as an inline SVG bar chart: one bar per bucket,
//! errors stacked in red on top of the other events, a y axis with round
//! gridlines and both axes titled. No script: tooltips are SVG `<title>`s.

use std::fmt::{self, Write as _};

use super::html::esc;

/// One bucket of the timeline.
pub(crate) struct Bar {
    /// The x-axis label (`14`, `Mon 23`).
    pub(crate) label: String,
    /// What the bucket covers, for the tooltip.
    pub(crate) span: String,
    /// The bucket's start as RFC 3339, for `data-key`.
    pub(crate) key: String,
    /// All events in the bucket, errors included.
    pub(crate) events: u64,
    /// The `error` events among them.
    pub(crate) errors: u64,
}

// The drawing's coordinate system; the SVG scales to the page's width.
const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 58.0;

/// A round top for the y axis at or above `max`, and the step between its
/// gridlines: at most four steps of 1, 2 or 5 times a power of ten.
pub(crate) fn scale(max: u64) -> (u64, u64) {
    let mut magnitude: u64 = 1;
    loop {
        for m in [1u64, 2, 5] {
            let step = m.saturating_mul(magnitude);
            if step.saturating_mul(4) >= max || step == u64::MAX {
                let steps = max.div_ceil(step).max(1);
                return (steps.saturating_mul(step), step);
            }
        }
        magnitude = magnitude.saturating_mul(10);
    }
}

/// Writes the chart for `bars` with `x_title` under the x axis.
pub(crate) fn timeline(out: &mut String, bars: &[Bar], x_title: &str) -> fmt::Result {
    let max = bars.iter().map(|b| b.events).max().unwrap_or(0);
    let (top, step) = scale(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let base = TOP + plot_h;
    let y = |v: u64| base - plot_h * (v as f64) / (top as f64);
    writeln!(
        out,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Events per bucket">"#
    )?;
    // Gridlines and y labels.
    let mut v = 0;
    while v <= top {
        let gy = y(v);
        writeln!(
            out,
            r#"<line class="grid" x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}"/><text class="ytick" x="{:.1}" y="{:.1}">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 8.0,
            gy + 4.0,
            super::html::count(v),
        )?;
        match v.checked_add(step) {
            Some(next) => v = next,
            None => break,
        }
    }
    writeln!(
        out,
        r#"<text class="axis-title" transform="translate(16 {:.1}) rotate(-90)">Events</text>"#,
        TOP + plot_h / 2.0
    )?;
    writeln!(
        out,
        r#"<text class="axis-title" x="{:.1}" y="{:.1}">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0,
        esc(x_title)
    )?;
    let slot = plot_w / (bars.len().max(1) as f64);
    let bar_w = (slot * 0.72).max(1.0);
    for (i, b) in bars.iter().enumerate() {
        let x = LEFT + slot * (i as f64) + (slot - bar_w) / 2.0;
        let cx = x + bar_w / 2.0;
        let errors = b.errors.min(b.events);
        writeln!(
            out,
            r#"<g data-metric="timeline-bucket" data-key="{}" data-value="{}" data-errors="{errors}"><title>{}: {} events, {} errors</title>"#,
            esc(&b.key),
            b.events,
            esc(&b.span),
            b.events,
            errors,
        )?;
        if b.events > 0 {
            let (y_all, y_ok) = (y(b.events), y(b.events - errors));
            writeln!(
                out,
                r#"<rect class="bar" x="{x:.1}" y="{y_all:.1}" width="{bar_w:.1}" height="{:.1}"/>"#,
                base - y_all
            )?;
            if errors > 0 {
                writeln!(
                    out,
                    r#"<rect class="bar-err" x="{x:.1}" y="{y_all:.1}" width="{bar_w:.1}" height="{:.1}"/>"#,
                    y_ok - y_all
                )?;
            }
            writeln!(
                out,
                r#"<text class="value" x="{cx:.1}" y="{:.1}">{}</text>"#,
                y_all - 5.0,
                super::html::count(b.events)
            )?;
        }
        writeln!(
            out,
            r#"<text class="xtick" x="{cx:.1}" y="{:.1}">{}</text></g>"#,
            base + 18.0,
            esc(&b.label)
        )?;
    }
    writeln!(
        out,
        r#"<line class="axis" x1="{LEFT}" y1="{base:.1}" x2="{:.1}" y2="{base:.1}"/>"#,
        WIDTH - RIGHT
    )?;
    writeln!(out, "</svg>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_round_and_covers_the_maximum() {
        assert_eq!(scale(0), (1, 1));
        assert_eq!(scale(1), (1, 1));
        assert_eq!(scale(3), (3, 1));
        assert_eq!(scale(4), (4, 1));
        assert_eq!(scale(5), (6, 2));
        assert_eq!(scale(9), (10, 5));
        assert_eq!(scale(17), (20, 5));
        assert_eq!(scale(21), (30, 10));
        assert_eq!(scale(95), (100, 50));
        assert_eq!(scale(1234), (1500, 500));
        for max in 0..5000 {
            let (top, step) = scale(max);
            assert!(top >= max && top / step <= 4 && top % step == 0, "{max}");
        }
        let (top, _) = scale(u64::MAX);
        assert_eq!(top, u64::MAX);
    }

    #[test]
    fn bars_carry_their_counts() {
        let bars = vec![
            Bar {
                label: "00".into(),
                span: "00:00 to 01:00 UTC".into(),
                key: "2026-11-28T00:00:00Z".into(),
                events: 0,
                errors: 0,
            },
            Bar {
                label: "01".into(),
                span: "01:00 to 02:00 UTC".into(),
                key: "2026-11-28T01:00:00Z".into(),
                events: 7,
                errors: 2,
            },
        ];
        let mut out = String::new();
        timeline(&mut out, &bars, "Hour").unwrap();
        assert!(out.contains(r#"data-key="2026-11-28T01:00:00Z" data-value="7" data-errors="2""#));
        assert_eq!(out.matches("class=\"bar-err\"").count(), 1);
        assert!(out.starts_with("<svg") && out.trim_end().ends_with("</svg>"));
    }
}
