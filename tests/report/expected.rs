//! What the test logged, and what the report should therefore say: the
//! seeded events, and the checks of a report's figures, safety and text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use auditlog_client::{Client, NewEvent, pb};
use time::OffsetDateTime;

use crate::report::dom::{Metrics, elements};
use crate::report::running::{rendered_dom, screenshot};
use crate::report::{
    HOSTILE_ACTOR, HOSTILE_ERROR_TYPE, HOSTILE_LEAD, HOSTILE_MESSAGE, HOSTILE_WORKFLOW,
};

/// One event as the test logged it, with the time the server gave it.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    pub(crate) seq: u64,
    pub(crate) at: OffsetDateTime,
    pub(crate) event_type: String,
    pub(crate) workflow: String,
    pub(crate) lead: String,
    pub(crate) error_type: Option<String>,
    pub(crate) duration_ms: Option<f64>,
    pub(crate) operation: Option<String>,
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
pub(crate) async fn seed(client: &Client) -> Vec<Logged> {
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
pub(crate) fn check_figures(
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
pub(crate) fn stamp(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .expect("a UTC time formats")
}

/// `2026-11-28`, as `--date` takes it and the daily report is named.
pub(crate) fn iso_date(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// A report's period (`since <= at < until`) and its timeline buckets' width.
pub(crate) type Span = ((OffsetDateTime, OffsetDateTime), time::Duration);

/// The daily and the weekly report's periods for `day`.
pub(crate) fn day_and_week(day: time::Date) -> [Span; 2] {
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
pub(crate) async fn check_report(
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
pub(crate) fn check_safe_and_self_contained(page: &str, html: &str, dom: &str) {
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
pub(crate) fn check_hostile_strings_are_text(page: &str, dom: &str) {
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
