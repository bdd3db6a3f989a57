//! `auditlog-server --verify`: a data directory's log verified with no
//! server running on it. A backup taken from a running server, with the
//! two keys beside it, verifies clean while the server goes on; a segment
//! deleted from it is located (exit 1). A stopped server's log whose last
//! record someone holding the HMAC key rewrote after a checkpoint signed it
//! fails against that checkpoint, and without the checkpoint signing key
//! the report says the checkpoint went unchecked. A directory a server
//! runs on, one without a log and one whose HMAC key is missing are not
//! verified (exit 2), each on one line, and nothing is created.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;

use auditlog_client::NewEvent;
use common::witness::{checkpoint_of, trusted_key};
use common::{
    DEADLINE, TEST_KEY, TestServer, cli, edit_line, resign, run_to_end, tamper, with_test_key,
    workspace_bin,
};

/// `auditlog-server --verify` on `dir`, with the test key unless
/// `key` is false: (exit code, stdout, stderr).
async fn verify(dir: &Path, key: bool) -> (i32, String, String) {
    verify_with(dir, key, &[]).await
}

/// [`verify`] with `more` arguments.
async fn verify_with(dir: &Path, key: bool, more: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "--data-dir".to_owned(),
        dir.display().to_string(),
        "--verify".to_owned(),
    ];
    args.extend(more.iter().map(|a| (*a).to_owned()));
    let env = key
        .then(|| ("AUDITLOG_HMAC_KEY".to_owned(), TEST_KEY.to_owned()))
        .into_iter()
        .collect();
    let bin = workspace_bin("auditlog-server", "auditlog-server");
    let done = run_to_end(bin, args, env, DEADLINE).await;
    (done.code, done.stdout, done.stderr)
}

/// A server signing with the test key, holding 300 events: 200 in a
/// sealed segment, 100 in the active file.
async fn server_with_log() -> TestServer {
    let server = TestServer::start_with(with_test_key).await;
    let client = server.client().await;
    for batch in 0..3 {
        let events = (1..=100)
            .map(|n| NewEvent::lead_ingested(format!("LEAD-{}", batch * 100 + n), "webform"));
        client.log_batch(events).await.unwrap();
        if batch == 1 {
            client.rotate(true).await.unwrap();
        }
    }
    server
}

#[tokio::test]
async fn a_backup_verifies_with_no_server_on_it_and_a_deleted_segment_is_located() {
    let server = server_with_log().await;
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("copy");
    let (code, out, err) = cli(&server.url, &["backup", copy.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    std::fs::copy(
        server.data_dir.join("checkpoint.key"),
        copy.join("checkpoint.key"),
    )
    .unwrap();

    // The server still runs on its own directory.
    let (code, out, err) = verify(&copy, true).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("OK: 300 events in 2 segment file(s)") && out.contains("head seq 300"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");

    let segment = common::files(&copy)
        .into_iter()
        .find(|n| n.ends_with(".log.gz"))
        .unwrap();
    std::fs::remove_file(copy.join(&segment)).unwrap();
    let (code, out, err) = verify(&copy, true).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("FAILED: "), "{out}");
    let missing = out
        .lines()
        .find(|l| l.trim_start().starts_with("SEGMENT_MISSING"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        missing.contains("seq 1 ") && missing.contains(&segment),
        "{missing}"
    );

    // The same as one JSON object, for a script.
    let (code, out, err) = verify_with(&copy, true, &["--json"]).await;
    assert_eq!(code, 1, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    let problem = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "SEGMENT_MISSING")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        (&problem["seq"], &problem["file"]),
        (&1.into(), &segment.into()),
        "{report}"
    );
}

#[tokio::test]
async fn a_record_rewritten_with_the_hmac_key_fails_against_the_signed_checkpoint() {
    let mut server = server_with_log().await;
    let client = server.client().await;
    checkpoint_of(&client, &trusted_key(&server.data_dir), 300).await;
    server.stop().await;
    let (code, out, err) = verify(&server.data_dir, true).await;
    assert_eq!(code, 0, "{out}{err}");

    // The chain still checks out after this; only the checkpoint knows.
    tamper(&server.log_path(), |lines| {
        let line = lines.last_mut().unwrap();
        *line = resign(
            &edit_line(line, "LEAD-300", "LEAD-999"),
            TEST_KEY.as_bytes(),
        );
    });
    let (code, out, err) = verify(&server.data_dir, true).await;
    assert_eq!(code, 1, "{out}{err}");
    let mismatch = out
        .lines()
        .find(|l| l.trim_start().starts_with("TREE_MISMATCH"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(mismatch.contains("seq 300 "), "{mismatch}");

    // Without the checkpoint signing key, the chain alone cannot tell: the
    // report says what it left unchecked.
    std::fs::remove_file(server.data_dir.join("checkpoint.key")).unwrap();
    let (code, out, err) = verify(&server.data_dir, true).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("note: ")
            && l.contains("checkpoint.note was not checked")
            && l.contains("no checkpoint signing key")),
        "{out}"
    );
}

#[tokio::test]
async fn what_cannot_be_verified_is_said_on_one_line_with_exit_code_2() {
    let server = server_with_log().await;
    let (code, out, err) = verify(&server.data_dir, true).await;
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("in use by another auditlog-server"), "{err}");

    let scratch = tempfile::tempdir().unwrap();
    let nowhere = scratch.path().join("nowhere");
    let (code, out, err) = verify(&nowhere, true).await;
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("holds no log"), "{err}");
    assert!(!nowhere.exists(), "--verify created {}", nowhere.display());

    // A log whose HMAC key is neither configured nor in the directory.
    let copy = scratch.path().join("copy");
    let (code, out, err) = cli(&server.url, &["backup", copy.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = verify(&copy, false).await;
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("hmac.key is missing"), "{err}");
    assert!(!copy.join("hmac.key").exists());
}
