//! The files of a backup (`AdminService.Backup`): the log as it is at one
//! moment, taken while the server runs.
//!
//! The log's files come from verification's snapshot (`verify/snapshot.rs`):
//! the manifest and every file of the log, opened at one moment, taken again
//! if a rotation or a purge changed the directory meanwhile; an opened file
//! stays readable whatever is renamed or deleted after. Each compressed
//! segment brings its `.idx` and its lead copy (derived: a start rebuilds
//! whichever is missing). The small files that only move forward with the
//! log (`head`, and what the caller names: the latest checkpoint, webhook
//! positions) are read *before* the snapshot, so none of them is ahead of
//! the log in the backup: a server started on it finds what a crash at that
//! moment would have left, and every event acknowledged before the call is
//! in it. A plain file is taken up to its last byte of data, without the
//! zeros kept ahead of the active file's end (which a seal cuts, perhaps
//! while the backup reads it). No key is part of it.
//!
//! A caller that kept an earlier backup says which of its files it holds
//! ([`Held`]); a compressed segment or index it names with the SHA-256 the
//! manifest records (sealed files never change), and the lead copy of a
//! segment it holds, named with its size, are not read but marked
//! [`Content::Held`].

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use super::Store;
use super::error::StoreError;
use super::head::HEAD_FILE;
use super::manifest::MANIFEST_FILE;
use super::trust::end_of_content;
use super::verify::snapshot::{Item, snapshot};

/// One file of a backup, by its path in the data directory.
pub(crate) struct BackupFile {
    pub(crate) path: String,
    pub(crate) content: Content,
}

/// What a backup file holds.
pub(crate) enum Content {
    /// Read whole when the backup was planned.
    Bytes(Vec<u8>),
    /// The first `len` bytes of an opened file.
    File { file: File, len: u64 },
    /// A file of `len` bytes the caller holds already: not sent.
    Held { len: u64 },
}

impl Content {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::File { len, .. } | Content::Held { len } => *len,
        }
    }
}

/// The files the caller of a backup holds from an earlier one, by path:
/// the SHA-256 it names for each (segments and their indexes) and its size
/// (lead copies).
#[derive(Debug, Default)]
pub(crate) struct Held(HashMap<String, (String, u64)>);

impl Held {
    pub(crate) fn new(files: impl IntoIterator<Item = (String, String, u64)>) -> Held {
        Held(
            files
                .into_iter()
                .map(|(path, sha256, size)| (path, (sha256, size)))
                .collect(),
        )
    }

    /// Whether the caller holds `path` with this SHA-256 (a sealed file the
    /// manifest records the hash of).
    fn hashed(&self, path: &str, sha256: &str) -> bool {
        self.0
            .get(path)
            .is_some_and(|(held, _)| !held.is_empty() && held == sha256)
    }

    /// Whether the caller holds `path` with this size (a lead copy file).
    fn sized(&self, path: &str, size: u64) -> bool {
        self.0.get(path).is_some_and(|&(_, held)| held == size)
    }
}

/// The files of a backup and the head it holds.
pub(crate) struct BackupPlan {
    pub(crate) files: Vec<BackupFile>,
    /// The committed head when the plan was made: every event up to it is
    /// in the files.
    pub(crate) head_seq: u64,
}

/// How many times the manifest may change while the log's files are opened
/// before the backup gives up (each change is a rotation or a purge), and
/// the pause before the next look (as verification's snapshot).
const ATTEMPTS: u32 = 40;
const SETTLE: std::time::Duration = std::time::Duration::from_millis(25);

impl Store {
    /// Plans a backup (blocking: run it off the async threads). `first`
    /// names small files of the data directory read before the log's own,
    /// as `head` is; those missing are left out. What the caller `held`
    /// already is marked so.
    pub(crate) fn backup_plan(
        &self,
        first: &[String],
        held: &Held,
    ) -> Result<BackupPlan, StoreError> {
        let dir = &self.shared.dir;
        let head_seq = self.head();
        let mut files = Vec::new();
        for path in std::iter::once(HEAD_FILE.to_owned()).chain(first.iter().cloned()) {
            if let Some(bytes) = read_if_there(&dir.join(&path))? {
                files.push(BackupFile {
                    path,
                    content: Content::Bytes(bytes),
                });
            }
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let before = read_if_there(&dir.join(MANIFEST_FILE))?;
            let log = log_files(dir, &self.shared.keyring, held)?;
            let after = read_if_there(&dir.join(MANIFEST_FILE))?;
            if before == after {
                if let Some(bytes) = before {
                    files.push(BackupFile {
                        path: MANIFEST_FILE.to_owned(),
                        content: Content::Bytes(bytes),
                    });
                }
                files.extend(log);
                return Ok(BackupPlan { files, head_seq });
            }
            if attempts >= ATTEMPTS {
                return Err(StoreError::Read(std::io::Error::other(format!(
                    "the manifest changed while the log's files were opened, {ATTEMPTS} times \
                     in a row (rotations or purges); run the backup again"
                ))));
            }
            std::thread::sleep(SETTLE);
        }
    }
}

/// The log's files as the snapshot opened them, each compressed segment
/// with its index and lead copy where they are; those the caller `held`
/// are marked so.
fn log_files(
    dir: &Path,
    keyring: &crate::keys::Keyring,
    held: &Held,
) -> Result<Vec<BackupFile>, StoreError> {
    let mut files = Vec::new();
    for item in snapshot(dir, keyring)?.items {
        match item {
            Item::Gzip { entry, file } => {
                let segment_held = held.hashed(&entry.file, &entry.sha256);
                let len = len_of(&file)?;
                files.push(backup_file(entry.file.clone(), file, len, segment_held));
                let (leads, leads_index) = super::leads::names(&entry.file);
                for (path, is_copy) in [
                    (entry.index.clone(), false),
                    (leads, true),
                    (leads_index, true),
                ] {
                    let file = match File::open(dir.join(&path)) {
                        Ok(file) => file,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(StoreError::Read(e)),
                    };
                    let len = len_of(&file)?;
                    let is_held = if is_copy {
                        // Derived and never trusted: its size will do.
                        segment_held && held.sized(&path, len)
                    } else {
                        held.hashed(&path, &entry.index_sha256)
                    };
                    files.push(backup_file(path, file, len, is_held));
                }
            }
            Item::Plain { name, file } => {
                // Up to its last byte of data: the zeros kept ahead of the
                // active file's end are cut when it is sealed, maybe while
                // the backup reads it.
                let len = file
                    .metadata()
                    .and_then(|m| end_of_content(&file, m.len()))
                    .map_err(StoreError::Read)?;
                files.push(backup_file(name, file, len, false));
            }
            // Missing from the data directory itself: a server started on
            // the backup reports it, as this one does.
            Item::Missing { .. } | Item::Skip { .. } => {}
        }
    }
    Ok(files)
}

fn len_of(file: &File) -> Result<u64, StoreError> {
    file.metadata().map(|m| m.len()).map_err(StoreError::Read)
}

/// The backup's entry for `file` at `path`, `len` bytes long: not to be
/// sent if the caller `held` it.
fn backup_file(path: String, file: File, len: u64, held: bool) -> BackupFile {
    let content = if held {
        Content::Held { len }
    } else {
        Content::File { file, len }
    };
    BackupFile { path, content }
}

fn read_if_there(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Read(e)),
    }
}
