//! The store's one error type: every way a store operation can fail, each
//! saying what was (or was not) written and what to do about it.
//!
//! Invariant: a write that fails with any of these left nothing behind
//! (`DiskFull`, `Write`), or left the store refusing further writes
//! (`Poisoned`, `ActiveFileGone`, `SealBroken`); a verification finding is
//! never one of them.

use super::manifest;
use super::shared::LOG_FILE;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the disk holding the data directory is full ({0}); nothing was written, free space and retry"
    )]
    DiskFull(std::io::Error),
    #[error("writing the log failed ({0}); nothing was written")]
    Write(std::io::Error),
    #[error(
        "the store stopped accepting writes after an fsync failure ({0}); restart the server to recover from what is on disk"
    )]
    Poisoned(String),
    #[error(
        "writes are refused: {0}, while the server ran, so it no longer holds what was written \
         to it; nothing more is acknowledged into a file that is not on disk. Restore the file \
         if a copy exists, then restart the server and run VerifyIntegrity"
    )]
    ActiveFileGone(String),
    #[error(
        "writes are refused: {0}; restart the server, which finishes the seal from what is on \
         disk"
    )]
    SealBroken(String),
    #[error(
        "writes are refused while the head file cannot be written ({0}): it records the last \
         acknowledged seq outside the log, so that a start can tell a cut of the log's tail, \
         and nothing more is acknowledged without it; make the data directory writable again \
         (space, permissions, the disk) and writes resume within a second"
    )]
    HeadUnwritable(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("{0}")]
    WrongRole(&'static str),
    #[error("the group was refused at seq {seq}: {reason}; nothing of it was written")]
    Refused { seq: u64, reason: String },
    #[error(
        "this node's replica holds seqs up to {head}, not yet seq {wanted} (min_seq); it is \
         catching up: retry, or read from another node"
    )]
    Behind { head: u64, wanted: u64 },
    #[error("cannot open the data directory {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("reading the log failed: {0}")]
    Read(std::io::Error),
    #[error(
        "the log is damaged at seq {seq}: {reason}; run VerifyIntegrity to locate the damage, and \
         read on after it from seq {}",
        .seq.saturating_add(1)
    )]
    Corrupt { seq: u64, reason: String },
    /// A file of the log that cannot be read where the index says its
    /// records are: a compressed segment that does not inflate, or a plain
    /// file (the active one, or a sealed one not yet compressed) that ends
    /// before them. `first_seq..=last_seq` are the seqs it holds that cannot
    /// be read, and `resume_from` the first seq after the file.
    #[error(
        "the {} {file}, which holds seqs {first_seq} to {last_seq}, cannot be read \
         ({reason}); run VerifyIntegrity to locate the damage, and read on after it from seq \
         {resume_from}",
        if file == LOG_FILE { "active file" } else { "sealed segment" }
    )]
    SegmentDamaged {
        file: String,
        first_seq: u64,
        last_seq: u64,
        resume_from: u64,
        reason: String,
    },
    #[error("rotating the log failed: {0}")]
    Rotate(String),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(
        "the newest {checked} records all fail their MAC under key {key_id:?} while their chain \
         holds: the HMAC key is not the one the log was written with (replaced or wrong); \
         configure the original key (hmac_key_file, hmac_key, AUDITLOG_HMAC_KEY, or \
         <data_dir>/hmac.key) and start again. To rotate the key, give the new one a new \
         hmac_key_id and keep the old one as a [[retired_hmac_keys]] entry"
    )]
    WrongKey { key_id: String, checked: usize },
    #[error(
        "the newest {checked} records are signed with key {key_id:?}, which this server does not \
         hold (it signs with {active:?} and holds no retired key of that id): after a rotation, \
         keep the old key as a [[retired_hmac_keys]] entry with id = {key_id:?} and its \
         key_file, so the records it signed still verify"
    )]
    UnheldKey {
        key_id: String,
        active: String,
        checked: usize,
    },
    #[error(
        "the data directory {dir:?} is gone ({source}): it was deleted or moved while the server \
         ran, and with it every file of the log, so nothing can be verified, and nothing more \
         is acknowledged; put the directory back (from a backup if it was deleted), restart \
         the server and run VerifyIntegrity again"
    )]
    DataDirGone { dir: String, source: std::io::Error },
    #[error(
        "a verification is running and {max_queued} more are waiting for it \
         (max_queued_verifications); retry once it has finished"
    )]
    VerificationBusy { max_queued: usize },
}

impl StoreError {
    /// An equivalent error: `StoreError` holds `io::Error`, which is not
    /// `Clone`, and every caller of a failed group gets one.
    pub(super) fn duplicate(&self) -> StoreError {
        let io = |src: &std::io::Error| std::io::Error::new(src.kind(), src.to_string());
        match self {
            StoreError::DiskFull(src) => StoreError::DiskFull(io(src)),
            StoreError::Write(src) => StoreError::Write(io(src)),
            StoreError::Poisoned(r) => StoreError::Poisoned(r.clone()),
            StoreError::ActiveFileGone(r) => StoreError::ActiveFileGone(r.clone()),
            StoreError::SealBroken(r) => StoreError::SealBroken(r.clone()),
            StoreError::HeadUnwritable(r) => StoreError::HeadUnwritable(r.clone()),
            StoreError::Rotate(r) => StoreError::Rotate(r.clone()),
            StoreError::SegmentDamaged {
                file,
                first_seq,
                last_seq,
                resume_from,
                reason,
            } => StoreError::SegmentDamaged {
                file: file.clone(),
                first_seq: *first_seq,
                last_seq: *last_seq,
                resume_from: *resume_from,
                reason: reason.clone(),
            },
            StoreError::Read(src) => StoreError::Read(io(src)),
            StoreError::Corrupt { seq, reason } => StoreError::Corrupt {
                seq: *seq,
                reason: reason.clone(),
            },
            StoreError::Refused { seq, reason } => StoreError::Refused {
                seq: *seq,
                reason: reason.clone(),
            },
            other => StoreError::Write(std::io::Error::other(other.to_string())),
        }
    }
}

/// Whether `e` means the file system is out of space (or of the user's
/// quota).
pub(super) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}
