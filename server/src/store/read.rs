//! The read path: records by position, from the active file with one
//! `pread`, from a compressed segment by inflating its gzip member only as
//! far as the record, through the cache of decompressed chunks (`cache`); a lead's
//! history through each sealed segment's lead copy; large reads split over
//! a few long-lived reader threads. [`Page`] is what a page of a selection
//! reads as.
//!
//! Invariants: every line read is checked to be the record the index
//! expects (its seq) before it is returned, and a mismatch is an error
//! naming VerifyIntegrity, never another record; every line a page serves
//! has its MAC checked first, so a record changed on disk is an error, never
//! an answer; a compressed segment that cannot be inflated, or a plain file
//! that ends before records the index places in it, is an error naming the
//! file and its seqs, so a reader can go on after it; nothing
//! read from a lead copy is served before its MAC and seq are checked, and
//! whatever the copy lacks or gets wrong is read from the segment itself.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::error::StoreError;
use super::index::{Filter, Meta, Order};
use super::leads;
use super::record::{Decoded, MacCheck, Record, RecordHead, lines_of};
use super::segment::{Chunk, SegmentFile, read_chunk_prefix};
use super::shared::{Shared, file_len};
use crate::keys::Keyring;

/// The most bytes of stored lines one page reads (and always its first
/// record): what a page holds in memory, decoded, is of that order,
/// whatever its `limit`. A page of 1,000 events of 64 KiB of details each
/// was 64 MB of lines, several times that once decoded and encoded, for a
/// Query answer of which at most 3 MiB is sent (`service::query`), and a
/// stream's catch-up buffers up to 8 pages for a slow reader (`hub`). Small
/// events never reach it: 3 MiB is some 7,000 records of 450 bytes.
pub(crate) const PAGE_LINE_BYTES: u64 = 3 << 20;

/// Marks a lead copy's members in the chunk cache (segment ids stay far below).
const LEAD_COPY: u32 = 1 << 31;

/// Reads of at least this many records are split over threads.
const PARALLEL_READ_MIN: usize = 48;
/// The most threads one read uses, the caller's included.
const MAX_READ_THREADS: usize = 4;

/// One page of the records a filter selects, read, with `details` as `D`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T = Record> {
    /// The records, in the order asked for.
    pub records: Vec<T>,
    /// The cursor of the next page (the seq of the last record here) when
    /// more records match; `None` when this page is the last.
    pub next: Option<u64>,
}

/// A few long-lived threads that read parts of large reads (long-lived, so
/// the allocator's per-thread arenas are reused rather than multiplied).
pub(super) struct Readers {
    jobs: Mutex<Option<std::sync::mpsc::Sender<ReadJob>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    count: usize,
}

type ReadAnswer<T> = std::sync::mpsc::Receiver<Result<Vec<T>, StoreError>>;

/// A part of a read, run on a reader thread; it sends its own answer.
type ReadJob = Box<dyn FnOnce() + Send>;

/// How one part of a read is read.
type PartReader<T> = Arc<dyn Fn(&Shared, &[Meta]) -> Result<Vec<T>, StoreError> + Send + Sync>;

impl Readers {
    pub(super) fn start() -> Readers {
        let count = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_READ_THREADS)
            - 1;
        let (tx, rx) = std::sync::mpsc::channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for i in 0..count {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("auditlog-reader-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        job();
                    }
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => tracing::warn!(error = %e, "could not start a reader thread"),
            }
        }
        Readers {
            count: threads.len(),
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        }
    }

    /// The records at `metas`, in their order, decoded as `T`; through the
    /// lead copies when `lead` is given (every record at `metas` names it).
    /// Blocking. A large read is split over the reader threads: a lead's
    /// history in sealed segments touches one compressed chunk per record,
    /// and inflating them is most of its cost.
    pub(super) fn read<T: Decoded>(
        &self,
        shared: &Arc<Shared>,
        lead: Option<&str>,
        metas: &[Meta],
    ) -> Result<Vec<T>, StoreError> {
        let lead: Option<Arc<str>> = lead.map(Into::into);
        let read: PartReader<T> =
            Arc::new(move |shared, part| shared.read_part(lead.as_deref(), part));
        let helpers = self.count;
        if helpers == 0 || metas.len() < PARALLEL_READ_MIN {
            return read(shared, metas);
        }
        let per_part = metas.len().div_ceil(helpers + 1);
        let mut parts = metas.chunks(per_part);
        let mine = parts.next().unwrap_or_default();
        let handed: Vec<_> = parts
            .map(|part| self.hand(shared, part.to_vec(), Arc::clone(&read)))
            .collect();
        let mut records = read(shared, mine)?;
        for answer in handed {
            let part = answer.recv().map_err(|_| {
                StoreError::Read(std::io::Error::other("a reader thread stopped"))
            })??;
            records.extend(part);
        }
        Ok(records)
    }

    /// Hands `metas` to a reader thread; the answer comes on the receiver.
    fn hand<T: Decoded>(
        &self,
        shared: &Arc<Shared>,
        metas: Vec<Meta>,
        part: PartReader<T>,
    ) -> ReadAnswer<T> {
        let (reply, answer) = std::sync::mpsc::channel();
        let shared = Arc::clone(shared);
        let job: ReadJob = Box::new(move || {
            let _ = reply.send(part(&shared, &metas));
        });
        let sent = self
            .jobs
            .lock()
            .ok()
            .and_then(|jobs| jobs.as_ref().map(|tx| tx.send(job)));
        match sent {
            Some(Ok(())) => {}
            // No reader left: answer on this thread.
            Some(Err(std::sync::mpsc::SendError(job))) => job(),
            None => {}
        }
        answer
    }

    pub(super) fn stop(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let threads = self.threads.lock().map(|mut t| std::mem::take(&mut *t));
        for t in threads.unwrap_or_default() {
            let _ = t.join();
        }
    }
}

impl Shared {
    /// Positions of up to `limit` records matching `filter` (see
    /// [`super::index::Index::select`]), and the cursor of the page after
    /// them: one more is selected to know whether there is one.
    pub(super) fn select_page(
        &self,
        filter: &Filter,
        order: Order,
        cursor: Option<u64>,
        max_seq: u64,
        limit: usize,
    ) -> (Vec<Meta>, Option<u64>) {
        let mut metas =
            self.index()
                .select(filter, order, cursor, max_seq, limit.saturating_add(1));
        let next = if metas.len() > limit {
            metas.truncate(limit);
            metas.last().map(|m| m.seq)
        } else {
            None
        };
        (metas, next)
    }

    /// [`Self::select_page`] for a page that is read and served: it ends
    /// before the record that would take its stored lines past
    /// `max_bytes` (keeping at least one), and its cursor then
    /// continues after its last record, as one cut by `limit` does.
    pub(super) fn select_served(
        &self,
        filter: &Filter,
        order: Order,
        cursor: Option<u64>,
        max_seq: u64,
        limit: usize,
        max_bytes: u64,
    ) -> (Vec<Meta>, Option<u64>) {
        let (mut metas, mut next) = self.select_page(filter, order, cursor, max_seq, limit);
        let mut bytes = 0u64;
        let fit = metas
            .iter()
            .take_while(|m| {
                bytes += u64::from(m.len);
                bytes <= max_bytes
            })
            .count()
            .max(1);
        if fit < metas.len() {
            metas.truncate(fit);
            next = metas.last().map(|m| m.seq);
        }
        (metas, next)
    }

    /// `Store::page` on this thread.
    pub(super) fn page<T: Decoded>(
        &self,
        filter: &Filter,
        order: Order,
        cursor: Option<u64>,
        max_seq: u64,
        limit: usize,
    ) -> Result<Page<T>, StoreError> {
        let (metas, next) =
            self.select_served(filter, order, cursor, max_seq, limit, PAGE_LINE_BYTES);
        let records = self.read_part(filter.lead_id.as_deref(), &metas)?;
        Ok(Page { records, next })
    }

    /// The records at `metas` on this thread: through the lead copies when
    /// `lead` is given (every record at `metas` names it).
    fn read_part<T: Decoded>(
        &self,
        lead: Option<&str>,
        metas: &[Meta],
    ) -> Result<Vec<T>, StoreError> {
        match lead {
            Some(lead) => self.read_lead_records(lead, metas),
            None => self.read_records(metas),
        }
    }

    /// The segment holding `meta`, and `meta` as it is now: the sealer may
    /// have moved the record into a compressed segment since `meta` was read.
    pub(super) fn locate(&self, meta: &Meta) -> Result<(Arc<SegmentFile>, Meta), StoreError> {
        if let Some(seg) = self.segments().get(&meta.segment) {
            return Ok((Arc::clone(seg), *meta));
        }
        let current = self.index().get(meta.seq);
        current
            .and_then(|m| self.segments().get(&m.segment).map(|s| (Arc::clone(s), m)))
            .ok_or_else(|| {
                StoreError::Read(std::io::Error::other(format!(
                    "seq {} is no longer stored (purged by retention)",
                    meta.seq
                )))
            })
    }

    /// The records at `metas`, in order, on this thread, each once its MAC
    /// is checked: what a page serves. Each compressed chunk is inflated
    /// once, only as far as the last record read from it.
    pub(super) fn read_records<T: Decoded>(&self, metas: &[Meta]) -> Result<Vec<T>, StoreError> {
        self.map_lines(metas, |line, meta| {
            check_signed(line, meta, &self.keyring)?;
            parse_at(line, meta)
        })
    }

    /// `f` of each line at `metas` (without its newline), in order, on this
    /// thread. Each compressed chunk is inflated once, only as far as the
    /// last record read from it.
    pub(super) fn map_lines<R>(
        &self,
        metas: &[Meta],
        mut f: impl FnMut(&[u8], &Meta) -> Result<R, StoreError>,
    ) -> Result<Vec<R>, StoreError> {
        let located = metas
            .iter()
            .map(|m| self.locate(m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut reach: HashMap<(u32, u32), usize> = HashMap::new();
        for (segment, meta) in &located {
            if let SegmentFile::Gzip { .. } = **segment {
                let (chunk, end) = chunk_reach(meta);
                let r = reach.entry((meta.segment, chunk)).or_default();
                *r = (*r).max(end);
            }
        }
        located
            .iter()
            .map(|(segment, meta)| {
                let need = reach
                    .get(&(meta.segment, chunk_reach(meta).0))
                    .copied()
                    .unwrap_or(0);
                self.with_line(segment, meta, need, |line| f(line, meta))
            })
            .collect()
    }

    /// The records at `metas`, all of lead `lead`, in order, on this
    /// thread: from each segment's lead copy where it has one and the line
    /// there passes its MAC and seq checks, from the segment otherwise.
    pub(super) fn read_lead_records<T: Decoded>(
        &self,
        lead: &str,
        metas: &[Meta],
    ) -> Result<Vec<T>, StoreError> {
        let located = metas
            .iter()
            .map(|m| self.locate(m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows: Vec<Option<T>> = std::iter::repeat_with(|| None).take(metas.len()).collect();
        // Positions in `metas`, by segment, for segments with a copy of
        // `lead`, with that copy and `lead`'s span in it.
        let mut by_segment: Vec<(u32, &leads::LeadCopy, leads::Span, Vec<usize>)> = Vec::new();
        for (i, (segment, meta)) in located.iter().enumerate() {
            let SegmentFile::Gzip {
                leads: Some(copy), ..
            } = &**segment
            else {
                continue;
            };
            let Some(span) = copy.spans.get(lead) else {
                continue;
            };
            match by_segment.last_mut() {
                Some((id, .., positions)) if *id == meta.segment => positions.push(i),
                _ => by_segment.push((meta.segment, copy, span, vec![i])),
            }
        }
        for (id, copy, span, positions) in by_segment {
            let segment = &located[positions[0]].0;
            let (chunk, range) = match self.lead_lines(id, copy, span) {
                Ok(lines) => lines,
                Err(e) => {
                    tracing::warn!(segment = %segment.name(), error = %e, "lead copy unreadable; reading the segment");
                    continue;
                }
            };
            // In seq order, as the copy is written; a line a damaged copy
            // holds out of order is not found, and is read from the segment.
            let lines: Vec<(RecordHead<'_>, &[u8])> = lines_of(&chunk[range])
                .filter_map(|line| RecordHead::peek(line).map(|head| (head, line)))
                .collect();
            let mut failed = Vec::new();
            for i in positions {
                let meta = &located[i].1;
                let checked = lines
                    .binary_search_by_key(&meta.seq, |(head, _)| head.seq)
                    .ok()
                    .map(|k| &lines[k])
                    .filter(|(head, line)| head.check_mac(line, &self.keyring) == MacCheck::Valid);
                match checked.map(|(_, line)| parse_at::<T>(line, meta)) {
                    Some(Ok(row)) => rows[i] = Some(row),
                    _ => failed.push(meta.seq),
                }
            }
            if let Some(first) = failed.first() {
                tracing::warn!(
                    segment = %segment.name(),
                    records = failed.len(),
                    first_seq = first,
                    "lines in the lead copy are missing or fail their MAC or seq check; reading them from the segment"
                );
            }
        }
        let missing: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].is_none()).collect();
        if !missing.is_empty() {
            let metas: Vec<Meta> = missing.iter().map(|&i| metas[i]).collect();
            for (i, row) in missing.into_iter().zip(self.read_records::<T>(&metas)?) {
                rows[i] = Some(row);
            }
        }
        Ok(rows.into_iter().flatten().collect())
    }

    /// The decompressed frame of `copy` holding a lead's lines, at `span`, and
    /// where they are in it.
    fn lead_lines(
        &self,
        segment: u32,
        copy: &leads::LeadCopy,
        span: leads::Span,
    ) -> Result<(Arc<Vec<u8>>, std::ops::Range<usize>), StoreError> {
        let start = span.offset as usize;
        let end = start + span.bytes as usize;
        // Cached beside the segment's own chunks, under a key they never use.
        let chunk = self.cached((segment | LEAD_COPY, span.chunk), end, || {
            let frame = copy
                .chunks
                .get(span.chunk as usize)
                .ok_or_else(|| std::io::Error::other("chunk out of range"))?;
            leads::read_frame(&copy.file, frame)
        })?;
        if chunk.len() < end {
            return Err(StoreError::Read(std::io::Error::other(
                "the lead copy's frame is shorter than its index says",
            )));
        }
        Ok((chunk, start..end))
    }

    /// The record at `meta` in `segment`, decoded as `T`.
    fn parse_in<T: Decoded>(
        &self,
        segment: &SegmentFile,
        meta: &Meta,
        need: usize,
    ) -> Result<T, StoreError> {
        self.with_line(segment, meta, need, |line| parse_at(line, meta))
    }

    /// Calls `f` with the line of the record at `meta` in `segment` (without
    /// its newline); for a compressed segment, its chunk is inflated to at
    /// least `need` bytes.
    pub(super) fn with_line<R>(
        &self,
        segment: &SegmentFile,
        meta: &Meta,
        need: usize,
        f: impl FnOnce(&[u8]) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let strip =
            |line: &[u8]| -> Result<R, StoreError> { f(line.strip_suffix(b"\n").unwrap_or(line)) };
        match segment {
            SegmentFile::Plain { name, file } => {
                let mut buf = vec![0u8; meta.len as usize];
                file.read_exact_at(&mut buf, meta.offset)
                    .map_err(|e| self.short(name, file, meta, e))?;
                strip(&buf)
            }
            SegmentFile::Gzip {
                name, file, chunks, ..
            } => {
                let (chunk_no, end) = chunk_reach(meta);
                let inner = end - meta.len as usize;
                let chunk = self
                    .chunk(meta.segment, chunk_no, file, chunks, need.max(end))
                    .map_err(|e| self.damaged(name, meta, &e))?;
                strip(chunk.get(inner..end).ok_or_else(|| {
                    self.damaged(name, meta, &"the segment index points outside its chunk")
                })?)
            }
        }
    }

    /// The error for a compressed segment `name` that cannot be read where
    /// `meta` is: it names the segment and its seqs (from the manifest), so
    /// a caller can read on after it.
    fn damaged(&self, name: &str, meta: &Meta, reason: &dyn std::fmt::Display) -> StoreError {
        let span = self
            .manifest
            .lock()
            .ok()
            .and_then(|m| m.entry(name).map(|e| (e.first_seq, e.last_seq)));
        let (first_seq, last_seq) = span.unwrap_or((meta.seq, meta.seq));
        StoreError::SegmentDamaged {
            file: name.to_owned(),
            first_seq,
            last_seq,
            resume_from: last_seq.saturating_add(1),
            reason: reason.to_string(),
        }
    }

    /// The error for a plain file `name` (the active file, or a sealed one
    /// not yet compressed) whose read of `meta` failed with `e`. A file that
    /// ends before the record, or is gone, lost records: like a damaged
    /// segment, the error names it, the seqs it no longer holds and where to
    /// read on, so a reader can go on up to them (DATA_LOSS). Any other
    /// failure (EIO) is no proof of damage and stays a read error. (Until
    /// 2026-12-06 a cut `audit.log` failed every read through it with
    /// "failed to fill whole buffer", INTERNAL, even a stream's events in
    /// the intact segments before it; found by an outside attack.)
    fn short(&self, name: &str, file: &File, meta: &Meta, e: std::io::Error) -> StoreError {
        use std::io::ErrorKind::{NotFound, UnexpectedEof};
        if !matches!(e.kind(), UnexpectedEof | NotFound) {
            return StoreError::Read(e);
        }
        let len = file_len(file).ok();
        let lost = len.and_then(|len| self.index().past_end(meta.seq, len));
        let (first_seq, last_seq) = lost.unwrap_or((meta.seq, meta.seq));
        let reason = match len {
            Some(len) if e.kind() == UnexpectedEof => format!(
                "it is {len} bytes long, and the index places seq {first_seq} past that: the \
                 file was cut outside the server; restore it if a copy exists, and restart \
                 the server"
            ),
            _ => format!(
                "{e}: the file is gone; restore it if a copy exists, and restart the server"
            ),
        };
        StoreError::SegmentDamaged {
            file: name.to_owned(),
            first_seq,
            last_seq,
            resume_from: last_seq.saturating_add(1),
            reason,
        }
    }

    /// A decompressed chunk, at least its first `need` bytes, from the cache
    /// or the file.
    fn chunk(
        &self,
        segment: u32,
        chunk_no: u32,
        file: &File,
        chunks: &[Chunk],
        need: usize,
    ) -> Result<Arc<Vec<u8>>, StoreError> {
        self.cached((segment, chunk_no), need, || {
            let chunk = chunks
                .get(chunk_no as usize)
                .ok_or_else(|| std::io::Error::other("chunk out of range"))?;
            read_chunk_prefix(file, chunk, need)
        })
    }

    /// The decompressed chunk `key`, at least its first `need` bytes, from
    /// the cache or from `read`.
    fn cached(
        &self,
        key: (u32, u32),
        need: usize,
        read: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>, StoreError> {
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(key, need)) {
            return Ok(hit);
        }
        let plain = Arc::new(read().map_err(StoreError::Read)?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(key, Arc::clone(&plain));
        }
        Ok(plain)
    }

    /// The line of the record at `meta` as stored, without its newline.
    pub(super) fn read_line(&self, meta: &Meta) -> Result<Vec<u8>, StoreError> {
        let (segment, meta) = self.locate(meta)?;
        self.with_line(&segment, &meta, 0, |line| Ok(line.to_vec()))
    }

    /// The record at `meta`, inflating only as far as its own line.
    pub(super) fn read_record(&self, meta: &Meta) -> Result<Record, StoreError> {
        let (segment, meta) = self.locate(meta)?;
        // `need` 0: inflate only as far as this record's own line.
        self.parse_in(&segment, &meta, 0)
    }
}

/// For a record in a compressed segment: its chunk and where its line ends
/// in it.
pub(super) fn chunk_reach(meta: &Meta) -> (u32, usize) {
    let chunk = (meta.offset >> 32) as u32;
    let inner = (meta.offset & 0xffff_ffff) as usize;
    (chunk, inner + meta.len as usize)
}

/// Whether the line read for `meta` is one the server signed: a line
/// changed on disk is an error naming its seq, never served as the record.
/// The reasons here say what is wrong; [`StoreError::Corrupt`] adds what to
/// do (run VerifyIntegrity, read on after the seq).
/// (Until 2026-12-05 only lead copies were checked, and a record edited in
/// `audit.log` was answered as it read; found by probing the server.)
fn check_signed(line: &[u8], meta: &Meta, keyring: &Keyring) -> Result<(), StoreError> {
    let reason = match RecordHead::peek(line).map(|head| (head.check_mac(line, keyring), head)) {
        Some((MacCheck::Valid, _)) => return Ok(()),
        Some((MacCheck::UnknownKey, head)) => format!(
            "it is signed with key {:?}, which this server does not hold, so it cannot be \
             checked; configure that key",
            head.key_id
        ),
        Some((MacCheck::Invalid, _)) | None => {
            "it fails its MAC check: the file was changed outside the server".to_owned()
        }
    };
    Err(StoreError::Corrupt {
        seq: meta.seq,
        reason,
    })
}

/// Decodes the line read for `meta` and checks it is the record expected.
fn parse_at<T: Decoded>(line: &[u8], meta: &Meta) -> Result<T, StoreError> {
    let record = T::from_line(line).map_err(|e| StoreError::Corrupt {
        seq: meta.seq,
        reason: e.to_string(),
    })?;
    if record.seq() != meta.seq {
        return Err(StoreError::Corrupt {
            seq: meta.seq,
            reason: format!(
                "the record at its position has seq {}: the file was changed outside the \
                 server",
                record.seq()
            ),
        });
    }
    Ok(record)
}

#[cfg(test)]
mod tests;
