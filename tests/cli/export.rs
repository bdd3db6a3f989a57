//! `export`: every event as the log holds it, as JSON Lines and CSV,
//! filtered, and no partial file when it fails.

use super::*;

/// A row of the CSV export as the JSON shape of an event (empty optional
/// fields become null, `details` is parsed).
fn csv_row_json(headers: &csv::StringRecord, row: &csv::StringRecord) -> Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers.iter().zip(row.iter()) {
        let v = match name {
            "seq" => json!(value.parse::<u64>().unwrap()),
            "details" => serde_json::from_str(value)
                .unwrap_or_else(|e| panic!("details column is not JSON ({e}): {value:?}")),
            "caller" | "lead_id" | "workflow" | "idempotency_key" if value.is_empty() => {
                Value::Null
            }
            _ => json!(value),
        };
        map.insert(name.to_owned(), v);
    }
    Value::Object(map)
}

const EXPORT_N: u64 = 10_000;

/// Event `i` of the export log: varied types, leads and workflows, some
/// without lead, workflow or actor, and details full of commas, quotes,
/// newlines and non-ASCII text.
fn export_event(i: u64) -> NewEvent {
    let types = [
        "lead_ingested",
        "crm_update",
        "email_sent",
        "error",
        "workflow_started",
        "custom_type_7",
    ];
    let mut e = NewEvent::new(types[(i % types.len() as u64) as usize]).details(json!({
        "i": i,
        "note": format!("a, \"quoted\" value\nline two, #{i}; 'single'"),
        "csv": "x,y,\"z\"\r\n",
        "nested": { "list": [1, 2.5, "a,b", null], "flag": i.is_multiple_of(2) },
        "unicode": "héllo ✓ 日本",
    }));
    if !i.is_multiple_of(7) {
        e = e.lead(format!("LEAD-{:04}", i % 250));
    }
    if !i.is_multiple_of(5) {
        e = e.workflow(["sales", "onboarding", "renewals"][(i % 3) as usize]);
    }
    if !i.is_multiple_of(4) {
        e = e.actor(format!("svc-{}", i % 4));
    }
    if i.is_multiple_of(100) {
        e = e.idempotency_key(format!("export-{i}"));
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_every_event_as_the_log_has_it() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for start in (0..EXPORT_N).step_by(1000) {
        let receipts = client
            .log_batch((start..start + 1000).map(export_event))
            .await
            .unwrap();
        assert_eq!(receipts.len(), 1000);
    }
    let records = disk_records(&server);
    assert_eq!(records.len() as u64, EXPORT_N);

    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("audit.csv");
    let json_path = dir.path().join("audit.json");
    let csv_arg = csv_path.to_str().unwrap();
    let json_arg = json_path.to_str().unwrap();
    let csv_args = ["export", "--format", "csv", "--output", csv_arg];
    let json_args = ["export", "--format", "json", "--output", json_arg];
    let lead_args = ["export", "--format", "jsonl", "--lead", "LEAD-0042"];
    let none_args = ["export", "--format", "json", "--lead", "NOBODY"];
    // Five exports at once, as several operators might run them.
    let (csv_out, json_out, jsonl_out, lead_out, none_out) = tokio::join!(
        auditlog(&server, &csv_args),
        auditlog(&server, &json_args),
        auditlog(&server, &["export", "--format", "jsonl"]),
        auditlog(&server, &lead_args),
        auditlog(&server, &none_args),
    );

    // Files: a summary line at most on stderr, no progress bar garbage in a
    // pipe, nothing on stdout, no .partial left over.
    for (out, path) in [(&csv_out, &csv_path), (&json_out, &json_path)] {
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert!(lines.len() <= 1, "{out:?}");
        if let Some(line) = lines.first() {
            assert!(line.contains(&EXPORT_N.to_string()), "{out:?}");
            assert!(line.contains(path.to_str().unwrap()), "{out:?}");
        }
        assert!(
            !out.stderr.contains('\r') && !out.stderr.contains('\u{1b}'),
            "{out:?}"
        );
    }
    for out in [&jsonl_out, &lead_out, &none_out] {
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stderr.trim().is_empty()
                || (out.stderr.lines().count() == 1 && out.stderr.starts_with("exported")),
            "only a summary line, if anything, on stderr: {out:?}"
        );
        assert!(
            !out.stderr.contains('\r') && !out.stderr.contains('\u{1b}'),
            "{out:?}"
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["audit.csv", "audit.json"], "no .partial left");

    // CSV: a header, then one row per event in seq order.
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "seq",
            "id",
            "timestamp",
            "event_type",
            "actor",
            "caller",
            "lead_id",
            "workflow",
            "details",
            "idempotency_key",
            "key_id",
            "prev",
            "signature"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len() as u64, EXPORT_N, "CSV rows");
    for (record, row) in records.iter().zip(&rows) {
        assert_same_event(record, &csv_row_json(&headers, row), "CSV");
    }

    // JSON: one array.
    let text = std::fs::read_to_string(&json_path).unwrap();
    let array: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(array.len() as u64, EXPORT_N, "JSON events");
    for (record, event) in records.iter().zip(&array) {
        assert_same_event(record, event, "JSON");
    }

    // JSON Lines on stdout: one object per line.
    let lines: Vec<&str> = jsonl_out.stdout.lines().collect();
    assert_eq!(lines.len() as u64, EXPORT_N, "JSONL lines");
    for (record, line) in records.iter().zip(&lines) {
        assert_same_event(record, &serde_json::from_str(line).unwrap(), "JSONL");
    }

    // A filter exports exactly that lead's events.
    let want: Vec<&Value> = records
        .iter()
        .filter(|r| r["lead_id"] == "LEAD-0042")
        .collect();
    assert!(want.len() > 10);
    let lines: Vec<&str> = lead_out.stdout.lines().collect();
    assert_eq!(lines.len(), want.len(), "--lead export");
    for (record, line) in want.iter().zip(&lines) {
        assert_same_event(record, &serde_json::from_str(line).unwrap(), "JSONL --lead");
    }

    // Nothing matching: still valid JSON.
    let empty: Value = serde_json::from_str(&none_out.stdout).unwrap();
    assert_eq!(empty, json!([]));
}

/// An export that fails leaves nothing behind: not the file, and not its
/// `.partial` twin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_leaves_no_partial_file() {
    let server = TestServer::start().await;
    server
        .client()
        .await
        .log(NewEvent::new("lead_created").lead("LEAD-1"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let as_dir = format!("{}/", dir.path().display());
    for (cmd, output) in [
        (vec!["export", "--format", "json"], as_dir.as_str()),
        (vec!["subject", "export", "LEAD-1"], as_dir.as_str()),
        (
            vec!["export", "--format", "csv"],
            dir.path().to_str().unwrap(),
        ),
    ] {
        let mut args = cmd.clone();
        args.extend(["--output", output]);
        let out = auditlog(&server, &args).await;
        let line = out.one_line_error();
        assert!(
            line.contains("is a directory") && line.contains("name a file"),
            "{args:?}: {line}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_applies_type_workflow_and_from_seq_filters() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client.log_batch((0..300).map(export_event)).await.unwrap();
    let records = disk_records(&server);

    let out = auditlog(
        &server,
        &[
            "export",
            "--format",
            "csv",
            "--type",
            "error",
            "--workflow",
            "sales",
        ],
    )
    .await;
    let mut reader = csv::Reader::from_reader(out.ok().as_bytes());
    let headers = reader.headers().unwrap().clone();
    let got: Vec<Value> = reader
        .records()
        .map(|r| csv_row_json(&headers, &r.unwrap()))
        .collect();
    let want: Vec<&Value> = records
        .iter()
        .filter(|r| r["event_type"] == "error" && r["workflow"] == "sales")
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "{out:?}");
    for (record, row) in want.iter().zip(&got) {
        assert_same_event(record, row, "CSV --type --workflow");
    }

    let out = auditlog(
        &server,
        &["export", "--format", "jsonl", "--from-seq", "251"],
    )
    .await;
    let got: Vec<Value> = out
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 50, "{out:?}");
    for (record, event) in records[250..].iter().zip(&got) {
        assert_same_event(record, event, "JSONL --from-seq");
    }

    // An empty CSV export is just the header.
    let out = auditlog(&server, &["export", "--format", "csv", "--lead", "NOBODY"]).await;
    assert_eq!(out.ok().lines().count(), 1, "{out:?}");
    assert!(out.stdout.starts_with("seq,id,timestamp,"), "{out:?}");
}

/// An export that fails before its first event leaves standard output
/// empty: no `[` or CSV header for a reader to take for the start of an
/// export, only the error line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_that_fails_before_its_first_event_prints_nothing() {
    let server = TestServer::start().await;
    server
        .client()
        .await
        .log(NewEvent::new("lead_created").lead("LEAD-1"))
        .await
        .unwrap();
    // The server refuses an empty identifier and a range that ends before
    // it starts, after the output is opened.
    let backwards = ["--since", "2026-01-02", "--until", "2026-01-01"];
    let cases: Vec<Vec<&str>> = vec![
        vec!["subject", "export", ""],
        vec!["subject", "export", "", "--format", "csv"],
        vec!["subject", "export", "", "--format", "jsonl"],
        [&["export", "--format", "json"][..], &backwards].concat(),
        [&["export", "--format", "csv"][..], &backwards].concat(),
        [&["export", "--format", "jsonl"][..], &backwards].concat(),
    ];
    let runs = cases.iter().map(|args| auditlog(&server, args));
    let mut failures = Vec::new();
    for (args, out) in cases.iter().zip(futures::future::join_all(runs).await) {
        let ok = out.code == 1
            && out.stdout.is_empty()
            && out.stderr.lines().count() == 1
            && out.stderr.contains("INVALID_ARGUMENT")
            && !has_panic_text(&out);
        if !ok {
            failures.push(format!(
                "auditlog {args:?} should fail with one line and no output: {out:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // An export with no events is still a whole document.
    let out = auditlog(&server, &["subject", "export", "NOBODY"]).await;
    assert_eq!(serde_json::from_str::<Value>(out.ok()).unwrap(), json!([]));
    let out = auditlog(&server, &["subject", "export", "LEAD-1", "--format", "csv"]).await;
    let text = out.ok();
    assert!(text.starts_with("seq,id,timestamp,"), "{out:?}");
    assert!(
        text.lines().next().unwrap().ends_with(",matched_fields"),
        "{out:?}"
    );
    assert_eq!(text.lines().count(), 2, "{out:?}");
}
