//! What the store believes about a data directory at start, before and just
//! after recovery: whether it holds a log at all (so a missing key file is
//! refused rather than regenerated, in `keys`), whether its manifest can be
//! read (checked before the server announces anything), and whether the
//! loaded key is the one the log was written with.
//!
//! The key check reads the newest records (at most [`KEY_WITNESSES`]): when
//! every one of them fails its MAC while their `prev` links hold, the bytes
//! are as the server wrote them and only the key differs, so the start is
//! refused as a wrong or replaced key. One record alone cannot tell a wrong
//! key from a modified record unless the manifest (signed with the same key)
//! fails too; a tampered record among records that verify is left to
//! verification, as all damage is.

use std::path::Path;

use super::error::StoreError;
use super::manifest::{MANIFEST_FILE, Manifest};
use super::shared::LOG_FILE;
use crate::keys::Keyring;

/// Whether `dir` already holds a log: records in the active file, a
/// manifest, or a sealed segment.
pub(crate) fn holds_log(dir: &Path) -> Result<bool, StoreError> {
    let io = |source| StoreError::Open {
        path: dir.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let found = match name {
            LOG_FILE => entry.metadata().map_err(io)?.len() > 0,
            MANIFEST_FILE => true,
            _ => name.starts_with("audit.") && (name.ends_with(".log") || name.ends_with(".gz")),
        };
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The checks made before the server announces that it serves: the
/// manifest must be readable (its MAC is left to verification), since
/// recovery cannot go on without it.
pub(crate) fn check_before_start(dir: &Path, keyring: &Keyring) -> Result<(), StoreError> {
    Manifest::load(dir, keyring)?;
    Ok(())
}
