//! The lead copy of a sealed segment: the records that name a lead, grouped
//! by lead, so that a lead's history inflates one small stretch per segment
//! instead of one member per event.
//!
//! A lead's events are spread over the log (a lead comes in, is qualified,
//! routed, mailed and followed up over weeks), so in the segment file, which
//! keeps seq order, each of them sits in a different gzip member: a history
//! of 200 events inflated about 200 members. The copy holds the same lines,
//! byte for byte, ordered by lead and then by seq, in zstd frames of about
//! [`CHUNK_BYTES`] that never split a lead (a lead with more lines than that
//! gets a frame of its own):
//!
//! - `audit.<UTC time>.leads.zst`: the frames, one after another; `zstdcat`
//!   reads it as JSON Lines;
//! - `audit.<UTC time>.leads.idx`, little-endian:
//!
//! ```text
//! "ALLEAD02"
//! u32 n_chunks, then n_chunks × (u64 offset, u32 compressed, u32 plain)
//! u32 n_leads,  then n_leads  × (u32 len, lead bytes, u32 chunk,
//!                                u32 offset in the chunk, u32 bytes)
//! ```
//!
//! Only leads whose lines in the segment lie in more than one gzip member
//! are copied. A lead whose lines all lie in one member (events that came
//! together, a lead seen once) is read from that member, one inflate of
//! about [`CHUNK_BYTES`], which is what its frame of the copy would cost:
//! copying it would compress its lines a second time and gain no read.
//! Until 2026-12-07 every lead was copied.
//!
//! The segment stays gzip (the format users read with `zcat`), but the copy
//! is zstd: it is written in the background for every line it holds, and zstd at
//! level [`ZSTD_LEVEL`] costs far less CPU than deflate, and decompresses
//! faster, for about the same size (figures in BENCHMARKS.md). Frames carry
//! their content size but no checksum: nothing read from the copy is used
//! before its MAC is checked.
//!
//! The copy is derived data, written with the segment during compression
//! (step 2 of a rotation) and deleted with it. It is not in the manifest, and
//! nothing read from it is trusted: every line is checked against its MAC and
//! its seq before it is served, and whatever is missing or fails is read from
//! the segment itself. A segment without a usable copy (sealed by an older
//! version or with `lead_copies` off, or whose copy was damaged) is read the
//! usual way, and the sealer writes its copy from the segment at the next
//! start.
//!
//! Older versions wrote the copy as gzip members (`.leads.gz`, with a
//! `.leads.idx` starting `"ALLEAD01"`). The index keeps its name, so the
//! magic tells the formats apart: an `ALLEAD01` index is refused (the copy
//! counts as missing and is rewritten at start), and recovery deletes every
//! `.leads.gz` and every `.leads.idx` without its `.leads.zst`.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::segment::idx::{Cursor, Row, SegmentError, SegmentIndex};
use super::segment::members::{CHUNK_BYTES, Chunk};
use crate::durable::{self, Staged};

mod lines;
use lines::Lines;

const MAGIC: &[u8; 8] = b"ALLEAD02";
/// The index of an older version's gzip copy.
const OLD_MAGIC: &[u8; 8] = b"ALLEAD01";
/// The data file of an older version's copy, deleted at start.
const OLD_DATA: &str = ".leads.gz";

/// The zstd level of lead copies: level 1, the fastest of the regular
/// levels; higher levels cost more CPU per event for a few percent of a file
/// that is derived data (figures in BENCHMARKS.md).
const ZSTD_LEVEL: i32 = 1;

/// Where one lead's lines are in the copy: `bytes` bytes from `offset` of
/// member `chunk`, in seq order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub chunk: u32,
    pub offset: u32,
    pub bytes: u32,
}

/// An open lead copy.
#[derive(Debug)]
pub(crate) struct LeadCopy {
    pub file: File,
    pub chunks: Vec<Chunk>,
    pub spans: Spans,
}

/// A lead copy's spans by lead, in two allocations: every lead's name in
/// one string, and the spans sorted by name, each with where its name
/// ends. A copy is open for every sealed segment, with an entry per lead
/// in it: as a map of boxed names they took about 70 bytes an entry, now
/// 16 and the name (2026-12-06).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Spans {
    names: String,
    /// Sorted by name; an entry's name runs from the end of the one
    /// before it to its own `end` in `names`.
    entries: Vec<(u32, Span)>,
}

impl Spans {
    /// From `(lead, span)` pairs in any order; `None` when a lead appears
    /// twice or the names pass 4 GiB.
    fn new(mut pairs: Vec<(&str, Span)>) -> Option<Spans> {
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        let mut names = String::with_capacity(pairs.iter().map(|p| p.0.len()).sum());
        let mut entries = Vec::with_capacity(pairs.len());
        for (lead, span) in pairs {
            names.push_str(lead);
            entries.push((u32::try_from(names.len()).ok()?, span));
        }
        Some(Spans { names, entries })
    }

    /// Lead `i`'s name.
    fn name(&self, i: usize) -> &str {
        let start = i
            .checked_sub(1)
            .and_then(|j| self.entries.get(j))
            .map_or(0, |e| e.0 as usize);
        let end = self.entries.get(i).map_or(start, |e| e.0 as usize);
        self.names.get(start..end).unwrap_or("")
    }

    /// Where `lead`'s lines are, if the copy holds any.
    pub(crate) fn get(&self, lead: &str) -> Option<Span> {
        let mut lo = 0;
        let mut hi = self.entries.len();
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.name(mid).cmp(lead) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.entries[mid].1),
            }
        }
        None
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every lead with its span, by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, Span)> {
        (0..self.entries.len()).map(|i| (self.name(i), self.entries[i].1))
    }
}

/// The copy's file names (`.leads.zst`, `.leads.idx`) for a segment, from its
/// plain or compressed name.
pub(crate) fn names(segment: &str) -> (String, String) {
    let stem = segment
        .strip_suffix(".gz")
        .unwrap_or(segment)
        .strip_suffix(".log")
        .unwrap_or(segment);
    (format!("{stem}.leads.zst"), format!("{stem}.leads.idx"))
}

/// Whether `name` is a lead copy file, of this format or an older one.
pub(crate) fn is_copy_file(name: &str) -> bool {
    name.starts_with("audit.")
        && [".leads.zst", ".leads.idx", OLD_DATA]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

/// Whether the copy file `name` is of no use as it is: an older version's
/// gzip data, or an index without its `.leads.zst` (an older version's, or
/// half of an interrupted copy). Recovery deletes these; the copy is then
/// missing and written again at start.
pub(crate) fn is_stale(dir: &Path, name: &str) -> bool {
    if name.ends_with(OLD_DATA) {
        return true;
    }
    match name.strip_suffix(".idx") {
        Some(stem) => !dir.join(format!("{stem}.zst")).exists(),
        None => false,
    }
}

/// Where a lead copy's lines come from: a plain segment, as a file or as
/// all of its bytes.
pub(crate) enum Source<'a> {
    /// The plain sealed file, read as the copy needs its lines.
    File(&'a Path),
    /// The plain segment's bytes, all of them (compression read them
    /// whole): the lines are copied from there, nothing is read.
    Bytes(&'a [u8]),
}

/// Writes the lead copy of the plain segment `plain`, whose index is
/// `index`, to `zst` and `idx`, both staged (written and fsynced under their
/// `.tmp` names, see `crate::durable`) for the caller to publish. Checks
/// `stop` between leads.
pub(crate) fn write(
    plain: Source<'_>,
    index: &SegmentIndex,
    zst: &Path,
    idx: &Path,
    stop: &AtomicBool,
) -> Result<Vec<Staged>, SegmentError> {
    let file;
    let mut lines = match plain {
        Source::File(path) => {
            file = File::open(path)?;
            Lines::new(&file)
        }
        Source::Bytes(bytes) => Lines::whole(bytes),
    };
    let mut starts = Vec::with_capacity(index.chunks.len());
    let mut at = 0u64;
    for c in &index.chunks {
        starts.push(at);
        at += u64::from(c.plain);
    }
    let mut rows: Vec<_> = index.rows.iter().filter(|r| r.lead != 0).collect();
    // Stable: each lead's rows stay in seq order.
    rows.sort_by_key(|r| r.lead);

    let (zst, (chunks, spans)) = durable::stage(zst, |file| {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut frames = Frames::new()?;
        let mut chunks = Vec::new();
        let mut spans = Vec::new();
        let mut buf = Vec::with_capacity(CHUNK_BYTES * 2);
        for group in rows.chunk_by(|a, b| a.lead == b.lead) {
            if stop.load(Ordering::Relaxed) {
                return Err(SegmentError::Stopped);
            }
            // Read from the segment, such a lead costs one member inflated,
            // as from the copy one frame: copying it would only compress
            // its lines twice.
            if in_one_member(group) {
                continue;
            }
            let bytes: usize = group.iter().map(|r| r.len as usize).sum();
            if !buf.is_empty() && buf.len() + bytes > CHUNK_BYTES {
                chunks.push(frames.write(&mut out, &buf)?);
                buf.clear();
            }
            let start = buf.len();
            for (i, r) in group.iter().enumerate() {
                let pos = starts
                    .get(r.chunk as usize)
                    .ok_or_else(|| SegmentError::BadIndex("a row names no chunk".into()))?
                    + u64::from(r.offset);
                lines.append(pos, r.len as usize, i == 0, &mut buf)?;
            }
            let lead = index
                .opt(group[0].lead)
                .ok_or_else(|| SegmentError::BadIndex("a row names no lead".into()))?;
            spans.push((
                lead,
                Span {
                    chunk: chunks.len() as u32,
                    offset: start as u32,
                    bytes: (buf.len() - start) as u32,
                },
            ));
        }
        if !buf.is_empty() {
            chunks.push(frames.write(&mut out, &buf)?);
        }
        out.flush()?;
        Ok((chunks, spans))
    })?;
    let encoded = encode(&chunks, &spans);
    let (idx, ()) = durable::stage(idx, |f| f.write_all(&encoded))?;
    Ok(vec![zst, idx])
}

/// Whether a lead's rows all name one gzip member of the segment: then the
/// copy leaves the lead out (module doc).
fn in_one_member(rows: &[&Row]) -> bool {
    rows.split_first()
        .is_some_and(|(first, rest)| rest.iter().all(|r| r.chunk == first.chunk))
}

/// Writes zstd frames one after another, reusing one compression context.
struct Frames {
    zstd: zstd::bulk::Compressor<'static>,
    buf: Vec<u8>,
    /// The bytes written so far: where the next frame starts.
    end: u64,
}

impl Frames {
    fn new() -> std::io::Result<Frames> {
        Ok(Frames {
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
            buf: Vec::new(),
            end: 0,
        })
    }

    /// Writes `plain` as the next frame to `out`, and returns where it is.
    fn write(&mut self, out: &mut impl std::io::Write, plain: &[u8]) -> std::io::Result<Chunk> {
        self.buf.clear();
        self.buf
            .reserve(zstd::zstd_safe::compress_bound(plain.len()));
        self.zstd.compress_to_buffer(plain, &mut self.buf)?;
        out.write_all(&self.buf)?;
        let chunk = Chunk {
            offset: self.end,
            compressed: self.buf.len() as u32,
            plain: plain.len() as u32,
        };
        self.end += self.buf.len() as u64;
        Ok(chunk)
    }
}

/// Reads and decompresses the frame `chunk` of a lead copy, checking that it
/// holds exactly the bytes its index says.
pub(crate) fn read_frame(file: &File, chunk: &Chunk) -> std::io::Result<Vec<u8>> {
    let bad = |what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("lead copy frame at offset {}: {what}", chunk.offset),
        )
    };
    let mut compressed = vec![0u8; chunk.compressed as usize];
    file.read_exact_at(&mut compressed, chunk.offset)?;
    let whole = chunk.plain as usize;
    let mut plain = Vec::with_capacity(whole);
    UNZSTD
        .with(|cell| {
            let mut slot = cell.borrow_mut();
            let unzstd = match &mut *slot {
                Some(d) => d,
                None => slot.insert(zstd::bulk::Decompressor::new()?),
            };
            unzstd.decompress_to_buffer(&compressed, &mut plain)
        })
        .map_err(|e| bad(format!("not a valid zstd frame ({e})")))?;
    if plain.len() != whole {
        return Err(bad(format!(
            "holds {} bytes, the index says {whole}",
            plain.len()
        )));
    }
    Ok(plain)
}

thread_local! {
    /// One zstd decompression context per reading thread.
    static UNZSTD: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Opens the lead copy of the segment `segment` in `dir`; `None` if it has
/// none or it cannot be used (said in the log).
pub(crate) fn open(dir: &Path, segment: &str) -> Option<LeadCopy> {
    let (zst, idx) = names(segment);
    let opened = std::fs::read(dir.join(&idx)).and_then(|bytes| {
        let (chunks, spans) = decode(&bytes).map_err(std::io::Error::other)?;
        Ok(LeadCopy {
            file: File::open(dir.join(&zst))?,
            chunks,
            spans,
        })
    });
    match opened {
        Ok(copy) => Some(copy),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(file = %idx, error = %e, "lead copy unusable; lead histories read the segment itself");
            None
        }
    }
}

pub(crate) fn encode(chunks: &[Chunk], spans: &[(&str, Span)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + chunks.len() * 16 + spans.len() * 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for c in chunks {
        c.encode_into(&mut out);
    }
    out.extend_from_slice(&(spans.len() as u32).to_le_bytes());
    for (lead, s) in spans {
        out.extend_from_slice(&(lead.len() as u32).to_le_bytes());
        out.extend_from_slice(lead.as_bytes());
        for v in [s.chunk, s.offset, s.bytes] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

pub(crate) type Decoded = (Vec<Chunk>, Spans);

/// Decodes a `.leads.idx`, checking every length and that every span lies
/// inside its chunk.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, SegmentError> {
    let bad = |what: &str| SegmentError::BadIndex(format!("lead copy index: {what}"));
    let mut c = Cursor::new(bytes);
    let magic = c.take(8)?;
    if magic == OLD_MAGIC {
        return Err(bad(
            "an older version's format; the copy is written again at start",
        ));
    }
    if magic != MAGIC {
        return Err(bad("not a lead copy index"));
    }
    let n = c.u32()? as usize;
    let mut chunks = Vec::with_capacity(n.min(bytes.len() / 16));
    for _ in 0..n {
        chunks.push(Chunk::decode_from(&mut c)?);
    }
    let n = c.u32()? as usize;
    let mut spans = Vec::with_capacity(n.min(bytes.len() / 16));
    for _ in 0..n {
        let len = c.u32()? as usize;
        let lead = std::str::from_utf8(c.take(len)?).map_err(|_| bad("a lead is not UTF-8"))?;
        let span = Span {
            chunk: c.u32()?,
            offset: c.u32()?,
            bytes: c.u32()?,
        };
        let fits = chunks.get(span.chunk as usize).is_some_and(|ch| {
            u64::from(span.offset) + u64::from(span.bytes) <= u64::from(ch.plain)
        });
        if !fits {
            return Err(bad("a lead's span points outside its chunk"));
        }
        spans.push((lead, span));
    }
    if !c.is_done() {
        return Err(bad("trailing bytes"));
    }
    let spans = Spans::new(spans).ok_or_else(|| bad("a lead appears twice"))?;
    Ok((chunks, spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every lead is found by name whatever the order it came in, names
    /// that are prefixes of others included; a lead not in the copy is not;
    /// a lead listed twice makes the index unusable.
    #[test]
    fn spans_find_every_lead_and_refuse_a_lead_twice() {
        let leads = ["L10", "L2", "L1", "é", "L", "LEAD-é", "zz", "L100"];
        let span = |i: usize| Span {
            chunk: 0,
            offset: i as u32,
            bytes: 1,
        };
        let pairs: Vec<(&str, Span)> = leads
            .iter()
            .enumerate()
            .map(|(i, l)| (*l, span(i)))
            .collect();
        let chunks = vec![Chunk {
            offset: 0,
            compressed: 10,
            plain: 100,
        }];
        let (_, spans) = decode(&encode(&chunks, &pairs)).unwrap();
        for (i, lead) in leads.iter().enumerate() {
            assert_eq!(spans.get(lead), Some(span(i)), "{lead}");
        }
        for absent in ["", "L0", "L11", "LEAD", "e", "zzz", "\u{0}"] {
            assert_eq!(spans.get(absent), None, "{absent:?}");
        }
        let mut sorted = leads.to_vec();
        sorted.sort_unstable();
        assert_eq!(spans.iter().map(|(l, _)| l).collect::<Vec<_>>(), sorted);

        let mut twice = pairs.clone();
        twice.push(("L2", span(99)));
        let err = decode(&encode(&chunks, &twice)).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[test]
    fn names_follow_the_segment() {
        let want = (
            "audit.20260101T000000.000000Z.leads.zst".to_owned(),
            "audit.20260101T000000.000000Z.leads.idx".to_owned(),
        );
        assert_eq!(names("audit.20260101T000000.000000Z.log"), want);
        assert_eq!(names("audit.20260101T000000.000000Z.log.gz"), want);
        assert!(is_copy_file(&want.0) && is_copy_file(&want.1));
        assert!(is_copy_file("audit.20260101T000000.000000Z.leads.gz"));
        assert!(!is_copy_file("audit.20260101T000000.000000Z.log.gz"));
    }

    #[test]
    fn the_index_round_trips_and_refuses_damage() {
        let chunks = vec![
            Chunk {
                offset: 0,
                compressed: 100,
                plain: 500,
            },
            Chunk {
                offset: 100,
                compressed: 50,
                plain: 200,
            },
        ];
        let spans = vec![
            (
                "LEAD-1",
                Span {
                    chunk: 0,
                    offset: 0,
                    bytes: 500,
                },
            ),
            (
                "LEAD-é",
                Span {
                    chunk: 1,
                    offset: 20,
                    bytes: 180,
                },
            ),
        ];
        let bytes = encode(&chunks, &spans);
        let (c, s) = decode(&bytes).unwrap();
        assert_eq!(c, chunks);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("LEAD-é"), Some(spans[1].1));
        assert_eq!(s.get("LEAD-1"), Some(spans[0].1));
        assert_eq!(s.get("LEAD-"), None);
        assert_eq!(s.get("LEAD-2"), None);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut outside = spans.clone();
        outside[1].1.bytes = 181;
        assert!(decode(&encode(&chunks, &outside)).is_err());
        let mut older = bytes.clone();
        older[..8].copy_from_slice(OLD_MAGIC);
        assert!(
            decode(&older)
                .unwrap_err()
                .to_string()
                .contains("older version")
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}
