//! Segments: the files the log is split into.
//!
//! - The **active** segment is `audit.log`, plain JSON Lines, appended to by
//!   the writer.
//! - When it passes `max_file_size_mb`, or its first record is
//!   `max_segment_age_secs` old, the writer **seals** it by renaming it to
//!   `audit.<UTC time>.log` and starts a new `audit.log`.
//! - In the background the sealed file is **compressed** to
//!   `audit.<UTC time>.log.gz` with a sidecar index `audit.<UTC time>.idx`.
//!
//! The `.gz` is a multi-member gzip file of whole lines ([`members`]); the
//! server decompresses only the member that holds a record. The `.idx` file
//! ([`idx`]) lets start-up rebuild the in-memory index without decompressing
//! anything. Beside them, compression writes the segment's lead copy
//! (`leads.rs`).
//!
//! Invariant: compression keeps every byte of every line (a stray torn tail
//! included, so verification sees exactly what was there), and its files are
//! only staged (`crate::durable`): the caller puts them in place together.

pub(crate) mod idx;
pub(crate) mod members;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read as _, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest as _, Sha256};

pub(crate) use idx::SegmentError;
pub use idx::SegmentIndex;
pub(crate) use members::{Chunk, Inflated, Members, read_chunk_prefix};

use super::leads::LeadCopy;
use super::record::IndexFields;
use crate::durable::{self, Staged};
use idx::IndexBuilder;
use members::{CHUNK_BYTES, Member};

/// What sealing learned about a segment, for the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SealedInfo {
    pub events: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_timestamp: i64,
    pub last_timestamp: i64,
    pub first_prev: String,
    pub last_signature: String,
    pub sha256: String,
    pub bytes: u64,
    pub index_sha256: String,
    pub event_types: BTreeMap<String, u64>,
    pub workflows: BTreeMap<String, u64>,
    pub leads: u64,
}

/// A sealed segment, compressed: what sealing learned, its index, and its
/// `.gz` and `.idx`, staged for the caller to publish.
pub(crate) struct Compressed {
    pub info: SealedInfo,
    pub index: SegmentIndex,
    pub staged: Vec<Staged>,
    /// The plain segment's bytes, when it was read whole (at most
    /// [`WHOLE_MAX`]): what its lead copy is built from.
    pub plain: Option<Vec<u8>>,
}

/// How much of a plain segment compression holds at a time. A segment no
/// larger (the default is 50 MB) is read whole, with one `read`, and its
/// lead copy is built from the same bytes ([`Compressed::plain`]) instead of
/// read again line by line; a larger one is read in slabs of this size.
pub(crate) const WHOLE_MAX: usize = 64 << 20;

/// Compresses the sealed plain segment `plain` into `gz` and its index into
/// `idx`, keeping every byte of every line. Both are staged (written and
/// fsynced under their `.tmp` names) for the caller to publish. Checks
/// `stop` between members. `buf` is memory to read the segment into (its
/// bytes are discarded): a sealer that passes the buffer of its last
/// segment back in skips faulting in a segment's worth of fresh pages.
pub(crate) fn compress(
    plain: &Path,
    gz: &Path,
    idx: &Path,
    stop: &AtomicBool,
    buf: Vec<u8>,
) -> Result<Compressed, SegmentError> {
    compress_in_slabs(plain, gz, idx, stop, WHOLE_MAX, buf)
}

/// [`compress`], reading at most `slab` bytes at a time.
fn compress_in_slabs(
    plain: &Path,
    gz: &Path,
    idx: &Path,
    stop: &AtomicBool,
    slab: usize,
    mut buf: Vec<u8>,
) -> Result<Compressed, SegmentError> {
    buf.clear();
    let mut source = File::open(plain)?;
    let size = source.metadata()?.len();
    let (gz, (mut info, index, whole)) = durable::stage(gz, |file| {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Sha256::new();
        let mut builder = IndexBuilder::default();
        let mut info = SealedInfo::default();
        let mut member = Member::new();
        // `buf[chunk..next]` is the chunk being gathered, whole lines;
        // `buf[next..]` is not yet looked at.
        let mut buf = buf;
        let (mut chunk, mut next) = (0, 0);
        let mut eof = false;
        // Whether `buf` still holds the file from its first byte.
        let mut whole = true;
        loop {
            let Some(end) = memchr::memchr(b'\n', &buf[next..]).map(|i| next + i + 1) else {
                if !eof {
                    // Keep the chunk being gathered, read the next slab.
                    if chunk > 0 {
                        buf.drain(..chunk);
                        next -= chunk;
                        chunk = 0;
                        whole = false;
                    }
                    eof = fill(&mut source, &mut buf, size, slab)?;
                    continue;
                }
                if next == buf.len() {
                    break;
                }
                // A sealed segment always ends with a whole line; keep stray
                // bytes anyway so verification sees exactly what was there.
                buf.push(b'\n');
                continue;
            };
            let line = &buf[next..end - 1];
            if let Some(record) = IndexFields::read(line) {
                let chunk_no = builder.index.chunks.len() as u32;
                builder.row(
                    &record,
                    chunk_no,
                    (next - chunk) as u32,
                    (end - next) as u32,
                );
                info.note(&record);
            }
            next = end;
            if next - chunk >= CHUNK_BYTES {
                if stop.load(Ordering::Relaxed) {
                    return Err(SegmentError::Stopped);
                }
                let written = member.write(&mut out, Some(&mut hasher), &buf[chunk..next])?;
                builder.index.chunks.push(written);
                chunk = next;
            }
        }
        if chunk < buf.len() {
            let written = member.write(&mut out, Some(&mut hasher), &buf[chunk..])?;
            builder.index.chunks.push(written);
        }
        out.flush()?;
        info.sha256 = hex::encode(hasher.finalize());
        info.bytes = member.end();
        info.count(&builder.index);
        Ok((info, builder.index, whole.then_some(buf)))
    })?;
    let encoded = index.encode();
    info.index_sha256 = hex::encode(Sha256::digest(&encoded));
    let (idx, ()) = durable::stage(idx, |f| f.write_all(&encoded))?;
    Ok(Compressed {
        info,
        index,
        staged: vec![gz, idx],
        plain: whole,
    })
}

/// Reserves room for `n` more bytes of a segment in `buf`. Memory that
/// cannot be had fails the sealer's step (which it tries again later)
/// rather than the process.
pub(crate) fn reserve(buf: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
    buf.try_reserve(n).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("no memory for {n} bytes of the segment: {e}"),
        )
    })
}

/// Appends the next `slab` bytes of `source` to `buf`, room reserved by the
/// file's `size` so that a segment read whole is not copied as `buf`
/// grows; returns whether the file's end was reached.
fn fill(source: &mut File, buf: &mut Vec<u8>, size: u64, slab: usize) -> std::io::Result<bool> {
    let want = usize::try_from(size).unwrap_or(slab).min(slab);
    // One more for the newline a torn last line gets.
    reserve(buf, want + 1)?;
    let got = source.take(slab as u64).read_to_end(buf)?;
    Ok(got < slab)
}

impl SealedInfo {
    fn note(&mut self, r: &IndexFields<'_>) {
        if self.events == 0 {
            self.first_seq = r.seq;
            self.first_timestamp = r.timestamp;
            r.prev.as_ref().clone_into(&mut self.first_prev);
        }
        self.events += 1;
        self.last_seq = r.seq;
        self.last_timestamp = r.timestamp;
        r.signature.as_ref().clone_into(&mut self.last_signature);
    }

    /// Counts the event types, workflows and distinct leads of `index`'s
    /// rows by their interned ids (each string once, not once per record).
    fn count(&mut self, index: &SegmentIndex) {
        let n = index.strings.len();
        let (mut types, mut workflows, mut leads) = (vec![0u64; n], vec![0u64; n], vec![false; n]);
        for row in &index.rows {
            if let Some(c) = types.get_mut(row.event_type as usize) {
                *c += 1;
            }
            if let Some(c) = (row.workflow as usize)
                .checked_sub(1)
                .and_then(|i| workflows.get_mut(i))
            {
                *c += 1;
            }
            if let Some(seen) = (row.lead as usize)
                .checked_sub(1)
                .and_then(|i| leads.get_mut(i))
            {
                *seen = true;
            }
        }
        let named = |counts: Vec<u64>| -> BTreeMap<String, u64> {
            counts
                .into_iter()
                .zip(&index.strings)
                .filter(|(c, _)| *c > 0)
                .map(|(c, name)| (name.clone(), c))
                .collect()
        };
        self.event_types = named(types);
        self.workflows = named(workflows);
        self.leads = leads.iter().filter(|&&seen| seen).count() as u64;
    }
}

/// An open segment file, for reading records by position.
#[derive(Debug)]
pub(crate) enum SegmentFile {
    /// The active segment, or a sealed one not yet compressed.
    Plain { name: String, file: File },
    /// A compressed segment, its chunk table, and its lead copy if it has
    /// one.
    Gzip {
        name: String,
        file: File,
        chunks: Vec<Chunk>,
        leads: Option<LeadCopy>,
    },
}

impl SegmentFile {
    /// The file's name in the data directory (when it was opened).
    pub(crate) fn name(&self) -> &str {
        match self {
            SegmentFile::Plain { name, .. } | SegmentFile::Gzip { name, .. } => name,
        }
    }
}

#[cfg(test)]
mod tests;
