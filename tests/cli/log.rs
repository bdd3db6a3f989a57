//! `log` and `track`: writing an event from the command line, and the
//! receipt it prints.

use super::*;

// log
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_prints_the_receipt_as_text_and_as_json() {
    let server = TestServer::start().await;
    let details = r#"{"source":"webform","score":87,"tags":["a","b"],"ok":true}"#;

    // Text: seq, id, time and signature.
    let text = auditlog(
        &server,
        &[
            "log",
            "lead_ingested",
            "--lead",
            "LEAD-001",
            "--workflow",
            "sales",
            "--actor",
            "webhook",
            "--details",
            details,
            "--idempotency-key",
            "key-text",
        ],
    )
    .await;
    let stdout = text.ok();
    assert_eq!(word_after(stdout, "seq"), "1", "{text:?}");
    let id1 = word_after(stdout, "id").to_owned();
    assert_eq!(id1.len(), 36, "{text:?}");
    let sig1 = word_after(stdout, "signature").to_owned();
    assert!(is_hex64(&sig1), "{text:?}");
    assert!(is_timestamp(word_after(stdout, "time")), "{text:?}");
    assert!(!stdout.contains("duplicate"), "{text:?}");

    // JSON: a receipt object.
    let args = [
        "--json",
        "log",
        "email_sent",
        "--lead",
        "LEAD-001",
        "--details",
        r#"{"to":"ana@example.com"}"#,
        "--idempotency-key",
        "key-json",
    ];
    let receipt = auditlog(&server, &args).await.json();
    assert_eq!(receipt["seq"], 2, "{receipt}");
    assert_eq!(receipt["duplicate"], false, "{receipt}");
    let sig2 = receipt["signature"].as_str().unwrap().to_owned();
    assert!(is_hex64(&sig2), "{receipt}");
    assert_eq!(receipt["id"].as_str().unwrap().len(), 36, "{receipt}");
    assert!(
        is_timestamp(receipt["timestamp"].as_str().unwrap()),
        "{receipt}"
    );

    // The same idempotency key again: the original receipt, marked duplicate.
    let again = auditlog(&server, &args).await.json();
    assert_eq!(again["duplicate"], true, "{again}");
    for field in ["seq", "id", "signature", "timestamp"] {
        assert_eq!(again[field], receipt[field], "{field}: {again}");
    }
    let text_again = auditlog(
        &server,
        &[
            "log",
            "lead_ingested",
            "--lead",
            "LEAD-001",
            "--idempotency-key",
            "key-text",
        ],
    )
    .await;
    assert_eq!(word_after(text_again.ok(), "seq"), "1", "{text_again:?}");
    assert!(text_again.stdout.contains("duplicate"), "{text_again:?}");
    assert_eq!(word_after(&text_again.stdout, "signature"), sig1);

    // What was stored is what was given; the receipts match the log.
    let records = disk_records(&server);
    assert_eq!(records.len(), 2, "duplicates wrote nothing");
    let r1 = &records[0];
    assert_eq!(r1["event_type"], "lead_ingested");
    assert_eq!(r1["lead_id"], "LEAD-001");
    assert_eq!(r1["workflow"], "sales");
    assert_eq!(r1["actor"], "webhook");
    assert_eq!(r1["idempotency_key"], "key-text");
    assert_eq!(
        r1["details"],
        serde_json::from_str::<Value>(details).unwrap()
    );
    assert_eq!(r1["id"], id1.as_str());
    assert_eq!(r1["signature"], sig1.as_str());
    let r2 = &records[1];
    assert_eq!(r2["actor"], "system", "the default actor");
    assert_eq!(r2["workflow"], Value::Null);
    assert_eq!(r2["signature"], sig2.as_str());
    assert_eq!(r2["timestamp"], receipt["timestamp"]);
    assert_eq!(r2["id"], receipt["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_records_a_duration_typed_in_ms_s_or_plain_seconds() {
    let server = TestServer::start().await;
    for duration in ["250ms", "0.25s", "1.5"] {
        let out = auditlog(&server, &["track", "crm.create_record", duration]).await;
        assert!(
            word_after(out.ok(), "seq").parse::<u64>().is_ok(),
            "{out:?}"
        );
    }
    let receipt = auditlog(
        &server,
        &[
            "--json",
            "track",
            "lead_scoring",
            "2m",
            "--lead",
            "LEAD-7",
            "--workflow",
            "sales",
            "--actor",
            "scorer",
            "--details",
            r#"{"model":"v2"}"#,
        ],
    )
    .await
    .json();
    assert_eq!(receipt["seq"], 4, "{receipt}");

    // Counted, in milliseconds.
    let stats = auditlog(&server, &["--json", "performance"]).await.json();
    let op = |name: &str| {
        stats["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["operation"] == name && o["source"] == "tracked")
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
            .clone()
    };
    let crm = op("crm.create_record");
    assert_eq!(
        (
            crm["count"].as_u64(),
            crm["min_ms"].as_f64(),
            crm["max_ms"].as_f64()
        ),
        (Some(3), Some(250.0), Some(1500.0)),
        "{crm}"
    );
    assert_eq!(op("lead_scoring")["max_ms"].as_f64(), Some(120_000.0));
    // And written as a performance event with every field given.
    let events = server.client().await.lead_history("LEAD-7").await.unwrap();
    let event = &events[0];
    assert_eq!(event.event_type, "performance", "{event:?}");
    assert_eq!(
        (event.workflow.as_str(), event.actor.as_str()),
        ("sales", "scorer"),
        "{event:?}"
    );
    let details = auditlog_proto::json::struct_to_json(event.details.as_ref().unwrap()).unwrap();
    assert_eq!(details["duration_ms"], 120_000.0, "{details:?}");
    assert_eq!(details["model"], "v2", "{details:?}");

    // A duration that is not one, and one the server refuses: one line each.
    for (args, words) in [
        (["track", "x", "fast"], vec!["fast", "250ms"]),
        (["track", "x", "3d"], vec!["unit", "0.25s"]),
        (["track", "has space", "1"], vec!["operation"]),
        (["track", "x", "25h"], vec!["duration_ms", "a day"]),
    ] {
        let out = auditlog(&server, &args).await;
        let line = out.one_line_error();
        for word in words {
            assert!(line.contains(word), "{args:?}: {line}");
        }
    }
    let stats = auditlog(&server, &["--json", "stats"]).await.json();
    assert_eq!(stats["total_events"], 4, "{stats}");
}
