//! Rotation from the CLI: `auditlog rotate --wait` names the new segment,
//! and says when there is nothing to rotate; a rotation that waits with
//! nothing to seal waits for the segments sealed before it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestServer, cli_bin, files, plain_sealed, run_to_end};
use crate::segments::data_dir::{gz_files, manifest};
use crate::segments::writing::{plan, write};

/// Runs `auditlog --server <url> ARGS` in a blocking task (the server runs in
/// this process), asserts it succeeded, and returns its stdout.
async fn auditlog(url: &str, args: &[&str]) -> String {
    let mut all = vec!["--server".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let out = run_to_end(
        cli_bin().to_path_buf(),
        all,
        vec![],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        out.code, 0,
        "auditlog {args:?} failed: {}{}",
        out.stderr, out.stdout
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_rotates_and_says_when_there_is_nothing_to_rotate() {
    let server = TestServer::start().await;
    let client = server.client().await;
    write(&client, &plan(1, 10)).await;

    let out = auditlog(&server.url, &["rotate", "--wait"]).await;
    let gz = gz_files(&server.data_dir);
    assert_eq!(gz.len(), 1, "{:?}", files(&server.data_dir));
    assert!(out.contains(&gz[0]), "{out:?} does not name {}", gz[0]);
    assert!(out.contains("1..=10"), "{out:?}");
    assert!(plain_sealed(&server.data_dir).is_empty());
    assert_eq!(manifest(&server.data_dir)[0].file, gz[0]);

    let out = auditlog(&server.url, &["rotate", "--wait"]).await;
    assert!(out.contains("nothing to rotate"), "{out:?}");
    assert_eq!(gz_files(&server.data_dir), gz);

    let out = auditlog(&server.url, &["--json", "rotate"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rotated"], json!(false), "{v}");
}

/// A rotation that waits, with nothing to seal, still waits for the segment
/// a write filled (the writer sealed it as the write ended): once it has
/// answered, no sealed segment is left uncompressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_waits_with_nothing_to_seal_waits_for_the_seals_before_it() {
    let server = TestServer::start_with(|c| c.max_file_size_mb = 1.0).await;
    let client = server.client().await;
    let note = "x".repeat(50_000);
    // One call of some 1.5 MB: the writer seals the segment it fills.
    let events = (0..30).map(|i| {
        auditlog_client::NewEvent::lead_ingested(format!("L-{i}"), "web")
            .detail("note", note.as_str())
    });
    client.log_batch(events).await.unwrap();
    let answer = client.rotate(true).await.unwrap();
    assert!(!answer.rotated, "{answer:?}");
    assert!(
        plain_sealed(&server.data_dir).is_empty(),
        "{:?}",
        files(&server.data_dir)
    );
    assert_eq!(gz_files(&server.data_dir).len(), 1);
}
