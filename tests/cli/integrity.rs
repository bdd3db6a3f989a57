//! `integrity`: a clean log, and tampering located.

use super::*;
use crate::common::{edit_line, tamper};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_is_ok_on_a_clean_log_and_locates_tampering() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let mut receipts = Vec::new();
    for i in 1..=5 {
        let e = NewEvent::lead_ingested(format!("LEAD-00{i}"), "webform").workflow("sales");
        receipts.push(client.log(e).await.unwrap());
    }
    let head = receipts.last().unwrap();

    let out = auditlog(&server, &["integrity"]).await;
    let text = out.ok();
    assert!(text.starts_with("OK"), "{out:?}");
    assert!(text.contains("5 events"), "{out:?}");
    assert!(text.contains(&head.signature), "{out:?}");

    let report = auditlog(&server, &["--json", "integrity"]).await.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events_checked"], 5, "{report}");
    assert_eq!(report["head_seq"], 5, "{report}");
    assert_eq!(
        report["head_signature"],
        head.signature.as_str(),
        "{report}"
    );
    assert_eq!(report["problems"], json!([]), "{report}");

    // A range: the records from 2 to 3 only.
    let report = auditlog(
        &server,
        &["--json", "integrity", "--from-seq", "2", "--to-seq", "3"],
    )
    .await
    .json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events_checked"], 2, "{report}");
    assert_eq!(report["head_seq"], 3, "{report}");
    assert_eq!(
        report["head_signature"],
        receipts[2].signature.as_str(),
        "{report}"
    );

    // A kept receipt proves its event is still there...
    let good = format!("3:{}", receipts[2].signature);
    let out = auditlog(&server, &["integrity", "--checkpoint", &good]).await;
    assert!(out.ok().starts_with("OK"), "{out:?}");
    // ...and a wrong one fails, naming the checkpoint's seq.
    let bad = format!("3:{}", receipts[3].signature);
    let out = auditlog(&server, &["integrity", "--checkpoint", &bad]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert_no_panic(&out);
    assert!(out.stdout.contains("CHECKPOINT_MISMATCH"), "{out:?}");
    assert_eq!(
        word_after(&out.stdout, "CHECKPOINT_MISMATCH"),
        "seq",
        "{out:?}"
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("CHECKPOINT_MISMATCH"))
        .unwrap();
    assert_eq!(word_after(line, "seq"), "3", "{out:?}");
    let report = auditlog(&server, &["--json", "integrity", "--checkpoint", &bad]).await;
    assert_ne!(report.code, 0, "{report:?}");
    let value: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(value["ok"], false, "{report:?}");
    assert_eq!(
        value["problems"][0]["kind"], "CHECKPOINT_MISMATCH",
        "{report:?}"
    );
    assert_eq!(value["problems"][0]["seq"], 3, "{report:?}");
    // A malformed checkpoint is a usage error naming the flag.
    let out = auditlog(&server, &["integrity", "--checkpoint", "three"]).await;
    assert!(out.one_line_error().contains("--checkpoint"), "{out:?}");

    // Someone changes a lead id in record 2; the line stays valid JSON.
    tamper(&server.log_path(), |lines| {
        lines[1] = edit_line(&lines[1], "\"LEAD-002\"", "\"LEAD-00X\"");
    });
    serde_json::from_str::<Value>(&read_lines(&server.log_path())[1]).unwrap();

    let out = auditlog(&server, &["integrity"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert_no_panic(&out);
    assert!(out.stdout.contains("FAILED"), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("BAD_SIGNATURE"))
        .unwrap_or_else(|| panic!("no BAD_SIGNATURE line: {out:?}"));
    assert_eq!(word_after(line, "seq"), "2", "{out:?}");
    assert_eq!(word_after(line, "line"), "2", "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");

    let out = auditlog(&server, &["--json", "integrity"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"));
    assert_eq!(report["ok"], false, "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "BAD_SIGNATURE" && p["seq"] == 2 && p["line"] == 2),
        "{report}"
    );
    for p in problems {
        assert!(!p["message"].as_str().unwrap().is_empty(), "{report}");
    }
}

/// An empty log verifies, and the line says so instead of ending in a
/// blank signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_of_an_empty_log_says_it_is_empty() {
    let server = TestServer::start().await;
    let out = auditlog(&server, &["integrity"]).await;
    let text = out.ok();
    assert!(text.starts_with("OK: 0 events"), "{out:?}");
    assert!(
        text.trim_end().ends_with("head seq 0 (empty log)"),
        "{out:?}"
    );
    assert!(!text.contains("signature"), "{out:?}");
    assert!(!text.contains("NaN") && !text.contains("inf"), "{out:?}");
    let report = auditlog(&server, &["--json", "integrity"]).await.json();
    assert_eq!(report["head_seq"], 0, "{report}");
    assert_eq!(report["head_signature"], "", "{report}");
}
