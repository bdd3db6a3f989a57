//! Rotating the checkpoint signing key (`auditlog-server
//! --rotate-checkpoint-key`, run while the server is stopped: it takes the
//! data directory's lock).
//!
//! A rotation signs a handover: the latest checkpoint (the empty tree for a
//! directory without a log; a log without a checkpoint is refused, since a
//! handover of the empty tree would look like a rollback to a witness, and
//! so are a missing key and a kept checkpoint the key does not verify, as
//! at start: `identity.rs`) as one note carrying two signatures, by the old
//! key and by the new one. A witness that trusts the old key checks both
//! and from then on trusts the new one (docs/proofs.md). The old public key
//! is kept in `<data_dir>/checkpoint.retired.json`, oldest first, with the
//! tree sizes it signed, its handover and its successor, and served by
//! GetCheckpoint; the old private key is gone once the rotation is done.
//!
//! The steps, each durable before the next:
//! 1. the new key is written to `<key file>.next` (mode 0600);
//! 2. the list of retired keys is replaced with one naming the old key,
//!    its handover and the new key as its successor;
//! 3. `checkpoint.note` is replaced with the handover, which the new key
//!    verifies, so the next checkpoint extends it;
//! 4. `<key file>.next` is renamed over the key file.
//!
//! A crash before step 2 leaves a `.next` that no list names: the next
//! start (or rotation) deletes it, and the old key stays. A crash after
//! step 2 leaves a `.next` that the list names as the last successor: the
//! next start finishes steps 3 and 4. So the server never signs with a key
//! whose handover is not kept, nor keeps a handover for a key it lost.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use auditlog_proof::{Checkpoint, NoteSigner, empty_root};
use serde::{Deserialize, Serialize};

use super::{KEY_FILE, NOTE_FILE};
use crate::durable;

/// The retired keys' file in the data directory.
pub(crate) const RETIRED_FILE: &str = "checkpoint.retired.json";

/// A key the log no longer signs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetiredKey {
    /// Its verifier key, `name+keyid+base64(0x01 ‖ key)`.
    pub(crate) verifier_key: String,
    /// The tree size of the handover that made it current (0: the log's
    /// first key).
    pub(crate) from_size: u64,
    /// The tree size of its own handover, the last checkpoint it signed.
    pub(crate) to_size: u64,
    /// The handover note, signed by it and by `successor`.
    pub(crate) handover: String,
    /// The verifier key that took over.
    pub(crate) successor: String,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The retired verifier key.
    pub old_key: String,
    /// The verifier key signing from now on.
    pub new_key: String,
    /// The handover's tree size.
    pub handover_size: u64,
}

/// Why the signing key could not be loaded or rotated.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointKeyError {
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Identity(#[from] super::IdentityError),
    #[error(
        "there is no checkpoint signing key at {path} to rotate: the server generates one on its \
         first start"
    )]
    NoKey { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} does not hold 64 hex characters (a 32-byte Ed25519 key); restore the key file \
         from a backup"
    )]
    BadKey { path: String },
    #[error(
        "{path} is not the list of retired checkpoint keys ({reason}); restore it from a backup: \
         witnesses follow key rotations through it"
    )]
    BadList { path: String, reason: String },
    #[error(
        "{path} does not exist: in cluster mode every node signs checkpoints with one shared \
         key, which the server never generates; make it once with `openssl rand -hex 32 > \
         {path} && chmod 600 {path}` (or copy a single node's <data_dir>/checkpoint.key to keep \
         its witnesses) and put the same file at checkpoint_key_file on every node"
    )]
    NoSharedKey { path: String },
    #[error(
        "--rotate-checkpoint-key is refused in cluster mode: every node signs with the shared \
         key, and a rotation on one node would leave the others signing with the old one, which \
         witnesses then refuse; stop every node once they report the same head, run \
         --rotate-checkpoint-key on one of them with the same data_dir, checkpoint_key_file and \
         checkpoint_origin but without the [cluster] section, copy the new key file and that \
         node's checkpoint.retired.json and checkpoint.note to every other node, then start \
         them (docs/cluster.md, \"Rotating the checkpoint key\")"
    )]
    Clustered,
    #[error("checkpoint_origin: {0}")]
    Origin(auditlog_proof::NoteError),
    #[error(
        "{path} is missing, but the directory holds a log: a handover of the empty tree would \
         look like a rollback to witnesses; start the server once so that it signs a \
         checkpoint of the log, stop it, then rotate"
    )]
    NoCheckpoint { path: String },
}

/// The signing key's file: `key_file`, else `<data_dir>/checkpoint.key`.
pub(crate) fn key_path(key_file: Option<&Path>, data_dir: &Path) -> PathBuf {
    key_file.map_or_else(|| data_dir.join(KEY_FILE), Path::to_path_buf)
}

fn next_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointKeyError {
    let path = path.display().to_string();
    move |source| CheckpointKeyError::Io { path, source }
}

/// The retired keys kept in `data_dir`, oldest first (none when the key
/// was never rotated).
pub(crate) fn load_retired(data_dir: &Path) -> Result<Vec<RetiredKey>, CheckpointKeyError> {
    let path = data_dir.join(RETIRED_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    serde_json::from_str(&text).map_err(|e| CheckpointKeyError::BadList {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A signer from the key file at `path`, and its seed.
fn read_signer(origin: &str, path: &Path) -> Result<(NoteSigner, [u8; 32]), CheckpointKeyError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| CheckpointKeyError::BadKey {
        path: path.display().to_string(),
    })?;
    let signer = NoteSigner::new(origin, &seed).map_err(CheckpointKeyError::Origin)?;
    Ok((signer, seed))
}

fn write_key(path: &Path, seed: &[u8; 32]) -> std::io::Result<()> {
    durable::replace_with(path, |f| {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(hex::encode(seed).as_bytes())
    })
}

fn write_list(data_dir: &Path, retired: &[RetiredKey]) -> Result<(), CheckpointKeyError> {
    let path = data_dir.join(RETIRED_FILE);
    let text = serde_json::to_string_pretty(retired).map_err(|e| CheckpointKeyError::BadList {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    durable::replace(&path, format!("{text}\n").as_bytes()).map_err(io(&path))
}

/// Steps 3 and 4 of a rotation a crash interrupted after step 2; deletes a
/// `.next` key that no handover names (a crash before step 2).
pub(crate) fn finish_pending(
    origin: &str,
    key_path: &Path,
    data_dir: &Path,
) -> Result<(), CheckpointKeyError> {
    let next = next_path(key_path);
    if !next.exists() {
        return Ok(());
    }
    let (signer, _) = read_signer(origin, &next)?;
    let retired = load_retired(data_dir)?;
    let Some(last) = retired
        .last()
        .filter(|r| r.successor == signer.verifier_key())
    else {
        tracing::warn!(path = %next.display(), "deleting a new checkpoint key that a rotation left before its handover was kept; the old key stays");
        return std::fs::remove_file(&next).map_err(io(&next));
    };
    let note = data_dir.join(NOTE_FILE);
    durable::replace(&note, last.handover.as_bytes()).map_err(io(&note))?;
    std::fs::rename(&next, key_path).map_err(io(key_path))?;
    durable::sync_dir(key_path.parent().unwrap_or(Path::new("."))).map_err(io(key_path))?;
    tracing::info!(path = %key_path.display(), "finished a checkpoint key rotation that was interrupted");
    Ok(())
}

/// Rotates the signing key: the steps of the module doc. The caller holds
/// the data directory's lock; `holds_log` says whether the directory holds
/// a log (then a latest checkpoint is required for the handover).
pub(crate) fn rotate(
    origin: &str,
    key_file: Option<&Path>,
    data_dir: &Path,
    holds_log: bool,
) -> Result<Rotated, CheckpointKeyError> {
    let key_path = key_path(key_file, data_dir);
    finish_pending(origin, &key_path, data_dir)?;
    if !key_path.exists() {
        // Without the old key there is no handover to sign: say so, and
        // what can be done, when the log was signed before.
        super::identity::refuse_new_key(&key_path, data_dir)?;
        return Err(CheckpointKeyError::NoKey {
            path: key_path.display().to_string(),
        });
    }
    let (old, seed) = read_signer(origin, &key_path)?;
    // The latest checkpoint the old key signed (a kept note it does not
    // verify is refused as at start), else (for a directory without a log)
    // the empty tree, which every later tree extends.
    let note_path = data_dir.join(NOTE_FILE);
    let latest = match super::identity::kept_checkpoint(&old, &seed, &key_path, data_dir)? {
        Some((latest, _)) => latest,
        None if holds_log => {
            return Err(CheckpointKeyError::NoCheckpoint {
                path: note_path.display().to_string(),
            });
        }
        None => Checkpoint {
            origin: origin.to_owned(),
            size: 0,
            root: empty_root(),
        },
    };
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let new = NoteSigner::new(origin, &seed).map_err(CheckpointKeyError::Origin)?;
    let handover = new
        .cosign(&old.sign_checkpoint(&latest))
        .map_err(CheckpointKeyError::Origin)?;

    let next = next_path(&key_path);
    write_key(&next, &seed).map_err(io(&next))?;
    let mut retired = load_retired(data_dir)?;
    retired.push(RetiredKey {
        verifier_key: old.verifier_key(),
        from_size: retired.last().map_or(0, |r| r.to_size),
        to_size: latest.size,
        handover,
        successor: new.verifier_key(),
    });
    write_list(data_dir, &retired)?;
    finish_pending(origin, &key_path, data_dir)?;
    Ok(Rotated {
        old_key: old.verifier_key(),
        new_key: new.verifier_key(),
        handover_size: latest.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog_proof::VerifierKey;

    #[test]
    fn a_rotation_keeps_the_old_key_and_a_handover_both_keys_verify() {
        let dir = tempfile::tempdir().unwrap();
        let origin = "auditlog/test";
        assert!(matches!(
            rotate(origin, None, dir.path(), false),
            Err(CheckpointKeyError::NoKey { .. })
        ));
        let first = super::super::Checkpoints::load(origin, None, dir.path(), true).unwrap();
        assert!(matches!(
            rotate(origin, None, dir.path(), true),
            Err(CheckpointKeyError::NoCheckpoint { .. })
        ));
        let one = rotate(origin, None, dir.path(), false).unwrap();
        assert_eq!(one.old_key, first.verifier_key());
        let two = rotate(origin, None, dir.path(), false).unwrap();
        assert_eq!(two.old_key, one.new_key);
        let retired = load_retired(dir.path()).unwrap();
        assert_eq!(retired.len(), 2);
        for r in &retired {
            for key in [&r.verifier_key, &r.successor] {
                let key = VerifierKey::parse(key).unwrap();
                assert_eq!(key.open_checkpoint(&r.handover).unwrap().size, 0);
            }
        }
        let now = super::super::Checkpoints::load(origin, None, dir.path(), true).unwrap();
        assert_eq!(now.verifier_key(), two.new_key);
        assert_eq!(now.retired(), &retired[..]);
    }

    #[test]
    fn a_rotation_cut_short_is_undone_before_its_handover_and_finished_after() {
        let dir = tempfile::tempdir().unwrap();
        let origin = "auditlog/test";
        let old = super::super::Checkpoints::load(origin, None, dir.path(), true)
            .unwrap()
            .verifier_key();
        let key_path = key_path(None, dir.path());
        // Step 1 only: the new key is dropped.
        write_key(&next_path(&key_path), &[3; 32]).unwrap();
        let loaded = super::super::Checkpoints::load(origin, None, dir.path(), true).unwrap();
        assert_eq!(loaded.verifier_key(), old);
        assert!(!next_path(&key_path).exists());
        // Steps 1 and 2 (the key file not yet replaced): the next start
        // finishes the rotation.
        let rotated = rotate(origin, None, dir.path(), false).unwrap();
        let seed = std::fs::read_to_string(&key_path).unwrap();
        std::fs::write(&key_path, hex::encode([9u8; 32])).unwrap();
        std::fs::write(next_path(&key_path), seed).unwrap();
        let loaded = super::super::Checkpoints::load(origin, None, dir.path(), true).unwrap();
        assert_eq!(loaded.verifier_key(), rotated.new_key);
    }
}
