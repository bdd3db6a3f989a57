//! Recovery: what the store does with the log it finds on start.
//!
//! The rules:
//!
//! 1. Every complete line (ending in a newline) is kept, and every record
//!    that parses is indexed. A line that does not parse, or whose seq does
//!    not follow the last indexed one or is above `MAX_SEQ`, is left where it
//!    is and left out of the index: damage inside the log is not repaired
//!    here but reported by verification.
//! 2. Bytes after the last newline are a torn write (the process or machine
//!    died mid-`write`). They were never acknowledged: they are appended to
//!    `audit.log.quarantine` (made durable first) and cut from the log.
//! 3. A batch is all or nothing: the first record of a multi-event batch
//!    carries `"batch":N`. If the log ends before all N records of its last
//!    batch, that batch was never acknowledged either, and its records are
//!    quarantined and cut the same way. Only a first record whose MAC is
//!    valid opens a batch: a damaged or forged `"batch":N` could otherwise
//!    cut acknowledged records after it, so such a line is kept like any
//!    damaged line, for verification to report.
//!
//! 4. A record is indexed without a MAC check only when its seq is the one
//!    after the last record indexed. Any other seq (a jump, the first record
//!    of the log) is indexed only if its MAC verifies: the writer continues
//!    from the last indexed seq, so a record whose seq was raised by hand
//!    (its MAC then fails) must not steer it past the records that follow,
//!    which would hide them. Such a record is left in place for verification
//!    to report.
//!
//! 5. The log ends at the line that holds its first zero byte. The writer
//!    keeps zeros written ahead of the log's end (`writer/space.rs`) and a
//!    record never holds one, so the first zero is where the last sync left
//!    the log: what lies past it was written after that sync (in any order:
//!    the file's size no longer orders a crash's writes) and was never
//!    acknowledged. It is quarantined like a torn write, without the zeros:
//!    each stretch of other bytes between them as a line of its own.
//!    Unless a record with a valid MAC and a seq the head file says was
//!    acknowledged lies past it: a sync never leaves zeros before what it
//!    made durable, so those zeros are damage (a bad block, a hand), kept in
//!    place piece by piece like any damaged line, and the log reads on up
//!    to the last such record (`zeros.rs`).
//!
//! Only the end of the log is ever cut, and only what no caller was told was
//! written: the writer acknowledges a batch after all of it is durable.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read as _, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::error::StoreError;
use super::index::Index;
use super::leads;
use super::manifest::{Manifest, SegmentEntry};
use super::record::{MAX_SEQ, MacCheck, Record};
use super::sealer::{self, Job};
use super::segment::{Chunk, SegmentFile, SegmentIndex};
use super::shared::{LOG_FILE, QUARANTINE_FILE};
use crate::durable::{self, sync_dir};
use crate::keys::Keyring;

/// The store as recovery found (and finished) it.
pub(super) struct Recovered {
    /// The active segment, opened for writing in place (`writer/space.rs`).
    pub file: File,
    /// Its length after any cut.
    pub len: u64,
    /// Its id in `segments`, and the seq of its first record (0: empty).
    pub active_segment: u32,
    pub active_first_seq: u64,
    pub index: Index,
    pub segments: HashMap<u32, Arc<SegmentFile>>,
    pub next_segment: u32,
    pub manifest: Manifest,
    /// False when a manifest exists and fails its MAC.
    pub manifest_authentic: bool,
    /// Sealed segments whose compression a crash interrupted.
    pub pending: Vec<Job>,
}

/// Which records recovery indexes (rule 4): the next seq expected, and the
/// keys to check a record that does not have it.
struct Admit<'k> {
    next: u64,
    keyring: &'k Keyring,
}

impl<'k> Admit<'k> {
    /// Expects the seq after the last one in `index`, or `start` (1, or the
    /// one after the last purge) when it is empty.
    fn after(index: &Index, start: u64, keyring: &'k Keyring) -> Admit<'k> {
        Admit {
            next: index.last().map_or(start, |m| m.seq + 1),
            keyring,
        }
    }

    /// Whether `record`, read from `line` (without its newline), is indexed.
    fn admit(&mut self, record: &Record, line: &[u8]) -> bool {
        let ok = record.seq <= MAX_SEQ
            && (record.seq == self.next
                || (record.seq > self.next
                    && record.check_mac(line, self.keyring) == MacCheck::Valid));
        if ok {
            self.next = record.seq + 1;
        }
        ok
    }
}

/// A batch whose records are still being read.
struct OpenBatch {
    offset: u64,
    remaining: u32,
    records: Vec<(Record, u64, u32)>,
}

/// Brings the data directory to a consistent state and indexes it: the
/// manifest's compressed segments (from their index files), sealed segments
/// still waiting for compression, then the active file.
pub(super) fn recover(dir: &Path, keyring: &Keyring) -> Result<Recovered, StoreError> {
    let io = |source| StoreError::Open {
        path: dir.display().to_string(),
        source,
    };
    let loaded = Manifest::load(dir, keyring)?;
    if !loaded.authentic {
        tracing::error!(
            "{} does not match its MAC: it was edited outside the server; VerifyIntegrity \
             reports it",
            super::manifest::MANIFEST_FILE
        );
    }
    let manifest = loaded.manifest;
    let manifest_authentic = loaded.authentic;
    // The first seq of the log, where nothing indexed says otherwise.
    let start = manifest
        .purged
        .as_ref()
        .map_or(1, |p| p.through_seq.saturating_add(1));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    // Leftovers of an interrupted step: always rewritten from scratch.
    for tmp in names.iter().filter(|n| n.ends_with(".tmp")) {
        std::fs::remove_file(dir.join(tmp)).map_err(io)?;
    }
    // Lead copies of segments the manifest does not hold: left by a crash
    // during retention, or by one before a compression is recorded (which is
    // redone, copy included); and older versions' copies (see `leads`),
    // written again in this format by the sealer.
    let recorded: HashSet<String> = manifest
        .segments
        .iter()
        .flat_map(|s| <[String; 2]>::from(leads::names(&s.file)))
        .collect();
    for copy in names.iter().filter(|n| leads::is_copy_file(n)) {
        if !recorded.contains(copy) || leads::is_stale(dir, copy) {
            std::fs::remove_file(dir.join(copy)).map_err(io)?;
        }
    }

    let mut index = Index::default();
    let mut segments = HashMap::new();
    let mut next_segment = 0u32;
    fn add(segments: &mut HashMap<u32, Arc<SegmentFile>>, next: &mut u32, seg: SegmentFile) -> u32 {
        let id = *next;
        *next += 1;
        segments.insert(id, Arc::new(seg));
        id
    }

    for entry in &manifest.segments {
        let path = dir.join(&entry.file);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(file = %entry.file, error = %e, "a segment in the manifest is missing; VerifyIntegrity reports it");
                continue;
            }
        };
        let seg_index = load_index(dir, entry, &file).map_err(io)?;
        let id = add(
            &mut segments,
            &mut next_segment,
            SegmentFile::Gzip {
                name: entry.file.clone(),
                file,
                chunks: seg_index.chunks.clone(),
                leads: leads::open(dir, &entry.file),
            },
        );
        index.add_sealed(id, &seg_index);
    }

    let recorded: Vec<&str> = manifest.segments.iter().map(|s| s.file.as_str()).collect();
    let mut pending = Vec::new();
    for plain in names.iter().filter(|n| is_sealed_plain(n)) {
        let (gz, _) = sealer::names(plain);
        if recorded.contains(&gz.as_str()) {
            // Crashed before step 4: the compressed copy is recorded.
            sealer::delete(dir, plain).map_err(io)?;
            continue;
        }
        let file = File::open(dir.join(plain)).map_err(io)?;
        let id = add(
            &mut segments,
            &mut next_segment,
            SegmentFile::Plain {
                name: plain.clone(),
                file: file.try_clone().map_err(io)?,
            },
        );
        scan(&file, &mut index, id, start, keyring).map_err(io)?;
        tracing::info!(file = %plain, "a sealed segment was not compressed yet; compressing it");
        pending.push(Job::Seal {
            segment: id,
            plain: plain.clone(),
            done: None,
        });
    }

    let before = index.last().map(|m| m.seq);
    let (file, len, active_segment) = {
        let (file, len) = recover_active(dir, &mut index, next_segment, start, keyring)?;
        let reader = file.try_clone().map_err(io)?;
        let id = add(
            &mut segments,
            &mut next_segment,
            SegmentFile::Plain {
                name: LOG_FILE.to_owned(),
                file: reader,
            },
        );
        (file, len, id)
    };
    let active_first_seq = match index.last() {
        Some(m) if Some(m.seq) != before && m.segment == active_segment => index
            .select(
                &Default::default(),
                super::Order::OldestFirst,
                before,
                u64::MAX,
                1,
            )
            .first()
            .map_or(0, |m| m.seq),
        _ => 0,
    };
    Ok(Recovered {
        file,
        len,
        active_segment,
        active_first_seq,
        index,
        segments,
        next_segment,
        manifest,
        manifest_authentic,
        pending,
    })
}

/// Recovers `dir` as [`recover`] does and returns the kept length of the
/// active file and the highest seq indexed: the fuzzing entry point.
pub(crate) fn recover_summary(
    dir: &Path,
    keyring: &Keyring,
) -> Result<(u64, Option<u64>), StoreError> {
    let recovered = recover(dir, keyring)?;
    Ok((recovered.len, recovered.index.last().map(|m| m.seq)))
}

/// `audit.<time>.log`, a sealed segment not yet compressed.
fn is_sealed_plain(name: &str) -> bool {
    name != LOG_FILE && name.starts_with("audit.") && name.ends_with(".log")
}

/// A compressed segment's index: its `.idx` when that matches the manifest,
/// otherwise rebuilt from the `.gz` and rewritten.
fn load_index(dir: &Path, entry: &SegmentEntry, gz: &File) -> std::io::Result<SegmentIndex> {
    let idx_path = dir.join(&entry.index);
    if let Ok(bytes) = std::fs::read(&idx_path)
        && hex::encode(Sha256::digest(&bytes)) == entry.index_sha256
        && let Ok(index) = SegmentIndex::decode(&bytes)
    {
        return Ok(index);
    }
    tracing::warn!(file = %entry.index, "segment index missing or damaged; rebuilding it from the segment");
    let index = rebuild_index(gz)?;
    durable::replace(&idx_path, &index.encode())?;
    Ok(index)
}

/// Reads a compressed segment member by member to rebuild its index.
fn rebuild_index(gz: &File) -> std::io::Result<SegmentIndex> {
    let mut bytes = Vec::new();
    (&*gz).seek(SeekFrom::Start(0))?;
    (&*gz).read_to_end(&mut bytes)?;
    let mut builder = super::segment::idx::IndexBuilder::default();
    let mut rest = bytes.as_slice();
    let mut offset = 0u64;
    while !rest.is_empty() {
        let mut decoder = flate2::bufread::GzDecoder::new(rest);
        let mut plain = Vec::new();
        decoder.read_to_end(&mut plain)?;
        let left = decoder.into_inner();
        let compressed = (rest.len() - left.len()) as u64;
        let chunk_no = builder.index.chunks.len() as u32;
        let mut pos = 0usize;
        for line in plain.split_inclusive(|&b| b == b'\n') {
            if let Some(record) =
                super::record::IndexFields::parse(line.strip_suffix(b"\n").unwrap_or(line))
            {
                builder.row(&record, chunk_no, pos as u32, line.len() as u32);
            }
            pos += line.len();
        }
        builder.index.chunks.push(Chunk {
            offset,
            compressed: compressed as u32,
            plain: plain.len() as u32,
        });
        offset += compressed;
        rest = left;
    }
    Ok(builder.index)
}

/// Indexes the complete records of a sealed plain segment.
fn scan(
    file: &File,
    index: &mut Index,
    segment: u32,
    start: u64,
    keyring: &Keyring,
) -> std::io::Result<()> {
    let mut admit = Admit::after(index, start, keyring);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(());
        }
        if let Ok(record) = Record::parse(&line[..n - 1])
            && admit.admit(&record, &line[..n - 1])
        {
            index.add(&record, segment, offset, n as u32);
        }
        offset += n as u64;
    }
}

/// Recovers the active file (creating it if there is none): indexes its
/// records as segment `segment`, and cuts and quarantines an unacknowledged
/// tail. Returns the file, opened for writing, and its kept length.
fn recover_active(
    dir: &Path,
    index: &mut Index,
    segment: u32,
    start: u64,
    keyring: &Keyring,
) -> Result<(File, u64), StoreError> {
    let acknowledged = super::head::acknowledged(dir, keyring);
    let path = dir.join(LOG_FILE);
    let io = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let existed = path.exists();
    // Not `append`: the writer writes in place (`writer/space.rs`). Not
    // truncated: the log is what this function reads.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    if !existed {
        sync_dir(dir).map_err(io)?;
    }

    let mut admit = Admit::after(index, start, keyring);
    let mut reader = BufReader::with_capacity(1 << 20, &file);
    let mut offset = 0u64;
    let mut line = Vec::with_capacity(4096);
    let mut batch: Option<OpenBatch> = None;
    // Where the kept part of the log ends.
    let mut keep = 0u64;
    // Up to where zeros are damage, not the log's end (rule 5), once a
    // piece that is not a whole line was met.
    let mut damage_end = 0u64;
    let mut looked = false;
    loop {
        line.clear();
        let n = zeros::next_piece(&mut reader, &mut line, offset < damage_end).map_err(io)?;
        if n == 0 {
            break;
        }
        let whole = line.last() == Some(&b'\n') && !line.contains(&0);
        if !whole && offset >= damage_end {
            // The log ends here (rules 2 and 5), unless an acknowledged
            // record lies further on: then what lies between is damage,
            // read again piece by piece and kept in place.
            if looked {
                break;
            }
            looked = true;
            damage_end =
                zeros::acknowledged_end(&file, offset, acknowledged, keyring).map_err(io)?;
            if offset >= damage_end {
                break;
            }
            reader.seek_relative(-(n as i64)).map_err(io)?;
            continue;
        }
        let len = n as u64;
        let parsed = Record::parse(&line[..n - 1]).ok();
        // A record recovery may not index (rule 4) is kept like a damaged
        // line, but it may still open a batch (below, by its own MAC).
        let admitted = parsed
            .as_ref()
            .is_some_and(|r| admit.admit(r, &line[..n - 1]));
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        match (parsed, batch.as_mut()) {
            // A damaged line inside the log is kept, not indexed. Inside an
            // open batch it counts as one of the batch's records, so a
            // damaged batch is not mistaken for a torn one.
            (parsed, Some(open)) => {
                if let Some(record) = parsed.filter(|_| admitted) {
                    open.records.push((record, offset, len32));
                }
                open.remaining -= 1;
                if open.remaining == 0 {
                    if let Some(done) = batch.take() {
                        for (r, o, l) in &done.records {
                            index.add(r, segment, *o, *l);
                        }
                    }
                    keep = offset + len;
                }
            }
            (Some(record), None) => match record.batch {
                Some(size)
                    if size > 1 && record.check_mac(&line[..n - 1], keyring) == MacCheck::Valid =>
                {
                    batch = Some(OpenBatch {
                        offset,
                        remaining: size - 1,
                        records: if admitted {
                            vec![(record, offset, len32)]
                        } else {
                            Vec::new()
                        },
                    });
                }
                _ => {
                    if admitted {
                        index.add(&record, segment, offset, len32);
                    }
                    keep = offset + len;
                }
            },
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
    Ok((file, keep))
}

/// Appends bytes `keep..total` of the log to the quarantine file, makes that
/// durable, then cuts them from the log and makes the cut durable.
fn quarantine(file: &mut File, dir: &Path, keep: u64, total: u64) -> std::io::Result<()> {
    let mut cut = Vec::with_capacity((total - keep) as usize);
    file.seek(SeekFrom::Start(keep))?;
    std::io::Read::read_to_end(file, &mut cut)?;
    let cut = zeros::without_zeros(&cut);
    if cut.is_empty() {
        file.set_len(keep)?;
        return file.sync_all();
    }
    let qpath = dir.join(QUARANTINE_FILE);
    let existed = qpath.exists();
    let mut q = OpenOptions::new().append(true).create(true).open(&qpath)?;
    q.write_all(&cut)?;
    q.sync_all()?;
    if !existed {
        sync_dir(dir)?;
    }
    file.set_len(keep)?;
    file.sync_all()?;
    tracing::warn!(
        bytes = cut.len(),
        offset = keep,
        quarantine = %qpath.display(),
        "cut an unacknowledged tail from the log"
    );
    Ok(())
}

mod zeros;

#[cfg(test)]
mod tests;
