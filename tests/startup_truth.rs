//! A start tells the truth about files lost or replaced while the server was
//! down, rather than serving a smaller log or signing under a new identity
//! (both found by an outside attack, 2026-12-06):
//!
//! - `manifest.json` deleted (while the server was stopped, or while it ran
//!   and no seal rewrote it) beside compressed segments, or beside a log
//!   that begins after seq 1: the server refuses to start, naming what it
//!   found, and once the file is restored it starts and serves every event.
//!   A log that never had a manifest (its first segments sealed but not yet
//!   compressed; one that begins after a cut the head file records) starts.
//! - `checkpoint.key` deleted, replaced, or `checkpoint.note` damaged, for a
//!   log whose checkpoints were signed: the server refuses to start (and
//!   `--print-verifier-key` and `--rotate-checkpoint-key` refuse too),
//!   naming the key that signed the log; restored, the same key signs on,
//!   and the documented way to a new identity (a new key file, the note
//!   moved away) starts.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;
use std::time::Duration;

use auditlog_client::proof::VerifierKey;
use auditlog_client::{Client, NewEvent};
use common::endpoints::closed_port;
use common::witness::{checkpoint_of, verifier_key};
use common::{
    Finished, ServerProcess, TEST_KEY, TestServer, all_events, files, plain_sealed, run_to_end,
    seqs, wait_until, with_test_key, workspace_bin,
};

const MANIFEST: &str = "manifest.json";
const KEY: &str = "checkpoint.key";
const NOTE: &str = "checkpoint.note";
/// About a dozen of these tests' events to a segment.
const SMALL_SEGMENTS_MB: &str = "0.004";

/// Runs `auditlog-server ARGS` on `dir` with the tests' HMAC key until it
/// exits (failing the test if it still runs after 30 s), at the `info`
/// log level, so whatever it announced is in the output.
async fn run_on(dir: &Path, args: &[&str]) -> Finished {
    let mut all = vec![
        "--listen".to_owned(),
        format!("127.0.0.1:{}", closed_port()),
        "--data-dir".to_owned(),
        dir.display().to_string(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let env = vec![
        ("AUDITLOG_HMAC_KEY".to_owned(), TEST_KEY.to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    let bin = workspace_bin("auditlog-server", "auditlog-server");
    run_to_end(bin, all, env, Duration::from_secs(30)).await
}

/// Asserts the server refused to start: it exited non-zero before it
/// announced that it serves, with one error line holding each of `says`.
#[track_caller]
fn assert_refused(run: &Finished, says: &[&str]) {
    assert_ne!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("serving"), "announced first: {run:?}");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("auditlog-server: "))
        .collect();
    assert_eq!(errors.len(), 1, "one line: {run:?}");
    for said in says {
        assert!(errors[0].contains(said), "{said:?} not said: {}", errors[0]);
    }
}

async fn log_n(client: &Client, from: u64, n: u64) {
    for i in from..from + n {
        let event = NewEvent::new("crm_update")
            .actor("system")
            .lead(format!("L{i}"));
        client.log(event).await.unwrap();
    }
}

/// Stops the server with SIGTERM and waits for its clean exit.
async fn stop(server: &mut ServerProcess) {
    server.signal("TERM");
    let status = server.wait_exit_within(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
}

fn gz_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|n| n.ends_with(".log.gz"))
        .collect()
}

/// A server on `dir` with small segments, holding 42 events: 40 sealed by
/// size into several compressed segments, then the rest sealed on request,
/// then 2 more in `audit.log`.
async fn log_with_segments(dir: &Path) -> ServerProcess {
    let server =
        ServerProcess::spawn_with(dir, &[("AUDITLOG_MAX_FILE_SIZE_MB", SMALL_SEGMENTS_MB)]).await;
    let client = Client::connect(&server.url).await.unwrap();
    log_n(&client, 1, 40).await;
    client.rotate(true).await.unwrap();
    wait_until("every sealed segment compressed", || async {
        match (plain_sealed(dir).len(), gz_files(dir).len()) {
            (0, gz) if gz >= 3 => Ok(()),
            state => Err(format!("{state:?} (plain, gz)")),
        }
    })
    .await;
    log_n(&client, 41, 2).await;
    server
}

/// Starts the server on `dir` and checks it serves events 1 to `n`, whole.
async fn serves_all(dir: &Path, n: u64) -> ServerProcess {
    let server = ServerProcess::spawn(dir).await;
    let client = Client::connect(&server.url).await.unwrap();
    assert_eq!(
        seqs(&all_events(&client).await),
        (1..=n).collect::<Vec<_>>()
    );
    assert_eq!(client.stats(None).await.unwrap().total_events, n);
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    server
}

#[tokio::test]
async fn a_manifest_deleted_while_down_refuses_the_start_until_it_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let mut server = log_with_segments(dir.path()).await;
    stop(&mut server).await;
    let gz = gz_files(dir.path());
    std::fs::rename(dir.path().join(MANIFEST), backup.path().join(MANIFEST)).unwrap();

    let run = run_on(dir.path(), &[]).await;
    assert_refused(
        &run,
        &[
            "manifest.json is missing",
            &format!("{} compressed segments", gz.len()),
            &gz[0],
            "audit.log begins at seq 41",
            "restore manifest.json from a backup",
        ],
    );
    assert!(
        !dir.path().join(MANIFEST).exists(),
        "a manifest was written"
    );

    std::fs::rename(backup.path().join(MANIFEST), dir.path().join(MANIFEST)).unwrap();
    serves_all(dir.path(), 42).await;
}

/// The compressed segments gone with the manifest: the log's first record,
/// after seq 1, still shows there was one.
#[tokio::test]
async fn a_log_beginning_after_seq_1_without_a_manifest_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = log_with_segments(dir.path()).await;
    stop(&mut server).await;
    let kept = tempfile::tempdir().unwrap();
    for name in files(dir.path()) {
        let compressed =
            name.ends_with(".gz") || name.ends_with(".idx") || name.contains(".leads.");
        if compressed || name == MANIFEST {
            std::fs::rename(dir.path().join(&name), kept.path().join(&name)).unwrap();
        }
    }
    let run = run_on(dir.path(), &[]).await;
    assert_refused(
        &run,
        &[
            "manifest.json is missing",
            "audit.log begins at seq 41, not at seq 1",
        ],
    );
    assert!(!run.stderr.contains("no plain copy"), "{run:?}");

    for name in files(kept.path()) {
        std::fs::rename(kept.path().join(&name), dir.path().join(&name)).unwrap();
    }
    serves_all(dir.path(), 42).await;
}

/// Deleted while the server runs and no seal rewrites it from memory: the
/// next start refuses, as for one deleted while it was down.
#[tokio::test]
async fn a_manifest_deleted_while_the_server_runs_refuses_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let mut server = log_with_segments(dir.path()).await;
    std::fs::copy(dir.path().join(MANIFEST), backup.path().join(MANIFEST)).unwrap();
    std::fs::remove_file(dir.path().join(MANIFEST)).unwrap();
    stop(&mut server).await;

    let run = run_on(dir.path(), &[]).await;
    assert_refused(&run, &["manifest.json is missing", "restore manifest.json"]);

    std::fs::copy(backup.path().join(MANIFEST), dir.path().join(MANIFEST)).unwrap();
    serves_all(dir.path(), 42).await;
}

/// Logs that never had a manifest start as before: segments sealed but not
/// yet compressed (the first one holds seq 1; `audit.log` begins later), and
/// a log that begins after seqs a start found cut.
#[tokio::test]
async fn logs_that_never_had_a_manifest_start() {
    let dir = tempfile::tempdir().unwrap();
    let trigger = dir.path().join("FAIL_SEALING");
    std::fs::write(&trigger, "compress").unwrap();
    let mut server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();
    for first in [1, 4] {
        log_n(&client, first, 3).await;
        client.rotate(false).await.unwrap();
    }
    log_n(&client, 7, 2).await;
    server.kill9();
    assert_eq!(plain_sealed(dir.path()).len(), 2);
    assert!(!dir.path().join(MANIFEST).exists());
    std::fs::remove_file(&trigger).unwrap();
    let server = serves_all(dir.path(), 8).await;
    wait_until("the sealed segments compressed", || async {
        match plain_sealed(dir.path()).len() {
            0 => Ok(()),
            n => Err(format!("{n} plain")),
        }
    })
    .await;
    drop(server);

    // audit.log deleted while down: seqs 1 to 3 are cut (TRUNCATED), and
    // the log goes on at seq 4, in an audit.log with no manifest beside it.
    let server = TestServer::start_with(with_test_key).await;
    log_n(&server.client().await, 1, 3).await;
    let delete = |dir: &Path| std::fs::remove_file(dir.join("audit.log")).unwrap();
    let server = server.restart_after(delete, with_test_key).await;
    log_n(&server.client().await, 4, 2).await;
    let server = server.restart(with_test_key).await;
    let client = server.client().await;
    assert_eq!(seqs(&all_events(&client).await), vec![4, 5]);
    assert!(!server.data_dir.join(MANIFEST).exists());
}

/// `NAME+KEYID`, how a signature line names the key of `verifier_key`.
fn key_name(verifier_key: &str) -> String {
    let key = VerifierKey::parse(verifier_key).unwrap();
    format!("{}+{:08x}", key.name, key.id)
}

/// A server on `dir` holding 5 events, with a checkpoint of them signed by
/// its key, which is returned.
async fn signed_log(dir: &Path) -> (ServerProcess, String) {
    let server = ServerProcess::spawn(dir).await;
    let client = Client::connect(&server.url).await.unwrap();
    log_n(&client, 1, 5).await;
    let key = verifier_key(dir);
    checkpoint_of(&client, &VerifierKey::parse(&key).unwrap(), 5).await;
    (server, key)
}

/// Starts the server on `dir` and checks that `key` signs on: the kept
/// checkpoint of 5 events is served, and the next one extends it.
async fn signs_on_with(dir: &Path, key: &str) {
    let server = ServerProcess::spawn(dir).await;
    let client = Client::connect(&server.url).await.unwrap();
    let trusted = VerifierKey::parse(key).unwrap();
    let kept = client.verified_checkpoint(&trusted, false).await.unwrap();
    assert_eq!(kept.checkpoint.size, 5);
    log_n(&client, 6, 1).await;
    checkpoint_of(&client, &trusted, 6).await;
    client.prove_inclusion(1, &trusted).await.unwrap();
    assert_eq!(seqs(&all_events(&client).await), vec![1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn a_deleted_checkpoint_key_refuses_the_start_until_it_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let (mut server, key) = signed_log(dir.path()).await;
    stop(&mut server).await;
    std::fs::rename(dir.path().join(KEY), backup.path().join(KEY)).unwrap();

    let says = [
        "checkpoint.key is missing",
        &format!("tree size 5 signed by key {}", key_name(&key)),
        "Restore",
        "--rotate-checkpoint-key signs one with the old key",
    ];
    assert_refused(&run_on(dir.path(), &[]).await, &says);
    assert!(!dir.path().join(KEY).exists(), "a new key was generated");
    // Nor does printing the verifier key, or a rotation, make one.
    for command in ["--print-verifier-key", "--rotate-checkpoint-key"] {
        let run = run_on(dir.path(), &[command]).await;
        assert_refused(&run, &says);
        assert!(!dir.path().join(KEY).exists(), "{command} generated a key");
    }

    std::fs::rename(backup.path().join(KEY), dir.path().join(KEY)).unwrap();
    signs_on_with(dir.path(), &key).await;
}

#[tokio::test]
async fn a_damaged_checkpoint_note_refuses_the_start_until_it_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, key) = signed_log(dir.path()).await;
    stop(&mut server).await;
    let note = dir.path().join(NOTE);
    let kept = std::fs::read(&note).unwrap();
    std::fs::write(&note, "garbage\n").unwrap();

    assert_refused(
        &run_on(dir.path(), &[]).await,
        &[
            "checkpoint.note does not verify with the checkpoint signing key",
            "changed outside the server",
            "Restore it from a backup",
        ],
    );
    assert_eq!(std::fs::read(&note).unwrap(), b"garbage\n");

    std::fs::write(&note, kept).unwrap();
    signs_on_with(dir.path(), &key).await;
}

/// The key file replaced by hand, the note kept: refused, naming the key
/// that signed the note; moving the note away, as the refusal says, is the
/// way on under the new key.
#[tokio::test]
async fn a_replaced_checkpoint_key_refuses_the_start_until_the_note_is_moved_away() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, key) = signed_log(dir.path()).await;
    stop(&mut server).await;
    std::fs::write(dir.path().join(KEY), "ab".repeat(32)).unwrap();

    assert_refused(
        &run_on(dir.path(), &[]).await,
        &[
            &format!(
                "checkpoint.note holds a checkpoint signed by key {}",
                key_name(&key)
            ),
            "holds another key",
        ],
    );

    let moved = tempfile::tempdir().unwrap();
    std::fs::rename(dir.path().join(NOTE), moved.path().join(NOTE)).unwrap();
    let server = ServerProcess::spawn(dir.path()).await;
    let client = Client::connect(&server.url).await.unwrap();
    let new_key = verifier_key(dir.path());
    assert_ne!(new_key, key);
    checkpoint_of(&client, &VerifierKey::parse(&new_key).unwrap(), 5).await;
}
