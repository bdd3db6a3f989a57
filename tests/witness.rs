//! `auditlog checkpoint watch`, the witness, through the CLI binary against
//! real servers: a log that grows is accepted round after round; a server
//! restarted on an older copy of its data directory (a rollback), a
//! checkpoint signed by another log's key, and a log that diverged from the
//! kept checkpoint (a fork, at the same size and at a bigger one) each end
//! the witness with exit 1 and one line that names them. A state file kept
//! by hand with an extra newline is read; one that holds no note is named
//! malformed, not another log's.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

use auditlog_client::proof::VerifierKey;
use common::witness::{log_leads, other_logs_key, signed_at, verifier_key, witness_round};
use common::{TestServer, cli, copy_dir};

#[tokio::test]
async fn a_growing_log_is_accepted_round_after_round() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = verifier_key(&server.data_dir);
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("kept.note");

    log_leads(&client, "LEAD", 1, 3).await;
    signed_at(&client, &key, 3).await;
    let (code, out, err) = witness_round(&server.url, &[&key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("tree size 3") && out.contains("first"),
        "{out}"
    );

    let mut last = 3;
    for (round, size) in [(1, 5), (2, 9), (3, 10)] {
        log_leads(&client, "LEAD", last + 1, size).await;
        last = size;
        signed_at(&client, &key, size).await;
        let (code, out, err) = witness_round(&server.url, &[&key], &state, round == 2).await;
        assert_eq!(code, 0, "round {round}: {out}{err}");
        if round == 2 {
            let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(json["accepted"], "grew", "{out}");
            assert_eq!(json["tree_size"], size, "{out}");
        } else {
            assert!(out.contains(&format!("tree size {size}")), "{out}");
            assert!(out.contains("extends the kept size"), "{out}");
        }
        // The state file is the kept signed note, readable by the key.
        let kept = std::fs::read_to_string(&state).unwrap();
        let c = VerifierKey::parse(&key)
            .unwrap()
            .open_checkpoint(&kept)
            .unwrap();
        assert_eq!(c.size, size);
    }
    let (code, out, err) = witness_round(&server.url, &[&key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unchanged"), "{out}");
}

#[tokio::test]
async fn a_rollback_and_a_fork_end_the_witness() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = verifier_key(&server.data_dir);
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("kept.note");
    let older = scratch.path().join("older");

    log_leads(&client, "LEAD", 1, 3).await;
    signed_at(&client, &key, 3).await;
    // A copy of the data directory taken while the server is stopped.
    let server = server
        .restart_after(|dir| copy_dir(dir, &older), |_| {})
        .await;
    let client = server.client().await;
    log_leads(&client, "LEAD", 4, 6).await;
    signed_at(&client, &key, 6).await;
    let (code, out, err) = witness_round(&server.url, &[&key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tree size 6"), "{out}");
    drop(client);
    let mut server = server;
    server.stop().await;

    // The server restarted on the older copy: the tree shrank.
    let rolled_back = TestServer::start_in(&older, |_| {}).await;
    let client = rolled_back.client().await;
    signed_at(&client, &key, 3).await;
    let (code, out, err) = witness_round(&rolled_back.url, &[&key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("ROLLBACK") && err.contains("shrank from 6 to 3"),
        "{err}"
    );
    let kept = std::fs::read_to_string(&state).unwrap();
    assert!(kept.contains("\n6\n"), "the evidence stays kept: {kept}");

    // Other events written after the common prefix: the same size with
    // another root, then a bigger tree that does not extend the kept one.
    log_leads(&client, "OTHER", 4, 6).await;
    signed_at(&client, &key, 6).await;
    let (code, out, err) = witness_round(&rolled_back.url, &[&key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("FORK") && err.contains("same size"), "{err}");
    assert!(
        err.contains("kept size 6") && err.contains("now size 6"),
        "{err}"
    );
    log_leads(&client, "OTHER", 7, 8).await;
    signed_at(&client, &key, 8).await;
    let (code, out, err) = witness_round(&rolled_back.url, &[&key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("FORK") && err.contains("does not extend"),
        "{err}"
    );
    assert!(
        err.contains("kept size 6") && err.contains("now size 8"),
        "{err}"
    );
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_logs_key_is_refused() {
    let server = TestServer::start().await;
    let client = server.client().await;
    log_leads(&client, "LEAD", 1, 2).await;
    signed_at(&client, &verifier_key(&server.data_dir), 2).await;
    let other_key = other_logs_key().await;
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("kept.note");

    let (code, out, err) = witness_round(&server.url, &[&other_key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no signature by key"), "{err}");
    assert!(!state.exists(), "nothing refused is kept");

    // A log under another origin, checked with our key's name.
    let renamed =
        TestServer::start_with(|c| c.checkpoint_origin = Some("auditlog/elsewhere".into())).await;
    let renamed_client = renamed.client().await;
    log_leads(&renamed_client, "LEAD", 1, 1).await;
    let renamed_key = auditlog_server::verifier_key(&auditlog_server::Config {
        data_dir: renamed.data_dir.clone(),
        checkpoint_origin: Some("auditlog/elsewhere".into()),
        ..auditlog_server::Config::default()
    })
    .unwrap();
    signed_at(&renamed_client, &renamed_key, 1).await;
    let (code, out, err) = witness_round(&renamed.url, &[&other_key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("refused the log's latest checkpoint"), "{err}");
}

#[tokio::test]
async fn a_hand_kept_state_file_is_read_and_a_malformed_one_is_named_so() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let key = verifier_key(&server.data_dir);
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("kept.note");

    log_leads(&client, "LEAD", 1, 2).await;
    signed_at(&client, &key, 2).await;
    // Kept as `auditlog checkpoint --json | jq -r .note > kept.note` does:
    // the note, then one newline more.
    let (code, out, err) = cli(&server.url, &["checkpoint", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let note = json["note"].as_str().unwrap().to_owned();
    std::fs::write(&state, format!("{note}\n")).unwrap();
    log_leads(&client, "LEAD", 3, 4).await;
    signed_at(&client, &key, 4).await;
    let (code, out, err) = witness_round(&server.url, &[&key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("extends the kept size 2"), "{out}");
    // Kept back exactly as the server signed it.
    let kept = std::fs::read_to_string(&state).unwrap();
    assert!(kept.ends_with('\n') && !kept.ends_with("\n\n"), "{kept:?}");
    assert!(kept.contains("\n4\n"), "{kept}");

    // Not a note at all: malformed, with what to do, not a fork alarm.
    for junk in [&b"not a note\n"[..], &b""[..], &[0xff, 0xfe, b'\n'][..]] {
        std::fs::write(&state, junk).unwrap();
        let (code, out, err) = witness_round(&server.url, &[&key], &state, false).await;
        assert_eq!(code, 1, "{out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("is malformed"), "{err}");
        assert!(err.contains("move it aside"), "{err}");
        assert!(!err.contains("not this log's"), "{err}");
        assert_eq!(std::fs::read(&state).unwrap(), junk, "left as it was");
    }
}
