//! Rotating the HMAC key: the new key, under a new `hmac_key_id`, signs
//! what comes after; the old one, kept as a `[[retired_hmac_keys]]` entry,
//! still verifies what it signed, in sealed segments and the active file,
//! and the manifest it signed. Without it those records cannot be checked,
//! and VerifyIntegrity says so by key; a start whose newest records name a
//! key it does not hold is refused naming that key, and one whose key was
//! replaced under the same id is refused as a wrong key, both pointing at
//! the retired keys. A record forged with the retired key after the
//! rotation verifies its MAC and is found all the same (`RETIRED_KEY`).
//! A cluster rotates with its nodes stopped, each node's replica then
//! holding both keys' records and verifying clean.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::{Path, PathBuf};

use auditlog_client::NewEvent;
use auditlog_client::pb::ProblemKind;
use auditlog_server::Config;
use auditlog_server::config::RetiredHmacKey;
use common::cluster::{failover_client, start_nodes, wait_all_at};
use common::{
    DEADLINE, NatsCluster, ServerProcess, TEST_KEY, TestServer, all_stored_lines, field,
    record_line, run_to_end, tamper, workspace_bin,
};

/// A data directory, and two keys in files beside it: the old one, which
/// signs under `k1`, and the new one, under `k2`.
struct Rotation {
    _scratch: tempfile::TempDir,
    data: PathBuf,
    old: PathBuf,
    new: PathBuf,
}

impl Rotation {
    fn new() -> Rotation {
        let scratch = tempfile::tempdir().unwrap();
        let old = scratch.path().join("hmac-k1.key");
        let new = scratch.path().join("hmac-k2.key");
        std::fs::write(&old, "old key 0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::write(&new, "new key 0123456789abcdef0123456789abcdef\n").unwrap();
        Rotation {
            data: scratch.path().join("data"),
            _scratch: scratch,
            old,
            new,
        }
    }

    /// A server signing with the old key.
    async fn before(&self) -> TestServer {
        TestServer::start_in(&self.data, |c| signing(c, "k1", &self.old)).await
    }

    /// A server signing with the new key, the old one retired.
    async fn after(&self) -> TestServer {
        TestServer::start_in(&self.data, |c| {
            signing(c, "k2", &self.new);
            c.retired_hmac_keys = vec![RetiredHmacKey {
                id: "k1".into(),
                key_file: self.old.clone(),
            }];
        })
        .await
    }
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
    let keys = Rotation::new();
    let mut server = keys.before().await;
    let client = server.client().await;
    log_leads(&client, 1, 100).await;
    // A sealed segment and a manifest signed with k1, and records after it.
    client.rotate(true).await.unwrap();
    log_leads(&client, 101, 150).await;
    server.stop().await;

    let mut server = keys.after().await;
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
    let server = TestServer::start_in(&keys.data, |c| signing(c, "k2", &keys.new)).await;
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
    let keys = Rotation::new();
    let (data, old, new) = (&keys.data, &keys.old, &keys.new);
    let mut server = keys.before().await;
    log_leads(&server.client().await, 1, 20).await;
    server.stop().await;

    // A new id and key, the old key not kept.
    let (code, err) = verify_with(
        data,
        &[
            ("AUDITLOG_HMAC_KEY_FILE", new),
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
    let (code, err) = verify_with(data, &[("AUDITLOG_HMAC_KEY_FILE", new)]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("fail their MAC under key \"k1\"")
            && err.contains("give the new one a new hmac_key_id"),
        "{err}"
    );

    // The key the log was written with: clean.
    let (code, err) = verify_with(data, &[("AUDITLOG_HMAC_KEY_FILE", old)]).await;
    assert_eq!(code, 0, "{err}");
}

/// A retired key still verifies what it signed, so a record written with
/// it after the rotation (by whoever kept the old key and can write the
/// data directory) passes its MAC: it is found by where it stands.
#[tokio::test]
async fn a_record_forged_with_the_retired_key_after_the_rotation_is_found() {
    let keys = Rotation::new();
    let mut server = keys.before().await;
    log_leads(&server.client().await, 1, 10).await;
    server.stop().await;
    let mut server = keys.after().await;
    let client = server.client().await;
    log_leads(&client, 11, 20).await;
    let lines = all_stored_lines(&client).await;
    let last = std::str::from_utf8(lines.last().unwrap())
        .unwrap()
        .to_owned();
    server.stop().await;

    let old_key = std::fs::read_to_string(&keys.old).unwrap();
    let forged = record_line(
        21,
        &field(&last, "timestamp"),
        &field(&last, "signature"),
        old_key.trim().as_bytes(),
    );
    tamper(&server.log_path(), |lines| lines.push(forged));
    let server = keys.after().await;
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

/// A cluster rotates as one: every node stopped, each given the new key
/// under a new id and the old one retired, started again. The replicas
/// apply the stream's old records under the retired key and the leader's
/// new ones under the new key; a record published under the old key after
/// the rotation is skipped as no leader's; every node verifies the whole
/// log clean.
/// Skipped without a `nats-server` binary, unless `REQUIRE_NATS=1`.
#[tokio::test]
async fn a_cluster_rotates_its_key_with_every_node_stopped() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut nodes = start_nodes(&nats, 3).await;
    let client = failover_client(&nodes).await;
    log_leads(&client, 1, 20).await;
    wait_all_at(&nodes, 20).await;
    for node in &mut nodes {
        node.process.signal("TERM");
        node.process
            .wait_exit_within(std::time::Duration::from_secs(30))
            .await;
    }

    let old_key = nodes[0].dir.path().join("hmac-k1.key");
    std::fs::write(&old_key, TEST_KEY).unwrap();
    let new_key = "new cluster key 0123456789abcdef0123456789";
    for node in &mut nodes {
        let config = node.dir.path().join("auditlog.toml");
        let mut toml = std::fs::read_to_string(&config).unwrap();
        toml.push_str(&format!(
            "\n[[retired_hmac_keys]]\nid = \"k1\"\nkey_file = {old_key:?}\n"
        ));
        std::fs::write(&config, toml).unwrap();
        node.process = ServerProcess::spawn_at(
            node.port,
            &node.dir.path().join("data"),
            ["--config".as_ref(), config.as_os_str()],
            &[
                ("AUDITLOG_HMAC_KEY", new_key),
                ("AUDITLOG_HMAC_KEY_ID", "k2"),
            ],
        )
        .await;
    }
    let client = failover_client(&nodes).await;
    log_leads(&client, 21, 40).await;
    wait_all_at(&nodes, 40).await;

    // Someone who can publish to the stream and kept the old key sends a
    // record 41 under it: its MAC holds, but no leader signs with a
    // retired key any more, so every replica skips it and the next write
    // takes seq 41.
    let lines = all_stored_lines(&client).await;
    let last = std::str::from_utf8(lines.last().unwrap())
        .unwrap()
        .to_owned();
    let forged = record_line(
        41,
        &field(&last, "timestamp"),
        &field(&last, "signature"),
        TEST_KEY.as_bytes(),
    );
    let js = async_nats::jetstream::new(nats.client().await);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Auditlog-Seq", "41-41");
    js.publish_with_headers("AUDITLOG.log", headers, format!("{forged}\n").into())
        .await
        .unwrap()
        .await
        .unwrap();
    // The leader's fenced publish finds the stream moved on and answers
    // UNAVAILABLE; the client repeats a write with an idempotency key.
    let after = NewEvent::lead_ingested("LEAD-41", "webform").idempotency_key("after-the-forgery");
    assert_eq!(client.log(after).await.unwrap().seq, 41);
    wait_all_at(&nodes, 41).await;
    for node in &nodes {
        let client = node.client().await;
        let report = client.verify().await.unwrap();
        assert!(report.ok, "{}: {:?}", node.url(), report.problems);
        let key_ids: Vec<String> = all_stored_lines(&client)
            .await
            .iter()
            .map(|line| field(std::str::from_utf8(line).unwrap(), "key_id"))
            .collect();
        let expected: Vec<&str> = [&["k1"; 20][..], &["k2"; 21][..]].concat();
        assert_eq!(key_ids, expected, "{}", node.url());
    }
}
