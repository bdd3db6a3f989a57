//! Rotation from the CLI: `auditlog rotate --wait` names the new segment,
//! and says when there is nothing to rotate.

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
