//! The active file's preallocated space.
//!
//! `fdatasync` on a file that grew must also commit its new size: on ext4
//! and XFS that is a journal commit on every sync, which costs a single
//! caller about a quarter of its wait (measured 0.21 against 0.155 ms per
//! 450-byte write and sync on this project's VM). So the writer keeps the
//! active file written with zero bytes ahead of its end, a chunk at a time
//! (PostgreSQL fills its WAL segments with zeros for the same reason), and
//! writes records into that space in place: most syncs then flush data
//! only, and only the sync after a new chunk commits a size.
//!
//! The file's length is therefore not where the log ends while the server
//! runs, or after a crash: the log ends where the first zero byte is (a
//! record never holds one: JSON escapes it). Recovery cuts there
//! (`recovery.rs`), readers never read past the committed length, and the
//! zeros are cut off before a segment is sealed and at a clean stop, so a
//! sealed segment and a stopped server's `audit.log` are plain JSON Lines.
//!
//! Zero bytes, not newlines: a record torn by a crash stays a line without
//! its newline, which recovery knows as a torn write.
//!
//! On ext4 an appending `fdatasync` is one journal transaction each; one
//! into the zeros is none (1,000 syncs of 450 bytes: 1,000 transactions
//! against 0, counted in `/proc/fs/jbd2/*/info`; a single caller's `Log`
//! made about 1.2 transactions an event before and 0.01 after, issue 20).
//!
//! Readers of the live file stop at its zeros: recovery (rule 5), the key
//! check before start and `holds_log` (`trust.rs`), and verification past
//! the committed end (`verify.rs`); everything else reads records by the
//! positions the index holds. Anywhere else a zero byte is damage.

use std::os::unix::fs::FileExt as _;

use super::Writer;

/// How far ahead of the log's end the file is written with zeros.
pub(super) const AHEAD: u64 = 1 << 20;

/// The zeros written at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The writer's view of the space ahead of the log.
pub(super) struct Ahead {
    /// How far the file is written, with zeros past the log's end.
    allocated: u64,
    /// The log's end before which no new chunk is tried, after one could
    /// not be had: a nearly full disk is not written a chunk's worth of
    /// zeros for every group.
    retry_at: u64,
}

impl Ahead {
    /// A file written up to the log's end `len`, with nothing ahead.
    pub(super) fn at(len: u64) -> Ahead {
        Ahead {
            allocated: len,
            retry_at: 0,
        }
    }
}

impl Writer {
    /// Writes `buf` where the log ends (`len`), then makes sure the file
    /// holds zeros up to [`AHEAD`] past the new end (never past the segment
    /// size limit unless the write itself goes there).
    ///
    /// Space ahead that cannot be had (a full disk) is not an error while
    /// the write itself fits: the file then ends with the log, the write is
    /// acknowledged once its sync succeeds like any other, and a later write
    /// that does not fit fails as `DiskFull`. Refusing the group here instead
    /// would refuse writes a MiB before the disk is full.
    pub(super) fn write_at_end(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(buf, self.len)?;
        let end = self.len + buf.len() as u64;
        let ahead = &mut self.ahead;
        ahead.allocated = ahead.allocated.max(end);
        let want = (end + AHEAD).min(self.max_segment_bytes.max(end));
        // A new chunk only when under half a chunk is left, so the size
        // changes once per chunk, not once per write.
        if ahead.allocated >= want || ahead.allocated >= end + AHEAD / 2 || end < ahead.retry_at {
            return Ok(());
        }
        let mut at = ahead.allocated;
        while at < want {
            let n = (want - at).min(ZEROS.len() as u64) as usize;
            if let Err(e) = self.file.write_all_at(&ZEROS[..n], at) {
                tracing::debug!(error = %e, "no space ahead of the log; writing on without");
                // Nothing past the log's end may stay that is not zeros
                // written whole: cut the file back to the log.
                self.file.set_len(end)?;
                *ahead = Ahead {
                    allocated: end,
                    retry_at: end + AHEAD / 2,
                };
                return Ok(());
            }
            at += n as u64;
        }
        ahead.allocated = want;
        Ok(())
    }

    /// Cuts the zeros past the log's end off the file and makes the cut
    /// durable: before a seal and at a clean stop.
    pub(super) fn trim(&mut self) -> std::io::Result<()> {
        if self.ahead.allocated > self.len {
            self.file.set_len(self.len)?;
            self.file.sync_data()?;
        }
        self.ahead = Ahead::at(self.len);
        Ok(())
    }
}
