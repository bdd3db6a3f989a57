//! Verification across segments.
//!
//! Verification takes a snapshot of the data directory as it is on disk (the
//! manifest, the segment files, opened so later rotations cannot pull them
//! away), checks each segment on its own, in parallel, and then stitches the
//! segments together: each segment's first record must carry the seq and
//! `prev` that follow the segment before it. The log starts at seq 1 with
//! `prev` = 64 zeros, or after the last retention purge recorded *in the
//! log* (a purge event is signed and chained like any other, so a deleted
//! segment cannot pass for a purged one).
//!
//! Checked besides every record: the manifest's MAC; each compressed
//! segment's SHA-256, first `prev`, last signature and event count against
//! the manifest; gzip data that ends early; segment files the manifest does
//! not list. A segment's `.idx` is derived data, not checked here: a start
//! rebuilds one that does not match its SHA-256 in the manifest.
//!
//! The log is read once, on every core: a worker per file checks its lines
//! and, for the tree check, hashes them as Merkle leaves
//! (`tree::Leaves`). A compressed segment the server has open is inflated
//! member by member as its chunk table says, which is about twice as fast
//! as a streaming inflate, and counts only if the file turns out to be
//! exactly the one sealed; any other is read again as a plain gzip stream,
//! which locates the damage.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sha2::{Digest as _, Sha256};

mod findings;
mod handle;
pub(super) mod snapshot;

use super::chain::{Finding, FindingKind, KeyRule, Report, Verifier};
use super::error::StoreError;
use super::manifest::SegmentEntry;
use super::record::GENESIS;
use super::retention::verify_start;
use super::segment::{Chunk, Inflated, Members, SegmentFile};
use super::shared::{LOG_FILE, Shared};
use super::tree::Leaves;
use crate::keys::Keyring;
use findings::{report_active_missing, report_directory, report_head};
use snapshot::{Item, snapshot};

/// A receipt a caller kept, to be checked against the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub signature: String,
}

/// One item's result, with what stitching needs.
struct Checked {
    report: Report,
    /// The last record read (any seq): where the next item must chain on.
    last: Option<(u64, String)>,
    /// Set for a missing segment: the manifest's word for where it ended.
    skip_to: Option<(u64, String)>,
    /// The Merkle leaves of its lines, when asked for.
    leaves: Option<Leaves>,
}

/// With `leaves` (empty, from a [`super::tree::Plan`]), also hashes every
/// line read as a Merkle leaf, for the tree check, and returns them.
pub(super) fn verify(
    shared: &Shared,
    from_seq: u64,
    to_seq: u64,
    checkpoints: &[Checkpoint],
    mut leaves: Option<Leaves>,
) -> Result<(Report, Option<Leaves>), StoreError> {
    let started = Instant::now();
    let head = shared.index().last().map_or(0, |m| m.seq);
    let range = from_seq..=if to_seq == 0 { u64::MAX } else { to_seq };
    let wanted: HashMap<u64, String> = checkpoints
        .iter()
        .map(|c| (c.seq, c.signature.clone()))
        .collect();
    let (start_seq, start_prev) = verify_start(shared)?.unwrap_or((1, GENESIS.to_owned()));
    let snapshot = snapshot(&shared.dir, &shared.keyring)?;

    // Drop what a purge removed; skip (without reading) compressed segments
    // outside the range. Plain files are always read: their span is unknown.
    let items: Vec<Item> = snapshot
        .items
        .into_iter()
        .filter_map(|item| match item {
            Item::Gzip { ref entry, .. }
            | Item::Missing { ref entry }
            | Item::Skip { ref entry } => {
                if entry.last_seq < start_seq {
                    None
                } else if entry.last_seq < *range.start() || entry.first_seq > *range.end() {
                    Some(Item::Skip {
                        entry: entry.clone(),
                    })
                } else {
                    Some(item)
                }
            }
            Item::Plain { .. } => Some(item),
        })
        .collect();

    let active_end = shared.active_len.load(Ordering::Acquire);
    // The chunk tables of the compressed segments, by file name.
    let gz_chunks: HashMap<String, Arc<SegmentFile>> = shared
        .segments()
        .values()
        .filter(|s| matches!(&***s, SegmentFile::Gzip { .. }))
        .map(|s| (s.name().to_owned(), Arc::clone(s)))
        .collect();
    let checked = check_all(
        &items,
        Context {
            active_end,
            keyring: &shared.keyring,
            wanted: &wanted,
            range: &range,
            gz_chunks: &gz_chunks,
        },
        leaves.as_ref(),
    );

    let mut total = Report::default();
    let mut expected = (start_seq, start_prev);
    let mut keys = KeyRule::default();
    for (item, c) in items.iter().zip(checked) {
        if let Some((seq, prev)) = &c.report.first
            && range.contains(seq)
        {
            stitch(&mut total, item.name(), &expected, *seq, prev);
        }
        if let Some(finding) = keys.next(&c.report.keys, item.name(), shared.keyring.active().0)
            && range.contains(&finding.seq)
        {
            total.findings.push(finding);
        }
        total.absorb(c.report);
        if let (Some(all), Some(part)) = (&mut leaves, c.leaves) {
            all.extend(part);
        }
        if let Some(skip) = c.skip_to {
            expected = skip;
        } else if let Some((seq, sig)) = c.last {
            expected = (seq.saturating_add(1), sig);
        }
    }
    // The range must reach as far as the acknowledged head allows; a range
    // that starts past the head asks about nothing yet.
    let required = head.min(*range.end());
    if snapshot.active_missing {
        report_active_missing(&mut total, from_seq.max(1), required);
    } else if required >= from_seq.max(1) {
        total.check_truncation(required, LOG_FILE);
    }
    report_head(shared, &mut total, &range, start_seq);
    total.check_checkpoints(&wanted, LOG_FILE);
    total.check_key(shared.keyring.active().0, LOG_FILE);
    report_directory(
        &mut total,
        (snapshot.authentic, &snapshot.manifest_key_id),
        &snapshot.unlisted,
        &shared.keyring,
    );
    tracing::debug!(
        events = total.events_checked,
        ms = started.elapsed().as_millis() as u64,
        "verified"
    );
    Ok((total, leaves))
}

/// Reports where a segment does not follow on from the one before it.
fn stitch(total: &mut Report, file: &str, expected: &(u64, String), seq: u64, prev: &str) {
    let mut find = |kind, message| {
        total.findings.push(Finding {
            kind,
            seq,
            line: 1,
            file: file.to_owned(),
            message,
        })
    };
    if seq > expected.0 {
        find(
            FindingKind::SeqGap,
            format!(
                "{file} starts at seq {seq} but seq {} was expected: seqs {}..={} are missing \
                 (a segment or records were deleted)",
                expected.0,
                expected.0,
                seq - 1
            ),
        );
    } else if seq < expected.0 {
        find(
            FindingKind::SeqOutOfOrder,
            format!(
                "{file} starts at seq {seq} but seq {} was expected: segments overlap or are \
                 out of order",
                expected.0
            ),
        );
    }
    if prev != expected.1 {
        find(
            FindingKind::ChainBreak,
            format!(
                "{file} does not chain to the segment before it (the prev of seq {seq} is not \
                 the last signature before it): segments were deleted, replaced or reordered"
            ),
        );
    }
}

/// What checking any item needs.
#[derive(Clone, Copy)]
struct Context<'a> {
    /// The committed end of the active file.
    active_end: u64,
    keyring: &'a Keyring,
    /// The receipts to find, by seq.
    wanted: &'a HashMap<u64, String>,
    range: &'a std::ops::RangeInclusive<u64>,
    /// The compressed segments the server has open, by file name.
    gz_chunks: &'a HashMap<String, Arc<SegmentFile>>,
}

/// Checks every item, on as many threads as the machine has cores.
fn check_all(items: &[Item], cx: Context<'_>, leaves: Option<&Leaves>) -> Vec<Checked> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<Checked>> = (0..items.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return done;
                        };
                        let mut checked = check(item, cx, leaves.map(Leaves::part));
                        if let Some(leaves) = &mut checked.leaves {
                            leaves.read();
                        }
                        done.push((i, checked));
                    }
                })
            })
            .collect();
        for worker in workers {
            // A worker only panics on a bug; its items stay unreported.
            if let Ok(done) = worker.join() {
                for (i, c) in done {
                    results[i] = Some(c);
                }
            }
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or(Checked {
                report: Report::default(),
                last: None,
                skip_to: None,
                leaves: None,
            })
        })
        .collect()
}

fn check(item: &Item, cx: Context<'_>, mut leaves: Option<Leaves>) -> Checked {
    let fresh = || Verifier::unanchored(cx.keyring, cx.wanted).with_range(cx.range.clone());
    match item {
        Item::Skip { entry } => Checked {
            report: Report::default(),
            last: None,
            skip_to: Some(after(entry)),
            leaves: None,
        },
        Item::Missing { entry } => {
            let mut v = fresh();
            v.problem(
                FindingKind::SegmentMissing,
                &entry.file,
                format!(
                    "{} (seqs {}..={}) is listed in the manifest but missing, and no purge \
                     recorded in the log covers it: it was deleted",
                    entry.file, entry.first_seq, entry.last_seq
                ),
            );
            let mut report = v.finish();
            for f in &mut report.findings {
                f.seq = entry.first_seq;
            }
            Checked {
                report,
                last: None,
                skip_to: Some(after(entry)),
                leaves: None,
            }
        }
        Item::Plain { name, file } => {
            let mut v = fresh();
            v.segment_read();
            // Past the committed end of the active file are writes in
            // progress and zeros, not records.
            let live_end = (name == LOG_FILE).then_some(cx.active_end);
            let reader = BufReader::with_capacity(1 << 20, file);
            let last = read_lines(&mut v, name, reader, live_end, leaves.as_mut()).last;
            Checked {
                report: v.finish(),
                last,
                skip_to: None,
                leaves,
            }
        }
        Item::Gzip { entry, file } => {
            let chunks = cx.gz_chunks.get(&entry.file).and_then(|s| match &**s {
                SegmentFile::Gzip { chunks, .. } => Some(chunks.as_slice()),
                SegmentFile::Plain { .. } => None,
            });
            check_gzip(fresh, entry, || At { file, pos: 0 }, chunks, leaves)
        }
    }
}

/// The `signature` of the last line of `file`'s bytes `from..end` (`from`
/// a line's start) that reads as a record, lines read as verification reads
/// them: the `prev` verification expects of a record written after them.
/// `None` when no line there reads as one.
pub(super) fn last_signature(
    file: &File,
    from: u64,
    end: u64,
    keyring: &Keyring,
) -> std::io::Result<Option<String>> {
    let none = HashMap::new();
    let mut v = Verifier::unanchored(keyring, &none);
    let reader = BufReader::new(At { file, pos: from }.take(end.saturating_sub(from)));
    let lines = read_lines(&mut v, LOG_FILE, reader, None, None);
    match lines.error {
        Some(e) => Err(e),
        None => Ok(lines.last.map(|(_, signature)| signature)),
    }
}

/// `BufRead::read_until(b'\n', line)`, searching with the memchr crate:
/// std's search goes a word at a time, and was 2 % of verification's
/// samples (the verify threads', `perf`, 2026-12-07).
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut read = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let (used, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), available.is_empty()),
        };
        line.extend_from_slice(&available[..used]);
        reader.consume(used);
        read += used;
        if done {
            return Ok(read);
        }
    }
}

/// What reading a file's lines found.
struct Lines {
    last: Option<(u64, String)>,
    count: u64,
    error: Option<std::io::Error>,
}

/// Feeds every line of `reader` to the verifier (and to `leaves`). A torn
/// last line is reported; a read error is returned for the caller to report.
fn read_lines(
    v: &mut Verifier<'_>,
    file: &str,
    mut reader: impl BufRead,
    live_end: Option<u64>,
    mut leaves: Option<&mut Leaves>,
) -> Lines {
    let mut out = Lines {
        last: None,
        count: 0,
        error: None,
    };
    let mut line = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    let mut pos = 0u64;
    loop {
        line.clear();
        match read_line(&mut reader, &mut line) {
            Ok(0) => return out,
            Ok(n) => pos += n as u64,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
        line_no += 1;
        let start = pos - line.len() as u64;
        // Past the committed end of the active file are writes in progress,
        // then the zeros the writer keeps ahead (`writer/space.rs`): a line
        // there that holds a zero, or is incomplete, ends the records. Zeros
        // anywhere else are damage, reported like any other.
        let past_end = live_end.is_some_and(|end| start >= end);
        if past_end && memchr::memchr(0, &line).is_some() {
            return out;
        }
        // Zeros inside the log (a zeroed block) swallow the newline of the
        // record they damaged: they are one damaged line, and what follows
        // them on the same line is a record read on its own.
        if !past_end
            && let Some(z) = memchr::memrchr(0, &line)
            && z + 1 < line.len()
        {
            out.count += 1;
            v.check_line(file, line_no, &line[..=z]);
            line.drain(..=z);
        }
        if line.last() != Some(&b'\n') {
            if !past_end {
                v.torn_tail(file, line_no, line.len());
            }
            return out;
        }
        line.pop();
        out.count += 1;
        if let Some(head) = v.check_line(file, line_no, &line) {
            if let Some(leaves) = leaves.as_deref_mut() {
                leaves.line(head.seq, &line);
            }
            // One buffer for the last signature, not a string per line.
            match &mut out.last {
                Some((seq, signature)) => {
                    *seq = head.seq;
                    head.signature.clone_into(signature);
                }
                None => out.last = Some((head.seq, head.signature.to_owned())),
            }
        }
    }
}

/// Verifies `bytes` as a log of its own from seq 1, the way [`verify`]
/// reads a plain segment: the fuzzing entry point.
pub(crate) fn check_log_bytes(bytes: &[u8], keyring: &Keyring) -> Report {
    let none = HashMap::new();
    let mut v = Verifier::new(keyring, &none, 1, GENESIS);
    v.segment_read();
    read_lines(&mut v, LOG_FILE, bytes, None, None);
    v.finish()
}

/// Verifies `bytes` as the compressed segment `entry` describes: the
/// fuzzing entry point.
pub(crate) fn check_gzip_bytes(bytes: &[u8], entry: &SegmentEntry, keyring: &Keyring) -> Report {
    let none = HashMap::new();
    let fresh = || Verifier::unanchored(keyring, &none);
    check_gzip(fresh, entry, || bytes, None, None).report
}

/// Checks the compressed segment `entry` (`open` reads its file from the
/// start). With its `chunks` (the table the server keeps in memory), the
/// members are inflated whole ([`Inflated`]); that reading counts only when
/// the file is exactly the one sealed (it hashes to the manifest's SHA-256
/// and holds the members the table says), else the file is read again as
/// any gzip stream ([`Members`]), which is what says where and how it is
/// damaged.
fn check_gzip<'k, R: Read>(
    verifier: impl Fn() -> Verifier<'k>,
    entry: &SegmentEntry,
    open: impl Fn() -> R,
    chunks: Option<&[Chunk]>,
    leaves: Option<Leaves>,
) -> Checked {
    if let Some(chunks) = chunks {
        let part = leaves.as_ref().map(Leaves::part);
        let (checked, exact) = read_gzip(verifier(), entry, open(), Some(chunks), part);
        if exact {
            return checked;
        }
    }
    read_gzip(verifier(), entry, open(), None, leaves).0
}

/// [`check_gzip`] with one decoder; true when the file was read through and
/// is the one sealed.
fn read_gzip(
    mut v: Verifier<'_>,
    entry: &SegmentEntry,
    file: impl Read,
    chunks: Option<&[Chunk]>,
    mut leaves: Option<Leaves>,
) -> (Checked, bool) {
    v.segment_read();
    let name = &entry.file;
    let mut hashing = Hashing {
        inner: file,
        hasher: Sha256::new(),
    };
    let lines = match chunks {
        Some(chunks) => read_lines(
            &mut v,
            name,
            Inflated::new(&mut hashing, chunks),
            None,
            leaves.as_mut(),
        ),
        None => read_lines(
            &mut v,
            name,
            BufReader::with_capacity(1 << 20, Members::new(&mut hashing)),
            None,
            leaves.as_mut(),
        ),
    };
    if let Some(e) = &lines.error {
        v.problem(
            FindingKind::SegmentUnreadable,
            name,
            format!(
                "{name} cannot be decompressed after {} lines ({e}): the file was truncated or \
                 corrupted",
                lines.count
            ),
        );
    }
    // Hash whatever the decoder did not need (a damaged file's tail).
    let _ = std::io::copy(&mut hashing, &mut std::io::sink());
    let sha = hex::encode(hashing.hasher.finalize());
    let exact = lines.error.is_none() && sha == entry.sha256;
    let mut report = v.finish();
    let mut modified = Vec::new();
    if sha != entry.sha256 {
        modified.push("its SHA-256 is not the one recorded when it was sealed".to_owned());
    }
    if let Some((seq, prev)) = &report.first
        && (*seq != entry.first_seq || *prev != entry.first_prev)
    {
        modified.push(format!(
            "it starts at seq {seq}, the manifest says seq {}",
            entry.first_seq
        ));
    }
    if let Some((seq, sig)) = &lines.last
        && lines.error.is_none()
        && (*seq != entry.last_seq || *sig != entry.last_signature)
    {
        modified.push(format!(
            "it ends at seq {seq}, the manifest says seq {}",
            entry.last_seq
        ));
    }
    if !modified.is_empty() {
        report.findings.push(Finding {
            kind: FindingKind::SegmentModified,
            seq: entry.first_seq,
            line: 0,
            file: name.clone(),
            message: format!(
                "{name} (seqs {}..={}) was changed after it was sealed: {}",
                entry.first_seq,
                entry.last_seq,
                modified.join("; ")
            ),
        });
    }
    // The next segment chains on from what the (signed) manifest says this
    // one holds, not from what was read: a damaged or misplaced segment is
    // reported once, here, not again at the untouched segment after it.
    let checked = Checked {
        report,
        last: lines.last,
        skip_to: Some(after(entry)),
        leaves,
    };
    (checked, exact)
}

/// Where the chain goes on after the segment `entry`, as its (signed)
/// manifest entry says: the next seq and the `prev` it must have.
fn after(entry: &SegmentEntry) -> (u64, String) {
    (
        entry.last_seq.saturating_add(1),
        entry.last_signature.clone(),
    )
}

/// Reads a file from `pos` on with positional reads, leaving its cursor
/// alone, so it can be read from the start again.
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};

    /// Lines read as `read_until` reads them, across buffer boundaries, with
    /// or without a last newline.
    #[test]
    fn lines_read_as_read_until_reads_them() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"\n",
            b"one\ntwo\n\nthree",
            b"a longer line than the buffer\nand a torn one",
            b"\n\n\nx\n",
            b"{\"seq\":1}\n\0\0\0{\"seq\":2}\n",
        ];
        for input in inputs {
            for capacity in [1, 2, 3, 7, 64] {
                let (mut ours, mut std_) = (
                    BufReader::with_capacity(capacity, input),
                    BufReader::with_capacity(capacity, input),
                );
                loop {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    let n = super::read_line(&mut ours, &mut a).unwrap();
                    assert_eq!(n, std_.read_until(b'\n', &mut b).unwrap());
                    assert_eq!(a, b, "{input:?} through {capacity} bytes");
                    if n == 0 {
                        break;
                    }
                }
            }
        }
    }
}
