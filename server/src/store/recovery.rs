//! Recovery: what the store does with the log it finds on start.
//!
//! The rules:
//!
//! 1. Every complete line (ending in a newline) is kept, and every record
//!    that parses is indexed. A line that does not parse, or whose seq does
//!    not follow the last indexed one, is left where it is and left out of the
//!    index: damage inside the log is not repaired here but reported by
//!    verification.
//! 2. Bytes after the last newline are a torn write (the process or machine
//!    died mid-`write`). They were never acknowledged: they are appended to
//!    `audit.log.quarantine` (made durable first) and cut from the log.
//! 3. A batch is all or nothing: the first record of a multi-event batch
//!    carries `"batch":N`. If the log ends before all N records of its last
//!    batch, that batch was never acknowledged either, and its records are
//!    quarantined and cut the same way.
//!
//! Only the end of the log is ever cut, and only what no caller was told was
//! written: the writer acknowledges a batch after all of it is durable.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use super::index::Index;
use super::record::Record;
use super::{LOG_FILE, QUARANTINE_FILE, StoreError, sync_dir};

/// The log after recovery.
pub(super) struct Recovered {
    /// The log, opened for appending.
    pub file: File,
    /// Its length after any cut.
    pub len: u64,
    pub index: Index,
}

/// A batch whose records are still being read.
struct OpenBatch {
    offset: u64,
    remaining: u32,
    records: Vec<(Record, u64, u32)>,
}

pub(super) fn recover(dir: &Path) -> Result<Recovered, StoreError> {
    let path = dir.join(LOG_FILE);
    let io = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(io)?;
    if !existed {
        sync_dir(dir).map_err(io)?;
    }

    let mut index = Index::default();
    let mut reader = BufReader::with_capacity(1 << 20, &file);
    let mut offset = 0u64;
    let mut line = Vec::with_capacity(4096);
    let mut batch: Option<OpenBatch> = None;
    // Where the kept part of the log ends.
    let mut keep = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let len = n as u64;
        let parsed = Record::parse(&line[..n - 1]).ok();
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        match (parsed, batch.as_mut()) {
            (Some(record), Some(open)) => {
                open.records.push((record, offset, len32));
                open.remaining -= 1;
                if open.remaining == 0 {
                    if let Some(done) = batch.take() {
                        for (r, o, l) in &done.records {
                            index.add(r, *o, *l);
                        }
                    }
                    keep = offset + len;
                }
            }
            (Some(record), None) => match record.batch {
                Some(size) if size > 1 => {
                    batch = Some(OpenBatch {
                        offset,
                        remaining: size - 1,
                        records: vec![(record, offset, len32)],
                    });
                }
                _ => {
                    index.add(&record, offset, len32);
                    keep = offset + len;
                }
            },
            // A damaged line inside the log: kept, not indexed. Inside an
            // open batch it counts as one of the batch's records, so a damaged
            // batch is not mistaken for a torn one.
            (None, Some(open)) => {
                open.remaining -= 1;
                if open.remaining == 0 {
                    if let Some(done) = batch.take() {
                        for (r, o, l) in &done.records {
                            index.add(r, *o, *l);
                        }
                    }
                    keep = offset + len;
                }
            }
            (None, None) => keep = offset + len,
        }
        offset += len;
    }
    drop(reader);

    let total = file.metadata().map_err(io)?.len();
    if let Some(open) = &batch {
        keep = open.offset;
        tracing::warn!(
            first_seq = open.records.first().map(|r| r.0.seq),
            missing = open.remaining,
            "the log ends inside a batch that was never acknowledged; cutting it"
        );
    }
    if keep < total {
        quarantine(&mut file, dir, keep, total).map_err(io)?;
    }
    Ok(Recovered {
        file,
        len: keep,
        index,
    })
}

/// Appends bytes `keep..total` of the log to the quarantine file, makes that
/// durable, then cuts them from the log and makes the cut durable.
fn quarantine(file: &mut File, dir: &Path, keep: u64, total: u64) -> std::io::Result<()> {
    let mut cut = Vec::with_capacity((total - keep) as usize);
    file.seek(SeekFrom::Start(keep))?;
    std::io::Read::read_to_end(file, &mut cut)?;
    let qpath = dir.join(QUARANTINE_FILE);
    let existed = qpath.exists();
    let mut q = OpenOptions::new().append(true).create(true).open(&qpath)?;
    q.write_all(&cut)?;
    if cut.last() != Some(&b'\n') {
        q.write_all(b"\n")?;
    }
    q.sync_all()?;
    if !existed {
        sync_dir(dir)?;
    }
    file.set_len(keep)?;
    file.sync_all()?;
    tracing::warn!(
        bytes = total - keep,
        offset = keep,
        quarantine = %qpath.display(),
        "cut an unacknowledged tail from the log"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::Keyring;
    use crate::store::record::{GENESIS, NewEvent};

    fn lines(n: u64, batch_at: Option<(u64, u32)>) -> Vec<Vec<u8>> {
        let keys = Keyring::new("k1", vec![1; 32]);
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let ev = NewEvent {
                    event_type: "crm_create".into(),
                    actor: "a".into(),
                    lead_id: None,
                    workflow: None,
                    details: Default::default(),
                    idempotency_key: None,
                };
                let batch = batch_at.filter(|b| b.0 == seq).map(|b| b.1);
                let (r, line) = Record::seal(ev, seq, "i".into(), 1, batch, &prev, &keys);
                prev = r.signature;
                line
            })
            .collect()
    }

    fn scenario(content: &[u8]) -> (tempfile::TempDir, Recovered) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_FILE), content).unwrap();
        let r = recover(dir.path()).unwrap();
        (dir, r)
    }

    #[test]
    fn clean_log_is_kept_whole() {
        let content = lines(5, None).concat();
        let (dir, r) = scenario(&content);
        assert_eq!(r.len, content.len() as u64);
        assert_eq!(r.index.last().map(|m| m.seq), Some(5));
        assert!(!dir.path().join(QUARANTINE_FILE).exists());
    }

    #[test]
    fn torn_last_line_is_quarantined_and_cut() {
        let ls = lines(5, None);
        let mut content = ls[..4].concat();
        content.extend_from_slice(&ls[4][..30]);
        let (dir, r) = scenario(&content);
        let kept = ls[..4].concat();
        assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), kept);
        assert_eq!(r.len, kept.len() as u64);
        assert_eq!(r.index.last().map(|m| m.seq), Some(4));
        let q = std::fs::read(dir.path().join(QUARANTINE_FILE)).unwrap();
        assert_eq!(&q[..30], &ls[4][..30]);
    }

    #[test]
    fn half_written_batch_is_cut_whole() {
        // seqs 3..=6 are one batch of 4; the crash left 3 of them and a torn 4th.
        let ls = lines(6, Some((3, 4)));
        let mut content = ls[..5].concat();
        content.extend_from_slice(&ls[5][..10]);
        let (dir, r) = scenario(&content);
        assert_eq!(
            std::fs::read(dir.path().join(LOG_FILE)).unwrap(),
            ls[..2].concat()
        );
        assert_eq!(r.index.last().map(|m| m.seq), Some(2));
        let q = std::fs::read(dir.path().join(QUARANTINE_FILE)).unwrap();
        assert!(q.starts_with(&ls[2]));
    }

    #[test]
    fn complete_batch_is_kept() {
        let ls = lines(6, Some((3, 4)));
        let (_dir, r) = scenario(&ls.concat());
        assert_eq!(r.index.last().map(|m| m.seq), Some(6));
    }

    #[test]
    fn damage_inside_the_log_is_not_repaired() {
        let ls = lines(5, None);
        let mut content = ls[..2].concat();
        content.extend_from_slice(b"garbage\n");
        content.extend_from_slice(&ls[3..].concat());
        let (dir, r) = scenario(&content);
        assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), content);
        assert_eq!(r.index.last().map(|m| m.seq), Some(5));
        assert!(r.index.get(3).is_none());
    }
}
