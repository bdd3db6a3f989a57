//! What a verifier outside the server holds and does, for the checkpoint,
//! proof, key rotation and witness tests: a server's verifier key (as
//! `--print-verifier-key` prints it), the checkpoint that covers a size,
//! the leaf hashes of `audit.log` and proof hashes as the verifier takes
//! them, and one round of the witness
//! (`auditlog checkpoint watch --once`).

use std::path::Path;

use auditlog_client::proof::{Hash, VerifierKey, leaf_hash};
use auditlog_client::{Client, NewEvent, VerifiedCheckpoint};

use super::disk::read_lines;
use super::runs::cli;
use super::server::TestServer;
use super::wait::wait_until;

/// Logs one `lead_ingested` event for each of the leads `{tag}-{from}` to
/// `{tag}-{to}`, one call each.
pub(crate) async fn log_leads(client: &Client, tag: &str, from: u64, to: u64) {
    for n in from..=to {
        client
            .log(NewEvent::lead_ingested(format!("{tag}-{n}"), "webform"))
            .await
            .unwrap();
    }
}

/// The verifier key of the server on `dir`, as `--print-verifier-key`
/// prints it.
pub(crate) fn verifier_key(dir: &Path) -> String {
    auditlog_server::verifier_key(&auditlog_server::Config {
        data_dir: dir.to_path_buf(),
        ..auditlog_server::Config::default()
    })
    .unwrap()
}

/// [`verifier_key`], parsed as a verifier trusts it.
pub(crate) fn trusted_key(dir: &Path) -> VerifierKey {
    VerifierKey::parse(&verifier_key(dir)).unwrap()
}

/// The verifier key of another log: a second server's, started for it.
pub(crate) async fn other_logs_key() -> String {
    let other = TestServer::start().await;
    verifier_key(&other.data_dir)
}

/// The server's latest checkpoint, checked with `key`, once it holds
/// `size` records.
pub(crate) async fn checkpoint_of(
    client: &Client,
    key: &VerifierKey,
    size: u64,
) -> VerifiedCheckpoint {
    wait_until(&format!("a checkpoint of {size} records"), || async {
        match client.verified_checkpoint(key, true).await {
            Ok(c) if c.checkpoint.size == size => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// [`checkpoint_of`] for a test that holds the key as text.
pub(crate) async fn signed_at(client: &Client, key: &str, size: u64) {
    checkpoint_of(client, &VerifierKey::parse(key).unwrap(), size).await;
}

/// The leaf hashes of the lines in the server's `audit.log`, computed here.
pub(crate) fn file_leaves(server: &TestServer) -> Vec<Hash> {
    read_lines(&server.log_path())
        .iter()
        .map(|l| leaf_hash(l.as_bytes()))
        .collect()
}

/// A proof's hashes as the verifier takes them (each 32 bytes).
pub(crate) fn proof_hashes(hashes: &[impl AsRef<[u8]>]) -> Vec<Hash> {
    hashes
        .iter()
        .map(|h| h.as_ref().try_into().unwrap())
        .collect()
}

/// One round of the witness against `url`, trusting each of `keys`, keeping
/// its checkpoint in `state`, printing JSON when `json`: exit code, stdout,
/// stderr.
pub(crate) async fn witness_round(
    url: &str,
    keys: &[&str],
    state: &Path,
    json: bool,
) -> (i32, String, String) {
    let mut args = vec!["checkpoint", "watch", "--state", state.to_str().unwrap()];
    for key in keys {
        args.extend(["--key", key]);
    }
    args.push("--once");
    if json {
        args.push("--json");
    }
    cli(url, &args).await
}

/// [`witness_round`] keeping the log itself in `mirror` too
/// (`--mirror`), trusting `key`, printing JSON when `json`.
pub(crate) async fn mirror_round(
    url: &str,
    key: &str,
    state: &Path,
    mirror: &Path,
    json: bool,
) -> (i32, String, String) {
    let mut args = vec![
        "checkpoint",
        "watch",
        "--key",
        key,
        "--state",
        state.to_str().unwrap(),
        "--mirror",
        mirror.to_str().unwrap(),
        "--once",
    ];
    if json {
        args.push("--json");
    }
    cli(url, &args).await
}
