//! Gzip members: how a sealed segment is compressed and read back.
//!
//! A compressed file is a multi-member gzip file: lines grouped into chunks
//! of about [`CHUNK_BYTES`] (whole lines only), each compressed as its own
//! member. `zcat` and `gzip -d` read it as one stream, so `zcat file | jq`
//! works; the server inflates only the member that holds a record, and only
//! as far as the record ([`read_chunk_prefix`]). [`Members`] reads the whole
//! stream as `zcat` does, for verification and rebuilding.
//!
//! Invariant: what is read back is exactly the bytes that were compressed,
//! or an error: a whole member read is checked against its CRC and length,
//! and damage is never returned as wrong bytes or a panic.

use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::FileExt as _;

use flate2::read::GzDecoder;
use flate2::{Crc, Decompress, FlushDecompress, Status};
use sha2::{Digest as _, Sha256};

/// Plain bytes per gzip member (and per lead copy frame): small enough that
/// reading one record decompresses little, large enough to compress well
/// and inflate fast. A query reading records by position touches one member
/// per record, while verification inflates every member: larger members
/// make such reads slower, smaller ones compress worse and slow verification
/// down. The trade-off of 4, 8 and 16 KiB was measured for lead histories
/// before they had lead copies (benches/journal/2026-11-28.md).
pub const CHUNK_BYTES: usize = 8 * 1024;

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

/// The fixed header of every member written: gzip, deflate, no flags, no
/// time, fastest-compression hint absent, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// libdeflate's level 1: it stores about what zlib-rs's level 2 (the level
/// before 2026-12-04) stored, for about a third less CPU, in background work
/// every event pays for (figures per level and library in
/// benches/journal/2026-12-04.md). Not `CompressionLvl::fastest()`: that is
/// level 0, which stores the bytes uncompressed (as `45595ee` did for a
/// day; the segment tests now check the ratio).
const DEFLATE_LEVEL: libdeflater::CompressionLvl = match libdeflater::CompressionLvl::new(1) {
    Ok(level) => level,
    // Evaluated at compile time: a level libdeflate did not take would stop
    // the build, not a server.
    Err(_) => panic!("libdeflate has no compression level 1"),
};

/// Writes gzip members one after another, reusing one compressor (its
/// tables are allocated once, not every few KiB).
pub(crate) struct Member {
    deflate: libdeflater::Compressor,
    /// The member being written: header, deflate data, CRC-32 and length.
    buf: Vec<u8>,
    /// The bytes written so far: where the next member starts.
    end: u64,
}

impl Member {
    pub(crate) fn new() -> Member {
        Member {
            deflate: libdeflater::Compressor::new(DEFLATE_LEVEL),
            buf: Vec::new(),
            end: 0,
        }
    }

    /// The bytes written so far.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Writes `plain` as the next member to `out` (hashing it into `hasher`
    /// if given), and returns where it is.
    pub(crate) fn write(
        &mut self,
        out: &mut impl Write,
        hasher: Option<&mut Sha256>,
        plain: &[u8],
    ) -> std::io::Result<Chunk> {
        let header = GZIP_HEADER.len();
        let bound = self.deflate.deflate_compress_bound(plain.len());
        if self.buf.len() < header + bound + 8 {
            self.buf.resize(header + bound + 8, 0);
        }
        self.buf[..header].copy_from_slice(&GZIP_HEADER);
        let deflated = self
            .deflate
            .deflate_compress(plain, &mut self.buf[header..header + bound])
            .map_err(std::io::Error::other)?;
        let trailer = header + deflated;
        self.buf[trailer..trailer + 4].copy_from_slice(&libdeflater::crc32(plain).to_le_bytes());
        // ISIZE: the length modulo 2^32 (a chunk is a few KiB).
        self.buf[trailer + 4..trailer + 8].copy_from_slice(&(plain.len() as u32).to_le_bytes());
        let member = &self.buf[..trailer + 8];
        out.write_all(member)?;
        if let Some(hasher) = hasher {
            hasher.update(member);
        }
        let chunk = Chunk {
            offset: self.end,
            compressed: member.len() as u32,
            plain: plain.len() as u32,
        };
        self.end += member.len() as u64;
        Ok(chunk)
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
pub(crate) fn read_chunk_prefix(
    file: &File,
    chunk: &Chunk,
    need: usize,
) -> std::io::Result<Vec<u8>> {
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
pub(crate) struct Members<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    inflate: Decompress,
    in_member: bool,
    crc: Crc,
}

impl<R: Read> Members<R> {
    pub(crate) fn new(inner: R) -> Members<R> {
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

/// The lines of a sealed segment whose members are known (its chunk
/// table), read from the start of the file: each member is inflated whole by
/// libdeflate, which checks its CRC and length, about twice as fast as a
/// streaming inflate. Where the file does not hold the members the table
/// says (another offset or length, bytes after the last one) it is an error;
/// [`Members`] reads any gzip stream and says where it is damaged.
pub(crate) struct Inflated<'a, R> {
    inner: R,
    chunks: std::slice::Iter<'a, Chunk>,
    /// Where the next member starts.
    at: u64,
    inflate: libdeflater::Decompressor,
    compressed: Vec<u8>,
    plain: Vec<u8>,
    /// The first byte of `plain` not yet consumed.
    start: usize,
}

impl<'a, R: Read> Inflated<'a, R> {
    pub(crate) fn new(inner: R, chunks: &'a [Chunk]) -> Inflated<'a, R> {
        Inflated {
            inner,
            chunks: chunks.iter(),
            at: 0,
            inflate: libdeflater::Decompressor::new(),
            compressed: Vec::new(),
            plain: Vec::new(),
            start: 0,
        }
    }

    /// Inflates the next member into `plain`; false after the last one.
    fn next_member(&mut self) -> std::io::Result<bool> {
        self.start = 0;
        self.plain.clear();
        let Some(chunk) = self.chunks.next() else {
            return match self.inner.read(&mut [0u8; 1])? {
                0 => Ok(false),
                _ => Err(invalid("the file goes on after its last member")),
            };
        };
        if chunk.offset != self.at {
            return Err(invalid(
                "a member does not start where the chunk table says",
            ));
        }
        self.compressed.resize(chunk.compressed as usize, 0);
        self.inner.read_exact(&mut self.compressed)?;
        self.plain.resize(chunk.plain as usize, 0);
        match self
            .inflate
            .gzip_decompress(&self.compressed, &mut self.plain)
        {
            Ok(n) if n == self.plain.len() => {}
            Ok(_) | Err(_) => {
                return Err(invalid(
                    "a member does not inflate to the length the chunk table says",
                ));
            }
        }
        self.at += u64::from(chunk.compressed);
        Ok(true)
    }
}

impl<R: Read> Read for Inflated<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Inflated<'_, R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.start == self.plain.len() {
            if !self.next_member()? {
                break;
            }
        }
        Ok(&self.plain[self.start..])
    }

    fn consume(&mut self, amount: usize) {
        self.start = (self.start + amount).min(self.plain.len());
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
