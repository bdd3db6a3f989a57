//! The Merkle tree's files changed under the server, far from the log's
//! end (the start checks only the tree's last 256 leaves): VerifyIntegrity
//! reports TREE_MISMATCH at the first seq where the tree and the records
//! part, naming the file, and the server refuses a proof built from the
//! changed hash (DATA_LOSS, naming where, and what rebuilds the tree) rather
//! than serve one that tells an auditor a record is not in the log. A
//! restart keeps the damage; cutting `tree/level-00` back as the message
//! says, then starting, rebuilds the tree from the log.
//!
//! Covered: a changed leaf (seq 2 of 1,000), a changed node above the
//! leaves (seqs 201 to 202), each with the inclusion and consistency proofs
//! that read it and one that does not; the last record rewritten by someone
//! holding the HMAC key after a checkpoint signed it, which is the record's
//! change and not the tree's (the proof of it is refused as such).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::os::unix::fs::FileExt as _;
use std::path::Path;

use auditlog_client::pb::ProblemKind;
use auditlog_client::proof::VerifierKey;
use auditlog_client::{Client, NewEvent};
use common::witness::{checkpoint_of, trusted_key};
use common::{TEST_KEY, TestServer, edit_line, resign, tamper, with_test_key};
use tonic::Code;

const EVENTS: u64 = 1000;

/// A server holding `EVENTS` events, the last in a signed checkpoint.
async fn server_with_log() -> (TestServer, Client, VerifierKey) {
    let server = TestServer::start_with(with_test_key).await;
    let client = server.client().await;
    for batch in 0..EVENTS / 100 {
        let events = (1..=100)
            .map(|n| NewEvent::lead_ingested(format!("LEAD-{}", batch * 100 + n), "webform"));
        client.log_batch(events).await.unwrap();
    }
    let key = trusted_key(&server.data_dir);
    checkpoint_of(&client, &key, EVENTS).await;
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    (server, client, key)
}

/// Overwrites 4 bytes of entry `index` of the tree's level file `level`.
fn damage(dir: &Path, level: u32, index: u64) {
    let path = dir.join(format!("tree/level-{level:02}"));
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&[0xff; 4], index * 32 + 8).unwrap();
}

/// The one TREE_MISMATCH problem VerifyIntegrity reports: its seq, file
/// and message.
async fn tree_mismatch(client: &Client) -> (u64, String, String) {
    let report = client.verify().await.unwrap();
    assert!(!report.ok);
    let kinds: Vec<ProblemKind> = report.problems.iter().map(|p| p.kind()).collect();
    assert_eq!(kinds, [ProblemKind::TreeMismatch], "{:?}", report.problems);
    let p = &report.problems[0];
    (p.seq, p.file.clone(), p.message.clone())
}

/// The status an inclusion proof of `seq` is refused with.
async fn refused_inclusion(client: &Client, seq: u64) -> tonic::Status {
    match client.inclusion_proof(seq, 0).await {
        Err(auditlog_client::Error::Rpc(status)) => status,
        other => panic!("the inclusion proof of seq {seq} was not refused: {other:?}"),
    }
}

#[tokio::test]
async fn a_changed_leaf_far_from_the_end_is_reported_and_its_proofs_are_refused() {
    let (server, client, key) = server_with_log().await;
    // The leaf of seq 2: read by the proofs of seq 1 (its sibling) and of
    // seq 2 (the tree's leaf served with it), and by the consistency proof
    // from size 1; no root reads it.
    damage(&server.data_dir, 0, 1);

    let (seq, file, message) = tree_mismatch(&client).await;
    assert_eq!((seq, file.as_str()), (2, "tree/level-00"), "{message}");
    assert!(message.contains("hash of seq 2 "), "{message}");
    assert!(message.contains("truncate -s 32 "), "{message}");

    for seq in [1, 2] {
        let status = refused_inclusion(&client, seq).await;
        assert_eq!(status.code(), Code::DataLoss, "{status:?}");
        let message = status.message();
        assert!(
            message.contains("the tree's hash of seq 2 (entry 1 of tree/level-00)"),
            "{message}"
        );
        assert!(message.contains("truncate -s 32 "), "{message}");
    }
    let refused = client.consistency_proof(1, 0).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::DataLoss), "{refused}");
    // Proofs that do not read it are served, and verify.
    client.prove_inclusion(3, &key).await.unwrap();
    client.prove_inclusion(700, &key).await.unwrap();
    client.consistency_proof(2, 0).await.unwrap();

    // A restart does not repair it: the start checks only the last leaves.
    let server = server.restart(with_test_key).await;
    let client = server.client().await;
    checkpoint_of(&client, &key, EVENTS).await;
    assert_eq!(tree_mismatch(&client).await.0, 2);
    assert_eq!(refused_inclusion(&client, 1).await.code(), Code::DataLoss);

    // What the message says to do rebuilds it from the log.
    let cut = |dir: &Path| {
        let level0 = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("tree/level-00"))
            .unwrap();
        level0.set_len(32).unwrap();
    };
    let server = server.restart_after(cut, with_test_key).await;
    let client = server.client().await;
    common::wait_until("the tree rebuilt from seq 2", || async {
        client
            .prove_inclusion(1, &key)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    client.prove_inclusion(2, &key).await.unwrap();
    let report = client.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

#[tokio::test]
async fn a_changed_node_above_the_leaves_is_reported_and_its_proofs_are_refused() {
    let (server, client, key) = server_with_log().await;
    // Entry 100 of level 1: the hash of seqs 201 and 202, the sibling in the
    // proofs of seqs 203 and 204.
    damage(&server.data_dir, 1, 100);

    let (seq, file, message) = tree_mismatch(&client).await;
    assert_eq!((seq, file.as_str()), (201, "tree/level-01"), "{message}");
    assert!(message.contains("seqs 201 to 202"), "{message}");

    let status = refused_inclusion(&client, 203).await;
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(
        status
            .message()
            .contains("the tree's hash of seqs 201 to 202 (entry 100 of tree/level-01)"),
        "{status:?}"
    );
    client.prove_inclusion(201, &key).await.unwrap();
    client.prove_inclusion(205, &key).await.unwrap();
}

#[tokio::test]
async fn a_record_rewritten_after_a_checkpoint_is_the_records_change_not_the_trees() {
    let (server, client, _key) = server_with_log().await;
    // The last record rewritten (to a line of the same length, read where
    // the index places it) and signed again with the HMAC key: the chain
    // still checks out; the tree and the checkpoint hold the old one.
    let last = format!("LEAD-{EVENTS}");
    tamper(&server.log_path(), |lines| {
        let line = lines.last_mut().unwrap();
        *line = resign(&edit_line(line, &last, "LEAD-9999"), TEST_KEY.as_bytes());
    });
    let (seq, file, message) = tree_mismatch(&client).await;
    assert_eq!(
        (seq, file.as_str()),
        (EVENTS, "checkpoint.note"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "the first record that is not the one signed is seq {EVENTS}"
        )),
        "{message}"
    );
    let status = refused_inclusion(&client, EVENTS).await;
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(
        status
            .message()
            .contains("the record was changed after it was written"),
        "{status:?}"
    );
}
