//! What the store believes about a data directory at start, before and just
//! after recovery: whether it holds a log at all (so a missing key file is
//! refused rather than regenerated, in `keys`), whether its manifest can be
//! read, or, when there is none, whether the directory shows a log that had
//! one (`lost_manifest`; both checked before the server announces
//! anything), and whether the loaded key is the one the log was written
//! with.
//!
//! The key check reads the newest records (at most [`KEY_WITNESSES`]): when
//! every one of them fails its MAC while their `prev` links hold, and the
//! oldest record fails too, the bytes are as the server wrote them and only
//! the key differs, so the start is refused as a wrong or replaced key (an
//! oldest record that verifies proves the key right: the newest were
//! modified, which is verification's to report). One record alone cannot tell a wrong
//! key from a modified record unless the manifest (signed with the same key)
//! fails too; a tampered record among records that verify is left to
//! verification, as all damage is. The check runs twice: before recovery
//! on the end of the active file, so the common case is refused before the
//! server announces anything, and after recovery on the newest records the
//! index holds, which may be in a sealed segment.

mod lost_manifest;

use std::io::{BufRead as _, Read as _, Seek as _, SeekFrom};
use std::path::Path;

use super::error::StoreError;
use super::head::HEAD_FILE;
use super::index::{Filter, Order};
use super::manifest::{MANIFEST_FILE, Manifest};
use super::record::{MacCheck, RecordHead};
use super::shared::{LOG_FILE, Shared};
use crate::keys::Keyring;

/// How many of the newest records the key check reads at most.
const KEY_WITNESSES: usize = 8;
/// How much of the end of the active file the check before recovery reads.
const TAIL_BYTES: u64 = 256 << 10;

/// Whether `dir` already holds a log: anything but zeros in the active
/// file, a manifest, a persisted head, or a sealed segment.
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
            // Zeros alone are the space the writer keeps ahead, left by a
            // crash before the first record was synced: no log.
            LOG_FILE => {
                let file = std::fs::File::open(entry.path()).map_err(io)?;
                let len = file.metadata().map_err(io)?.len();
                end_of_content(&file, len).map_err(io)? > 0
            }
            MANIFEST_FILE | HEAD_FILE => true,
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
/// recovery cannot go on without it; a missing one must not be missing
/// from a log that had one; and the newest records of the active file must
/// not show a wrong key.
pub(crate) fn check_before_start(dir: &Path, keyring: &Keyring) -> Result<(), StoreError> {
    let loaded = Manifest::load(dir, keyring)?;
    check_key_in_active_file(dir, keyring, loaded.authentic)?;
    lost_manifest::refuse_if_lost(dir, keyring)
}

/// Refuses a key that is not the one the log was written with, from the
/// newest records in the index (sealed segments included): see
/// [`wrong_key`]. Run once recovery has indexed the log.
pub(super) fn check_key(shared: &Shared, manifest_authentic: bool) -> Result<(), StoreError> {
    let metas = shared.index().select(
        &Filter::default(),
        Order::NewestFirst,
        None,
        u64::MAX,
        KEY_WITNESSES,
    );
    // A record that cannot be read (a damaged segment) is no witness either
    // way: damage is verification's to report, and must not stop the start.
    let lines: Vec<Vec<u8>> = metas
        .iter()
        .filter_map(|meta| shared.read_line(meta).ok())
        .collect();
    let oldest = shared
        .index()
        .select(&Filter::default(), Order::OldestFirst, None, u64::MAX, 1);
    let oldest = oldest.first().and_then(|meta| shared.read_line(meta).ok());
    if verifies(oldest.as_deref(), &shared.keyring) {
        return Ok(());
    }
    wrong_key(&lines, &shared.keyring, manifest_authentic)
}

/// Whether `line` is a record whose MAC verifies: then the key is right,
/// whatever happened to the newest records.
fn verifies(line: Option<&[u8]>, keyring: &Keyring) -> bool {
    line.and_then(RecordHead::peek)
        .zip(line)
        .is_some_and(|(head, line)| head.check_mac(line, keyring) == MacCheck::Valid)
}

/// [`check_key`] before recovery, from the complete lines at the end of the
/// active file alone, so that the common case is refused before the server
/// announces anything.
fn check_key_in_active_file(
    dir: &Path,
    keyring: &Keyring,
    manifest_authentic: bool,
) -> Result<(), StoreError> {
    let path = dir.join(LOG_FILE);
    let io = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    let mut first = Vec::new();
    std::io::BufReader::new(&file)
        .read_until(b'\n', &mut first)
        .map_err(io)?;
    if first.pop() == Some(b'\n') && verifies(Some(&first), keyring) {
        return Ok(());
    }
    let len = file.metadata().map_err(io)?.len();
    // A crash leaves the zeros the writer keeps ahead of the log (up to a
    // MiB, `writer/space.rs`) at the file's end: the records end before them.
    let end = end_of_content(&file, len).map_err(io)?;
    let from = end.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(from)).map_err(io)?;
    let mut tail = Vec::new();
    (&mut file)
        .take(end - from)
        .read_to_end(&mut tail)
        .map_err(io)?;
    // The log ends at its first zero byte (recovery's rule 5).
    if let Some(zero) = tail.iter().position(|&b| b == 0) {
        tail.truncate(zero);
    }
    let mut pieces: Vec<&[u8]> = tail.split(|&b| b == b'\n').collect();
    // What follows the last newline is torn (or empty); what precedes the
    // first one may be the end of a line begun before the tail.
    pieces.pop();
    if from > 0 && !pieces.is_empty() {
        pieces.remove(0);
    }
    let lines: Vec<Vec<u8>> = pieces
        .iter()
        .rev()
        .take(KEY_WITNESSES)
        .map(|l| l.to_vec())
        .collect();
    wrong_key(&lines, keyring, manifest_authentic)
}

/// Where the last byte that is not zero in the first `len` bytes of `file`
/// ends, read backwards a block at a time (also where a backup takes a plain
/// file up to: `backup.rs`).
pub(super) fn end_of_content(file: &std::fs::File, len: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt as _;
    let mut block = vec![0u8; 64 << 10];
    let mut end = len;
    while end > 0 {
        let from = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - from) as usize];
        file.read_exact_at(chunk, from)?;
        if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
            return Ok(from + i as u64 + 1);
        }
        end = from;
    }
    Ok(0)
}

/// The rule: `lines` are the newest records, newest first. A wrong or
/// replaced key when every one fails its MAC while each one's signature is
/// the `prev` of the one after it, and there are two of them, or one and a
/// manifest that fails its MAC too. When one of them names a key the
/// keyring does not hold, that key is missing rather than wrong (a rotation
/// that dropped the old key instead of keeping it as a retired one).
fn wrong_key(
    lines: &[Vec<u8>],
    keyring: &Keyring,
    manifest_authentic: bool,
) -> Result<(), StoreError> {
    let mut failed = 0usize;
    let mut unheld: Option<&str> = None;
    // The `prev` of the newer record just read: this one's signature.
    let mut newer_prev: Option<&str> = None;
    for line in lines {
        let Some(head) = RecordHead::peek(line) else {
            return Ok(());
        };
        let linked = newer_prev.is_none_or(|p| p == head.signature);
        match head.check_mac(line, keyring) {
            _ if !linked => return Ok(()),
            MacCheck::Valid => return Ok(()),
            MacCheck::Invalid => {}
            MacCheck::UnknownKey => {
                unheld.get_or_insert(head.key_id);
            }
        }
        newer_prev = Some(head.prev);
        failed += 1;
    }
    if failed >= 2 || (failed == 1 && !manifest_authentic) {
        return Err(match unheld {
            Some(key_id) => StoreError::UnheldKey {
                key_id: key_id.to_owned(),
                active: keyring.active().0.to_owned(),
                checked: failed,
            },
            None => StoreError::WrongKey {
                key_id: keyring.active().0.to_owned(),
                checked: failed,
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_files_content_ends_at_its_last_byte_that_is_not_zero() {
        use std::io::Write as _;
        let cases: [(Vec<u8>, u64); 5] = [
            (Vec::new(), 0),
            (vec![0; 200_000], 0),
            (b"{\"seq\":1}\n".to_vec(), 10),
            ([b"{\"seq\":1}\n".as_slice(), &[0; 1 << 20]].concat(), 10),
            // Content before the last 64 KiB block read from the end.
            ([vec![b'x'; 70_000], vec![0; 65_536]].concat(), 70_000),
        ];
        for (bytes, want) in cases {
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&bytes).unwrap();
            let len = bytes.len() as u64;
            assert_eq!(
                super::end_of_content(&file, len).unwrap(),
                want,
                "{len} bytes"
            );
        }
    }

    use super::*;
    use crate::store::record::{GENESIS, NewEvent, Record};

    fn log(keys: &Keyring, n: u64) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let ev = NewEvent {
                    event_type: "crm_update".into(),
                    actor: "a".into(),
                    caller: None,
                    lead_id: Some(format!("L{seq}").into()),
                    workflow: None,
                    details: Default::default(),
                    idempotency_key: None,
                };
                let (r, line) =
                    Record::seal(ev, seq, format!("i{seq}").into(), 1, None, &prev, keys);
                prev = r.signature.into_string();
                String::from_utf8(line).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_wrong_key_is_told_from_modified_records() {
        let right = Keyring::new("k1", vec![1; 32]);
        let wrong = Keyring::new("k1", vec![2; 32]);
        let dir = tempfile::tempdir().unwrap();
        let mut lines = log(&right, 12);
        std::fs::write(dir.path().join(LOG_FILE), lines.concat()).unwrap();
        assert!(check_before_start(dir.path(), &right).is_ok());
        let refused = check_before_start(dir.path(), &wrong);
        assert!(
            matches!(refused, Err(StoreError::WrongKey { checked: 8, .. })),
            "{refused:?}"
        );
        // After a crash the file ends with the zeros the writer keeps ahead.
        let zeros = vec![0u8; (1 << 20) + 4096];
        let crashed = [lines.concat().as_bytes(), &zeros].concat();
        std::fs::write(dir.path().join(LOG_FILE), crashed).unwrap();
        let refused = check_before_start(dir.path(), &wrong);
        assert!(
            matches!(refused, Err(StoreError::WrongKey { checked: 8, .. })),
            "{refused:?}"
        );
        // Every newest record modified: the oldest still proves the key.
        for line in &mut lines[4..] {
            *line = line.replacen("crm_update", "crm_delete", 1);
        }
        std::fs::write(dir.path().join(LOG_FILE), lines.concat()).unwrap();
        assert!(check_before_start(dir.path(), &right).is_ok());
    }

    #[test]
    fn a_rotated_out_key_is_needed_as_a_retired_one() {
        let old = Keyring::new("k1", vec![1; 32]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_FILE), log(&old, 12).concat()).unwrap();
        let rotated = Keyring::new("k2", vec![2; 32]);
        let refused = check_before_start(dir.path(), &rotated);
        assert!(
            matches!(
                &refused,
                Err(StoreError::UnheldKey { key_id, active, checked: 8 })
                    if key_id == "k1" && active == "k2"
            ),
            "{refused:?}"
        );
        let kept = rotated.with_retired(vec![("k1".into(), vec![1; 32])]);
        assert!(check_before_start(dir.path(), &kept).is_ok());
    }
}
