//! `stats` and `errors`: counts, filters, timelines and tracebacks.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_match_what_was_logged() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let samples = query_samples();
    let receipts = log_samples(&client, &samples).await;
    let records = disk_records(&server);

    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_workflow: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &samples {
        *by_type.entry(s.event_type).or_default() += 1;
        if !s.workflow.is_empty() {
            *by_workflow.entry(s.workflow).or_default() += 1;
        }
    }
    let leads: BTreeSet<&str> = samples.iter().map(|s| s.lead).collect();
    let errors = samples.iter().filter(|s| s.event_type == "error").count() as u64;

    let stats = auditlog(&server, &["--json", "stats"]).await.json();
    assert_eq!(stats["total_events"], samples.len() as u64, "{stats}");
    assert_eq!(stats["head_seq"], receipts.last().unwrap().seq, "{stats}");
    assert_eq!(stats["leads_processed"], leads.len() as u64, "{stats}");
    assert_eq!(stats["error_count"], errors, "{stats}");
    assert_eq!(stats["by_type"], json!(by_type), "{stats}");
    assert_eq!(stats["by_workflow"], json!(by_workflow), "{stats}");
    assert_eq!(stats["first_event"], records[0]["timestamp"], "{stats}");
    assert_eq!(
        stats["last_event"],
        records.last().unwrap()["timestamp"],
        "{stats}"
    );

    // One workflow.
    let sales: Vec<(usize, &Sample)> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.workflow == "sales")
        .collect();
    let stats = auditlog(&server, &["--json", "stats", "--workflow", "sales"])
        .await
        .json();
    assert_eq!(stats["total_events"], sales.len() as u64, "{stats}");
    let mut sales_types: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, s) in &sales {
        *sales_types.entry(s.event_type).or_default() += 1;
    }
    assert_eq!(stats["by_type"], json!(sales_types), "{stats}");
    assert_eq!(
        stats["by_workflow"],
        json!({ "sales": sales.len() }),
        "{stats}"
    );
    let sales_leads: BTreeSet<&str> = sales.iter().map(|(_, s)| s.lead).collect();
    assert_eq!(
        stats["leads_processed"],
        sales_leads.len() as u64,
        "{stats}"
    );
    let sales_errors = sales
        .iter()
        .filter(|(_, s)| s.event_type == "error")
        .count();
    assert_eq!(stats["error_count"], sales_errors as u64, "{stats}");
    let (first, last) = (sales[0].0, sales.last().unwrap().0);
    assert_eq!(stats["first_event"], records[first]["timestamp"], "{stats}");
    assert_eq!(stats["last_event"], records[last]["timestamp"], "{stats}");

    // Text: the same numbers.
    let out = auditlog(&server, &["stats"]).await;
    let text = out.ok();
    let value = |label: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} line: {text}"))
            .trim()
            .to_owned()
    };
    assert_eq!(value("events:"), samples.len().to_string(), "{text}");
    assert_eq!(value("leads processed:"), leads.len().to_string(), "{text}");
    assert_eq!(value("errors:"), errors.to_string(), "{text}");
    assert_eq!(value("head seq:"), samples.len().to_string(), "{text}");
    assert_eq!(
        value("first event:"),
        records[0]["timestamp"].as_str().unwrap(),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for (name, n) in by_type.iter().chain(&by_workflow) {
        let row = format!("{name} {n}");
        assert!(
            rows.iter().any(|r| r.join(" ") == row),
            "no row {row:?}: {text}"
        );
    }

    let out = auditlog(&server, &["stats", "--workflow", "onboarding"]).await;
    let text = out.ok();
    let onboarding = samples
        .iter()
        .filter(|s| s.workflow == "onboarding")
        .count();
    assert!(text.contains("onboarding"), "{text}");
    assert_eq!(
        text.lines()
            .find_map(|l| l.strip_prefix("events:"))
            .unwrap()
            .trim(),
        onboarding.to_string(),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_show_type_message_and_traceback() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .log(
            NewEvent::error("TimeoutError", "CRM did not answer in 30 s")
                .lead("LEAD-7")
                .workflow("sales")
                .traceback("Traceback (most recent call last):\n  File \"crm.py\", line 42, in push\nTimeoutError"),
        )
        .await
        .unwrap();
    client
        .log(NewEvent::lead_ingested("LEAD-8", "webform"))
        .await
        .unwrap();
    // An error logged from the CLI, the way a shell script would.
    let out = auditlog(
        &server,
        &[
            "log",
            "error",
            "--lead",
            "LEAD-9",
            "--details",
            r#"{"error_type":"ValueError","error_message":"bad phone number","traceback":"File \"parse.py\", line 7\nValueError: +00"}"#,
        ],
    )
    .await;
    out.ok();

    let out = auditlog(&server, &["errors"]).await;
    let text = out.ok();
    assert!(
        text.lines().next().unwrap().contains("ERROR TYPE"),
        "{out:?}"
    );
    let rows = table_rows(text);
    assert_eq!(rows.len(), 2, "only error events: {out:?}");
    assert_eq!(rows[0][1], "3", "newest first: {out:?}");
    assert_eq!(rows[1][1], "1", "{out:?}");
    for want in [
        "ValueError",
        "bad phone number",
        "TimeoutError",
        "CRM did not answer in 30 s",
        "LEAD-7",
    ] {
        assert!(text.contains(want), "{want:?} missing: {out:?}");
    }
    assert!(
        !text.contains("crm.py"),
        "traceback only with --verbose: {out:?}"
    );
    assert!(!text.contains("LEAD-8"), "{out:?}");

    let out = auditlog(&server, &["errors", "--verbose"]).await;
    let text = out.ok();
    for want in [
        "TimeoutError",
        "CRM did not answer in 30 s",
        "Traceback (most recent call last):",
        "  File \"crm.py\", line 42, in push",
        "File \"parse.py\", line 7",
        "ValueError: +00",
    ] {
        assert!(text.contains(want), "{want:?} missing: {out:?}");
    }

    // The same JSON shape as query's: events, then the token to go on.
    let out = auditlog(&server, &["--json", "errors", "--limit", "1"]).await;
    let errors = out.json();
    assert_eq!(seqs(&errors["events"]), [3], "{out:?}");
    assert_eq!(errors["events"][0]["details"]["error_type"], "ValueError");
    assert_eq!(errors["events"][0]["event_type"], "error");
    let token = errors["next_page_token"].as_str().unwrap();
    let rest = auditlog(
        &server,
        &["--json", "query", "--type", "error", "--page-token", token],
    )
    .await
    .json();
    assert_eq!(seqs(&rest["events"]), [1], "{rest}");
}

/// A receipt's time as a user types it: no fraction, no zone (read as UTC),
/// rounded up to the next whole second.
fn zoneless_after(receipt: &pb::Receipt) -> String {
    let t = receipt.timestamp.as_ref().unwrap();
    let secs = t.seconds + i64::from(t.nanos > 0);
    let text = time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    text.strip_suffix('Z').unwrap().to_owned()
}

/// Waits until the server's clock has passed the second after `receipt`.
async fn next_second(receipt: &pb::Receipt) {
    let t = receipt.timestamp.as_ref().unwrap();
    let next = std::time::UNIX_EPOCH + Duration::from_secs(t.seconds as u64 + 1);
    if let Ok(wait) = next.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
    }
}

/// `auditlog --json CMD ARGS`, parsed.
async fn json_of(server: &TestServer, cmd: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json", cmd];
    all.extend(args);
    auditlog(server, &all).await.json()
}

/// `stats` and `errors` take the time range, workflow and type filters,
/// `stats` a timeline; `stats` shows timings apart from the business
/// events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_errors_take_filters_and_a_timeline() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let ingest =
        |lead: &str, workflow: &str| NewEvent::lead_ingested(lead, "webform").workflow(workflow);
    // Before: 3 leads, 1 error and 2 timings.
    client
        .log_batch([
            ingest("A1", "sales"),
            ingest("A2", "sales"),
            ingest("A3", "sales"),
            NewEvent::error("TimeoutError", "CRM slow").workflow("sales"),
        ])
        .await
        .unwrap();
    client
        .track_performance("crm.push", Duration::from_millis(120), Some("sales"))
        .await
        .unwrap();
    let last_before = client
        .track_performance("crm.push", Duration::from_millis(80), None)
        .await
        .unwrap();
    next_second(&last_before).await;
    let cut = zoneless_after(&last_before);
    // After: 3 leads, 2 errors and 1 timing.
    client
        .log_batch([
            ingest("B1", "sales"),
            ingest("B2", "sales"),
            ingest("B3", "support"),
            NewEvent::error("ValueError", "bad phone").workflow("support"),
            NewEvent::error("TimeoutError", "CRM slow").workflow("sales"),
        ])
        .await
        .unwrap();
    client
        .track_performance("crm.push", Duration::from_millis(90), Some("sales"))
        .await
        .unwrap();

    let s = json_of(&server, "stats", &["--type", "lead_ingested"]).await;
    assert_eq!(s["total_events"], 6, "{s}");
    assert_eq!(s["by_type"], json!({ "lead_ingested": 6 }), "{s}");
    let s = json_of(
        &server,
        "stats",
        &["--type", "lead_ingested", "--type", "error"],
    )
    .await;
    assert_eq!(s["total_events"], 9, "{s}");
    assert_eq!(s["error_count"], 3, "{s}");
    // A time without a zone is UTC.
    let s = json_of(&server, "stats", &["--since", &cut]).await;
    assert_eq!(s["total_events"], 6, "{s}");
    let s = json_of(&server, "stats", &["--until", &cut]).await;
    assert_eq!(s["total_events"], 6, "{s}");
    let s = json_of(&server, "stats", &["--last", "1h", "--workflow", "support"]).await;
    assert_eq!(s["total_events"], 2, "{s}");
    let s = json_of(
        &server,
        "stats",
        &["--last", "1h", "--workflow", "sales", "--type", "error"],
    )
    .await;
    assert_eq!(s["total_events"], 2, "{s}");

    // Daily lead volume: one command.
    let s = json_of(
        &server,
        "stats",
        &["--type", "lead_ingested", "--by", "day"],
    )
    .await;
    let timeline = s["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty(), "{s}");
    let total: u64 = timeline.iter().map(|b| b["events"].as_u64().unwrap()).sum();
    assert_eq!(total, 6, "{s}");
    for b in timeline {
        assert!(
            b["start"].as_str().unwrap().ends_with("T00:00:00.000000Z"),
            "{s}"
        );
    }
    let out = auditlog(&server, &["stats", "--last", "2h", "--by", "hour"]).await;
    let text = out.ok();
    let section = text
        .split("per hour (UTC):")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    let rows = table_rows(section.trim_start());
    assert!((2..=3).contains(&rows.len()), "{text}");
    // Timings are not among the hourly business events.
    let hourly: u64 = rows.iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
    assert_eq!(hourly, 9, "{text}");
    let out = auditlog(&server, &["stats", "--by", "week"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("week"), "{out:?}");

    // Timings apart from the business figures.
    let out = auditlog(&server, &["stats"]).await;
    let text = out.ok();
    let value = |label: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} line: {text}"))
            .trim()
            .to_owned()
    };
    assert_eq!(value("events:"), "9", "{text}");
    assert!(
        value("performance:").starts_with("3 timing events"),
        "{text}"
    );
    let by_type = text
        .split("by type:")
        .nth(1)
        .unwrap()
        .split("by workflow:")
        .next()
        .unwrap();
    assert!(!by_type.contains("performance"), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // sales: 5 leads and 2 errors, without its 2 timings.
    assert!(rows.iter().any(|r| r.join(" ") == "sales 7"), "{text}");
    let s = json_of(&server, "stats", &[]).await;
    assert_eq!(s["total_events"], 12, "{s}");
    assert_eq!(s["by_type"]["performance"], 3, "{s}");

    // errors: by error type, workflow and time.
    let types = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["details"]["error_type"].as_str().unwrap().to_owned())
            .collect()
    };
    let e = json_of(&server, "errors", &["--type", "TimeoutError"]).await;
    assert_eq!(types(&e), ["TimeoutError", "TimeoutError"], "{e}");
    let e = json_of(&server, "errors", &["--workflow", "support"]).await;
    assert_eq!(types(&e), ["ValueError"], "{e}");
    let e = json_of(&server, "errors", &["--since", &cut]).await;
    assert_eq!(types(&e), ["TimeoutError", "ValueError"], "{e}");
    let e = json_of(&server, "errors", &["--until", &cut, "--last", "1h"]).await;
    assert_eq!(types(&e), ["TimeoutError"], "{e}");
    let e = json_of(
        &server,
        "errors",
        &["--type", "TimeoutError", "--limit", "1"],
    )
    .await;
    assert_eq!(seqs(&e["events"]).len(), 1, "{e}");
    let out = auditlog(&server, &["errors", "--type", "KeyError"]).await;
    assert_eq!(out.ok(), "", "{out:?}");
}
