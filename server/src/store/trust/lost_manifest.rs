//! A data directory without `manifest.json` that shows a log which had one.
//!
//! The manifest is first written when a sealed segment is compressed and
//! recorded (`sealer` step 3), and the server never deletes it. Until then
//! the log is whole in plain files from seq 1: `audit.log`, and sealed
//! segments not yet compressed (`audit.<time>.log`), beside which a crash
//! may have left a compressed copy (step 2 done, step 3 not). So, with no
//! manifest:
//!
//! - a compressed segment's file (`.log.gz`, `.idx`, a lead copy) with no
//!   plain `audit.<time>.log` beside it was recorded in a manifest: the
//!   plain file is deleted only after that (step 4);
//! - the oldest plain file beginning with a record whose MAC verifies and
//!   whose seq is above 1 comes after seqs that were compressed or purged
//!   by retention, both of which the manifest records, unless the head file
//!   says those seqs were cut (a start found them missing and said so).
//!
//! Either refuses the start ([`ManifestError::Missing`]). Recovery would
//! otherwise take the directory for a log with no compressed segment and
//! serve only what the plain files hold, with no error, and the next seal
//! would write a new manifest without the lost entries, after which the
//! loss no longer shows as a missing file (found by an outside attack,
//! 2026-12-06). A record whose MAC fails is no evidence either way: it is
//! verification's to report, as all damage is.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;

use super::super::error::StoreError;
use super::super::head;
use super::super::manifest::{MANIFEST_FILE, ManifestError};
use super::super::record::{MacCheck, RecordHead};
use super::super::shared::LOG_FILE;
use crate::keys::Keyring;

/// The suffixes of a compressed segment's files after `audit.<time>`, the
/// longer before the shorter they end with.
const COMPRESSED: [&str; 4] = [".log.gz", ".leads.zst", ".leads.idx", ".idx"];
/// How many files the refusal names.
const NAMED: usize = 3;
/// The most bytes of a plain file's first line read: a record is at most
/// some 64 KiB of details and its fields.
const FIRST_LINE_MAX: u64 = 1 << 20;

/// Refuses the start when `dir` has no manifest but shows a log that had
/// one (see the module doc).
pub(super) fn refuse_if_lost(dir: &Path, keyring: &Keyring) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(dir.join(MANIFEST_FILE)) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ManifestError::Io(e).into()),
    }
    let io = |source| StoreError::Open {
        path: dir.display().to_string(),
        source,
    };
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    names.sort();
    let found: Vec<String> = [
        compressed_without_plain(&names),
        late_start(dir, &names, keyring).map_err(io)?,
    ]
    .into_iter()
    .flatten()
    .collect();
    if found.is_empty() {
        return Ok(());
    }
    Err(ManifestError::Missing(found.join("; ")).into())
}

/// The compressed segments whose plain file is not beside them, as the
/// refusal says it; `None` when there are none.
fn compressed_without_plain(names: &[String]) -> Option<String> {
    // Each segment's stem, and the file to name for it (its `.log.gz` if
    // present).
    let plain: HashSet<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".log"))
        .collect();
    let mut segments: BTreeMap<&str, &str> = BTreeMap::new();
    for name in names.iter().filter(|n| n.starts_with("audit.")) {
        let Some(stem) = COMPRESSED.iter().find_map(|s| name.strip_suffix(s)) else {
            continue;
        };
        if plain.contains(stem) {
            continue;
        }
        let named = segments.entry(stem).or_insert(name);
        if name.ends_with(".log.gz") {
            *named = name;
        }
    }
    if segments.is_empty() {
        return None;
    }
    let listed: Vec<&str> = segments.values().take(NAMED).copied().collect();
    let listed = match segments.len().saturating_sub(NAMED) {
        0 => listed.join(", "),
        more => format!("{} and {more} more", listed.join(", ")),
    };
    Some(format!(
        "the files of {} compressed segment{} with no plain copy beside them ({listed})",
        segments.len(),
        if segments.len() == 1 { "" } else { "s" },
    ))
}

/// The oldest plain file's first record, when it is one the manifest must
/// account for: a seq above 1, a MAC that verifies, and no cut in the head
/// file covering the seqs before it.
fn late_start(dir: &Path, names: &[String], keyring: &Keyring) -> std::io::Result<Option<String>> {
    // Sealed files not yet compressed are named by their UTC time, so they
    // sort oldest first, and all come before the active file.
    let sealed = names
        .iter()
        .filter(|n| *n != LOG_FILE && n.starts_with("audit.") && n.ends_with(".log"));
    let active = names.iter().filter(|n| *n == LOG_FILE);
    for name in sealed.chain(active) {
        let file = match std::fs::File::open(dir.join(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut line = Vec::new();
        BufReader::new(file.take(FIRST_LINE_MAX)).read_until(b'\n', &mut line)?;
        // An empty file, or only the zeros the writer keeps ahead of the
        // log's end (a crash before its first record): the log begins in
        // the next file, if anywhere.
        if line.first().is_none_or(|&b| b == 0) {
            continue;
        }
        if line.pop() != Some(b'\n') {
            return Ok(None);
        }
        let Some(record) = RecordHead::peek(&line) else {
            return Ok(None);
        };
        let seq = record.seq;
        let explained = seq <= 1
            || record.check_mac(&line, keyring) != MacCheck::Valid
            || head::cut_before(dir, keyring, seq);
        if explained {
            return Ok(None);
        }
        return Ok(Some(format!(
            "{name} begins at seq {seq}, not at seq 1, and no plain file holds seqs 1 to {}",
            seq - 1
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn compressed_files_count_only_without_their_plain_copy() {
        // A crash between compressing the first segment and recording it.
        let pending = names(&[
            "audit.log",
            "audit.A.log",
            "audit.A.log.gz",
            "audit.A.idx",
            "audit.A.leads.zst",
            "audit.A.leads.idx",
        ]);
        assert_eq!(compressed_without_plain(&pending), None);
        assert_eq!(
            compressed_without_plain(&names(&["audit.log", "audit.log.quarantine", "head"])),
            None
        );
        let lost = names(&[
            "audit.log",
            "audit.A.log.gz",
            "audit.A.idx",
            "audit.B.idx",
            "audit.C.leads.zst",
            "audit.D.log.gz",
            "audit.E.log",
            "audit.E.log.gz",
        ]);
        assert_eq!(
            compressed_without_plain(&lost).unwrap(),
            "the files of 4 compressed segments with no plain copy beside them \
             (audit.A.log.gz, audit.B.idx, audit.C.leads.zst and 1 more)"
        );
        assert_eq!(
            compressed_without_plain(&names(&["audit.A.idx"])).unwrap(),
            "the files of 1 compressed segment with no plain copy beside them (audit.A.idx)"
        );
    }
}
