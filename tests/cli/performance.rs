//! `performance`: the server's duration figures in a table that stays
//! readable whatever a `performance` event carried.

use super::*;

/// A duration far past anything real (a `performance` event logged with
/// `Log` carries what it was given) prints in scientific notation, not as
/// a 300-digit number, in the table and in the HTML report alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_duration_is_printed_in_scientific_notation() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for (op, ms) in [("huge.op", 1e300), ("crm.push", 120.5)] {
        client
            .log(
                NewEvent::new("performance").details(json!({ "operation": op, "duration_ms": ms })),
            )
            .await
            .unwrap();
    }
    let long_number = |text: &str| {
        let mut run = 0;
        text.chars().any(|c| {
            run = if c.is_ascii_digit() { run + 1 } else { 0 };
            run > 20
        })
    };
    for args in [
        &["performance"][..],
        &["performance", "--since", "2000-01-01"],
    ] {
        let out = auditlog(&server, args).await;
        let text = out.ok();
        assert!(!long_number(text), "{args:?}: {out:?}");
        let row = text
            .lines()
            .find(|l| l.starts_with("huge.op"))
            .unwrap_or_else(|| panic!("{args:?}: no huge.op row: {out:?}"));
        assert!(row.contains("1.000e300"), "{args:?}: {out:?}");
        let row = text.lines().find(|l| l.starts_with("crm.push")).unwrap();
        assert!(row.contains("120.50"), "{args:?}: {out:?}");
        // --json gives the number as it is.
        let json_args = [&["--json"][..], args].concat();
        let report = auditlog(&server, &json_args).await.json();
        let huge = report["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["operation"] == "huge.op")
            .unwrap_or_else(|| panic!("{report}"))
            .clone();
        assert_eq!(huge["max_ms"].as_f64(), Some(1e300), "{report}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("daily.html");
    let out = auditlog(
        &server,
        &["report", "--daily", "--output", file.to_str().unwrap()],
    )
    .await;
    out.ok();
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(html.contains("huge.op"), "the report has no huge.op");
    assert!(
        html.contains("e297 s"),
        "no scientific notation in the report"
    );
    assert!(!long_number(&html), "a long number in the report");
}
