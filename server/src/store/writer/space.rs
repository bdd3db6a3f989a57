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

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;

use super::Writer;
use crate::store::shared::{LOG_FILE, QUARANTINE_FILE, file_len};

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
        let due = self.chunk_due(end);
        let ahead = &mut self.ahead;
        ahead.allocated = ahead.allocated.max(end);
        let Some(want) = due else {
            return Ok(());
        };
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

    /// How far the zeros ahead are to reach after a write that ends at
    /// `end`, when a new chunk of them is due: only when under half a chunk
    /// is left, so the size changes once per chunk, not once per write.
    fn chunk_due(&self, end: u64) -> Option<u64> {
        let ahead = &self.ahead;
        let allocated = ahead.allocated.max(end);
        let want = (end + AHEAD).min(self.max_segment_bytes.max(end));
        let enough = allocated >= want || allocated >= end + AHEAD / 2 || end < ahead.retry_at;
        (!enough).then_some(want)
    }

    /// Before `n` bytes are written at the log's end: when they, or the
    /// zeros written after them, go past what the server has written to
    /// the file, anything the file holds there was written by someone else,
    /// and is kept ([`Self::keep_foreign`]) and cut before it is written
    /// over. One `statx` per chunk of zeros, none for a write into them.
    pub(super) fn keep_foreign_ahead(&mut self, n: usize) -> std::io::Result<()> {
        let end = self.len + n as u64;
        if end <= self.ahead.allocated && self.chunk_due(end).is_none() {
            return Ok(());
        }
        let from = self.ahead.allocated;
        let size = file_len(&self.file)?;
        if size > from {
            self.keep_foreign(from, size)?;
            self.file.set_len(from)?;
        }
        Ok(())
    }

    /// Cuts the zeros past the log's end off the file and makes the cut
    /// durable: before a seal and at a clean stop. Anything but zeros
    /// there was written by someone else: it is kept first
    /// ([`Self::keep_foreign`]), and if it cannot be, nothing is cut.
    pub(super) fn trim(&mut self) -> std::io::Result<()> {
        let size = file_len(&self.file)?;
        if size > self.len {
            self.keep_foreign(self.len, size)?;
            self.file.set_len(self.len)?;
            self.file.sync_data()?;
        }
        self.ahead = Ahead::at(self.len);
        Ok(())
    }

    /// Keeps what someone else wrote into the file between `from` and
    /// `to`, past the log's end, where the server writes only zeros: the
    /// bytes that are not zeros are appended to `audit.log.quarantine`, as
    /// recovery keeps a tail it cuts (each stretch between zeros a line of
    /// its own), made durable, and logged as an error naming the file and
    /// the byte range, before the caller cuts them or writes over them.
    /// Reads the zeros too, at most [`AHEAD`] of them, just written. Before
    /// 2026-12-06 a line appended to `audit.log` under the server was cut at
    /// the next seal or clean stop without a trace (found by an outside
    /// attack).
    fn keep_foreign(&self, from: u64, to: u64) -> std::io::Result<()> {
        let mut buf = vec![0u8; ZEROS.len()];
        let mut at = from;
        // The first byte that is not a zero.
        let first = loop {
            if at >= to {
                return Ok(());
            }
            let n = read_some(&self.file, &mut buf, at, to)?;
            if n == 0 {
                return Ok(());
            }
            match buf[..n].iter().position(|&b| b != 0) {
                Some(i) => break at + i as u64,
                None => at += n as u64,
            }
        };
        let path = self.shared.dir.join(QUARANTINE_FILE);
        let created = !path.exists();
        let file = OpenOptions::new().append(true).create(true).open(&path)?;
        let mut out = Pieces::new(std::io::BufWriter::new(file));
        at = first;
        while at < to {
            let n = read_some(&self.file, &mut buf, at, to)?;
            if n == 0 {
                break;
            }
            out.put(&buf[..n])?;
            at += n as u64;
        }
        let kept = out.kept;
        let file: File = out.finish()?;
        file.sync_all()?;
        if created {
            crate::durable::sync_dir(&self.shared.dir)?;
        }
        tracing::error!(
            file = LOG_FILE,
            from = first,
            to = at,
            bytes = kept,
            quarantine = %path.display(),
            "someone else wrote into {LOG_FILE} past the end of the log, where the server \
             writes only zeros: bytes {first}..{at} of it are kept in {QUARANTINE_FILE} before \
             they are cut; find out who writes to the data directory"
        );
        Ok(())
    }
}

/// Reads up to `buf.len()` bytes of `file` at `at`, not past `to`.
fn read_some(file: &File, buf: &mut [u8], at: u64, to: u64) -> std::io::Result<usize> {
    let n = usize::try_from(to - at).map_or(buf.len(), |left| left.min(buf.len()));
    file.read_at(&mut buf[..n], at)
}

/// Bytes written to the quarantine without their zeros: each stretch
/// between zeros ends with a newline, as recovery writes them.
struct Pieces {
    out: std::io::BufWriter<File>,
    /// The last byte of the stretch being written, if one is.
    last: Option<u8>,
    kept: u64,
}

impl Pieces {
    fn new(out: std::io::BufWriter<File>) -> Pieces {
        Pieces {
            out,
            last: None,
            kept: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut rest = bytes;
        while let Some(&b) = rest.first() {
            if b == 0 {
                self.end_stretch()?;
                let zeros = rest.iter().take_while(|&&b| b == 0).count();
                rest = &rest[zeros..];
            } else {
                let n = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                self.out.write_all(&rest[..n])?;
                self.kept += n as u64;
                self.last = Some(rest[n - 1]);
                rest = &rest[n..];
            }
        }
        Ok(())
    }

    fn end_stretch(&mut self) -> std::io::Result<()> {
        if self.last.take().is_some_and(|b| b != b'\n') {
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<File> {
        self.end_stretch()?;
        self.out
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)
    }
}
