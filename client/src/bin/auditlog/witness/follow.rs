//! The keys a witness trusts, and following the log's key rotations.
//!
//! A witness trusts the keys given with `--key`, and each key it followed a
//! rotation to. It follows a rotation only through a handover the server
//! shows among its retired keys (GetCheckpoint `retired_keys`): the
//! checkpoint at the rotation, as a note signed by a key the witness trusts
//! and by the new key, which must extend the kept checkpoint like any
//! other. So only the holder of a trusted private key can hand trust on.
//!
//! The keys followed are kept in `<state>.keys`, a JSON list of `{"key",
//! "handover"}`, replaced whole. It is checked again at every start, each
//! handover against the keys trusted before it, so the file cannot add a
//! key by itself. It is written before the state file takes the handover,
//! so a crash between the two leaves a state that the keys still open.

use std::path::{Path, PathBuf};

use auditlog_client::Client;
use auditlog_client::pb;
use auditlog_client::proof::{Checkpoint, NoteError, VerifierKey, note_signers};

use super::{extends, keep, read_kept};
use crate::CliError;

/// One key followed: the new key and the handover that passed trust on.
#[derive(Debug, Clone)]
struct Followed {
    key: String,
    handover: String,
}

/// The keys trusted, given and followed.
pub(super) struct Trust {
    keys: Vec<VerifierKey>,
    followed: Vec<Followed>,
    file: PathBuf,
}

impl Trust {
    /// The keys given, and the ones followed before (`<state>.keys`), each
    /// checked again.
    pub(super) fn load(keys: Vec<VerifierKey>, state: &Path) -> Result<Trust, CliError> {
        let mut name = state.as_os_str().to_owned();
        name.push(".keys");
        let mut trust = Trust {
            keys,
            followed: Vec::new(),
            file: PathBuf::from(name),
        };
        let text = match std::fs::read_to_string(&trust.file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(trust),
            Err(e) => {
                return Err(CliError::Io(format!(
                    "cannot read {}: {e}",
                    trust.file.display()
                )));
            }
        };
        let bad = |why: String| {
            CliError::Failed(format!(
                "{} does not hold key rotations this witness followed: {why} (delete it to trust \
                 only the keys given with --key)",
                trust.file.display()
            ))
        };
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for entry in list {
            let field = |name: &str| {
                entry[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("an entry has no \"{name}\"")))
            };
            let f = Followed {
                key: field("key")?,
                handover: field("handover")?,
            };
            let key = VerifierKey::parse(&f.key).map_err(|e| bad(e.to_string()))?;
            trust.open(&f.handover).map_err(|e| bad(e.to_string()))?;
            key.open_checkpoint(&f.handover)
                .map_err(|e| bad(e.to_string()))?;
            trust.keys.push(key);
            trust.followed.push(f);
        }
        Ok(trust)
    }

    /// `note` checked with a trusted key. A note none of them signed is
    /// `NoSignature` (by the first key); a bad signature by any is refused.
    pub(super) fn open(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let mut unsigned = None;
        for key in &self.keys {
            match key.open_checkpoint(note) {
                Ok(c) => return Ok(c),
                Err(e @ NoteError::NoSignature { .. }) => {
                    unsigned.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(unsigned.unwrap_or(NoteError::Malformed("no key to check it with")))
    }

    fn trusts(&self, key: &VerifierKey) -> bool {
        self.keys.contains(key)
    }
}

/// Follows each rotation the server shows from a trusted key to one not
/// yet trusted, in order; true when it followed at least one. A handover
/// that does not verify, or that does not extend the kept checkpoint, ends
/// the witness.
pub(super) async fn rotations(
    client: &Client,
    trust: &mut Trust,
    response: &pb::GetCheckpointResponse,
    state: &Path,
    json: bool,
) -> Result<bool, CliError> {
    let mut followed = false;
    loop {
        let mut next = None;
        for retired in &response.retired_keys {
            let (Ok(old), Ok(new)) = (
                VerifierKey::parse(&retired.verifier_key),
                VerifierKey::parse(&retired.successor_key),
            ) else {
                continue;
            };
            if trust.trusts(&old) && !trust.trusts(&new) {
                next = Some((old, new, retired));
                break;
            }
        }
        let Some((old, new, retired)) = next else {
            return Ok(followed);
        };
        let bad = |e: NoteError| {
            CliError::Failed(format!(
                "refused the handover from key {}+{:08x} to {}+{:08x}: {e}",
                old.name, old.id, new.name, new.id
            ))
        };
        let handover = old.open_checkpoint(&retired.handover_note).map_err(bad)?;
        new.open_checkpoint(&retired.handover_note).map_err(bad)?;
        if let Some(kept) = read_kept(trust, state)? {
            extends(client, &kept, &handover).await?;
        }
        trust.followed.push(Followed {
            key: retired.successor_key.clone(),
            handover: retired.handover_note.clone(),
        });
        let list: Vec<serde_json::Value> = trust
            .followed
            .iter()
            .map(|f| serde_json::json!({ "key": f.key, "handover": f.handover }))
            .collect();
        keep(
            &trust.file,
            &format!("{:#}\n", serde_json::Value::Array(list)),
        )?;
        keep(state, &retired.handover_note)?;
        let (name, id) = (new.name.clone(), new.id);
        trust.keys.push(new);
        followed = true;
        if json {
            say!(
                "{}",
                serde_json::json!({
                    "followed_rotation": retired.successor_key,
                    "from_key": retired.verifier_key,
                    "handover_size": handover.size,
                })
            );
        } else {
            say!(
                "OK: followed the key rotation at tree size {} from {}+{:08x} to {}+{:08x}: the \
                 handover is signed by both",
                handover.size,
                old.name,
                old.id,
                name,
                id
            );
        }
    }
}

/// The refusal of a checkpoint no trusted key signed and no handover
/// explains, naming who did sign it.
pub(super) fn unknown_key(e: NoteError, note: &str) -> CliError {
    let signers = note_signers(note)
        .map(|s| {
            s.iter()
                .map(|(name, id)| format!("{name}+{id:08x}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    CliError::Failed(format!(
        "refused the log's latest checkpoint: {e}; it is signed by {signers}, and the server shows \
         no handover to that key co-signed by a key this witness trusts: if the log's operator \
         rotated its signing key, get the new verifier key from a channel you trust and pass it \
         with another --key"
    ))
}
