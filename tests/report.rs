//! `auditlog report` as a reader sees it: the CLI binary writes the daily
//! and weekly HTML reports from a real server, Debian's Chromium renders
//! them headless, and the figures are read back from the rendered DOM
//! (`data-metric` attributes) and compared with what the test logged:
//! totals, counts per type, workflow and error type, the lead funnel and its
//! rates, the timeline bucket by bucket, performance percentiles, the latest
//! errors and recent events. Hostile strings in the log must come out as
//! text, never as markup; the page must fetch nothing. Screenshots go to
//! `target/report-screenshots/` for a person to look at.
//!
//! Without `/usr/bin/chromium` the rendering tests print why they did not
//! run, unless `REQUIRE_CHROMIUM=1` (CI), where that is a failure.
//! The CLI's argument errors are checked without a browser.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use auditlog_client::{Client, NewEvent, pb};
use common::{TEST_KEY, TestServer, cli_bin, hmac_hex, run_to_end, signed, with_test_key};
use time::OffsetDateTime;

/// How long one run of the CLI or the browser may take before the test fails
/// as a hang (a deadline, not a timing assertion).
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// A URL where nothing listens.
const DEAD_URL: &str = "http://127.0.0.1:1";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Strings that would be markup if the report did not escape them.
const HOSTILE_WORKFLOW: &str = "<script>alert(\"wf\")</script>";
const HOSTILE_ACTOR: &str = "<img src=x onerror=alert(1)>";
const HOSTILE_LEAD: &str = "\"><svg onload=alert(2)>";
const HOSTILE_ERROR_TYPE: &str = "<b onmouseover=alert(3)>Bold</b>";
const HOSTILE_MESSAGE: &str = "</td></tr></table><script>alert(4)</script><a href=http://x>";

// ---------------------------------------------------------------------------
// Running the CLI and the browser
// ---------------------------------------------------------------------------

use common::Finished as Output;

/// Runs `program ARGS` to its end, failing the test if it hangs.
async fn run(program: PathBuf, args: Vec<String>) -> Output {
    run_to_end(program, args, Vec::new(), RUN_DEADLINE).await
}

/// Runs `auditlog --server URL ARGS`.
async fn auditlog(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["--server".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run(cli_bin().to_path_buf(), all).await
}

/// Runs the report command and returns the file it says it wrote.
async fn report(url: &str, args: &[&str]) -> PathBuf {
    let out = auditlog(url, args).await;
    assert_eq!(out.code, 0, "auditlog {args:?}: {out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let path = PathBuf::from(out.stdout.trim_end());
    assert!(path.is_file(), "{out:?}");
    path
}

/// Chromium, or `None` (after saying why) when it is not installed and not
/// required.
fn chromium() -> Option<PathBuf> {
    if Path::new(CHROMIUM).exists() {
        return Some(PathBuf::from(CHROMIUM));
    }
    assert!(
        std::env::var("REQUIRE_CHROMIUM").as_deref() != Ok("1"),
        "REQUIRE_CHROMIUM=1 but {CHROMIUM} is missing (apt-get install chromium)"
    );
    eprintln!(
        "SKIPPED: {CHROMIUM} is not installed, so the reports were not rendered \
         (apt-get install chromium; set REQUIRE_CHROMIUM=1 to make this a failure)"
    );
    None
}

/// Chromium's flags for a headless run that touches nothing outside a fresh
/// profile directory and fetches nothing on its own.
fn browser_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// The DOM of `file` after Chromium has loaded and rendered it.
async fn rendered_dom(browser: &Path, file: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut args = browser_args(profile.path());
    args.push("--dump-dom".into());
    args.push(format!("file://{}", file.display()));
    let out = run(browser.to_path_buf(), args).await;
    assert_eq!(out.code, 0, "chromium --dump-dom failed: {}", out.stderr);
    assert!(out.stdout.contains("</html>"), "no DOM: {out:?}");
    out.stdout
}

/// Saves a screenshot of `file` as `target/report-screenshots/NAME.png`.
async fn screenshot(browser: &Path, file: &Path, name: &str) {
    // Test binaries live in target/<profile>/deps.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("report-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    let profile = tempfile::tempdir().unwrap();
    let mut args = browser_args(profile.path());
    args.push(format!("--screenshot={}", png.display()));
    args.push("--window-size=1280,2400".into());
    args.push(format!("file://{}", file.display()));
    let out = run(browser.to_path_buf(), args).await;
    assert_eq!(out.code, 0, "chromium --screenshot failed: {}", out.stderr);
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "not a PNG: {}",
        png.display()
    );
    eprintln!("screenshot: {}", png.display());
}

// ---------------------------------------------------------------------------
// Reading the rendered DOM
// ---------------------------------------------------------------------------

/// One element of the serialised DOM: its name, attributes and the text
/// right after its start tag.
#[derive(Debug)]
struct Element {
    name: String,
    attrs: BTreeMap<String, String>,
    text: String,
}

/// Undoes the character references a DOM serialiser writes.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Every start tag of a serialised DOM. In serialised HTML a `<` in text or
/// in an attribute value is always escaped, so each `<` starts a tag; the
/// text of `<style>` is raw and skipped.
fn elements(dom: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        if rest.starts_with('/') || rest.starts_with('!') {
            rest = &rest[rest.find('>').unwrap() + 1..];
            continue;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap();
        let name = rest[..name_end].to_ascii_lowercase();
        rest = &rest[name_end..];
        let mut attrs = BTreeMap::new();
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('>') {
                rest = r;
                break;
            }
            if let Some(r) = rest.strip_prefix("/>") {
                rest = r;
                break;
            }
            let end = rest
                .find(|c: char| c == '=' || c == '>' || c.is_whitespace() || c == '/')
                .unwrap();
            let attr = rest[..end].to_ascii_lowercase();
            rest = &rest[end..];
            let value = if let Some(r) = rest.strip_prefix("=\"") {
                let close = r.find('"').unwrap();
                rest = &r[close + 1..];
                unescape(&r[..close])
            } else {
                if rest.starts_with('/') && !rest.starts_with("/>") {
                    rest = &rest[1..];
                }
                String::new()
            };
            attrs.insert(attr, value);
        }
        if name == "style" {
            rest = &rest[rest.find("</style>").unwrap()..];
        }
        let text_end = rest.find('<').unwrap_or(rest.len());
        let text = unescape(rest[..text_end].trim());
        out.push(Element { name, attrs, text });
    }
    out
}

/// The figures a page shows, by `data-metric` and `data-key`.
struct Metrics {
    values: HashMap<(String, String), Vec<String>>,
}

impl Metrics {
    fn of(elements: &[Element]) -> Metrics {
        let mut values: HashMap<(String, String), Vec<String>> = HashMap::new();
        for e in elements {
            if let Some(metric) = e.attrs.get("data-metric") {
                let key = e.attrs.get("data-key").cloned().unwrap_or_default();
                let value = e.attrs.get("data-value").unwrap_or(&e.text).clone();
                values.entry((metric.clone(), key)).or_default().push(value);
            }
        }
        Metrics { values }
    }

    /// The one value of `metric` (with `key`, `""` for none).
    fn get(&self, metric: &str, key: &str) -> &str {
        match self.values.get(&(metric.to_owned(), key.to_owned())) {
            Some(v) if v.len() == 1 => &v[0],
            other => panic!("{metric}[{key}]: expected one value, found {other:?}"),
        }
    }

    /// The value as a count (`1,234` -> 1234).
    fn count(&self, metric: &str, key: &str) -> u64 {
        let text = self.get(metric, key);
        text.replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("{metric}[{key}] = {text:?} is not a count"))
    }

    /// Every key of `metric` with its values, in key order.
    fn all(&self, metric: &str) -> BTreeMap<String, &Vec<String>> {
        self.values
            .iter()
            .filter(|((m, _), _)| m == metric)
            .map(|((_, k), v)| (k.clone(), v))
            .collect()
    }

    /// Every key of `metric` with its count.
    fn counts(&self, metric: &str) -> BTreeMap<String, u64> {
        self.all(metric)
            .into_keys()
            .map(|k| {
                let n = self.count(metric, &k);
                (k, n)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// What the test logged, and what the report should therefore say
// ---------------------------------------------------------------------------

/// One event as the test logged it, with the time the server gave it.
#[derive(Debug, Clone)]
struct Logged {
    seq: u64,
    at: OffsetDateTime,
    event_type: String,
    workflow: String,
    lead: String,
    error_type: Option<String>,
    duration_ms: Option<f64>,
    operation: Option<String>,
}

fn datetime(t: &prost_types::Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos),
    )
    .unwrap()
}

/// The events of the test's log: a lead funnel across three workflows,
/// errors of several types (one hostile), performance samples, and
/// hostile strings in every free-text field.
fn seed_events() -> Vec<NewEvent> {
    let mut events = Vec::new();
    let lead = |i: u32| format!("LEAD-{i:03}");
    for i in 0..20 {
        events.push(NewEvent::lead_ingested(lead(i), "webform").workflow("sales"));
    }
    for i in 0..14 {
        events.push(NewEvent::lead_qualified(lead(i), 80.0, true).workflow("sales"));
    }
    // Scored twice: still one lead at that stage.
    events.push(NewEvent::lead_qualified(lead(0), 85.0, true).workflow("sales"));
    for i in 0..10 {
        events.push(NewEvent::lead_routed(lead(i), "team-a").workflow("sales"));
    }
    for i in 0..7 {
        events
            .push(NewEvent::crm_create(lead(i), "hubspot", &format!("R{i}")).workflow("crm-sync"));
    }
    for i in 0..5 {
        events.push(
            NewEvent::email_sent(lead(i), "ana@example.com", "Welcome").workflow("onboarding"),
        );
    }
    events
        .push(NewEvent::email_sent(lead(1), "ana@example.com", "Follow-up").workflow("onboarding"));
    // A lead ingested before the period, emailed in it: counts at that stage.
    events.push(NewEvent::email_sent("LEAD-OLD", "old@example.com", "Hi").workflow("onboarding"));
    events.push(NewEvent::workflow_started("sales"));
    events.push(NewEvent::crm_update(
        "LEAD-001",
        "hubspot",
        "R1",
        &["stage"],
    ));
    for i in 0..3 {
        events.push(
            NewEvent::error("Timeout", "CRM did not answer")
                .workflow("crm-sync")
                .lead(lead(i)),
        );
    }
    for _ in 0..2 {
        events.push(NewEvent::error("AuthError", "token expired").workflow("sales"));
    }
    events.push(NewEvent::new("error").detail("error_message", "no type given"));
    events.push(
        NewEvent::error(HOSTILE_ERROR_TYPE, HOSTILE_MESSAGE)
            .workflow(HOSTILE_WORKFLOW)
            .actor(HOSTILE_ACTOR)
            .lead(HOSTILE_LEAD)
            .detail("note", HOSTILE_MESSAGE),
    );
    events.push(
        NewEvent::new("note_added")
            .workflow(HOSTILE_WORKFLOW)
            .actor(HOSTILE_ACTOR)
            .detail("text", "<style>body{display:none}</style>&amp;"),
    );
    events
}

/// Tracks performance samples, then logs the seed events one by one (so
/// each has its own server time, and the hostile ones are among the
/// newest), returning what was logged.
async fn seed(client: &Client) -> Vec<Logged> {
    let mut logged = Vec::new();
    // 20 samples of 11..=30 ms and 5 of 40..=80 ms for two operations.
    let samples: Vec<(&str, f64)> = (11..=30)
        .map(|ms| ("crm.create_record", f64::from(ms)))
        .chain((0..5).map(|i| ("lead_scoring", 40.0 + f64::from(i) * 10.0)))
        .collect();
    for (operation, ms) in samples {
        let receipt = client
            .track_performance_with(pb::TrackPerformanceRequest {
                operation: operation.to_owned(),
                duration_ms: ms,
                workflow: "sales".to_owned(),
                ..Default::default()
            })
            .await
            .unwrap();
        logged.push(Logged {
            seq: receipt.seq,
            at: datetime(receipt.timestamp.as_ref().unwrap()),
            event_type: "performance".into(),
            workflow: "sales".into(),
            lead: String::new(),
            error_type: None,
            duration_ms: Some(ms),
            operation: Some(operation.to_owned()),
        });
    }
    for event in seed_events() {
        let input = event.clone().into_input().unwrap();
        let details = auditlog_proto::json::struct_into_json(input.details.unwrap()).unwrap();
        let receipt = client.log(event).await.unwrap();
        logged.push(Logged {
            seq: receipt.seq,
            at: datetime(receipt.timestamp.as_ref().unwrap()),
            event_type: input.event_type.clone(),
            workflow: input.workflow.clone(),
            lead: input.lead_id.clone(),
            error_type: (input.event_type == "error").then(|| {
                details
                    .get("error_type")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
                    .to_owned()
            }),
            duration_ms: None,
            operation: None,
        });
    }
    logged
}

/// `part / whole` as the report writes it.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "n/a".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

/// Nearest-rank percentile of sorted samples.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

fn count_by<'a>(events: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut map = BTreeMap::new();
    for k in events {
        *map.entry(k.to_owned()).or_default() += 1;
    }
    map
}

const FUNNEL: [&str; 5] = [
    "lead_ingested",
    "lead_qualified",
    "lead_routed",
    "crm_create",
    "email_sent",
];

/// Checks every figure of a rendered report against the events of its
/// period (`since <= at < until`), with timeline buckets `bucket` wide.
fn check_figures(
    page: &str,
    dom: &str,
    logged: &[Logged],
    (since, until): (OffsetDateTime, OffsetDateTime),
    bucket: time::Duration,
) {
    let inside: Vec<&Logged> = logged
        .iter()
        .filter(|e| e.at >= since && e.at < until)
        .collect();
    let elements = elements(dom);
    let m = Metrics::of(&elements);
    let total = inside.len() as u64;
    assert!(total > 0, "{page}: nothing was logged in the period");
    // Timing samples are counted apart from the business events.
    let business: Vec<&&Logged> = inside
        .iter()
        .filter(|e| e.event_type != "performance")
        .collect();
    let samples = total - business.len() as u64;

    // Summary cards.
    let errors: Vec<&&Logged> = inside.iter().filter(|e| e.event_type == "error").collect();
    assert_eq!(m.count("total-events", ""), business.len() as u64, "{page}");
    assert_eq!(m.count("performance-events", ""), samples, "{page}");
    assert_eq!(m.count("error-count", ""), errors.len() as u64, "{page}");
    assert_eq!(
        m.get("error-rate", ""),
        percent(errors.len() as u64, business.len() as u64),
        "{page}"
    );
    let leads: BTreeSet<&str> = inside
        .iter()
        .map(|e| e.lead.as_str())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(m.count("leads-active", ""), leads.len() as u64, "{page}");

    // Counts per type, workflow and error type.
    assert_eq!(
        m.counts("type-count"),
        count_by(business.iter().map(|e| e.event_type.as_str())),
        "{page}"
    );
    assert_eq!(
        m.counts("workflow-count"),
        count_by(
            inside
                .iter()
                .map(|e| e.workflow.as_str())
                .filter(|w| !w.is_empty())
        ),
        "{page}"
    );
    let no_workflow = inside.iter().filter(|e| e.workflow.is_empty()).count() as u64;
    if no_workflow > 0 {
        assert_eq!(m.count("workflow-count-none", ""), no_workflow, "{page}");
    } else {
        assert!(m.all("workflow-count-none").is_empty(), "{page}");
    }
    assert_eq!(
        m.counts("error-type-count"),
        count_by(errors.iter().filter_map(|e| e.error_type.as_deref())),
        "{page}"
    );

    // The funnel: distinct leads per stage, share of ingested, step rate.
    let stage = |t: &str| -> u64 {
        inside
            .iter()
            .filter(|e| e.event_type == t && !e.lead.is_empty())
            .map(|e| e.lead.as_str())
            .collect::<BTreeSet<_>>()
            .len() as u64
    };
    let ingested = stage(FUNNEL[0]);
    assert_eq!(m.count("leads-ingested", ""), ingested, "{page}");
    assert_eq!(
        m.get("conversion-rate", ""),
        percent(stage(FUNNEL[4]), ingested),
        "{page}"
    );
    for (i, t) in FUNNEL.iter().enumerate() {
        assert_eq!(m.count("funnel-leads", t), stage(t), "{page}: {t}");
        assert_eq!(
            m.get("funnel-rate", t),
            percent(stage(t), ingested),
            "{page}: {t}"
        );
        if i > 0 {
            assert_eq!(
                m.get("funnel-step", t),
                percent(stage(t), stage(FUNNEL[i - 1])),
                "{page}: {t}"
            );
        }
    }

    // The timeline: every bucket of the period, each with its own events.
    let buckets = m.all("timeline-bucket");
    let width = bucket.whole_seconds();
    let expected_buckets = (until - since).whole_seconds() / width;
    assert_eq!(
        buckets.len() as i64,
        expected_buckets,
        "{page}: {buckets:?}"
    );
    let mut per_bucket: BTreeMap<String, u64> = BTreeMap::new();
    for e in &inside {
        let start = since + bucket * ((e.at - since).whole_seconds() / width) as i32;
        *per_bucket.entry(stamp(start)).or_default() += 1;
    }
    for (key, values) in &buckets {
        let shown: u64 = values[0].parse().unwrap();
        assert_eq!(
            shown,
            per_bucket.get(key).copied().unwrap_or(0),
            "{page}: bucket {key}"
        );
    }
    let sum: u64 = buckets.values().map(|v| v[0].parse::<u64>().unwrap()).sum();
    assert_eq!(sum, total, "{page}");
    assert_eq!(m.count("timeline-total", ""), total, "{page}");

    // Performance: exact nearest-rank percentiles of the period's samples.
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for e in &inside {
        if let (Some(op), Some(ms)) = (&e.operation, e.duration_ms) {
            samples.entry(op).or_default().push(ms);
        }
    }
    for (op, mut values) in samples {
        values.sort_by(f64::total_cmp);
        assert_eq!(
            m.count("perf-count", op),
            values.len() as u64,
            "{page}: {op}"
        );
        for (metric, p) in [("perf-p50", 50.0), ("perf-p95", 95.0), ("perf-p99", 99.0)] {
            // Every sample is 10 to 99 ms: shown with one decimal.
            let expect = format!("{:.1} ms", nearest_rank(&values, p));
            assert_eq!(m.get(metric, op), expect, "{page}: {metric} of {op}");
        }
    }

    // The latest errors and the recent events: the newest, newest first.
    let newest = |list: Vec<&&Logged>, n: usize| -> Vec<String> {
        let mut seqs: Vec<u64> = list.iter().map(|e| e.seq).collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs.truncate(n);
        seqs.iter().map(u64::to_string).collect()
    };
    let rows = |metric: &str| -> Vec<String> {
        elements
            .iter()
            .filter(|e| e.attrs.get("data-metric").map(String::as_str) == Some(metric))
            .map(|e| e.attrs["data-key"].clone())
            .collect()
    };
    assert_eq!(rows("latest-error"), newest(errors.clone(), 10), "{page}");
    assert_eq!(rows("recent-event"), newest(business.clone(), 25), "{page}");
}

/// `t` as the server writes timestamps, `2026-11-28T14:00:00.000000Z`,
/// which is also how the report keys buckets.
fn stamp(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .expect("a UTC time formats")
}

/// `2026-11-28`, as `--date` takes it and the daily report is named.
fn iso_date(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// A report's period (`since <= at < until`) and its timeline buckets' width.
type Span = ((OffsetDateTime, OffsetDateTime), time::Duration);

/// The daily and the weekly report's periods for `day`.
fn day_and_week(day: time::Date) -> [Span; 2] {
    let day_start = day.midnight().assume_utc();
    let monday = day - time::Duration::days(i64::from(day.weekday().number_days_from_monday()));
    let week_start = monday.midnight().assume_utc();
    [
        (
            (day_start, day_start + time::Duration::DAY),
            time::Duration::HOUR,
        ),
        (
            (week_start, week_start + time::Duration::WEEK),
            time::Duration::DAY,
        ),
    ]
}

/// Renders the report `file` with Chromium, checks that it is safe and
/// self-contained and shows the figures of `logged` for its period, and
/// saves its screenshot as `name`. Returns the rendered DOM.
async fn check_report(
    browser: &Path,
    name: &str,
    file: &Path,
    logged: &[Logged],
    (range, bucket): Span,
) -> String {
    let html = std::fs::read_to_string(file).unwrap();
    let dom = rendered_dom(browser, file).await;
    check_safe_and_self_contained(name, &html, &dom);
    check_figures(name, &dom, logged, range, bucket);
    screenshot(browser, file, name).await;
    dom
}

/// The page is ours alone: only the elements the report writes, no
/// script, no event handler, nothing that loads a resource; and the hostile
/// strings of the log are there as text.
fn check_safe_and_self_contained(page: &str, html: &str, dom: &str) {
    let allowed = [
        "html", "head", "meta", "title", "style", "body", "header", "main", "section", "footer",
        "div", "span", "h1", "h2", "h3", "p", "ul", "li", "strong", "code", "table", "thead",
        "tbody", "tr", "th", "td", "svg", "g", "rect", "line", "text",
    ];
    let elements = elements(dom);
    assert!(
        elements.len() > 100,
        "{page}: only {} elements",
        elements.len()
    );
    for e in &elements {
        assert!(
            allowed.contains(&e.name.as_str()),
            "{page}: unexpected <{}> {:?}",
            e.name,
            e.attrs
        );
        for attr in e.attrs.keys() {
            assert!(
                !attr.starts_with("on")
                    && !["src", "href", "srcset", "action", "xlink:href"].contains(&attr.as_str()),
                "{page}: attribute {attr} on <{}>",
                e.name
            );
        }
    }
    // The raw file too: no script, no external resource of any kind.
    for bad in [
        "<script", "<link", "<img", "<iframe", "@import", "url(", "<a ",
    ] {
        assert!(!html.contains(bad), "{page}: {bad} in the file");
    }
    assert!(html.contains("@media print"), "{page}: no print style");
}

/// The hostile strings of [`seed_events`] show as text.
fn check_hostile_strings_are_text(page: &str, dom: &str) {
    let elements = elements(dom);
    let m = Metrics::of(&elements);
    assert!(
        m.counts("error-type-count")
            .contains_key(HOSTILE_ERROR_TYPE),
        "{page}"
    );
    assert!(
        m.counts("workflow-count").contains_key(HOSTILE_WORKFLOW),
        "{page}"
    );
    let texts: Vec<&str> = elements.iter().map(|e| e.text.as_str()).collect();
    for s in [HOSTILE_ACTOR, HOSTILE_WORKFLOW] {
        assert!(texts.contains(&s), "{page}: {s} is not shown as text");
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains("</td></tr></table><script>alert(4)")),
        "{page}"
    );
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// The daily and the weekly report of a log seeded now, rendered by
/// Chromium, show exactly the figures of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_rendered_in_a_browser_show_the_figures_of_the_log() {
    let Some(browser) = chromium() else { return };
    let server = TestServer::start().await;
    let client = server.client().await;
    let logged = seed(&client).await;
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().join("reports");
    let dir_arg = dir.to_str().unwrap();

    // The day (and week) of the first event; events that a midnight between
    // them pushed into the next day are simply outside the period.
    let day = logged[0].at.date();
    let day_arg = iso_date(day);
    let daily = report(
        &server.url,
        &["report", "--daily", "--date", &day_arg, "--output", dir_arg],
    )
    .await;
    assert_eq!(
        daily.file_name().unwrap().to_str().unwrap(),
        format!("auditlog-daily-{day_arg}.html")
    );
    let weekly = report(
        &server.url,
        &[
            "report",
            "--weekly",
            "--week-of",
            &day_arg,
            "--output",
            dir_arg,
        ],
    )
    .await;
    let (iso_year, iso_week, _) = day.to_iso_week_date();
    assert_eq!(
        weekly.file_name().unwrap().to_str().unwrap(),
        format!("auditlog-weekly-{iso_year:04}-W{iso_week:02}.html")
    );

    let [day_span, week_span] = day_and_week(day);
    let daily_dom = check_report(&browser, "daily", &daily, &logged, day_span).await;
    let weekly_dom = check_report(&browser, "weekly", &weekly, &logged, week_span).await;
    let cases = [
        ("daily", daily_dom, day_arg),
        (
            "weekly",
            weekly_dom,
            format!("{iso_year:04}-W{iso_week:02}"),
        ),
    ];
    for (name, dom, label) in cases {
        check_hostile_strings_are_text(name, &dom);
        let m = Metrics::of(&elements(&dom));
        assert_eq!(m.all("period").into_keys().collect::<Vec<_>>(), vec![label]);
    }
}

/// An event of the past week's log.
struct Past {
    at: OffsetDateTime,
    event_type: &'static str,
    lead: String,
    workflow: &'static str,
    details: serde_json::Value,
}

/// A log of ISO week 2026-W46 (Monday 9 to Sunday 15 November 2026), with
/// events on both sides of its bounds and of Wednesday's: leads come in
/// during working hours, more on weekdays, and move down the funnel over
/// the next two hours, with errors and performance samples along the way.
fn past_week() -> Vec<Past> {
    let at = |day: u8, h: u8, m: u8, s: u8, us: u32| {
        time::Date::from_calendar_date(2026, time::Month::November, day)
            .unwrap()
            .with_hms_micro(h, m, s, us)
            .unwrap()
            .assume_utc()
    };
    let minutes = |t: OffsetDateTime, m: i64| t + time::Duration::minutes(m);
    let mut events = Vec::new();
    let mut push = |at, event_type, lead: &str, workflow, details| {
        events.push(Past {
            at,
            event_type,
            lead: lead.to_owned(),
            workflow,
            details,
        })
    };
    let none = || serde_json::json!({});
    // Just outside the week, and a lead from before it emailed during it.
    push(
        at(8, 23, 59, 59, 999_999),
        "lead_ingested",
        "LEAD-PREV",
        "sales",
        none(),
    );
    push(at(9, 0, 0, 0, 0), "workflow_started", "", "sales", none());
    push(
        at(9, 9, 0, 0, 0),
        "email_sent",
        "LEAD-PREV",
        "onboarding",
        none(),
    );
    // Wednesday's bounds.
    push(
        at(10, 23, 59, 59, 999_999),
        "crm_update",
        "LEAD-PREV",
        "crm-sync",
        none(),
    );
    push(
        at(11, 0, 0, 0, 0),
        "crm_update",
        "LEAD-PREV",
        "crm-sync",
        none(),
    );
    push(
        at(11, 23, 59, 59, 999_999),
        "crm_update",
        "LEAD-PREV",
        "crm-sync",
        none(),
    );
    push(
        at(12, 0, 0, 0, 0),
        "crm_update",
        "LEAD-PREV",
        "crm-sync",
        none(),
    );
    push(
        at(15, 23, 59, 59, 999_999),
        "workflow_stopped",
        "",
        "sales",
        none(),
    );
    push(at(16, 0, 0, 0, 0), "workflow_started", "", "sales", none());
    let per_day = [9u32, 12, 14, 11, 10, 3, 2];
    let mut i = 0u32;
    for (d, n) in per_day.iter().enumerate() {
        for j in 0..*n {
            let hour = 8 + (j * 10 / n) as u8;
            let start = at(9 + d as u8, hour, ((j * 17) % 60) as u8, 0, 0);
            let lead = format!("LEAD-{i:03}");
            push(
                start,
                "lead_ingested",
                &lead,
                "sales",
                serde_json::json!({"source": "webform"}),
            );
            if i % 10 < 7 {
                let t = minutes(start, 20);
                push(
                    t,
                    "lead_qualified",
                    &lead,
                    "sales",
                    serde_json::json!({"score": 70}),
                );
                let ms = 20 + (i * 7) % 60;
                push(
                    minutes(t, 1),
                    "performance",
                    "",
                    "sales",
                    serde_json::json!({"operation": "lead_scoring", "duration_ms": ms}),
                );
            }
            if i % 4 == 1 {
                let kind = ["Timeout", "RateLimited", "ValidationError"][(i % 3) as usize];
                push(
                    minutes(start, 30),
                    "error",
                    &lead,
                    "crm-sync",
                    serde_json::json!({"error_type": kind, "error_message": format!("{kind} on {lead}")}),
                );
            }
            if i % 10 < 5 {
                push(minutes(start, 40), "lead_routed", &lead, "sales", none());
            }
            if i % 10 < 4 {
                let t = minutes(start, 60);
                push(t, "crm_create", &lead, "crm-sync", none());
                let ms = 30 + (i * 13) % 50;
                push(
                    minutes(t, 1),
                    "performance",
                    "",
                    "crm-sync",
                    serde_json::json!({"operation": "crm.create_record", "duration_ms": ms}),
                );
            }
            if i % 10 < 3 {
                push(
                    minutes(start, 120),
                    "email_sent",
                    &lead,
                    "onboarding",
                    none(),
                );
            }
            i += 1;
        }
    }
    events.sort_by_key(|e| e.at);
    events
}

/// Writes `events` as the server would have written them at their times:
/// records in seq order, chained and signed with [`TEST_KEY`].
fn write_log(path: &Path, events: &[Past]) -> Vec<Logged> {
    let json = |v: &str| serde_json::to_string(v).unwrap();
    let opt = |v: &str| {
        if v.is_empty() {
            "null".to_owned()
        } else {
            json(v)
        }
    };
    let mut prev = "0".repeat(64);
    let mut text = String::new();
    let mut logged = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let seq = i as u64 + 1;
        let unsigned = format!(
            r#"{{"seq":{seq},"id":"00000000-0000-7000-8000-{seq:012}","timestamp":"{}","event_type":"{}","actor":"system","lead_id":{},"workflow":{},"details":{},"key_id":"k1","prev":"{prev}"}}"#,
            stamp(e.at),
            e.event_type,
            opt(&e.lead),
            opt(e.workflow),
            e.details,
        );
        let signature = hmac_hex(TEST_KEY.as_bytes(), unsigned.as_bytes());
        text.push_str(&signed(&unsigned, &signature));
        text.push('\n');
        prev = signature;
        logged.push(Logged {
            seq,
            at: e.at,
            event_type: e.event_type.to_owned(),
            workflow: e.workflow.to_owned(),
            lead: e.lead.clone(),
            error_type: e.details["error_type"].as_str().map(str::to_owned),
            duration_ms: e.details["duration_ms"].as_f64(),
            operation: e.details["operation"].as_str().map(str::to_owned),
        });
    }
    std::fs::write(path, text).unwrap();
    logged
}

/// A log written over a past week: the weekly report puts each event on
/// its day and the daily report on its hour, and events a microsecond
/// outside the period stay out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_week_is_drawn_day_by_day_and_hour_by_hour() {
    let Some(browser) = chromium() else { return };
    let data = tempfile::tempdir().unwrap();
    let logged = write_log(&data.path().join("audit.log"), &past_week());
    let server = TestServer::start_in(data.path(), with_test_key).await;
    // The server takes the log as its own: every record checks out.
    let verified = server.client().await.verify().await.unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.events_checked, logged.len() as u64);

    let out_dir = tempfile::tempdir().unwrap();
    let dir_arg = out_dir.path().to_str().unwrap();
    let daily = report(
        &server.url,
        &[
            "report",
            "--daily",
            "--date",
            "2026-11-11",
            "--output",
            dir_arg,
        ],
    )
    .await;
    let weekly = report(
        &server.url,
        &[
            "report",
            "--weekly",
            "--week-of",
            "2026-11-15",
            "--output",
            dir_arg,
        ],
    )
    .await;
    assert!(
        weekly.ends_with("auditlog-weekly-2026-W46.html"),
        "{}",
        weekly.display()
    );
    // Wednesday 11 November and its week, Monday 9 to Sunday 15.
    let wednesday = time::macros::date!(2026 - 11 - 11);
    let [day_span, week_span] = day_and_week(wednesday);
    check_report(&browser, "past-daily", &daily, &logged, day_span).await;
    let weekly_dom = check_report(&browser, "past-weekly", &weekly, &logged, week_span).await;
    let m = Metrics::of(&elements(&weekly_dom));
    // More than one day has events, and the lead from before the week
    // counts at the stage it reached in it.
    let busy_days = m
        .all("timeline-bucket")
        .values()
        .filter(|v| v[0] != "0")
        .count();
    assert!(busy_days >= 5, "{busy_days}");
    assert_eq!(
        m.count("funnel-leads", "email_sent"),
        1 + (0..61).filter(|i| i % 10 < 3).count() as u64
    );
}

/// The figures of `file` as written (no browser needed: the report's own
/// markup parses like the serialised DOM), checked against `logged`.
fn check_written(name: &str, file: &Path, logged: &[Logged], span: Span) -> String {
    let html = std::fs::read_to_string(file).unwrap();
    check_safe_and_self_contained(name, &html, &html);
    check_figures(name, &html, logged, span.0, span.1);
    html
}

/// The span of the seven days ending with `last`, and of its month.
fn seven_days_and_month(last: time::Date) -> [Span; 2] {
    let end = (last + time::Duration::DAY).midnight().assume_utc();
    let first = last.replace_day(1).unwrap().midnight().assume_utc();
    let next_month = time::Date::from_calendar_date(last.year(), last.month().next(), 1)
        .unwrap()
        .midnight()
        .assume_utc();
    [
        ((end - time::Duration::WEEK, end), time::Duration::DAY),
        ((first, next_month), time::Duration::DAY),
    ]
}

/// One command makes the daily, weekly, last-7-days and monthly reports of
/// one date, each showing the figures of its own period with the timing
/// samples counted apart from the business event types; `--latest` keeps
/// a dated-free copy per kind that the next run replaces; `--output
/// x.html` writes that file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_writes_every_kind_and_a_stable_name() {
    let data = tempfile::tempdir().unwrap();
    let logged = write_log(&data.path().join("audit.log"), &past_week());
    let server = TestServer::start_in(data.path(), with_test_key).await;
    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().join("dash");
    let dir_arg = dir.to_str().unwrap();
    let args = [
        "report",
        "--daily",
        "--weekly",
        "--last-7-days",
        "--monthly",
        "--date",
        "2026-11-11",
        "--latest",
        "--output",
        dir_arg,
    ];
    let out = auditlog(&server.url, &args).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let names = [
        "auditlog-daily-2026-11-11.html",
        "auditlog-daily-latest.html",
        "auditlog-weekly-2026-W46.html",
        "auditlog-weekly-latest.html",
        "auditlog-last-7-days-2026-11-11.html",
        "auditlog-last-7-days-latest.html",
        "auditlog-monthly-2026-11.html",
        "auditlog-monthly-latest.html",
    ];
    let printed: Vec<PathBuf> = out.stdout.lines().map(PathBuf::from).collect();
    assert_eq!(
        printed,
        names.iter().map(|n| dir.join(n)).collect::<Vec<_>>(),
        "{out:?}"
    );
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    assert_eq!(on_disk, expected);

    let wednesday = time::macros::date!(2026 - 11 - 11);
    let [day, week] = day_and_week(wednesday);
    let [seven, month] = seven_days_and_month(wednesday);
    let cases = [
        ("daily", day, "2026-11-11"),
        ("weekly", week, "2026-W46"),
        ("last-7-days", seven, "2026-11-05..2026-11-11"),
        ("monthly", month, "2026-11"),
    ];
    // Rendered too where Chromium is installed (the other tests require it
    // under REQUIRE_CHROMIUM=1).
    let browser = Path::new(CHROMIUM)
        .exists()
        .then(|| PathBuf::from(CHROMIUM));
    for (i, (kind, span, label)) in cases.into_iter().enumerate() {
        let html = check_written(kind, &printed[2 * i], &logged, span);
        if let Some(browser) = &browser {
            let name = format!("all-{kind}");
            check_report(browser, &name, &printed[2 * i], &logged, span).await;
        }
        let m = Metrics::of(&elements(&html));
        assert_eq!(
            m.all("period").into_keys().collect::<Vec<_>>(),
            vec![label],
            "{kind}"
        );
        // The timing samples are there, but not among the event types.
        assert!(m.count("performance-events", "") > 0, "{kind}");
        assert!(
            !m.counts("type-count").contains_key("performance"),
            "{kind}"
        );
        let latest = std::fs::read_to_string(&printed[2 * i + 1]).unwrap();
        assert_eq!(latest, html, "{kind}: the latest copy differs");
    }

    // The next day's run replaces the latest daily copy.
    let out = auditlog(
        &server.url,
        &[
            "report",
            "--daily",
            "--date",
            "2026-11-12",
            "--latest",
            "--output",
            dir_arg,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let latest = std::fs::read_to_string(dir.join("auditlog-daily-latest.html")).unwrap();
    let m = Metrics::of(&elements(&latest));
    assert_eq!(
        m.all("period").into_keys().collect::<Vec<_>>(),
        vec!["2026-11-12"]
    );
    let [day12, _] = day_and_week(time::macros::date!(2026 - 11 - 12));
    check_figures("latest", &latest, &logged, day12.0, day12.1);

    // `--output x.html` is the file, in a directory made for it.
    let file = out_dir.path().join("new").join("x.html");
    let written = report(
        &server.url,
        &[
            "report",
            "--monthly",
            "--date",
            "2026-11-30",
            "--output",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(written, file);
    check_written("x.html", &file, &logged, month);
    let files: Vec<_> = std::fs::read_dir(file.parent().unwrap()).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

/// Without a date the report is today's (UTC); `--json` prints the path and
/// the period; an empty period is a valid page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_json_output_and_an_empty_period() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let before = OffsetDateTime::now_utc().date();
    let out = auditlog(
        &server.url,
        &["--json", "report", "--daily", "--output", dir_arg],
    )
    .await;
    let after = OffsetDateTime::now_utc().date();
    assert_eq!(out.code, 0, "{out:?}");
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let period = value["period"].as_str().unwrap().to_owned();
    assert!(
        period == iso_date(before) || period == iso_date(after),
        "{out:?}"
    );
    assert_eq!(value["total_events"], 0);
    let path = PathBuf::from(value["path"].as_str().unwrap());
    assert_eq!(
        path,
        dir.path().join(format!("auditlog-daily-{period}.html"))
    );
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(
        html.contains("No events were logged in this period."),
        "{html}"
    );
    assert!(html.contains(r#"data-metric="total-events">0<"#), "{html}");
    // No partial file is left behind.
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");

    // Weekly for a week long past: empty, named by its ISO week.
    let out = auditlog(
        &server.url,
        &[
            "report",
            "--weekly",
            "--week-of",
            "2021-01-03",
            "--output",
            dir_arg,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .trim_end()
            .ends_with("auditlog-weekly-2020-W53.html"),
        "{out:?}"
    );
}

/// Argument mistakes: clap's errors for the flags, one clear line for a
/// bad date (before any connection), and for a server that is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let clap_errors: &[(&[&str], &str)] = &[
        (&["report", "--output", "x"], "required"),
        (&["report", "--daily", "--date"], "--date"),
    ];
    for (args, word) in clap_errors {
        let out = auditlog(DEAD_URL, args).await;
        assert_ne!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.stderr.contains(word), "{args:?}: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{out:?}");
    }
    // `--week-of` is another name for `--date`.
    for (flag, period) in [("--date", "--daily"), ("--week-of", "--weekly")] {
        for bad in ["2026-13-01", "2026-02-30", "28/11/2026", "tomorrow"] {
            // Against a dead URL: the date is checked before connecting.
            let out = auditlog(
                DEAD_URL,
                &["report", period, flag, bad, "--output", dir_arg],
            )
            .await;
            assert_eq!(out.code, 1, "{out:?}");
            assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
            assert!(
                out.stderr.starts_with(&format!(
                    "auditlog: invalid argument: --date \"{bad}\" is not a date; use YYYY-MM-DD"
                )),
                "{out:?}"
            );
            assert!(out.stdout.is_empty(), "{out:?}, {flag}");
        }
    }
    // One file cannot hold several reports, and names itself.
    let file_arg = dir.path().join("x.html");
    let file_arg = file_arg.to_str().unwrap();
    let usage: &[(&[&str], &str)] = &[
        (
            &["report", "--daily", "--weekly", "--output", file_arg],
            "names one file, but 2 reports were asked for; give a directory instead",
        ),
        (
            &["report", "--monthly", "--latest", "--output", file_arg],
            "--latest writes auditlog-<kind>-latest.html into a directory",
        ),
    ];
    for (args, message) in usage {
        let out = auditlog(DEAD_URL, args).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        assert!(out.stderr.contains(message), "{args:?}: {out:?}");
    }
    let out = auditlog(DEAD_URL, &["report", "--daily", "--output", dir_arg]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("127.0.0.1:1"), "{out:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // An output "directory" that is a file.
    let server = TestServer::start().await;
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = auditlog(
        &server.url,
        &["report", "--daily", "--output", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("not-a-dir"), "{out:?}");
}

/// `report --mail`: each report also goes, as the HTML part of one mail,
/// to the alert email recipients through the server's SMTP settings; a
/// server without an email channel refuses in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_mailed_through_the_alert_smtp_settings() {
    use common::endpoints::{SmtpServer, email_config};

    let smtp = SmtpServer::start().await;
    let server = TestServer::start_with(|c| {
        c.alerts.email = Some(email_config(
            smtp.port,
            &["ops@example.com", "sales@example.net"],
        ));
    })
    .await;
    let client = server.client().await;
    client
        .log(
            NewEvent::new("lead_created")
                .lead("LEAD-MAIL")
                .workflow("sales"),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let out = auditlog(
        &server.url,
        &["report", "--daily", "--mail", "--output", dir_arg],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("mailed to 2 recipient(s)"), "{out:?}");

    let mails = smtp.wait_for(1).await;
    let mail = &mails[0];
    let mut to = mail.rcpt_to.clone();
    to.sort();
    assert_eq!(to, ["ops@example.com", "sales@example.net"]);
    let today = OffsetDateTime::now_utc().date();
    assert!(
        mail.header("subject").starts_with("auditlog daily report ")
            && mail.header("subject").contains(&today.year().to_string()),
        "{}",
        mail.header("subject")
    );
    // The HTML part is the page the run wrote to the directory.
    let parts = mail.parts();
    let html = parts
        .iter()
        .find(|p| p.header("content-type").starts_with("text/html"))
        .unwrap_or_else(|| panic!("no HTML part in {}", mail.data));
    let written = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "html"))
        .unwrap();
    assert_eq!(
        html.body().trim_end(),
        std::fs::read_to_string(written)
            .unwrap()
            .replace("\r\n", "\n")
            .trim_end()
    );
    let text = parts
        .iter()
        .find(|p| p.header("content-type").starts_with("text/plain"))
        .unwrap();
    assert!(text.body().contains("1 events"), "{}", text.body());

    // Without an email channel: one line that says what to configure.
    let plain = TestServer::start().await;
    let out = auditlog(
        &plain.url,
        &["report", "--daily", "--mail", "--output", dir_arg],
    )
    .await;
    assert_ne!(out.code, 0, "{out:?}");
    let err = out.stderr.trim();
    assert!(
        err.lines().count() == 1 && err.contains("[alerts.email]"),
        "{out:?}"
    );
}
