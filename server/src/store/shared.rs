//! The state the store's threads share: the writer, the syncer, the
//! sealer, retention and every reader reach the index, the segment table,
//! the manifest and the poison flag through one [`Shared`], and the names of
//! the files every one of them works on are here.
//!
//! Invariants (each field says its own): lock order is `index` before
//! `segments`; a segment is in the table before any index entry points at
//! it and leaves only after none does; once `poisoned` is set it is never
//! cleared in this process.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

use bytes::Bytes;
use tokio::sync::broadcast;

use super::cache::ChunkCache;
use super::error::StoreError;
use super::head::Head;
use super::index::Index;
use super::manifest::Manifest;
use super::record::{Record, Short};
use super::refusals::Refusals;
use super::segment::SegmentFile;
use crate::keys::Keyring;
use crate::metrics::Metrics;

/// The active segment's name in the data directory.
pub(crate) const LOG_FILE: &str = "audit.log";
/// Where recovery moves bytes it cuts from the end of the log.
pub(crate) const QUARANTINE_FILE: &str = "audit.log.quarantine";

/// One group of records the writer committed, in seq order, as published
/// to live readers.
pub(crate) type Committed = Arc<Group>;

/// A committed group: its records (it derefs to them), their lines as the
/// writer wrote them, and a slot per record for its encoding on the wire as
/// a live reader sends it, made by the first reader that sends the record
/// and shared by every other, so ten followers cost one encoding, not ten.
/// The slots, and each record's place in the lines, are made by the first
/// reader that asks, so a log nobody follows pays nothing for them.
pub(crate) struct Group {
    records: Vec<Record>,
    /// The records' lines, each ending in a newline, in the records' order:
    /// the buffers the writer wrote (one per group it committed, usually one),
    /// shared with the tree's builder, not copied.
    lines: Vec<Bytes>,
    /// Record `i`'s line, without its newline, sliced from `lines`; `None`
    /// when `lines` does not hold the records (never expected: a reader then
    /// reads the group from the log).
    line_at: OnceLock<Option<Box<[Bytes]>>>,
    wire: OnceLock<Box<[OnceLock<Bytes>]>>,
    /// The same, for live readers that asked for details as JSON text.
    wire_json: OnceLock<Box<[OnceLock<Bytes>]>>,
}

impl Group {
    /// `records` and their `lines`, as [`Group`] keeps them.
    pub(crate) fn new(records: Vec<Record>, lines: Vec<Bytes>) -> Group {
        Group {
            records,
            lines,
            line_at: OnceLock::new(),
            wire: OnceLock::new(),
            wire_json: OnceLock::new(),
        }
    }

    /// Record `i`'s encoding, made by `encode` if no reader made it yet.
    /// Every reader of a group must encode alike (there is one encoding
    /// per record and form: the StreamEvents message).
    pub(crate) fn wire(&self, i: usize, encode: impl FnOnce(&Record) -> Bytes) -> Bytes {
        self.shared(&self.wire, i, encode)
    }

    /// [`Group::wire`] with the details as JSON text (`details_as_json`):
    /// the other encoding a live reader may send, shared alike.
    pub(crate) fn wire_json(&self, i: usize, encode: impl FnOnce(&Record) -> Bytes) -> Bytes {
        self.shared(&self.wire_json, i, encode)
    }

    fn shared(
        &self,
        slots: &OnceLock<Box<[OnceLock<Bytes>]>>,
        i: usize,
        encode: impl FnOnce(&Record) -> Bytes,
    ) -> Bytes {
        let slots = slots.get_or_init(|| self.records.iter().map(|_| OnceLock::new()).collect());
        slots[i].get_or_init(|| encode(&self.records[i])).clone()
    }

    /// The bytes of the group's lines, newlines included.
    pub(crate) fn lines_len(&self) -> usize {
        self.lines.iter().map(Bytes::len).sum()
    }

    /// Record `i`'s line exactly as written, without its newline (no copy:
    /// a slice of the writer's buffer). `None` if the group's lines do not
    /// hold its records one for one, seq for seq.
    pub(crate) fn line(&self, i: usize) -> Option<Bytes> {
        let lines = self.line_at.get_or_init(|| {
            let mut at = Vec::with_capacity(self.records.len());
            for buf in &self.lines {
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', buf) {
                    at.push(buf.slice(start..end));
                    start = end + 1;
                }
                if start != buf.len() {
                    return None;
                }
            }
            let held = at.len() == self.records.len()
                && at
                    .iter()
                    .zip(&self.records)
                    .all(|(line, r)| super::record::RecordHead::peek_seq(line) == Some(r.seq));
            if !held {
                tracing::error!(
                    lines = at.len(),
                    records = self.records.len(),
                    "a published group's lines do not hold its records; its stored-line readers \
                     read it from the log"
                );
            }
            held.then(|| at.into_boxed_slice())
        });
        lines.as_ref().map(|l| l[i].clone())
    }
}

impl std::ops::Deref for Group {
    type Target = [Record];

    fn deref(&self) -> &[Record] {
        &self.records
    }
}

/// Why the store refuses every write until a restart.
#[derive(Debug, Clone)]
pub(super) enum Poison {
    /// An fsync failed.
    Fsync(String),
    /// The active file is no longer at `audit.log`.
    FileGone(String),
    /// A seal left no `audit.log`.
    SealBroken(String),
}

/// The newest durable record's seq and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DurableHead {
    pub(super) seq: u64,
    pub(super) signature: Short,
}

/// State the writer, the sealer and the readers share.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) index: RwLock<Index>,
    /// Open segment files by id. Lock order: `index` before `segments`. A
    /// segment is added before any meta points at it and removed only after
    /// none does.
    pub(super) segments: RwLock<HashMap<u32, Arc<SegmentFile>>>,
    pub(super) next_segment: AtomicU32,
    pub(super) keyring: Keyring,
    pub(super) hub: broadcast::Sender<Committed>,
    /// Set when an fsync failed (the page cache can no longer be trusted),
    /// when the active file is no longer at its path, or when a seal left no
    /// `audit.log`: no further write is accepted until a restart recovers
    /// from disk. `poison_cause` says which.
    pub(super) poisoned: AtomicBool,
    pub(super) poison_cause: Mutex<Option<Poison>>,
    /// Refused appends, for the log lines and the health of writes.
    pub(super) refusals: Refusals,
    /// The manifest as last written; every change goes through this lock.
    pub(super) manifest: Mutex<Manifest>,
    pub(super) cache: Mutex<ChunkCache>,
    /// Tells the sealer to stop between chunks (shutdown).
    pub(super) stop: AtomicBool,
    /// Whether compression writes lead copies.
    pub(super) lead_copies: bool,
    /// The committed length of the active file, kept by the syncer.
    pub(super) active_len: AtomicU64,
    /// The highest seq in the index, kept by the syncer.
    pub(super) indexed_seq: AtomicU64,
    /// The same, watched: what `Store::wait_for` waits on.
    pub(super) committed: tokio::sync::watch::Sender<u64>,
    /// The head as last persisted (`head`), with the cuts found at start.
    pub(super) head: Mutex<Head>,
    /// The seq and signature of the newest durable record, kept by the
    /// syncer as it indexes each group: what the head thread persists. Held
    /// here rather than read back from the log, so a log damaged under the
    /// server still has its acknowledged head recorded, and the next start
    /// reports the damage as a cut instead of handing its seqs out again.
    pub(super) durable_head: Mutex<Option<DurableHead>>,
    /// Set while the head thread cannot write the head file: appends are
    /// refused until it can again (`head`). `head_unwritten` says why, and
    /// whether it was for want of space.
    pub(super) head_stalled: AtomicBool,
    pub(super) head_unwritten: Mutex<(String, bool)>,
    /// Whether the log's newest record is signed with the signing key:
    /// after such a record a replica takes none under a retired key, which
    /// no leader signs with any more (`writer/apply.rs`, 2026-12-08).
    pub(super) signed_active: AtomicBool,
    /// The Merkle tree over the log, which the syncer wakes.
    pub(super) tree: super::tree::Tree,
    /// The server's metrics; the syncer counts commits and times fsyncs.
    pub(super) metrics: Arc<Metrics>,
}

impl Shared {
    pub(super) fn index(&self) -> RwLockReadGuard<'_, Index> {
        // A poisoned lock means a reader panicked mid-read; the index itself
        // is only changed between whole records, so it is sound.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn segments(&self) -> RwLockReadGuard<'_, HashMap<u32, Arc<SegmentFile>>> {
        self.segments.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn add_segment(&self, segment: SegmentFile) -> u32 {
        let id = self.next_segment.fetch_add(1, Ordering::Relaxed);
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::new(segment));
        id
    }

    /// Refuses every later write after a failed fsync.
    pub(super) fn poison(&self, reason: String) {
        self.poison_with(Poison::Fsync(reason));
    }

    /// Refuses every later write, for `cause`; the first cause is kept.
    pub(super) fn poison_with(&self, cause: Poison) {
        if let Ok(mut kept) = self.poison_cause.lock() {
            if kept.is_some() {
                return;
            }
            *kept = Some(cause);
        }
        self.poisoned.store(true, Ordering::Release);
        tracing::error!(error = %self.poison_error(), "the store stopped accepting writes");
    }

    /// Why appends are refused while the head file cannot be written, if
    /// it cannot: a full disk is `DiskFull`, as when the log itself cannot
    /// be written for want of space (which of the two a full disk refuses
    /// first is a matter of timing; the caller is told the same either way).
    pub(super) fn head_stall(&self) -> Option<StoreError> {
        if !self.head_stalled.load(Ordering::Acquire) {
            return None;
        }
        let (reason, disk_full) = self
            .head_unwritten
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        Some(if disk_full {
            StoreError::DiskFull(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("writing {}: {reason}", super::head::HEAD_FILE),
            ))
        } else {
            StoreError::HeadUnwritable(reason)
        })
    }

    pub(super) fn poison_error(&self) -> StoreError {
        let cause = self.poison_cause.lock().ok().and_then(|c| c.clone());
        match cause {
            Some(Poison::FileGone(r)) => StoreError::ActiveFileGone(r),
            Some(Poison::SealBroken(r)) => StoreError::SealBroken(r),
            Some(Poison::Fsync(r)) => StoreError::Poisoned(r),
            None => StoreError::Poisoned(String::new()),
        }
    }

    /// Whether `file`, the writer's active file, is still the file at
    /// `audit.log`: same device and inode, not unlinked, and whole up to
    /// `end`, where the server has written it. An `Err` says what became of
    /// it.
    ///
    /// Whole: no shorter than `end`, and without a hole before it. A file
    /// cut under the server (`truncate`) and then written again at the
    /// writer's offset grows back to its length, with a hole where the cut
    /// records were; the file never has a hole of its own, since the space
    /// ahead of the log is written zeros (`writer/space.rs`). A file system
    /// that cannot tell holes answers as if there were none, and only the
    /// length is checked there.
    pub(super) fn check_in_place(&self, file: &File, end: u64) -> Result<(), String> {
        let open = Identity::of_file(file)
            .map_err(|e| format!("the open active file cannot be examined ({e})"))?;
        let named = self.dir.join(LOG_FILE);
        if open.nlink == 0 {
            // Another file renamed over it unlinks it too.
            return Err(match Identity::of_path(&named) {
                Ok(_) => format!("{LOG_FILE} was replaced by another file"),
                Err(_) => format!("{LOG_FILE} was deleted"),
            });
        }
        if open.len < end {
            return Err(format!(
                "{LOG_FILE} was cut to {} bytes, short of the {end} the server had written",
                open.len
            ));
        }
        // Positional reads and writes only: the file's offset is free to move.
        if let Ok(hole) = rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(0))
            && hole < end
        {
            return Err(format!(
                "{LOG_FILE} was cut at byte {hole} and written after the cut: the records \
                 the server wrote from there to byte {end} are gone"
            ));
        }
        match Identity::of_path(&named) {
            Ok(on_disk) if on_disk.inode == open.inode => Ok(()),
            Ok(_) => Err(format!("{LOG_FILE} was replaced by another file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(format!("{LOG_FILE} was moved away"))
            }
            Err(e) => Err(format!("{LOG_FILE} cannot be examined ({e})")),
        }
    }
}

/// The length of `file`, read as [`Identity`] reads it: without its
/// timestamps, so a later write to it stays as cheap as before.
pub(super) fn file_len(file: &File) -> std::io::Result<u64> {
    Identity::of_file(file).map(|identity| identity.len)
}

/// What [`Shared::check_in_place`] reads of a file after every sync, and
/// nothing more: no timestamps. Since Linux 6.13 a stat that reads a file's
/// times makes its next write take a fine-grained timestamp (multigrain
/// timestamps), so every write after such a stat dirties the inode, and on
/// ext4 without a journal every `fdatasync` then also writes the inode
/// block, synchronously: 0.15 against 0.10 ms per 450-byte write and sync on
/// this project's VM (issue 20). `statx` asked for no time leaves the
/// timestamp coarse, changed once a clock tick, not once a write.
#[derive(Debug, PartialEq)]
struct Identity {
    /// Device and inode number.
    inode: (u32, u32, u64),
    nlink: u64,
    len: u64,
}

impl Identity {
    const WANTED: rustix::fs::StatxFlags = rustix::fs::StatxFlags::INO
        .union(rustix::fs::StatxFlags::NLINK)
        .union(rustix::fs::StatxFlags::SIZE);

    fn of_file(file: &File) -> std::io::Result<Identity> {
        let flags = rustix::fs::AtFlags::EMPTY_PATH;
        match rustix::fs::statx(file, "", flags, Self::WANTED).map(Identity::from_statx) {
            Ok(Some(identity)) => Ok(identity),
            _ => Ok(Identity::from_metadata(&file.metadata()?)),
        }
    }

    fn of_path(path: &std::path::Path) -> std::io::Result<Identity> {
        let flags = rustix::fs::AtFlags::empty();
        match rustix::fs::statx(rustix::fs::CWD, path, flags, Self::WANTED)
            .map(Identity::from_statx)
        {
            Ok(Some(identity)) => Ok(identity),
            _ => Ok(Identity::from_metadata(&std::fs::metadata(path)?)),
        }
    }

    /// `None` when the file system did not fill in all it was asked for
    /// (then a zero link count would read as a deleted file).
    fn from_statx(x: rustix::fs::Statx) -> Option<Identity> {
        let filled = rustix::fs::StatxFlags::from_bits_retain(x.stx_mask);
        filled.contains(Self::WANTED).then(|| Identity {
            inode: (x.stx_dev_major, x.stx_dev_minor, x.stx_ino),
            nlink: u64::from(x.stx_nlink),
            len: x.stx_size,
        })
    }

    /// Where `statx` failed (missing before Linux 4.11, refused by an old
    /// container's seccomp filter) or did not fill in what was asked: the
    /// standard library's stat, which reads the times too and whose error,
    /// if it fails as well, is the one reported.
    fn from_metadata(m: &std::fs::Metadata) -> Identity {
        let dev = m.dev();
        Identity {
            inode: (rustix::fs::major(dev), rustix::fs::minor(dev), m.ino()),
            nlink: m.nlink(),
            len: m.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_files_identity_follows_its_inode_links_and_length_not_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let file = File::create(&path).unwrap();
        std::io::Write::write_all(&mut &file, b"0123456789").unwrap();
        let open = Identity::of_file(&file).unwrap();
        assert_eq!((open.nlink, open.len), (1, 10));
        assert_eq!(Identity::of_path(&path).unwrap(), open);

        // Another file renamed over the name: same name, another inode.
        let other = dir.path().join("other");
        std::fs::write(&other, b"0123456789").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let on_disk = Identity::of_path(&path).unwrap();
        assert_ne!(on_disk.inode, open.inode);
        assert_eq!(on_disk.len, open.len);

        // The open file, now without a name.
        assert_eq!(Identity::of_file(&file).unwrap().nlink, 0);
        std::fs::remove_file(&path).unwrap();
        let gone = Identity::of_path(&path).unwrap_err();
        assert_eq!(gone.kind(), std::io::ErrorKind::NotFound);
    }
}
