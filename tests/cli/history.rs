//! `history`: one lead's events, oldest first.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_one_lead_oldest_first() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut want = Vec::new();
    for i in 0..12u64 {
        let lead = if i % 3 == 0 { "LEAD-A" } else { "LEAD-B" };
        let r = client
            .log(
                NewEvent::new(["lead_ingested", "email_sent", "crm_update"][i as usize % 3])
                    .lead(lead)
                    .workflow("sales")
                    .actor("svc")
                    .detail("i", i),
            )
            .await
            .unwrap();
        if lead == "LEAD-A" {
            want.push(r.seq);
        }
    }
    // Another lead whose id starts the same must not match.
    client
        .log(
            NewEvent::new("crm_update")
                .lead("LEAD-AB")
                .workflow("sales"),
        )
        .await
        .unwrap();

    let history = auditlog(&server, &["--json", "history", "LEAD-A"])
        .await
        .json();
    assert_eq!(seqs(&history["events"]), want, "{history}");
    assert_eq!(history["next_page_token"], "", "{history}");
    for e in history["events"].as_array().unwrap() {
        assert_eq!(e["lead_id"], "LEAD-A", "{e}");
    }

    let out = auditlog(&server, &["history", "LEAD-A"]).await;
    let rows = table_rows(out.ok());
    let got: Vec<u64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(got, want, "{out:?}");
    for row in &rows {
        assert_eq!(row[3], "LEAD-A", "{out:?}");
    }

    let out = auditlog(&server, &["history", "LEAD-A", "--verbose"]).await;
    assert!(out.ok().contains(r#"{"i":0}"#), "{out:?}");

    // A long timeline spans several query pages; history shows all of it.
    for part in 0..2 {
        let events = (0..750).map(|i| {
            NewEvent::new("crm_update")
                .lead("BIG")
                .detail("i", part * 750 + i)
        });
        client.log_batch(events).await.unwrap();
    }
    let big = auditlog(&server, &["--json", "history", "BIG"])
        .await
        .json();
    let big = &big["events"];
    let big_seqs = seqs(big);
    assert_eq!(big_seqs.len(), 1500);
    assert!(big_seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert_eq!(big[0]["details"]["i"], 0);
    assert_eq!(big[1499]["details"]["i"], 1499);

    // A lead with no events: success, a note on stderr and no empty table,
    // and no events in JSON.
    let out = auditlog(&server, &["history", "NOBODY"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("NOBODY"), "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
    let empty = auditlog(&server, &["--json", "history", "NOBODY"])
        .await
        .json();
    assert_eq!(empty, json!({ "events": [], "next_page_token": "" }));
}

/// An empty lead id is refused: as a filter it matches every event, and
/// `history ""` printed the whole log as one lead's history (found by
/// probing the CLI, 2026-12-05). `export --lead ""` goes the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_lead_id_is_refused_not_read_as_every_event() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for lead in ["LEAD-1", "LEAD-2"] {
        client
            .log(NewEvent::new("lead_ingested").lead(lead))
            .await
            .unwrap();
    }
    for args in [
        &["history", ""][..],
        &["--json", "history", " "][..],
        &["export", "--lead", "", "--format", "json"][..],
        &["query", "--workflow", "  "][..],
        &["bundle", "export", "--lead", ""][..],
    ] {
        let out = auditlog(&server, args).await;
        let line = out.one_line_error();
        assert!(line.contains("empty"), "{args:?}: {out:?}");
        assert!(!out.stdout.contains("LEAD-1"), "{args:?}: {out:?}");
    }
}
