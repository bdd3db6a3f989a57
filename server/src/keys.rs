//! Keys and secrets: the HMAC keys records and the manifest are signed
//! with, the keyring that names them, and [`Secret`], the configured string
//! that is never printed. The ground floor of the server: nothing here
//! knows the store, the service or the configuration.
//!
//! Every record is signed with HMAC-SHA256 under the key its `key_id` names
//! (the record format is in `store::record`). The active key comes from
//! config (`hmac_key`, `hmac_key_file`, or `AUDITLOG_HMAC_KEY`); where none
//! is given, 32 random bytes are generated once into `<data_dir>/hmac.key`
//! (as 64 hex characters, mode 0600) and reused on every start. A key is the
//! bytes of its string, at least [`MIN_KEY_LEN`] of them. The key file is
//! generated only for a data directory that holds no log yet: a new key
//! beside records signed with a lost one would make every record fail its
//! check, so a missing key file there refuses the start instead.
//!
//! Invariant: no key or secret reaches a log line or a `Debug` output: [`Key`]
//! and [`Secret`] print as redacted.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::durable::sync_dir;

/// The name of the generated key file in the data directory.
pub(crate) const KEY_FILE: &str = "hmac.key";
/// The shortest key accepted, in bytes.
pub(crate) const MIN_KEY_LEN: usize = 32;

/// One HMAC-SHA256 key.
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    fn new(bytes: &[u8]) -> Key {
        // HMAC accepts keys of any length, so this cannot fail.
        Key(Hmac::<Sha256>::new_from_slice(bytes).unwrap_or_else(|_| unreachable!()))
    }

    /// The MAC of `unsigned` followed by a closing `}`: the record's bytes as
    /// they are with the signature field removed.
    pub fn sign(&self, unsigned: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(unsigned);
        mac.update(b"}");
        mac.finalize().into_bytes().into()
    }

    /// Checks `sig` against [`Key::sign`] of `unsigned`, in constant time.
    pub fn verify(&self, unsigned: &[u8], sig: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(unsigned);
        mac.update(b"}");
        mac.verify_slice(sig).is_ok()
    }
}

/// The key records are signed and checked with, and its `key_id`, and the
/// retired keys that only check what they signed before a rotation (a
/// record under any other id is one this log cannot vouch for). The active
/// key is compared first, so a log that never rotated pays one string
/// comparison a record, as before there were retired keys. (It was a map
/// of one key, looked up by a hash of the id for every record written and
/// every record verified.)
#[derive(Debug, Clone)]
pub struct Keyring {
    active: String,
    key: Key,
    retired: Vec<(String, Key)>,
}

/// Why the key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the HMAC key is {0} bytes long; it must be at least {MIN_KEY_LEN} (set hmac_key or AUDITLOG_HMAC_KEY to a longer secret)"
    )]
    TooShort(usize),
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the key file {path} is missing but the data directory already holds a log signed with \
         it; restore {path} from a backup, or configure the key the log was written with \
         (hmac_key_file, hmac_key or AUDITLOG_HMAC_KEY): a new key would make every existing \
         record fail verification"
    )]
    Missing { path: String },
    #[error("cannot create key file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
}

impl Keyring {
    /// A keyring holding one key, which is the active one.
    pub fn new(key_id: &str, key: Vec<u8>) -> Keyring {
        Keyring {
            active: key_id.to_owned(),
            key: Key::new(&key),
            retired: Vec::new(),
        }
    }

    /// This keyring, also checking records signed with `retired` keys
    /// (`(key_id, key)`; the ids validated as distinct, none the active
    /// one's, by the configuration).
    pub fn with_retired(mut self, retired: Vec<(String, Vec<u8>)>) -> Keyring {
        self.retired = retired
            .into_iter()
            .map(|(id, key)| (id, Key::new(&key)))
            .collect();
        self
    }

    /// Loads the active key: `configured` when given, otherwise the key file in
    /// `data_dir`, generated on first use, that is, only while `holds_log` is
    /// false (the directory has no records and no manifest yet).
    pub fn load(
        key_id: &str,
        configured: Option<&[u8]>,
        data_dir: &Path,
        holds_log: bool,
    ) -> Result<Keyring, KeyError> {
        let path = data_dir.join(KEY_FILE);
        let key = match configured {
            Some(k) => k.to_vec(),
            None if holds_log && !path.exists() => {
                return Err(KeyError::Missing {
                    path: path.display().to_string(),
                });
            }
            None => load_or_generate(&path, "HMAC")?,
        };
        if key.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort(key.len()));
        }
        Ok(Keyring::new(key_id, key))
    }

    /// The id and key new records are signed with.
    pub fn active(&self) -> (&str, &Key) {
        (&self.active, &self.key)
    }

    /// The key named `key_id`: the active one or a retired one.
    pub fn get(&self, key_id: &str) -> Option<&Key> {
        if key_id == self.active {
            return Some(&self.key);
        }
        self.retired
            .iter()
            .find_map(|(id, key)| (id == key_id).then_some(key))
    }
}

/// The key in `path` (trailing whitespace ignored), or 32 random bytes as
/// 64 hex characters written there with mode 0600 when the file does not
/// exist. `what` names the key in the log line.
pub(crate) fn load_or_generate(path: &Path, what: &str) -> Result<Vec<u8>, KeyError> {
    load_or_generate_with(path, what, || {
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        hex::encode(raw).into_bytes()
    })
}

/// [`load_or_generate`] with `generate` making a new file's contents (a
/// webhook's `whsec_` secret, say).
pub(crate) fn load_or_generate_with(
    path: &Path,
    what: &str,
    generate: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(trimmed(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = generate();
            create_key_file(path, &key).map_err(|e| KeyError::Create {
                path: path.display().to_string(),
                source: e,
            })?;
            tracing::info!(path = %path.display(), "generated a new {what} key");
            Ok(key)
        }
        Err(e) => Err(KeyError::Read {
            path: path.display().to_string(),
            source: e,
        }),
    }
}

/// The generated key file (`<data_dir>/hmac.key`) as the server read it at
/// start, kept in place while the server runs: the key is in memory, but
/// the next start reads the file, and a log beside a missing key file is
/// refused (its records could no longer be checked). Nothing else would
/// notice the file going: writes, health and verification all use the key
/// in memory (found by probing the server, 2026-12-05).
pub(crate) struct KeyFile {
    path: PathBuf,
    key: Vec<u8>,
    /// What the last look found, so a state is logged once, not every time.
    last: Look,
}

/// What one look at the key file found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Look {
    InPlace,
    /// Deleted, and written again from memory.
    Restored,
    /// It holds another key.
    Replaced,
    /// It cannot be read or written again; the reason.
    Failed(String),
}

impl KeyFile {
    /// How often the file is looked at.
    pub(crate) const EVERY: Duration = Duration::from_secs(1);

    /// The key file in `data_dir` as it is now, when the key comes from it
    /// (none is `configured`) and it can be read.
    pub(crate) fn of(data_dir: &Path, configured: bool) -> Option<KeyFile> {
        if configured {
            return None;
        }
        let path = data_dir.join(KEY_FILE);
        let key = trimmed(std::fs::read(&path).ok()?);
        Some(KeyFile {
            path,
            key,
            last: Look::InPlace,
        })
    }

    /// Looks at the file every [`Self::EVERY`] until `cancel` fires.
    pub(crate) async fn watch(mut self, cancel: CancellationToken) {
        let mut every = tokio::time::interval(Self::EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            self = match tokio::task::spawn_blocking(move || {
                self.look();
                self
            })
            .await
            {
                Ok(file) => file,
                Err(_) => return,
            };
        }
    }

    /// Looks at the file once: a missing file is written again (mode 0600,
    /// durably); one that holds another key, or cannot be read, is logged.
    /// Each state is logged when it begins. Blocking.
    pub(crate) fn look(&mut self) {
        let now = match std::fs::read(&self.path) {
            Ok(bytes) => {
                if trimmed(bytes) == self.key {
                    Look::InPlace
                } else {
                    Look::Replaced
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match create_key_file(&self.path, &self.key) {
                    Ok(()) => Look::Restored,
                    Err(e) => {
                        Look::Failed(format!("it was deleted and cannot be written again: {e}"))
                    }
                }
            }
            Err(e) => Look::Failed(format!("it cannot be read: {e}")),
        };
        let path = self.path.display();
        if now == Look::Restored {
            tracing::warn!(
                path = %path,
                "the HMAC key file was deleted while the server ran; written again from the key in memory, as the next start needs it"
            );
            self.last = Look::InPlace;
            return;
        }
        if now == self.last {
            return;
        }
        match &now {
            Look::InPlace | Look::Restored => {
                tracing::info!(path = %path, "the HMAC key file holds the server's key again");
            }
            Look::Replaced => tracing::error!(
                path = %path,
                "the HMAC key file no longer holds the key this server signs with; the next start would refuse the log as signed with another key: put the original file back"
            ),
            Look::Failed(why) => tracing::error!(
                path = %path,
                reason = %why,
                "the HMAC key file is not in place; the next start refuses the log without it: restore it (the server still holds the key)"
            ),
        }
        self.last = now;
    }
}

/// `bytes` without trailing whitespace: the key a key file holds.
fn trimmed(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
}

/// Creates the key file at `path` holding `key`, mode 0600, durably. Never
/// overwrites: two servers starting on one directory never replace each
/// other's key.
fn create_key_file(path: &Path, key: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(key)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A secret string: deserialised like a string, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret's value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}
