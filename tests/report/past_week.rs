//! A signed log written over a past week, as the server would have written
//! it: each event on its day and hour, none a microsecond outside.

use std::path::Path;

use time::OffsetDateTime;

use crate::common::{TEST_KEY, TestServer, hmac_hex, signed, with_test_key};
use crate::report::dom::{Metrics, elements};
use crate::report::expected::{Logged, check_report, day_and_week, stamp};
use crate::report::running::{chromium, report};

/// An event of the past week's log.
pub(crate) struct Past {
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
pub(crate) fn past_week() -> Vec<Past> {
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
pub(crate) fn write_log(path: &Path, events: &[Past]) -> Vec<Logged> {
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
