//! Self-verifying bundles through the CLI binary: `auditlog bundle export`
//! against a real server, `auditlog bundle verify` offline (the server
//! stopped). A bundle verifies with the log's key; a changed line, a
//! dropped record, a wrong key and another log's checkpoint are each
//! refused with one line that names them.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

use std::path::Path;

use auditlog_client::proof::VerifierKey;
use auditlog_client::{Client, NewEvent};
use common::{TestServer, cli, wait_until};

fn key_text(dir: &Path) -> String {
    auditlog_server::verifier_key(&auditlog_server::Config {
        data_dir: dir.to_path_buf(),
        ..auditlog_server::Config::default()
    })
    .unwrap()
}

async fn signed_note(client: &Client, key: &str, size: u64) -> String {
    let key = VerifierKey::parse(key).unwrap();
    wait_until(&format!("a checkpoint of {size} records"), || async {
        match client.verified_checkpoint(&key, true).await {
            Ok(c) if c.checkpoint.size == size => Ok(c.note),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// `bundle verify FILE [--key KEY]`, offline: the URL names no server.
async fn verify(file: &Path, key: Option<&str>) -> (i32, String, String) {
    let mut args = vec!["bundle", "verify", file.to_str().unwrap()];
    if let Some(key) = key {
        args.extend(["--key", key]);
    }
    cli("http://127.0.0.1:9", &args).await
}

/// Rewrites the bundle's JSON.
fn edit(file: &Path, to: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    change(&mut json);
    std::fs::write(to, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
}

/// A refusal: exit 1 and one line that says `says`.
fn refused((code, out, err): (i32, String, String), says: &str) {
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(says), "wanted {says:?} in {err}");
}

#[tokio::test]
async fn a_bundle_verifies_offline_and_each_change_is_named() {
    let mut server = TestServer::start().await;
    let client = server.client().await;
    for n in 1..=9 {
        let lead = if n % 3 == 0 { "LEAD-A" } else { "LEAD-B" };
        client
            .log(NewEvent::lead_ingested(lead, "webform"))
            .await
            .unwrap();
    }
    let key = key_text(&server.data_dir);
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("lead.bundle.json");
    let out_path = file.to_str().unwrap();
    let (code, out, err) = cli(
        &server.url,
        &["bundle", "export", "--lead", "LEAD-A", "--output", out_path],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("wrote 3 record(s)"), "{out}");
    let range = scratch.path().join("range.bundle.json");
    let (code, out, err) = cli(
        &server.url,
        &[
            "bundle",
            "export",
            "--since",
            "2000-01-01",
            "--output",
            range.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("wrote 9 record(s)"), "{out}");
    let subject = scratch.path().join("subject.bundle.json");
    let (code, out, err) = cli(
        &server.url,
        &[
            "bundle",
            "export",
            "--subject",
            "LEAD-B",
            "--output",
            subject.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("wrote 6 record(s)"), "{out}");

    // Another log, for its key and its checkpoint.
    let other = TestServer::start().await;
    let other_client = other.client().await;
    other_client
        .log(NewEvent::lead_ingested("LEAD-X", "webform"))
        .await
        .unwrap();
    let other_key = key_text(&other.data_dir);
    let other_note = signed_note(&other_client, &other_key, 1).await;
    server.stop().await;

    // Offline, with the log's key and with the bundle's own.
    for f in [&file, &range, &subject] {
        let (code, out, err) = verify(f, Some(&key)).await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with("OK: "), "{out}");
        assert!(out.contains("seqs the export listed are present"), "{out}");
    }
    let (code, out, err) = verify(&file, None).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK: 3 record(s)"), "{out}");
    assert!(err.contains("consistent with itself"), "{err}");

    let bad = scratch.path().join("bad.json");
    edit(&file, &bad, |j| {
        let line = j["records"][1]["line"].as_str().unwrap();
        j["records"][1]["line"] = line.replace("webform", "phone").into();
    });
    refused(
        verify(&bad, Some(&key)).await,
        "seq 6: the line was changed",
    );

    edit(&file, &bad, |j| {
        j["records"][2]["proof"][0] = j["records"][1]["proof"][0].clone();
    });
    refused(
        verify(&bad, Some(&key)).await,
        "seq 9: the inclusion proof is wrong",
    );

    edit(&file, &bad, |j| {
        j["records"].as_array_mut().unwrap().remove(0);
    });
    refused(verify(&bad, Some(&key)).await, "seq 3: listed");

    refused(verify(&file, Some(&other_key)).await, "no signature by key");

    edit(&file, &bad, |j| j["checkpoint"] = other_note.clone().into());
    refused(
        verify(&bad, Some(&key)).await,
        "the bundle's checkpoint is refused",
    );
}
