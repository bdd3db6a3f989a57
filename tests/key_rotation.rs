//! Rotating the checkpoint signing key, through the server binary
//! (`auditlog-server --rotate-checkpoint-key`), gRPC and the CLI: refused
//! while a server holds the directory; the handover is co-signed by both
//! keys and served with the retired key; the witness, trusting the old key
//! only, follows the rotation (and keeps following it in later runs); a
//! bundle exported before still verifies with the old key. A checkpoint
//! under a key the witness does not trust, with no handover, is refused
//! unless the new key is given.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;

use auditlog_client::proof::VerifierKey;
use common::witness::{log_leads, signed_at, verifier_key, witness_round};
use common::{TestServer, cli, piped_command, workspace_bin};

/// `auditlog-server --rotate-checkpoint-key --data-dir DIR`: exit code,
/// stdout, stderr. It only takes the directory's lock and rewrites key
/// files, so the test waits for it on its own thread.
fn rotate(dir: &Path) -> (i32, String, String) {
    let out = piped_command(&workspace_bin("auditlog-server", "auditlog-server"))
        .arg("--rotate-checkpoint-key")
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn the_witness_follows_a_rotation_and_old_bundles_still_verify() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let old_key = verifier_key(&server.data_dir);
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("kept.note");
    let bundle = scratch.path().join("before.bundle.json");

    log_leads(&client, "LEAD", 1, 3).await;
    signed_at(&client, &old_key, 3).await;
    let (code, out, err) = witness_round(&server.url, &[&old_key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(
        &server.url,
        &[
            "bundle",
            "export",
            "--lead",
            "LEAD-2",
            "--output",
            bundle.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");

    // Not while a server holds the directory.
    let (code, out, err) = rotate(&server.data_dir);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("in use by another auditlog-server"), "{err}");

    drop(client);
    let mut rotated = (0, String::new(), String::new());
    let server = server
        .restart_after(|dir| rotated = rotate(dir), |_| {})
        .await;
    let (code, out, err) = rotated;
    assert_eq!(code, 0, "{out}{err}");
    let new_key = verifier_key(&server.data_dir);
    assert_ne!(new_key, old_key);
    assert!(
        out.contains("tree size 3")
            && out.contains(&format!("new verifier key: {new_key}"))
            && out.contains(&format!("retired verifier key: {old_key}")),
        "{out}"
    );

    // Served: the new key, and the old one with its handover, which both
    // keys verify.
    let client = server.client().await;
    let served = client.checkpoint(false).await.unwrap();
    assert_eq!(served.verifier_key, new_key);
    assert_eq!(served.retired_keys.len(), 1, "{served:?}");
    let retired = &served.retired_keys[0];
    assert_eq!(retired.verifier_key, old_key);
    assert_eq!(retired.successor_key, new_key);
    assert_eq!((retired.from_size, retired.to_size), (0, 3));
    for key in [&old_key, &new_key] {
        let c = VerifierKey::parse(key)
            .unwrap()
            .open_checkpoint(&retired.handover_note)
            .unwrap();
        assert_eq!(c.size, 3);
    }

    // The witness trusts the old key only, and follows.
    log_leads(&client, "LEAD", 4, 5).await;
    signed_at(&client, &new_key, 5).await;
    let (code, out, err) = witness_round(&server.url, &[&old_key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("followed the key rotation at tree size 3") && out.contains("tree size 5"),
        "{out}"
    );
    let kept = std::fs::read_to_string(&state).unwrap();
    let c = VerifierKey::parse(&new_key)
        .unwrap()
        .open_checkpoint(&kept)
        .unwrap();
    assert_eq!(c.size, 5);
    // A later run, still given the old key only, trusts the followed one.
    log_leads(&client, "LEAD", 6, 6).await;
    signed_at(&client, &new_key, 6).await;
    let (code, out, err) = witness_round(&server.url, &[&old_key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("tree size 6") && out.contains("extends"),
        "{out}"
    );

    // The bundle signed before the rotation verifies with the old key.
    let (code, out, err) = cli(
        "http://127.0.0.1:9",
        &[
            "bundle",
            "verify",
            bundle.to_str().unwrap(),
            "--key",
            &old_key,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn a_checkpoint_under_an_unknown_key_without_handover_is_refused() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let old_key = verifier_key(&server.data_dir);
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("kept.note");
    log_leads(&client, "LEAD", 1, 2).await;
    signed_at(&client, &old_key, 2).await;
    let (code, out, err) = witness_round(&server.url, &[&old_key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");

    // The key replaced by hand: no handover.
    drop(client);
    let server = server
        .restart_after(
            |dir| {
                std::fs::write(dir.join("checkpoint.key"), "ab".repeat(32)).unwrap();
                std::fs::remove_file(dir.join("checkpoint.note")).unwrap();
            },
            |_| {},
        )
        .await;
    let client = server.client().await;
    let new_key = verifier_key(&server.data_dir);
    log_leads(&client, "LEAD", 3, 3).await;
    signed_at(&client, &new_key, 3).await;
    let (code, out, err) = witness_round(&server.url, &[&old_key], &state, false).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no signature by key") && err.contains("no handover"),
        "{err}"
    );
    let kept = std::fs::read_to_string(&state).unwrap();
    assert!(kept.contains("\n2\n"), "nothing refused is kept: {kept}");

    // Given the new key explicitly, the witness takes it: the log only grew.
    let (code, out, err) = witness_round(&server.url, &[&old_key, &new_key], &state, false).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tree size 3"), "{out}");
}
