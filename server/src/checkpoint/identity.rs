//! Whether the checkpoint signing key a start finds is the identity this
//! log's checkpoints were signed with.
//!
//! A checkpoint is signed by a key named after the log's origin, and
//! witnesses trust that one key (docs/proofs.md). A start under another key
//! or origin signs the same log under a new identity with no handover,
//! which every witness sees as a fork or a rewritten log; a start that drops
//! the kept checkpoint (`checkpoint.note`) no longer knows what the next
//! checkpoint must extend. Until 2026-12-06 a deleted `checkpoint.key` was
//! generated anew and a note that did not verify was ignored, with a
//! warning, and the server went on serving (found by an outside attack).
//! Now the start is refused, saying what was found and how to go on:
//!
//! - the key file is missing while the directory shows signed checkpoints
//!   (a kept note, retired keys, or a tree over the log, which the server
//!   signs every [`super::EVERY`] while it grows): [`IdentityError::KeyMissing`];
//! - the kept note is signed by other keys only: [`IdentityError::OtherKey`],
//!   or [`IdentityError::OtherOrigin`] when it is this key under another
//!   name (`checkpoint_origin`, by default the host name, changed);
//! - the kept note is not a signed checkpoint, or this key's signature on
//!   it does not match: [`IdentityError::NoteDamaged`]. The note is not a
//!   cache: it is the one record in the directory of what was signed, which
//!   every later checkpoint must extend and VerifyIntegrity checks the log
//!   against, so it is not silently dropped.
//!
//! A first start (no note, no retired key, an empty tree) generates the key
//! as before. A key file replaced by hand and the note moved away (the way
//! to a new identity when the old key is lost) starts, as documented.

use std::path::Path;

use auditlog_proof::{Checkpoint, NoteSigner, VerifierKey, note_signers};

use super::NOTE_FILE;
use super::rotation::{CheckpointKeyError, RETIRED_FILE};

/// Why the signing key is not the identity the log's checkpoints have.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{key} is missing, but this log's checkpoints were signed before ({evidence}): a new key \
         would sign the same log under another identity, which every witness sees as a fork, \
         so the server does not start. Restore {key} from a backup. If the key is lost for \
         good, no handover is possible (--rotate-checkpoint-key signs one with the old key, and \
         refuses without it): to go on under a new identity, write a new key (openssl rand -hex \
         32 > {key} && chmod 600 {key}), move {note} out of the data directory, and give \
         witnesses the new verifier key (auditlog-server --print-verifier-key) directly"
    )]
    KeyMissing {
        key: String,
        note: String,
        evidence: String,
    },
    #[error(
        "{note} holds a checkpoint signed by {signers}, but {key} holds another key ({current}): \
         the key file was replaced, and the server would sign this log under another identity, \
         which every witness sees as a fork, so it does not start. Restore the key that signed \
         it from a backup. If that key is lost for good, no handover is possible \
         (--rotate-checkpoint-key signs one with the old key): to go on under the key in {key}, \
         move {note} out of the data directory and give witnesses the new verifier key \
         (auditlog-server --print-verifier-key) directly"
    )]
    OtherKey {
        note: String,
        signers: String,
        key: String,
        current: String,
    },
    #[error(
        "{note} is a checkpoint of origin {got:?}, but checkpoint_origin is {want:?} (by \
         default auditlog/<host name>, which changes with the host name): the origin is the \
         signing key's name, so the server would sign this log under another identity, which \
         every witness sees as a fork, and it does not start. Set checkpoint_origin = {got:?} \
         (AUDITLOG_CHECKPOINT_ORIGIN) to go on as before; to take the new origin instead, move \
         {note} out of the data directory and give witnesses the new verifier key \
         (auditlog-server --print-verifier-key) directly"
    )]
    OtherOrigin {
        note: String,
        got: String,
        want: String,
    },
    #[error(
        "{note} does not verify with the checkpoint signing key ({reason}): it holds the latest \
         checkpoint the server signed, which every new one must extend, and it was changed \
         outside the server, so the server does not start. Restore it from a backup. To start \
         without it, move it out of the data directory: the server then signs the log as it \
         finds it, and only the checkpoints witnesses kept can show whether that extends what \
         was signed before"
    )]
    NoteDamaged { note: String, reason: String },
}

/// The records the Merkle tree's files in `data_dir` hold, read before the
/// store opens them (0 when there are none): the leaf hashes, 32 bytes
/// each, in `tree/level-00` (`store/tree/levels.rs`).
fn leaves_on_disk(data_dir: &Path) -> u64 {
    std::fs::metadata(data_dir.join("tree").join("level-00")).map_or(0, |m| m.len() / 32)
}

/// What `data_dir` shows of checkpoints signed before this start, as the
/// refusal says it; `None` for a log never signed (a first start).
fn signed_before(data_dir: &Path) -> Option<String> {
    let note_path = data_dir.join(NOTE_FILE);
    if let Ok(note) = std::fs::read_to_string(&note_path) {
        return Some(format!("{} holds {}", note_path.display(), describe(&note)));
    }
    if note_path.exists() {
        return Some(format!("{} exists", note_path.display()));
    }
    let retired = data_dir.join(RETIRED_FILE);
    if retired.exists() {
        return Some(format!(
            "{} lists the keys it rotated from",
            retired.display()
        ));
    }
    match leaves_on_disk(data_dir) {
        0 => None,
        n => Some(format!(
            "its Merkle tree in {} holds {n} records, and checkpoints of it are signed as it grows",
            data_dir.join("tree").display()
        )),
    }
}

/// A kept note as the refusal names it: its tree size and who claims to
/// have signed it, nothing verified.
fn describe(note: &str) -> String {
    let size = note
        .rsplit_once("\n\n")
        .and_then(|(body, _)| Checkpoint::parse(&format!("{body}\n")).ok())
        .map(|c| c.size);
    match (size, note_signers(note)) {
        (Some(size), Ok(signers)) => format!(
            "a checkpoint of tree size {size} signed by {}",
            named(&signers)
        ),
        _ => "a note that is not a signed checkpoint".to_owned(),
    }
}

/// `key NAME+ID`, or `keys A+ID and B+ID`.
fn named(signers: &[(String, u32)]) -> String {
    let keys: Vec<String> = signers
        .iter()
        .map(|(name, id)| format!("{name}+{id:08x}"))
        .collect();
    match keys.as_slice() {
        [one] => format!("key {one}"),
        _ => format!("keys {}", keys.join(" and ")),
    }
}

/// Refuses to generate a key at `key_path` for a log whose checkpoints were
/// signed before.
pub(super) fn refuse_new_key(key_path: &Path, data_dir: &Path) -> Result<(), CheckpointKeyError> {
    match signed_before(data_dir) {
        None => Ok(()),
        Some(evidence) => Err(IdentityError::KeyMissing {
            key: key_path.display().to_string(),
            note: data_dir.join(NOTE_FILE).display().to_string(),
            evidence,
        }
        .into()),
    }
}

/// The checkpoint kept in `data_dir` with its note, checked with `signer`'s
/// key (made from `seed`, read from `key_path`); `None` when there is none.
/// Refused when it is there and does not verify (see the module doc).
pub(super) fn kept_checkpoint(
    signer: &NoteSigner,
    seed: &[u8; 32],
    key_path: &Path,
    data_dir: &Path,
) -> Result<Option<(Checkpoint, String)>, CheckpointKeyError> {
    let note_path = data_dir.join(NOTE_FILE);
    let note = match std::fs::read(&note_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointKeyError::Io {
                path: note_path.display().to_string(),
                source,
            });
        }
    };
    let damaged = |reason: String| IdentityError::NoteDamaged {
        note: note_path.display().to_string(),
        reason,
    };
    let note = String::from_utf8(note).map_err(|_| damaged("it is not UTF-8 text".into()))?;
    let verifier =
        VerifierKey::parse(&signer.verifier_key()).map_err(CheckpointKeyError::Origin)?;
    let error = match verifier.open_checkpoint(&note) {
        Ok(checkpoint) => return Ok(Some((checkpoint, note))),
        Err(e) => e,
    };
    let signers = note_signers(&note).map_err(|e| damaged(e.to_string()))?;
    if signers.contains(&(verifier.name.clone(), verifier.id)) {
        return Err(damaged(error.to_string()).into());
    }
    // This key under the note's own origin: only the name changed.
    let body = note
        .rsplit_once("\n\n")
        .and_then(|(body, _)| Checkpoint::parse(&format!("{body}\n")).ok());
    if let Some(body) = body
        && body.origin != verifier.name
        && NoteSigner::new(&body.origin, seed)
            .ok()
            .and_then(|other| VerifierKey::parse(&other.verifier_key()).ok())
            .is_some_and(|other| other.open_checkpoint(&note).is_ok())
    {
        return Err(IdentityError::OtherOrigin {
            note: note_path.display().to_string(),
            got: body.origin,
            want: verifier.name.clone(),
        }
        .into());
    }
    Err(IdentityError::OtherKey {
        note: note_path.display().to_string(),
        signers: named(&signers),
        key: key_path.display().to_string(),
        current: signer.verifier_key(),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoints;

    const ORIGIN: &str = "auditlog/test";

    fn signer(origin: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(origin, &[seed; 32]).unwrap()
    }

    fn checkpoint(size: u64) -> Checkpoint {
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: [7; 32],
        }
    }

    fn kept(dir: &Path, seed: u8, origin: &str) -> Result<Option<u64>, CheckpointKeyError> {
        let key = dir.join("checkpoint.key");
        kept_checkpoint(&signer(origin, seed), &[seed; 32], &key, dir)
            .map(|c| c.map(|(c, _)| c.size))
    }

    #[test]
    fn a_kept_note_is_read_back_or_refused_for_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let note = dir.path().join(NOTE_FILE);
        assert!(matches!(kept(dir.path(), 1, ORIGIN), Ok(None)));
        std::fs::write(&note, signer(ORIGIN, 1).sign_checkpoint(&checkpoint(5))).unwrap();
        assert!(matches!(kept(dir.path(), 1, ORIGIN), Ok(Some(5))));

        let refused = |seed, origin| match kept(dir.path(), seed, origin) {
            Err(CheckpointKeyError::Identity(e)) => e,
            other => panic!("{other:?}"),
        };
        let other_key = refused(2, ORIGIN);
        assert!(
            matches!(other_key, IdentityError::OtherKey { .. }),
            "{other_key:?}"
        );
        let key_id = VerifierKey::parse(&signer(ORIGIN, 1).verifier_key())
            .unwrap()
            .id;
        assert!(
            other_key
                .to_string()
                .contains(&format!("{ORIGIN}+{key_id:08x}")),
            "{other_key}"
        );
        let other_origin = refused(1, "auditlog/renamed");
        assert!(
            matches!(&other_origin, IdentityError::OtherOrigin { got, .. } if got == ORIGIN),
            "{other_origin:?}"
        );
        std::fs::write(&note, "garbage\n").unwrap();
        assert!(matches!(
            refused(1, ORIGIN),
            IdentityError::NoteDamaged { .. }
        ));
        // The size changed under this key's signature.
        let signed = signer(ORIGIN, 1).sign_checkpoint(&checkpoint(5));
        std::fs::write(&note, signed.replacen("\n5\n", "\n6\n", 1)).unwrap();
        assert!(matches!(
            refused(1, ORIGIN),
            IdentityError::NoteDamaged { .. }
        ));
    }

    #[test]
    fn a_key_is_generated_only_for_a_log_never_signed() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("checkpoint.key");
        assert!(refuse_new_key(&key, dir.path()).is_ok());
        // A tree over the log: signed every 500 ms while it grows.
        std::fs::create_dir(dir.path().join("tree")).unwrap();
        std::fs::write(dir.path().join("tree/level-00"), [0u8; 32 * 3]).unwrap();
        let refused = refuse_new_key(&key, dir.path()).unwrap_err().to_string();
        assert!(refused.contains("holds 3 records"), "{refused}");
        let first = Checkpoints::load(ORIGIN, None, dir.path(), true);
        assert!(first.is_err(), "generated a key beside a tree");
        assert!(!key.exists());
        std::fs::remove_dir_all(dir.path().join("tree")).unwrap();
        Checkpoints::load(ORIGIN, None, dir.path(), true).unwrap();
        std::fs::write(
            dir.path().join(NOTE_FILE),
            signer(ORIGIN, 1).sign_checkpoint(&checkpoint(9)),
        )
        .unwrap();
        std::fs::remove_file(&key).unwrap();
        let refused = refuse_new_key(&key, dir.path()).unwrap_err().to_string();
        let key_id = VerifierKey::parse(&signer(ORIGIN, 1).verifier_key())
            .unwrap()
            .id;
        assert!(
            refused.contains(&format!("tree size 9 signed by key {ORIGIN}+{key_id:08x}")),
            "{refused}"
        );
    }
}
