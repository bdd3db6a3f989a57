//! The page's CSS, inlined into its `<style>`; a test keeps it free of
//! anything that would fetch or close the element.

/// The page's style: system fonts only, nothing fetched; print keeps the
/// colours and avoids splitting a card, chart or table row.
pub(super) const CSS: &str = r#"
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
    fn the_css_has_no_angle_brackets_and_fetches_nothing() {
        assert!(!CSS.contains(['<', '>']));
        for word in ["url(", "@import", "@font-face", "http"] {
            assert!(!CSS.contains(word), "{word}");
        }
    }
}
