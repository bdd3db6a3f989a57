//! Receipts that come with their proofs: `Log` and `LogBatch` with
//! `with_proof` answer with the first signed checkpoint whose tree holds
//! the events and an inclusion proof per event, checked here with the
//! verifier key `--print-verifier-key` gives and against the RFC 6962 root
//! of the lines in `audit.log`, computed here.
//!
//! Covered: one event and a batch, each proof verified with the key alone;
//! a call without `with_proof` carries no proof; a changed line, a changed
//! proof hash and another log's key are refused, naming the seq; the CLI's
//! `auditlog log --proof` prints and checks it, and exits 1 with a wrong key.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use auditlog_client::proof::{VerifierKey, leaf_hash, root_of, verify_inclusion};
use auditlog_client::{NewEvent, check_receipt_proofs, pb};
use common::witness::{file_leaves, other_logs_key, proof_hashes, trusted_key, verifier_key};
use common::{TestServer, cli, cli_bin, read_lines};

fn event(n: u64) -> NewEvent {
    NewEvent::lead_ingested(format!("LEAD-{n}"), "webform")
}

#[tokio::test]
async fn a_receipt_asked_with_proof_comes_with_a_checkpoint_and_proof_that_verify() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = trusted_key(&server.data_dir);
    client.log(event(1)).await.unwrap();

    let one = client.log_with_proof(event(2), Some(&key)).await.unwrap();
    let proof = one.proof.unwrap();
    assert_eq!(one.receipts[0].seq, 2);
    let size = proof.checkpoint.checkpoint.size;
    assert!(size >= 2, "the checkpoint covers the receipt: {size}");
    let lines = read_lines(&server.log_path());
    assert_eq!(proof.lines, vec![lines[1].as_bytes().to_vec()]);

    let batch = client
        .log_batch_with_proof((3..=5).map(event), Some(&key))
        .await
        .unwrap();
    let proof = batch.proof.unwrap();
    let seqs: Vec<u64> = batch.receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![3, 4, 5]);
    assert_eq!(proof.lines.len(), 3);
    let c = &proof.checkpoint.checkpoint;
    assert!(
        c.size >= 5,
        "one checkpoint covers the whole batch: {}",
        c.size
    );
    // The root, recomputed here from the file, is the signed one.
    let leaves = file_leaves(&server);
    assert_eq!(c.root, root_of(&leaves[..c.size as usize]));
    let lines = read_lines(&server.log_path());
    for (i, line) in proof.lines.iter().enumerate() {
        assert_eq!(line, lines[2 + i].as_bytes());
    }

    // Without with_proof, nothing is waited for or sent.
    let raw = client
        .raw()
        .log(pb::LogRequest {
            event: Some(pb::EventInput {
                event_type: "lead_ingested".into(),
                ..Default::default()
            }),
            with_proof: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(raw.proof.is_none() && raw.proof_unavailable.is_empty());
}

#[tokio::test]
async fn a_changed_proof_line_or_key_is_refused_naming_the_seq() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = trusted_key(&server.data_dir);
    let response = client
        .raw()
        .log_batch(pb::LogBatchRequest {
            events: (1..=3)
                .map(|n| pb::EventInput {
                    event_type: "lead_ingested".into(),
                    lead_id: format!("LEAD-{n}"),
                    ..Default::default()
                })
                .collect(),
            with_proof: true,
        })
        .await
        .unwrap()
        .into_inner();
    let receipts = response.receipts;
    let proofs = response.proofs.unwrap();
    assert!(response.proof_unavailable.is_empty());
    let check = |proofs: pb::ReceiptProofs, key: &VerifierKey| {
        check_receipt_proofs(&receipts, Some(proofs), String::new(), Some(key))
    };
    check(proofs.clone(), &key).unwrap();
    // Each proof, checked here step by step with the RFC 9162 verifier.
    let c = key
        .open_checkpoint(&proofs.checkpoint.as_ref().unwrap().note)
        .unwrap();
    for p in &proofs.proofs {
        let hashes = proof_hashes(&p.hashes);
        verify_inclusion(p.seq - 1, c.size, &leaf_hash(&p.line), &hashes, &c.root).unwrap();
    }

    let mut changed = proofs.clone();
    let line = String::from_utf8(changed.proofs[1].line.clone()).unwrap();
    changed.proofs[1].line = line.replace("LEAD-2", "LEAD-9").into_bytes();
    let e = check(changed, &key).unwrap_err().to_string();
    assert!(e.contains("seq 2"), "{e}");

    let mut changed = proofs.clone();
    if let Some(h) = changed.proofs[2].hashes.first_mut() {
        h[0] ^= 1;
        let e = check(changed, &key).unwrap_err().to_string();
        assert!(e.contains("seq 3") && e.contains("does not verify"), "{e}");
    }

    let other = TestServer::start().await;
    let e = check(proofs.clone(), &trusted_key(&other.data_dir))
        .unwrap_err()
        .to_string();
    assert!(e.contains("checkpoint"), "{e}");

    let e = check_receipt_proofs(&receipts, None, "no checkpoint in time".into(), Some(&key))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no checkpoint in time"), "{e}");
}

#[tokio::test]
async fn the_cli_logs_with_proof_and_checks_it() {
    let server = TestServer::start().await;
    let key = verifier_key(&server.data_dir);
    let (code, out, err) = cli(
        &server.url,
        &[
            "log",
            "lead_ingested",
            "--lead",
            "L-1",
            "--proof",
            "--key",
            &key,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("seq 1 ") && out.contains("OK: seq 1 is in"),
        "{out}"
    );
    assert!(!out.contains("key the server sent"), "{out}");

    let (code, out, err) = cli(
        &server.url,
        &["--json", "log", "lead_ingested", "--proof", "--key", &key],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(json["seq"], 2);
    assert_eq!(json["proof"]["verified"], true);
    assert!(json["proof"]["tree_size"].as_u64().unwrap() >= 2);

    let other_key = other_logs_key().await;
    let (code, out, err) = cli(
        &server.url,
        &["log", "lead_ingested", "--proof", "--key", &other_key],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("seq 3 "), "the receipt is printed: {out}");
    assert!(
        err.contains("seq 3 is written, but its proof did not check out"),
        "{err}"
    );
}

/// `auditlog --server URL ARGS` with AUDITLOG_VERIFIER_KEY set to `key`:
/// exit code, stdout, stderr.
async fn cli_with_key_in_env(url: &str, key: &str, args: &[&str]) -> (i32, String, String) {
    let mut command = std::process::Command::new(cli_bin());
    command
        .arg("--server")
        .arg(url)
        .args(args)
        .env("AUDITLOG_VERIFIER_KEY", key);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A verifier key in the environment (as a witness's unit sets it) is the
/// key `log --proof` checks with, and a plain `log` does not ask for
/// `--proof` because of it.
#[tokio::test]
async fn the_verifier_key_in_the_environment_serves_log_proof_and_leaves_log_alone() {
    let server = TestServer::start().await;
    let key = verifier_key(&server.data_dir);
    let (code, out, err) = cli_with_key_in_env(&server.url, &key, &["log", "lead_ingested"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("seq 1 "), "{out}");
    let (code, out, err) =
        cli_with_key_in_env(&server.url, &key, &["log", "lead_ingested", "--proof"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK: seq 2 is in"), "{out}");
    assert!(!out.contains("key the server sent"), "{out}");
    let other_key = other_logs_key().await;
    let (code, out, err) = cli_with_key_in_env(
        &server.url,
        &other_key,
        &["log", "lead_ingested", "--proof"],
    )
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("did not check out"), "{err}");
}

/// Compliance mode stores PII as keyed tokens: a proved line holds the
/// lead id's and the emails' pseudonyms, not the values sent, and is still
/// the caller's own record. Without the pseudonymisation key the client
/// cannot recompute a token, so a token stands for whatever was sent there;
/// every field compliance mode leaves alone is still compared.
#[tokio::test]
async fn with_compliance_mode_the_proved_line_holds_pseudonyms_and_is_accepted() {
    let server = TestServer::start_with(|c| {
        c.compliance.enabled = true;
        c.compliance.lead_id = true;
    })
    .await;
    let client = server.client().await;
    let key = trusted_key(&server.data_dir);
    let jane = || {
        NewEvent::lead_ingested("jane.doe@example.com", "webform").details(serde_json::json!({
            "source": "webform",
            "contact": {"email": "Jane.Doe@Example.com", "phone": "+1 555 010 9999"},
        }))
    };
    let one = client.log_with_proof(jane(), Some(&key)).await.unwrap();
    let proof = one.proof.unwrap();
    let line = String::from_utf8(proof.lines[0].clone()).unwrap();
    assert!(
        line.contains("pii:hmac:") && !line.contains("jane.doe@example.com"),
        "the stored line holds pseudonyms: {line}"
    );
    let batch = client
        .log_batch_with_proof([jane(), jane().detail("step", 2)], Some(&key))
        .await
        .unwrap();
    assert_eq!(batch.proof.unwrap().lines.len(), 2);
}

/// A server limit (`handler_timeout_secs`) sooner than the proof wait
/// still answers a `Log` asked with proof within that limit: the receipt,
/// and why the proof is missing. Before, the wait followed the caller's
/// longer deadline past the server's limit, and the answer was
/// DEADLINE_EXCEEDED, which tells the caller the write may have failed.
#[tokio::test]
async fn a_proof_later_than_the_servers_limit_still_answers_the_receipt() {
    // No tree, so no checkpoint ever comes.
    let server = TestServer::start_with(|c| {
        c.handler_timeout_secs = 1;
        c.bench = auditlog_server::bench::Switches::without_tree();
    })
    .await;
    let client = server.client().await;
    let proven = client
        .log_with_proof(NewEvent::lead_ingested("LEAD-1", "webform"), None)
        .await
        .unwrap();
    assert_eq!(proven.receipts.len(), 1);
    assert_eq!(proven.receipts[0].seq, 1);
    let why = proven.proof.unwrap_err().to_string();
    assert!(why.contains("no signed checkpoint covered seq 1"), "{why}");
}
