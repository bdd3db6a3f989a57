//! Segments: the files the log is split into.
//!
//! - The **active** segment is `audit.log`, plain JSON Lines, appended to by
//!   the writer.
//! - When it passes `max_file_size_mb` the writer **seals** it by renaming it
//!   to `audit.<UTC time>.log` and starts a new `audit.log`.
//! - In the background the sealed file is **compressed** to
//!   `audit.<UTC time>.log.gz` with a sidecar index `audit.<UTC time>.idx`.
//!
//! The `.gz` is a multi-member gzip file: records are grouped into chunks of
//! about [`CHUNK_BYTES`] (whole lines only), each compressed as its own gzip
//! member. `zcat` and `gzip -d` read it as one stream, so `zcat file | jq`
//! works; the server decompresses only the chunk that holds a record.
//!
//! The `.idx` file lets start-up rebuild the in-memory index without
//! decompressing anything. Layout, little-endian:
//!
//! ```text
//! "ALIDX001"
//! u32 n_strings, then n_strings × (u32 len, bytes)      interned field values
//! u32 n_chunks,  then n_chunks  × (u64 offset, u32 compressed, u32 plain)
//! u64 n_records, then n_records × (u64 seq, i64 timestamp_us,
//!     u32 event_type, u32 actor, u32 lead+1, u32 workflow+1,
//!     u32 idempotency_key+1, u32 chunk, u32 offset_in_chunk, u32 len)
//! ```
//!
//! (`+1` fields use 0 for "none"; the others are indexes into the strings.)
//! Its SHA-256 is in the manifest, so an edited index is noticed and rebuilt.
//!
//! Beside them, compression writes the segment's lead copy (`leads.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::read::GzDecoder;
use flate2::{Compress, Compression, Crc, Decompress, FlushCompress, FlushDecompress, Status};
use sha2::{Digest as _, Sha256};

use super::record::IndexFields;

/// Plain bytes per gzip member: small enough that reading one record
/// decompresses little, large enough to compress well and inflate fast. A
/// lead's history touches one member per record (a lead's events are spread
/// over the log), while verification inflates every member: on realistic
/// records, 16 KiB members compress 4.3x (a history of 190 events took about
/// 8 ms then, when reads still inflated whole members on one thread); 4 KiB
/// ones compress 3.2x, inflate at half the speed and were no faster for
/// histories (verification fell to 0.9 M events/s); 8 KiB compress 3.8x and
/// keep verification over 1 M events/s (BENCHMARKS.md).
pub const CHUNK_BYTES: usize = 8 * 1024;

const IDX_MAGIC: &[u8; 8] = b"ALIDX001";

/// One gzip member of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Where the member starts in the `.gz` file.
    pub offset: u64,
    /// Its compressed length.
    pub compressed: u32,
    /// The length of the lines it holds.
    pub plain: u32,
}

impl Chunk {
    /// Its entry in an index file: `u64 offset, u32 compressed, u32 plain`.
    pub(super) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.compressed.to_le_bytes());
        out.extend_from_slice(&self.plain.to_le_bytes());
    }

    pub(super) fn decode_from(c: &mut Cursor<'_>) -> Result<Chunk, SegmentError> {
        Ok(Chunk {
            offset: c.u64()?,
            compressed: c.u32()?,
            plain: c.u32()?,
        })
    }
}

/// One record's entry in a segment index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub seq: u64,
    pub timestamp: i64,
    pub event_type: u32,
    pub actor: u32,
    /// 0 = none, else string index + 1 (likewise `workflow`, `idempotency_key`).
    pub lead: u32,
    pub workflow: u32,
    pub idempotency_key: u32,
    pub chunk: u32,
    pub offset: u32,
    pub len: u32,
}

/// The decoded `.idx` of a sealed segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    pub strings: Vec<String>,
    pub chunks: Vec<Chunk>,
    pub rows: Vec<Row>,
}

/// What sealing learned about a segment, for the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealedInfo {
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

/// Why a segment could not be compressed or read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("compression was stopped by shutdown")]
    Stopped,
    #[error("segment index is damaged: {0}")]
    BadIndex(String),
}

/// Compresses the sealed plain segment `plain` into `gz` and its index into
/// `idx` (both made durable), keeping every byte of every line. Checks `stop`
/// between chunks.
pub fn compress(
    plain: &Path,
    gz: &Path,
    idx: &Path,
    stop: &AtomicBool,
) -> Result<(SealedInfo, SegmentIndex), SegmentError> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(plain)?);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(gz)?);
    let mut hasher = Sha256::new();
    let mut builder = IndexBuilder::default();
    let mut info = SealedInfo::default();
    let mut leads = HashSet::new();
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut line = Vec::with_capacity(4096);
    let mut member = Member::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            // A sealed segment always ends with a whole line; keep stray
            // bytes anyway so verification sees exactly what was there.
            line.push(b'\n');
        }
        if let Some(record) = IndexFields::parse(&line[..line.len() - 1]) {
            let chunk_no = builder.index.chunks.len() as u32;
            builder.row(&record, chunk_no, chunk.len() as u32, line.len() as u32);
            info.note(&record, &mut leads);
        }
        chunk.extend_from_slice(&line);
        if chunk.len() >= CHUNK_BYTES {
            if stop.load(Ordering::Relaxed) {
                return Err(SegmentError::Stopped);
            }
            let written = member.write(&mut out, Some(&mut hasher), &chunk)?;
            builder.index.chunks.push(written);
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        let written = member.write(&mut out, Some(&mut hasher), &chunk)?;
        builder.index.chunks.push(written);
    }
    out.flush()?;
    out.get_ref().sync_all()?;
    info.sha256 = hex::encode(hasher.finalize());
    info.bytes = member.end();
    info.leads = leads.len() as u64;
    let encoded = builder.index.encode();
    info.index_sha256 = hex::encode(Sha256::digest(&encoded));
    let mut f = File::create(idx)?;
    f.write_all(&encoded)?;
    f.sync_all()?;
    Ok((info, builder.index))
}

/// The deflate level of sealed segments and lead copies. On the ingest
/// benchmark's log, in 8 KiB members, zlib-rs at level 2 deflates 220 to 240
/// MB/s at 4.35x against level 3's 167 to 184 MB/s at 4.40x, and level 1's
/// 467 MB/s at only 3.05x (BENCHMARKS.md): level 2 costs 1% of disk for
/// about a quarter less CPU in the background work every event pays for
/// twice.
const DEFLATE_LEVEL: u32 = 2;

/// Writes gzip members one after another, reusing one deflate state (a
/// fresh encoder per member would allocate and clear its tables every few
/// KiB).
pub(super) struct Member {
    deflate: Compress,
    buf: Vec<u8>,
    /// The bytes written so far: where the next member starts.
    end: u64,
}

/// The fixed header of every member written: gzip, deflate, no flags, no
/// time, fastest-compression hint absent, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl Member {
    pub(super) fn new() -> Member {
        Member {
            deflate: Compress::new(Compression::new(DEFLATE_LEVEL), false),
            buf: Vec::with_capacity(CHUNK_BYTES * 2),
            end: 0,
        }
    }

    /// The bytes written so far.
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    /// Writes `plain` as the next member to `out` (hashing it into `hasher`
    /// if given), and returns where it is.
    pub(super) fn write(
        &mut self,
        out: &mut impl Write,
        hasher: Option<&mut Sha256>,
        plain: &[u8],
    ) -> std::io::Result<Chunk> {
        self.deflate.reset();
        self.buf.clear();
        self.buf.extend_from_slice(&GZIP_HEADER);
        loop {
            let consumed = self.deflate.total_in() as usize;
            if self.buf.capacity() - self.buf.len() < 64 {
                self.buf.reserve(plain.len() / 2 + 64);
            }
            let status = self
                .deflate
                .compress_vec(&plain[consumed..], &mut self.buf, FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            if status == Status::StreamEnd {
                break;
            }
        }
        let mut crc = Crc::new();
        crc.update(plain);
        self.buf.extend_from_slice(&crc.sum().to_le_bytes());
        self.buf
            .extend_from_slice(&(plain.len() as u32).to_le_bytes());
        out.write_all(&self.buf)?;
        if let Some(hasher) = hasher {
            hasher.update(&self.buf);
        }
        let chunk = Chunk {
            offset: self.end,
            compressed: self.buf.len() as u32,
            plain: plain.len() as u32,
        };
        self.end += self.buf.len() as u64;
        Ok(chunk)
    }
}

impl SealedInfo {
    fn note(&mut self, r: &IndexFields<'_>, leads: &mut HashSet<String>) {
        if self.events == 0 {
            self.first_seq = r.seq;
            self.first_timestamp = r.timestamp;
            r.prev.as_ref().clone_into(&mut self.first_prev);
        }
        self.events += 1;
        self.last_seq = r.seq;
        self.last_timestamp = r.timestamp;
        r.signature.as_ref().clone_into(&mut self.last_signature);
        *self
            .event_types
            .entry(r.event_type.to_string())
            .or_default() += 1;
        if let Some(w) = r.workflow.as_deref() {
            *self.workflows.entry(w.to_owned()).or_default() += 1;
        }
        if let Some(l) = r.lead_id.as_deref()
            && !leads.contains(l)
        {
            leads.insert(l.to_owned());
        }
    }
}

/// Builds a [`SegmentIndex`] record by record, interning strings.
#[derive(Default)]
pub(super) struct IndexBuilder {
    pub index: SegmentIndex,
    ids: HashMap<String, u32>,
}

impl IndexBuilder {
    fn string(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.index.strings.len() as u32;
        self.index.strings.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
    }

    fn opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(0, |s| self.string(s) + 1)
    }

    pub fn row(&mut self, r: &IndexFields<'_>, chunk: u32, offset: u32, len: u32) {
        let row = Row {
            seq: r.seq,
            timestamp: r.timestamp,
            event_type: self.string(&r.event_type),
            actor: self.string(&r.actor),
            lead: self.opt(r.lead_id.as_deref()),
            workflow: self.opt(r.workflow.as_deref()),
            idempotency_key: self.opt(r.idempotency_key.as_deref()),
            chunk,
            offset,
            len,
        };
        self.index.rows.push(row);
    }
}

impl SegmentIndex {
    /// The `.idx` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.rows.len() * 48 + self.strings.len() * 16);
        out.extend_from_slice(IDX_MAGIC);
        out.extend_from_slice(&(self.strings.len() as u32).to_le_bytes());
        for s in &self.strings {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for c in &self.chunks {
            c.encode_into(&mut out);
        }
        out.extend_from_slice(&(self.rows.len() as u64).to_le_bytes());
        for r in &self.rows {
            out.extend_from_slice(&r.seq.to_le_bytes());
            out.extend_from_slice(&r.timestamp.to_le_bytes());
            for v in [
                r.event_type,
                r.actor,
                r.lead,
                r.workflow,
                r.idempotency_key,
                r.chunk,
                r.offset,
                r.len,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Decodes `.idx` bytes, checking every length and reference.
    pub fn decode(bytes: &[u8]) -> Result<SegmentIndex, SegmentError> {
        let mut c = Cursor::new(bytes);
        if c.take(8)? != IDX_MAGIC {
            return Err(SegmentError::BadIndex("not a segment index file".into()));
        }
        let n = c.u32()? as usize;
        let mut strings = Vec::with_capacity(n.min(bytes.len()));
        for _ in 0..n {
            let len = c.u32()? as usize;
            let s = std::str::from_utf8(c.take(len)?)
                .map_err(|_| SegmentError::BadIndex("a string is not UTF-8".into()))?;
            strings.push(s.to_owned());
        }
        let n = c.u32()? as usize;
        let mut chunks = Vec::with_capacity(n.min(bytes.len() / 16));
        for _ in 0..n {
            chunks.push(Chunk::decode_from(&mut c)?);
        }
        let n = usize::try_from(c.u64()?)
            .map_err(|_| SegmentError::BadIndex("too many rows".into()))?;
        let mut rows = Vec::with_capacity(n.min(bytes.len() / 48));
        for _ in 0..n {
            let row = Row {
                seq: c.u64()?,
                timestamp: c.u64()? as i64,
                event_type: c.u32()?,
                actor: c.u32()?,
                lead: c.u32()?,
                workflow: c.u32()?,
                idempotency_key: c.u32()?,
                chunk: c.u32()?,
                offset: c.u32()?,
                len: c.u32()?,
            };
            let s = strings.len() as u32;
            let in_range = row.event_type < s
                && row.actor < s
                && row.lead <= s
                && row.workflow <= s
                && row.idempotency_key <= s
                && chunks.get(row.chunk as usize).is_some_and(|ch| {
                    u64::from(row.offset) + u64::from(row.len) <= u64::from(ch.plain)
                });
            if !in_range {
                return Err(SegmentError::BadIndex(format!(
                    "row for seq {} points outside the index",
                    row.seq
                )));
            }
            rows.push(row);
        }
        if !c.is_done() {
            return Err(SegmentError::BadIndex("trailing bytes".into()));
        }
        Ok(SegmentIndex {
            strings,
            chunks,
            rows,
        })
    }

    /// The string for an optional (`+1`) field.
    pub fn opt(&self, id: u32) -> Option<&str> {
        id.checked_sub(1)
            .and_then(|i| self.strings.get(i as usize))
            .map(String::as_str)
    }
}

/// Reads the little-endian fields of an index file.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    /// Whether every byte has been read.
    pub(super) fn is_done(&self) -> bool {
        self.pos == self.bytes.len()
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], SegmentError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| SegmentError::BadIndex("the file is cut short".into()))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(super) fn u32(&mut self) -> Result<u32, SegmentError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Result<u64, SegmentError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// An open segment file, for reading records by position.
#[derive(Debug)]
pub enum SegmentFile {
    /// The active segment, or a sealed one not yet compressed.
    Plain { name: String, file: File },
    /// A compressed segment, its chunk table, and its lead copy if it has
    /// one.
    Gzip {
        name: String,
        file: File,
        chunks: Vec<Chunk>,
        leads: Option<super::leads::LeadCopy>,
    },
}

impl SegmentFile {
    /// The file's name in the data directory (when it was opened).
    pub fn name(&self) -> &str {
        match self {
            SegmentFile::Plain { name, .. } | SegmentFile::Gzip { name, .. } => name,
        }
    }
}

/// Reads and decompresses one chunk of a sealed segment.
pub fn read_chunk(file: &File, chunk: &Chunk) -> std::io::Result<Vec<u8>> {
    read_chunk_prefix(file, chunk, chunk.plain as usize)
}

/// Decompresses the start of a chunk, at least its first `need` bytes: a
/// record's line is complete once the decompressor has passed its end, so
/// reading one record stops there rather than inflating the whole member.
/// With `need` at or past the chunk's length, the whole chunk is read and
/// checked (length and CRC).
pub fn read_chunk_prefix(file: &File, chunk: &Chunk, need: usize) -> std::io::Result<Vec<u8>> {
    let whole = chunk.plain as usize;
    let mut compressed = vec![0u8; chunk.compressed as usize];
    file.read_exact_at(&mut compressed, chunk.offset)?;
    let bad = |what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("chunk at offset {}: {what}", chunk.offset),
        )
    };
    // Members this server wrote have the fixed 10-byte header; anything
    // else (another tool recompressed the file) goes through the general
    // decoder.
    let Some(deflated) = compressed
        .strip_prefix(&GZIP_HEADER[..4])
        .and_then(|_| compressed.get(10..compressed.len().checked_sub(8)?))
    else {
        return read_member_general(&compressed, whole, need).map_err(|e| bad(e.to_string()));
    };
    let limit = need.min(whole);
    let mut plain = vec![0u8; limit];
    let (status, out) = INFLATE.with(|cell| {
        let mut inflate = cell.borrow_mut();
        inflate.reset(false);
        let status = inflate.decompress(deflated, &mut plain, FlushDecompress::None);
        (status, inflate.total_out() as usize)
    });
    let status = status.map_err(|e| bad(format!("not valid deflate data ({e})")))?;
    if limit < whole {
        if out < limit {
            return Err(bad(format!("holds {out} bytes, the index says {whole}")));
        }
        return Ok(plain);
    }
    if status != Status::StreamEnd || out != whole {
        return Err(bad(format!(
            "holds more or fewer bytes than the {whole} the index says"
        )));
    }
    let trailer = &compressed[compressed.len() - 8..];
    let mut crc = Crc::new();
    crc.update(&plain);
    if trailer[..4] != crc.sum().to_le_bytes() || trailer[4..] != (whole as u32).to_le_bytes() {
        return Err(bad("its CRC or length does not match its contents".into()));
    }
    Ok(plain)
}

thread_local! {
    /// One raw inflate state per reading thread, reset per member.
    static INFLATE: std::cell::RefCell<Decompress> =
        std::cell::RefCell::new(Decompress::new(false));
}

/// Any gzip member, through the general decoder.
fn read_member_general(compressed: &[u8], whole: usize, need: usize) -> std::io::Result<Vec<u8>> {
    let mut decoder = GzDecoder::new(compressed);
    let mut plain = Vec::with_capacity(need.min(whole));
    if need >= whole {
        decoder.read_to_end(&mut plain)?;
        if plain.len() != whole {
            return Err(std::io::Error::other(format!(
                "holds {} bytes, the index says {whole}",
                plain.len()
            )));
        }
        return Ok(plain);
    }
    let mut step = [0u8; 4096];
    while plain.len() < need {
        let n = decoder.read(&mut step)?;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "holds {} bytes, the index says {whole}",
                plain.len()
            )));
        }
        plain.extend_from_slice(&step[..n]);
    }
    Ok(plain)
}

/// Reads a multi-member gzip stream as one stream of plain bytes, as
/// `zcat` does (and `flate2`'s `MultiGzDecoder`), with one raw inflate state
/// reused for every member: a sealed segment holds a member per few KiB of
/// lines, so per-member setup would otherwise be a large part of reading it.
/// Each member's CRC and length are checked; a stream that ends inside a
/// member is an error.
pub struct Members<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    inflate: Decompress,
    in_member: bool,
    crc: Crc,
}

impl<R: Read> Members<R> {
    pub fn new(inner: R) -> Members<R> {
        Members {
            inner,
            buf: vec![0u8; 256 * 1024].into_boxed_slice(),
            start: 0,
            end: 0,
            inflate: Decompress::new(false),
            in_member: false,
            crc: Crc::new(),
        }
    }

    /// The reader it was built on.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Makes at least `k` unread bytes available; false at the end of the
    /// input with fewer.
    fn fill(&mut self, k: usize) -> std::io::Result<bool> {
        while self.end - self.start < k {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                // Only a header field longer than the buffer gets here.
                return Err(invalid("a gzip header field is too long"));
            }
            let n = self.inner.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return Ok(false);
            }
            self.end += n;
        }
        Ok(true)
    }

    /// Skips a zero-terminated header field.
    fn skip_zero_terminated(&mut self) -> std::io::Result<()> {
        loop {
            if !self.fill(1)? {
                return Err(truncated());
            }
            let b = self.buf[self.start];
            self.start += 1;
            if b == 0 {
                return Ok(());
            }
        }
    }

    /// Reads a member header; false at a clean end of the stream.
    fn header(&mut self) -> std::io::Result<bool> {
        if !self.fill(10)? {
            return if self.start == self.end {
                Ok(false)
            } else {
                Err(truncated())
            };
        }
        let h = &self.buf[self.start..self.start + 10];
        if h[..3] != GZIP_HEADER[..3] {
            return Err(invalid("not a gzip member"));
        }
        let flags = h[3];
        self.start += 10;
        if flags & 0x04 != 0 {
            // FEXTRA: two bytes of length, then that many bytes.
            if !self.fill(2)? {
                return Err(truncated());
            }
            let len = usize::from(u16::from_le_bytes([
                self.buf[self.start],
                self.buf[self.start + 1],
            ]));
            self.start += 2;
            if !self.fill(len)? {
                return Err(truncated());
            }
            self.start += len;
        }
        if flags & 0x08 != 0 {
            self.skip_zero_terminated()?; // FNAME
        }
        if flags & 0x10 != 0 {
            self.skip_zero_terminated()?; // FCOMMENT
        }
        if flags & 0x02 != 0 {
            // FHCRC
            if !self.fill(2)? {
                return Err(truncated());
            }
            self.start += 2;
        }
        self.inflate.reset(false);
        self.crc.reset();
        self.in_member = true;
        Ok(true)
    }

    fn trailer(&mut self) -> std::io::Result<()> {
        if !self.fill(8)? {
            return Err(truncated());
        }
        let t = &self.buf[self.start..self.start + 8];
        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        if crc != self.crc.sum() || size != self.crc.amount() {
            return Err(invalid(
                "a gzip member's CRC or length does not match its contents",
            ));
        }
        self.start += 8;
        self.in_member = false;
        Ok(())
    }
}

impl<R: Read> Read for Members<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_member && !self.header()? {
                return Ok(0);
            }
            if self.start == self.end && !self.fill(1)? {
                return Err(truncated());
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(&self.buf[self.start..self.end], out, FlushDecompress::None)
                .map_err(|e| invalid(&format!("not valid deflate data ({e})")))?;
            let used = (self.inflate.total_in() - in_before) as usize;
            let n = (self.inflate.total_out() - out_before) as usize;
            self.start += used;
            self.crc.update(&out[..n]);
            if status == Status::StreamEnd {
                self.trailer()?;
            } else if used == 0 && n == 0 {
                // The inflater wants more input than is buffered.
                let have = self.end - self.start;
                if !self.fill(have + 1)? {
                    return Err(truncated());
                }
            }
            if n > 0 {
                return Ok(n);
            }
        }
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

fn truncated() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the gzip stream ends inside a member",
    )
}

/// SHA-256 of a file, as hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrity::Keyring;
    use crate::store::record::{GENESIS, NewEvent, Record};

    fn write_plain(path: &Path, n: u64) -> Vec<Vec<u8>> {
        let keys = Keyring::new("k1", vec![3; 32]);
        let mut prev = GENESIS.to_owned();
        let lines: Vec<Vec<u8>> = (1..=n)
            .map(|seq| {
                let mut details = serde_json::Map::new();
                details.insert("n".into(), seq.into());
                let ev = NewEvent {
                    event_type: if seq % 5 == 0 { "error" } else { "email_sent" }.into(),
                    actor: "a".into(),
                    lead_id: Some(format!("L{}", seq % 7)),
                    workflow: (seq % 2 == 0).then(|| "sales".to_owned()),
                    details,
                    idempotency_key: (seq == 3).then(|| "key3".to_owned()),
                };
                let (r, line) =
                    Record::seal(ev, seq, format!("id{seq}"), seq as i64, None, &prev, &keys);
                prev = r.signature;
                line
            })
            .collect();
        std::fs::write(path, lines.concat()).unwrap();
        lines
    }

    /// `n` records written plain and compressed in a temp dir.
    struct Compressed {
        /// Holds the files: bind it, or they are gone.
        dir: tempfile::TempDir,
        gz: std::path::PathBuf,
        idx: std::path::PathBuf,
        lines: Vec<Vec<u8>>,
        info: SealedInfo,
        index: SegmentIndex,
    }

    fn compressed(n: u64) -> Compressed {
        let dir = tempfile::tempdir().unwrap();
        let (plain, gz, idx) = (
            dir.path().join("s.log"),
            dir.path().join("s.log.gz"),
            dir.path().join("s.idx"),
        );
        let lines = write_plain(&plain, n);
        let (info, index) = compress(&plain, &gz, &idx, &AtomicBool::new(false)).unwrap();
        Compressed {
            dir,
            gz,
            idx,
            lines,
            info,
            index,
        }
    }

    #[test]
    fn compressed_segment_keeps_every_byte_and_indexes_every_record() {
        let Compressed {
            dir: _dir,
            gz,
            idx,
            lines,
            info,
            index,
        } = compressed(500);
        assert!(index.chunks.len() > 1, "expected several gzip members");
        assert_eq!((info.first_seq, info.last_seq, info.events), (1, 500, 500));
        assert_eq!(info.first_prev, GENESIS);
        assert_eq!(info.event_types["error"], 100);
        assert_eq!(info.leads, 7);
        assert_eq!(info.sha256, sha256_file(&gz).unwrap());

        // The whole file decompresses (as zcat would) to the original bytes.
        let mut all = Vec::new();
        flate2::read::MultiGzDecoder::new(File::open(&gz).unwrap())
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, lines.concat());

        // Each row points at its line; the idx round-trips.
        let decoded = SegmentIndex::decode(&std::fs::read(&idx).unwrap()).unwrap();
        assert_eq!(decoded, index);
        let file = File::open(&gz).unwrap();
        for row in [&index.rows[0], &index.rows[250], &index.rows[499]] {
            let chunk = read_chunk(&file, &index.chunks[row.chunk as usize]).unwrap();
            let line = &chunk[row.offset as usize..(row.offset + row.len) as usize];
            assert_eq!(line, lines[(row.seq - 1) as usize].as_slice());
        }
        assert_eq!(index.opt(index.rows[2].idempotency_key), Some("key3"));
    }

    /// Every row read through a prefix just long enough for it, through the
    /// whole member, and through a member another gzip writer made (with a
    /// file name in its header) gives the line; a flipped byte is an error.
    #[test]
    fn chunks_read_whole_or_in_part_and_damage_is_an_error() {
        let Compressed {
            dir,
            gz,
            lines,
            index,
            ..
        } = compressed(300);
        let file = File::open(&gz).unwrap();
        for row in &index.rows {
            let chunk = &index.chunks[row.chunk as usize];
            let end = (row.offset + row.len) as usize;
            let part = read_chunk_prefix(&file, chunk, end).unwrap();
            assert!(part.len() >= end);
            assert_eq!(
                &part[row.offset as usize..end],
                lines[(row.seq - 1) as usize].as_slice()
            );
            let whole = read_chunk(&file, chunk).unwrap();
            assert_eq!(whole.len(), chunk.plain as usize);
            assert_eq!(&whole[..end], &part[..end]);
        }

        // A member with a file name in its header (as `gzip` writes one).
        let member_plain = lines[..5].concat();
        let mut enc = flate2::GzBuilder::new()
            .filename("x.log")
            .write(Vec::new(), Compression::default());
        enc.write_all(&member_plain).unwrap();
        let foreign = enc.finish().unwrap();
        let path = dir.path().join("foreign.gz");
        std::fs::write(&path, &foreign).unwrap();
        let foreign_chunk = Chunk {
            offset: 0,
            compressed: foreign.len() as u32,
            plain: member_plain.len() as u32,
        };
        let f = File::open(&path).unwrap();
        assert_eq!(read_chunk(&f, &foreign_chunk).unwrap(), member_plain);
        assert_eq!(
            &read_chunk_prefix(&f, &foreign_chunk, 10).unwrap()[..10],
            &member_plain[..10]
        );

        // A flipped byte in the deflate data or the CRC is an error, never
        // wrong bytes or a panic.
        let mut bytes = std::fs::read(&gz).unwrap();
        let first = index.chunks[0];
        let last_byte = (first.offset + u64::from(first.compressed) - 5) as usize;
        bytes[last_byte] ^= 0x40;
        std::fs::write(&gz, &bytes).unwrap();
        let file = File::open(&gz).unwrap();
        assert!(read_chunk(&file, &first).is_err());
        // The index claiming more bytes than the member holds.
        let longer = Chunk {
            plain: index.chunks[1].plain + 1,
            ..index.chunks[1]
        };
        assert!(read_chunk(&file, &longer).is_err());
        assert!(read_chunk_prefix(&file, &longer, longer.plain as usize - 1).is_ok());
    }

    /// The member reader gives what `zcat` gives, whatever the read sizes,
    /// also across members with header fields; a cut or a bad CRC is an
    /// error, never short or wrong data.
    #[test]
    fn members_read_like_zcat_and_refuse_damage() {
        let Compressed {
            dir: _dir,
            gz,
            lines,
            ..
        } = compressed(400);
        let mut bytes = std::fs::read(&gz).unwrap();
        // A member from another writer, with a name and a comment.
        let mut enc = flate2::GzBuilder::new()
            .filename("x.log")
            .comment("c")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::default());
        enc.write_all(b"{\"more\":1}\n").unwrap();
        bytes.extend(enc.finish().unwrap());
        let mut expected = lines.concat();
        expected.extend_from_slice(b"{\"more\":1}\n");

        for step in [1usize, 7, 4096, 1 << 20] {
            let mut r = Members::new(bytes.as_slice());
            let mut got = Vec::new();
            let mut buf = vec![0u8; step];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, expected, "read {step} at a time");
        }

        for cut in [1, 9, 30, bytes.len() / 2, bytes.len() - 1] {
            let mut out = Vec::new();
            let r = Members::new(&bytes[..cut]).read_to_end(&mut out);
            assert!(r.is_err(), "cut at {cut} read as whole");
        }
        let mut bad_crc = std::fs::read(&gz).unwrap();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 1;
        let mut out = Vec::new();
        assert!(
            Members::new(bad_crc.as_slice())
                .read_to_end(&mut out)
                .is_err()
        );
        let mut out = Vec::new();
        assert!(
            Members::new(&b"not gzip at all"[..])
                .read_to_end(&mut out)
                .is_err()
        );
    }

    #[test]
    fn damaged_index_bytes_are_rejected_not_trusted() {
        let index = SegmentIndex {
            strings: vec!["a".into()],
            chunks: vec![Chunk {
                offset: 0,
                compressed: 10,
                plain: 100,
            }],
            rows: vec![Row {
                seq: 1,
                timestamp: 0,
                event_type: 0,
                actor: 0,
                lead: 1,
                workflow: 0,
                idempotency_key: 0,
                chunk: 0,
                offset: 0,
                len: 100,
            }],
        };
        let bytes = index.encode();
        assert_eq!(SegmentIndex::decode(&bytes).unwrap(), index);
        for cut in [0, 7, 12, bytes.len() - 1] {
            assert!(SegmentIndex::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = index.clone();
        bad.rows[0].len = 101;
        assert!(SegmentIndex::decode(&bad.encode()).is_err());
        bad = index;
        bad.rows[0].lead = 2;
        assert!(SegmentIndex::decode(&bad.encode()).is_err());
    }
}
