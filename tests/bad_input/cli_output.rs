//! What the CLI shows: tables escape what a terminal would act on, CSV
//! exports neutralise formula cells.

use auditlog_client::NewEvent;

use crate::common::{self, TestServer};

#[tokio::test]
async fn cli_tables_escape_what_a_terminal_would_act_on() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // Details may hold any text; the errors table shows error_message.
    let forged = "boom\n2026-01-01T00:00:00.000000Z  999  FORGED\u{1b}[2J\u{202e}";
    client
        .log(NewEvent::error("timeout", forged).lead("LEAD-1"))
        .await
        .unwrap();
    for args in [&["errors"][..], &["query", "--verbose"][..]] {
        let (code, out, err) = common::cli(&server.url, args).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{202e}'),
            "{args:?}: raw escapes in {out:?}"
        );
        assert_eq!(out.lines().count(), 2, "{args:?}: a forged row in {out:?}");
        assert!(out.contains(r"boom\n2026"), "{args:?}: {out:?}");
    }
}

#[tokio::test]
async fn csv_exports_neutralise_formula_cells() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .log(
            NewEvent::new("lead_ingested")
                .actor("=HYPERLINK(\"http://evil\",\"x\")")
                .lead("@SUM(A1:A9)")
                .workflow("+1-1"),
        )
        .await
        .unwrap();
    let (code, out, err) = common::cli(&server.url, &["export", "--format", "csv"]).await;
    assert_eq!(code, 0, "{err}");
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let cell = |name: &str| &row[headers.iter().position(|h| h == name).unwrap()];
    assert_eq!(cell("actor"), "'=HYPERLINK(\"http://evil\",\"x\")");
    assert_eq!(cell("lead_id"), "'@SUM(A1:A9)");
    assert_eq!(cell("workflow"), "'+1-1");
    assert_eq!(cell("event_type"), "lead_ingested");
    // JSON stays exact.
    let (_, out, _) = common::cli(&server.url, &["export", "--format", "jsonl"]).await;
    assert!(out.contains(r#""actor":"=HYPERLINK"#), "{out}");
}
