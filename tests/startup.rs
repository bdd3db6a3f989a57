//! What the server believes about its data directory at start, when the
//! files were changed while it was down:
//!
//! - a record whose seq was forged upward (its MAC then fails) does not
//!   steer the next seq: writing continues from the last record that
//!   verifies, every event stays visible, and verification reports the
//!   forged record;
//! - a missing `hmac.key` beside an existing log refuses the start, naming
//!   the file (one deleted while the server runs is written again from
//!   memory), and a replaced key (every MAC fails, the chain holds) is
//!   refused at start and reported as a wrong key, not as tampering;
//! - a pretty-printed `manifest.json` is read and verified over its content,
//!   and a manifest that cannot be read refuses the start before the server
//!   announces anything;
//! - a tail cut while the server was down is reported as TRUNCATED against
//!   the head the server persisted, and stays reported after more restarts.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;
use std::time::Duration;

use auditlog_client::pb::ProblemKind;
use auditlog_client::{Client, NewEvent};
use common::endpoints::closed_port;
use common::{
    Finished, ServerProcess, TEST_KEY, TestServer, all_events, edit_line, problems, run_to_end,
    seqs, tamper, with_test_key, workspace_bin,
};

const LOG: &str = "audit.log";
const MANIFEST: &str = "manifest.json";
const KEY_FILE: &str = "hmac.key";

/// Runs the `auditlog-server` binary on `dir` with `env` until it exits
/// (failing the test if it is still running after 30 s), at the default
/// `info` log level, so whatever it announced is in the output.
async fn start_to_end(dir: &Path, env: &[(&str, &str)]) -> Finished {
    let args = vec![
        "--listen".to_owned(),
        format!("127.0.0.1:{}", closed_port()),
        "--data-dir".to_owned(),
        dir.display().to_string(),
    ];
    let env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let bin = workspace_bin("auditlog-server", "auditlog-server");
    run_to_end(bin, args, env, Duration::from_secs(30)).await
}

/// Asserts the server refused to start: it exited non-zero before it
/// announced that it serves, with an error naming `names`.
#[track_caller]
fn assert_refused(run: &Finished, names: &[&str]) {
    assert_ne!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("serving"), "announced first: {run:?}");
    for name in names {
        assert!(run.stderr.contains(name), "{name} not named: {run:?}");
    }
}

async fn log_n(client: &auditlog_client::Client, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..n {
        let event = NewEvent::new("crm_update")
            .actor("system")
            .lead(format!("L{i}"));
        out.push(client.log(event).await.unwrap().seq);
    }
    out
}

#[tokio::test]
async fn a_forged_seq_does_not_steer_the_next_write() {
    let server = TestServer::start_with(with_test_key).await;
    log_n(&server.client().await, 5).await;
    let server = server
        .restart_after(
            |dir| {
                tamper(&dir.join(LOG), |lines| {
                    lines[2] = edit_line(&lines[2], "{\"seq\":3,", "{\"seq\":1003,");
                })
            },
            with_test_key,
        )
        .await;
    let client = server.client().await;
    assert_eq!(log_n(&client, 3).await, vec![6, 7, 8]);
    // Every event the log holds is exported; the forged line is not an event.
    assert_eq!(seqs(&all_events(&client).await), vec![1, 2, 4, 5, 6, 7, 8]);
    let found = problems(&client.verify().await.unwrap());
    assert!(
        found.contains(&(ProblemKind::BadSignature, 1003, 3)),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_pretty_printed_manifest_is_read_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();
    log_n(&client, 3).await;
    client.rotate(true).await.unwrap();
    log_n(&client, 2).await;
    server.signal("TERM");
    assert!(
        server
            .wait_exit_within(Duration::from_secs(30))
            .await
            .success()
    );
    let path = dir.path().join(MANIFEST);
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();

    let server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();
    assert_eq!(seqs(&all_events(&client).await), vec![1, 2, 3, 4, 5]);
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
}

#[tokio::test]
async fn an_unreadable_manifest_refuses_the_start_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();
    log_n(&client, 2).await;
    client.rotate(true).await.unwrap();
    server.kill9();
    std::fs::write(dir.path().join(MANIFEST), "{\"version\":1,\"segments\":[").unwrap();
    let run = start_to_end(dir.path(), &[("AUDITLOG_HMAC_KEY", TEST_KEY)]).await;
    assert_refused(&run, &[MANIFEST, "restore it from a backup"]);
}

#[tokio::test]
async fn a_missing_key_file_refuses_the_start() {
    // No key configured: the server generates hmac.key on first start.
    let server = TestServer::start().await;
    log_n(&server.client().await, 3).await;
    let mut server = server;
    server.stop().await;
    let key = server.data_dir.join(KEY_FILE);
    std::fs::remove_file(&key).unwrap();
    let run = start_to_end(&server.data_dir, &[]).await;
    assert_refused(&run, &[KEY_FILE, "restore"]);
    assert!(!key.exists(), "a new key was generated");
}

/// The generated `hmac.key` deleted while the server runs: nothing else
/// would notice (the key is in memory), and the next start would refuse
/// the log, so the server writes the file again, the same key with the same
/// mode, and the next start reads it and verifies the log.
#[tokio::test]
async fn a_key_file_deleted_while_the_server_runs_is_written_again() {
    use std::os::unix::fs::PermissionsExt as _;

    let server = TestServer::start().await;
    log_n(&server.client().await, 3).await;
    let key = server.data_dir.join(KEY_FILE);
    let before = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !key.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{KEY_FILE} was not written again within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let server = server.restart(|_| {}).await;
    let client = server.client().await;
    assert!(client.verify().await.unwrap().ok);
    assert_eq!(log_n(&client, 1).await, vec![4]);
}

#[tokio::test]
async fn a_replaced_key_is_refused_at_start_and_reported_as_a_wrong_key() {
    const OTHER_KEY: &str = "another-key-0123456789abcdef01234567";
    let server = TestServer::start_with(with_test_key).await;
    log_n(&server.client().await, 4).await;
    let mut server = server;
    server.stop().await;
    let run = start_to_end(&server.data_dir, &[("AUDITLOG_HMAC_KEY", OTHER_KEY)]).await;
    assert_refused(&run, &["replaced or wrong", "configure the original key"]);

    // A log whose every MAC fails while the chain holds, seen by
    // verification (of a copy, since the start refuses it).
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(server.data_dir.join(LOG), copy.path().join(LOG)).unwrap();
    let server = TestServer::start_in(copy.path(), with_test_key).await;
    let client = server.client().await;
    // The same log as a server holding OTHER_KEY would have written it.
    tamper(&copy.path().join(LOG), |lines| {
        let mut prev = "0".repeat(64);
        for line in lines.iter_mut() {
            let old = format!("\"prev\":\"{}\"", common::field(line, "prev"));
            let new = format!("\"prev\":\"{prev}\"");
            *line = common::resign(&edit_line(line, &old, &new), OTHER_KEY.as_bytes());
            prev = common::field(line, "signature");
        }
    });
    let found = problems(&client.verify().await.unwrap());
    assert_eq!(found, vec![(ProblemKind::WrongKey, 1, 0)]);
}

#[tokio::test]
async fn a_tail_cut_while_down_is_reported_against_the_persisted_head_for_good() {
    let server = TestServer::start_with(with_test_key).await;
    log_n(&server.client().await, 5).await;
    let cut = |dir: &Path| tamper(&dir.join(LOG), |lines| lines.truncate(3));
    let server = server.restart_after(cut, with_test_key).await;
    let client = server.client().await;
    let truncated = (ProblemKind::Truncated, 4, 0);
    assert!(problems(&client.verify().await.unwrap()).contains(&truncated));
    // Writes go on after the last acknowledged seq, chained to seq 3.
    assert_eq!(log_n(&client, 2).await, vec![6, 7]);
    assert_eq!(seqs(&all_events(&client).await), vec![1, 2, 3, 6, 7]);

    // Still reported after a restart, though the head has moved on since.
    let server = server.restart(with_test_key).await;
    let client = server.client().await;
    assert!(problems(&client.verify().await.unwrap()).contains(&truncated));

    // audit.log deleted while the server was down.
    let delete = |dir: &Path| std::fs::remove_file(dir.join(LOG)).unwrap();
    let server = server.restart_after(delete, with_test_key).await;
    let found = problems(&server.client().await.verify().await.unwrap());
    assert!(found.contains(&truncated), "{found:?}");
    assert!(found.contains(&(ProblemKind::Truncated, 1, 0)), "{found:?}");
}
