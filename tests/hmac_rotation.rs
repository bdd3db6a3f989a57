//! Rotating the HMAC key: the new key, under a new `hmac_key_id`, signs
//! what comes after; the old one, kept as a `[[retired_hmac_keys]]` entry,
//! still verifies what it signed, in sealed segments and the active file,
//! and the manifest it signed. Without it those records cannot be checked,
//! and VerifyIntegrity says so by key; a start whose newest records name a
//! key it does not hold is refused naming that key, and one whose key was
//! replaced under the same id is refused as a wrong key, both pointing at
//! the retired keys. A record forged with the retired key after the
//! rotation verifies its MAC and is found all the same (`RETIRED_KEY`).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::{Path, PathBuf};

use auditlog_client::NewEvent;
use auditlog_client::pb::ProblemKind;
use auditlog_server::Config;
use auditlog_server::config::RetiredHmacKey;
use common::{
    DEADLINE, TestServer, all_stored_lines, field, record_line, run_to_end, tamper, workspace_bin,
};

/// Two keys in files of the test's directory: (old, new).
fn key_files(dir: &Path) -> (PathBuf, PathBuf) {
    let old = dir.join("hmac-k1.key");
    let new = dir.join("hmac-k2.key");
    std::fs::write(&old, "old key 0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::write(&new, "new key 0123456789abcdef0123456789abcdef\n").unwrap();
    (old, new)
}

fn signing(config: &mut Config, id: &str, file: &Path) {
    config.hmac_key_id = id.to_owned();
    config.hmac_key_file = Some(file.to_owned());
}

async fn log_leads(client: &auditlog_client::Client, from: u64, to: u64) {
    let events = (from..=to).map(|n| NewEvent::lead_ingested(format!("LEAD-{n}"), "webform"));
    client.log_batch(events).await.unwrap();
}

#[tokio::test]
async fn a_rotated_key_signs_what_follows_and_the_retired_one_verifies_what_it_signed() {
    let scratch = tempfile::tempdir().unwrap();
    let (old, new) = key_files(scratch.path());
    let data = scratch.path().join("data");
    let mut server = TestServer::start_in(&data, |c| signing(c, "k1", &old)).await;
    let client = server.client().await;
    log_leads(&client, 1, 100).await;
    // A sealed segment and a manifest signed with k1, and records after it.
    client.rotate(true).await.unwrap();
    log_leads(&client, 101, 150).await;
    server.stop().await;

    let rotated = |c: &mut Config| {
        signing(c, "k2", &new);
        c.retired_hmac_keys = vec![RetiredHmacKey {
            id: "k1".into(),
            key_file: old.clone(),
        }];
    };
    let mut server = TestServer::start_in(&data, rotated).await;
    let client = server.client().await;
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    log_leads(&client, 151, 200).await;
    client.rotate(true).await.unwrap();
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.events_checked, 200);
    let key_ids: Vec<String> = all_stored_lines(&client)
        .await
        .iter()
        .map(|line| field(std::str::from_utf8(line).unwrap(), "key_id"))
        .collect();
    assert_eq!(key_ids.len(), 200);
    assert!(key_ids[..150].iter().all(|k| k == "k1"), "{key_ids:?}");
    assert!(key_ids[150..].iter().all(|k| k == "k2"), "{key_ids:?}");
    server.stop().await;

    // The retired key dropped: the newest records verify, so the server
    // starts, but what k1 signed can no longer be checked.
    let server = TestServer::start_in(&data, |c| signing(c, "k2", &new)).await;
    let report = server.client().await.verify().await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.problems.len(), 150, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind() == ProblemKind::UnknownKey && p.seq <= 150),
        "{:?}",
        report.problems
    );
    assert!(
        report.problems[0].message.contains("\"k1\"")
            && report.problems[0].message.contains("retired_hmac_keys"),
        "{}",
        report.problems[0].message
    );
}

/// `auditlog-server --verify` on `data` with `env`: (exit code, stderr).
async fn verify_with(data: &Path, env: &[(&str, &Path)]) -> (i32, String) {
    let args = vec![
        "--data-dir".to_owned(),
        data.display().to_string(),
        "--verify".to_owned(),
    ];
    let env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.display().to_string()))
        .collect();
    let bin = workspace_bin("auditlog-server", "auditlog-server");
    let done = run_to_end(bin, args, env, DEADLINE).await;
    (done.code, done.stderr)
}

#[tokio::test]
async fn a_key_dropped_or_replaced_in_place_is_refused_pointing_at_the_retired_keys() {
    let scratch = tempfile::tempdir().unwrap();
    let (old, new) = key_files(scratch.path());
    let data = scratch.path().join("data");
    let mut server = TestServer::start_in(&data, |c| signing(c, "k1", &old)).await;
    log_leads(&server.client().await, 1, 20).await;
    server.stop().await;

    // A new id and key, the old key not kept.
    let (code, err) = verify_with(
        &data,
        &[
            ("AUDITLOG_HMAC_KEY_FILE", &new),
            ("AUDITLOG_HMAC_KEY_ID", Path::new("k2")),
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("signed with key \"k1\", which this server does not hold")
            && err.contains("[[retired_hmac_keys]] entry with id = \"k1\""),
        "{err}"
    );

    // The new key under the old id.
    let (code, err) = verify_with(&data, &[("AUDITLOG_HMAC_KEY_FILE", &new)]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("fail their MAC under key \"k1\"")
            && err.contains("give the new one a new hmac_key_id"),
        "{err}"
    );

    // The key the log was written with: clean.
    let (code, err) = verify_with(&data, &[("AUDITLOG_HMAC_KEY_FILE", &old)]).await;
    assert_eq!(code, 0, "{err}");
}

/// A retired key still verifies what it signed, so a record written with
/// it after the rotation (by whoever kept the old key and can write the
/// data directory) passes its MAC: it is found by where it stands.
#[tokio::test]
async fn a_record_forged_with_the_retired_key_after_the_rotation_is_found() {
    let scratch = tempfile::tempdir().unwrap();
    let (old, new) = key_files(scratch.path());
    let data = scratch.path().join("data");
    let mut server = TestServer::start_in(&data, |c| signing(c, "k1", &old)).await;
    log_leads(&server.client().await, 1, 10).await;
    server.stop().await;
    let rotated = |c: &mut Config| {
        signing(c, "k2", &new);
        c.retired_hmac_keys = vec![RetiredHmacKey {
            id: "k1".into(),
            key_file: old.clone(),
        }];
    };
    let mut server = TestServer::start_in(&data, rotated).await;
    let client = server.client().await;
    log_leads(&client, 11, 20).await;
    let lines = all_stored_lines(&client).await;
    let last = std::str::from_utf8(lines.last().unwrap())
        .unwrap()
        .to_owned();
    server.stop().await;

    let old_key = std::fs::read_to_string(&old).unwrap();
    let forged = record_line(
        21,
        &field(&last, "timestamp"),
        &field(&last, "signature"),
        old_key.trim().as_bytes(),
    );
    tamper(&server.log_path(), |lines| lines.push(forged));
    let server = TestServer::start_in(&data, rotated).await;
    let report = server.client().await.verify().await.unwrap();
    let found: Vec<(ProblemKind, u64)> =
        report.problems.iter().map(|p| (p.kind(), p.seq)).collect();
    assert_eq!(
        found,
        vec![(ProblemKind::RetiredKey, 21)],
        "{:?}",
        report.problems
    );
    let message = &report.problems[0].message;
    assert!(
        message.contains("signed with retired key \"k1\", after seq 11 was signed with \"k2\""),
        "{message}"
    );
}
