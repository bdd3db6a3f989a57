//! Signed checkpoints of the log's Merkle tree: a C2SP tlog-checkpoint body
//! (origin, tree size, root hash) signed as a C2SP signed note with Ed25519
//! (formats in the `auditlog-proof` crate; the trust model in
//! docs/proofs.md).
//!
//! The signing key is 32 random bytes generated once into
//! `<data_dir>/checkpoint.key` (64 hex characters, mode 0600), or the file
//! `checkpoint_key_file` names. Its name is the log's origin,
//! `checkpoint_origin`, by default `auditlog/<host name>`. A cluster has
//! one checkpoint identity: every node signs with the one key in
//! `checkpoint_key_file` under the one `checkpoint_origin` (both required,
//! the key never generated: [`require_shared_key`]), so nodes at the same
//! tree size sign byte-identical checkpoints (Ed25519 is deterministic)
//! and a witness may follow any node. The latest
//! checkpoint is kept in `<data_dir>/checkpoint.note`, replaced whole, so a
//! restart serves it again and verification can check it against the log.
//! A start whose key is not the identity the kept checkpoints were signed
//! with (the key file missing, replaced, or under another origin), or whose
//! kept note does not verify, is refused (`identity.rs`), before the server
//! announces anything.
//!
//! Invariants: a checkpoint is signed off the request path (a task, at most
//! every [`EVERY`] while the tree grows) or on demand, never by the writer;
//! a checkpoint is only ever signed for a tree that extends the latest one
//! (its root at the latest one's size is the latest one's root), so the
//! server never signs two views of its log that a witness would see as a
//! fork.
//!
//! The key can be rotated while the server is stopped (`rotation.rs`): the
//! retired keys and their handovers are loaded here and served with the
//! latest checkpoint. Each checkpoint pushed out (`publish.rs`) is also
//! announced on a watch, which the webhook endpoints that take checkpoints
//! read (`crate::webhooks`), so only the latest one ever waits there.

mod identity;
mod publish;
mod rotation;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditlog_proof::{Checkpoint, Hash, NoteSigner};
use tokio_util::sync::CancellationToken;

use crate::keys::{KeyError, load_or_generate};
use crate::store::Store;
use crate::store::tree::{Tree, TreeError};

pub(crate) use identity::IdentityError;
pub use publish::CheckpointsConfig;
pub(crate) use publish::run as publish;
pub(crate) use rotation::CheckpointKeyError;
pub use rotation::Rotated;
pub(crate) use rotation::{RetiredKey, key_path, rotate};

/// The generated signing key's file in the data directory.
pub(crate) const KEY_FILE: &str = "checkpoint.key";
/// The latest signed checkpoint's file in the data directory.
pub(crate) const NOTE_FILE: &str = "checkpoint.note";
/// The files the checkpoints keep in the data directory beside the key: the
/// latest signed checkpoint and the retired keys (what a backup copies).
pub(crate) const KEPT_FILES: [&str; 2] = [NOTE_FILE, rotation::RETIRED_FILE];
/// How often the tree is looked at for a new checkpoint.
pub(crate) const EVERY: Duration = Duration::from_millis(500);

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signed {
    pub(crate) size: u64,
    pub(crate) root: Hash,
    /// The signed note, exactly as signed.
    pub(crate) note: String,
}

/// The signer and the latest checkpoint.
pub struct Checkpoints {
    signer: NoteSigner,
    origin: String,
    note_path: PathBuf,
    latest: Mutex<Option<Signed>>,
    /// The latest checkpoint's tree size, for callers waiting for one that
    /// covers their receipt.
    signed_size: tokio::sync::watch::Sender<u64>,
    /// The keys signing before this one, oldest first.
    retired: Vec<RetiredKey>,
    /// The latest checkpoint pushed out, for the webhooks taking them.
    published: tokio::sync::watch::Sender<Option<Signed>>,
}

/// The default origin: `auditlog/<host name>`.
pub(crate) fn default_origin() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.contains(|c: char| c.is_whitespace() || c == '+'))
        .unwrap_or_else(|| "localhost".into());
    format!("auditlog/{host}")
}

/// In cluster mode: the shared key file `key_file` must exist and hold a
/// key; it is never generated, since a key generated on one node would give
/// the cluster a second checkpoint identity. Checked before a node starts;
/// [`Checkpoints::load`] refuses the same later.
pub(crate) fn require_shared_key(key_file: &Path) -> Result<(), CheckpointKeyError> {
    load_seed(Some(key_file), Path::new("."), false).map(drop)
}

/// The signing key: `key_file` or `<data_dir>/checkpoint.key`, generated
/// when it does not exist if `generate` (not for a cluster's shared key).
fn load_seed(
    key_file: Option<&Path>,
    data_dir: &Path,
    generate: bool,
) -> Result<[u8; 32], CheckpointKeyError> {
    let path = rotation::key_path(key_file, data_dir);
    if !generate && !path.exists() {
        return Err(CheckpointKeyError::NoSharedKey {
            path: path.display().to_string(),
        });
    }
    let hex_text = load_or_generate(&path, "checkpoint signing")?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(&hex_text, &mut seed).map_err(|_| KeyError::Read {
        path: path.display().to_string(),
        source: std::io::Error::other(
            "a checkpoint signing key file holds 64 hex characters (32 bytes)",
        ),
    })?;
    Ok(seed)
}

impl Checkpoints {
    /// Loads (or, if `generate`, generates) the signing key and the latest
    /// checkpoint kept in `data_dir`. Refused when the key is not the
    /// identity the log's checkpoints were signed with (`identity.rs`): a
    /// missing key for a log signed before, a kept checkpoint that does not
    /// verify with it.
    pub(crate) fn load(
        origin: &str,
        key_file: Option<&Path>,
        data_dir: &Path,
        generate: bool,
    ) -> Result<Checkpoints, CheckpointKeyError> {
        let key_path = rotation::key_path(key_file, data_dir);
        rotation::finish_pending(origin, &key_path, data_dir)?;
        if generate && !key_path.exists() {
            identity::refuse_new_key(&key_path, data_dir)?;
        }
        let seed = load_seed(key_file, data_dir, generate)?;
        let bad_origin = |e: auditlog_proof::NoteError| KeyError::Read {
            path: "checkpoint_origin".into(),
            source: std::io::Error::other(e.to_string()),
        };
        let signer = NoteSigner::new(origin, &seed).map_err(bad_origin)?;
        let retired = rotation::load_retired(data_dir)?;
        if let Some(last) = retired.last()
            && last.successor != signer.verifier_key()
        {
            tracing::warn!(retired = %data_dir.join(rotation::RETIRED_FILE).display(), "the checkpoint signing key is not the one the last rotation handed over to: witnesses will refuse its checkpoints; rotate with auditlog-server --rotate-checkpoint-key instead of replacing the key file");
        }
        let note_path = data_dir.join(NOTE_FILE);
        let latest = identity::kept_checkpoint(&signer, &seed, &key_path, data_dir)?.map(
            |(checkpoint, note)| Signed {
                size: checkpoint.size,
                root: checkpoint.root,
                note,
            },
        );
        let size = latest.as_ref().map_or(0, |l| l.size);
        Ok(Checkpoints {
            signer,
            origin: origin.to_owned(),
            note_path,
            latest: Mutex::new(latest),
            signed_size: tokio::sync::watch::Sender::new(size),
            retired,
            published: tokio::sync::watch::Sender::new(None),
        })
    }

    /// The keys the log signed with before this one, oldest first.
    pub(crate) fn retired(&self) -> &[RetiredKey] {
        &self.retired
    }

    /// Announces `signed` as pushed out, when it is newer than the last
    /// one announced.
    pub(crate) fn announce(&self, signed: &Signed) {
        self.published.send_if_modified(|last| {
            let newer = last.as_ref().is_none_or(|l| signed.size > l.size);
            if newer {
                *last = Some(signed.clone());
            }
            newer
        });
    }

    /// The latest checkpoint pushed out, as it changes.
    pub(crate) fn published(&self) -> tokio::sync::watch::Receiver<Option<Signed>> {
        self.published.subscribe()
    }

    /// The verifier key, `name+keyid+base64(0x01 ‖ key)`.
    pub(crate) fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The latest signed checkpoint, if any was ever signed.
    pub(crate) fn latest(&self) -> Option<Signed> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }

    /// The first checkpoint whose tree holds `seq`, waiting until `until`
    /// at most for it to be signed; `None` when none was in time.
    pub(crate) async fn covering(&self, seq: u64, until: tokio::time::Instant) -> Option<Signed> {
        let mut sizes = self.signed_size.subscribe();
        let covered = tokio::time::timeout_at(until, sizes.wait_for(|size| *size >= seq)).await;
        match covered {
            Ok(Ok(_)) => self.latest().filter(|l| l.size >= seq),
            _ => None,
        }
    }

    /// Signs the tree as it is now if it is larger than the latest
    /// checkpoint (or there is none), and returns the latest. Blocking (it
    /// reads the tree and replaces the kept note).
    pub(crate) fn sign(&self, tree: &Tree) -> Result<Option<Signed>, TreeError> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let size = tree.size();
        let newer = latest.as_ref().is_none_or(|l| size > l.size);
        // An empty tree is not signed: there is nothing to vouch for yet.
        if !newer || size == 0 {
            return Ok(latest.clone());
        }
        if let Some(prev) = latest.as_ref()
            && tree.root(prev.size)? != prev.root
        {
            return Err(TreeError::Unavailable(format!(
                "the log no longer matches the latest signed checkpoint (tree size {}): it was \
                 changed or rolled back, so no new checkpoint is signed; run VerifyIntegrity",
                prev.size
            )));
        }
        let root = tree.root(size)?;
        let note = self.signer.sign_checkpoint(&Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
        });
        if let Err(e) = crate::durable::replace(&self.note_path, note.as_bytes()) {
            // Still served: only the copy for the next start is missing.
            tracing::warn!(path = %self.note_path.display(), error = %e, "cannot keep the latest checkpoint");
        }
        let signed = Signed { size, root, note };
        *latest = Some(signed.clone());
        self.signed_size.send_replace(size);
        Ok(Some(signed))
    }
}

/// Signs a checkpoint whenever the tree has grown, looking every [`EVERY`],
/// until shutdown.
pub(crate) async fn run(
    checkpoints: Arc<Checkpoints>,
    store: Arc<Store>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let grown = checkpoints
            .latest()
            .is_none_or(|l| store.tree().size() > l.size);
        if !grown {
            continue;
        }
        let (c, s) = (Arc::clone(&checkpoints), Arc::clone(&store));
        match tokio::task::spawn_blocking(move || c.sign(s.tree())).await {
            Ok(Ok(_)) => failing = false,
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::error!(error = %e, "cannot sign a checkpoint");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_generated_once_and_the_kept_checkpoint_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = Checkpoints::load("auditlog/test", None, dir.path(), true).unwrap();
        let b = Checkpoints::load("auditlog/test", None, dir.path(), true).unwrap();
        assert_eq!(a.verifier_key(), b.verifier_key());
        assert!(a.verifier_key().starts_with("auditlog/test+"));
        let other = Checkpoints::load("auditlog/other", None, dir.path(), true).unwrap();
        assert_ne!(a.verifier_key(), other.verifier_key());
        assert!(Checkpoints::load("bad name", None, dir.path(), true).is_err());
    }
}
