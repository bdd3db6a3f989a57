//! The data directory as verification sees it: the manifest and every
//! segment file, opened at one moment so that later rotations, compressions
//! and purges cannot pull a file away mid-check.
//!
//! Invariant: the snapshot is consistent: if the directory changed while it
//! was being listed and opened, it is taken again.

use std::fs::File;
use std::path::Path;

use crate::keys::Keyring;
use crate::store::error::StoreError;
use crate::store::manifest::{Manifest, SegmentEntry};
use crate::store::sealer::names;
use crate::store::shared::LOG_FILE;

/// One file to check, opened at snapshot time.
pub(in crate::store) enum Item {
    /// A compressed segment the manifest lists.
    Gzip { entry: SegmentEntry, file: File },
    /// Listed in the manifest but not on disk.
    Missing { entry: SegmentEntry },
    /// Outside the range asked for: not read; the next segment chains on
    /// from the manifest's record of it.
    Skip { entry: SegmentEntry },
    /// A sealed segment not yet compressed, or the active file.
    Plain { name: String, file: File },
}

/// The directory as verification sees it.
pub(in crate::store) struct Snapshot {
    pub(super) authentic: bool,
    /// The key the manifest names as its signer.
    pub(super) manifest_key_id: String,
    pub(in crate::store) items: Vec<Item>,
    pub(super) unlisted: Vec<String>,
    /// `audit.log` is not there: moved or deleted under the server (a
    /// seal's rename changes the listing, which takes the snapshot again).
    pub(super) active_missing: bool,
}

impl Item {
    pub(super) fn name(&self) -> &str {
        match self {
            Item::Gzip { entry, .. } | Item::Missing { entry } | Item::Skip { entry } => {
                &entry.file
            }
            Item::Plain { name, .. } => name,
        }
    }
}

/// How many times the directory is looked at before its snapshot is taken
/// as it is, and the pause between two looks: a start that finishes the
/// compression of several sealed segments changes it every few
/// milliseconds, and five looks in a row once all saw a change (a sealed
/// plain file listed, then compressed and deleted before it was opened:
/// VerifyIntegrity answered INTERNAL, 2026-12-05).
const ATTEMPTS: u32 = 40;
const SETTLE: std::time::Duration = std::time::Duration::from_millis(25);

/// Opens every file of the log, in order. Retries when a rotation changed
/// the directory while it looked, so the snapshot is consistent.
pub(in crate::store) fn snapshot(dir: &Path, keyring: &Keyring) -> Result<Snapshot, StoreError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (before, listed) = (load(dir, keyring), list(dir)?);
        let (items, vanished) = match open_items(dir, &before.0, &listed) {
            Ok((items, vanished)) => (Ok(items), vanished),
            Err(e) => (Err(e), false),
        };
        let (after, relisted) = (load(dir, keyring), list(dir)?);
        let consistent = before.0 == after.0 && listed == relisted && !vanished;
        if !consistent && attempts < ATTEMPTS {
            std::thread::sleep(SETTLE);
            continue;
        }
        let recorded: Vec<&str> = before.0.segments.iter().map(|s| s.file.as_str()).collect();
        let unlisted = listed
            .iter()
            .filter(|n| n.ends_with(".log.gz") && !recorded.contains(&n.as_str()))
            // Compressed but not yet recorded: the sealer is between
            // steps 2 and 3; its plain file is still there and checked.
            .filter(|n| {
                let plain = n.trim_end_matches(".gz");
                !listed.iter().any(|l| l == plain)
            })
            .cloned()
            .collect();
        let items = items?;
        if vanished {
            // Checking without that file would report its records missing.
            return Err(StoreError::Read(std::io::Error::other(format!(
                "sealed segments were compressed away while verification opened the log's \
                 files, {ATTEMPTS} times in a row; run it again once compression has caught up"
            ))));
        }
        let active_missing = !items
            .iter()
            .any(|i| matches!(i, Item::Plain { name, .. } if name == LOG_FILE));
        return Ok(Snapshot {
            authentic: before.1,
            manifest_key_id: before.0.key_id.clone(),
            items,
            unlisted,
            active_missing,
        });
    }
}

fn load(dir: &Path, keyring: &Keyring) -> (Manifest, bool) {
    match Manifest::load(dir, keyring) {
        Ok(l) => (l.manifest, l.authentic),
        // An unreadable manifest is reported like an edited one.
        Err(e) => {
            tracing::error!(error = %e, "manifest unreadable during verification");
            (Manifest::default(), false)
        }
    }
}

fn list(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(StoreError::Read)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("audit.") && !n.ends_with(".tmp"))
        .collect();
    names.sort();
    Ok(names)
}

/// The items of the files `manifest` and `listed` name, and whether a
/// sealed plain file listed was gone when it was opened (compressed and
/// deleted meanwhile: the directory is looked at again).
fn open_items(
    dir: &Path,
    manifest: &Manifest,
    listed: &[String],
) -> Result<(Vec<Item>, bool), StoreError> {
    let mut items = Vec::new();
    let mut vanished = false;
    for entry in &manifest.segments {
        items.push(match File::open(dir.join(&entry.file)) {
            Ok(file) => Item::Gzip {
                entry: entry.clone(),
                file,
            },
            Err(_) => Item::Missing {
                entry: entry.clone(),
            },
        });
    }
    let recorded: Vec<&str> = manifest.segments.iter().map(|s| s.file.as_str()).collect();
    for name in listed {
        let sealed_plain = name != LOG_FILE && name.ends_with(".log");
        if sealed_plain && !recorded.contains(&names(name).0.as_str()) {
            match File::open(dir.join(name)) {
                Ok(file) => items.push(Item::Plain {
                    name: name.clone(),
                    file,
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => vanished = true,
                Err(e) => return Err(StoreError::Read(e)),
            }
        }
    }
    match File::open(dir.join(LOG_FILE)) {
        Ok(file) => items.push(Item::Plain {
            name: LOG_FILE.to_owned(),
            file,
        }),
        // Reported as a finding: the rest of the log is still checked.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::Read(e)),
    }
    Ok((items, vanished))
}
