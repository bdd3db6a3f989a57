//! The `.idx` file of a compressed segment: what start-up needs to rebuild
//! the in-memory index without inflating anything. Layout, little-endian:
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
//! Invariant: a decoded index is never trusted beyond its bytes: every
//! length, string reference and row position is checked against the file,
//! so a damaged `.idx` is an error, never a read outside a chunk.

use std::collections::HashMap;

use super::members::Chunk;
use crate::store::record::IndexFields;

const IDX_MAGIC: &[u8; 8] = b"ALIDX001";

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

// The chunk table entry is part of the index formats (this one and the
// lead copy's), so its encoding lives here rather than with the members.
impl Chunk {
    /// Its entry in an index file: `u64 offset, u32 compressed, u32 plain`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.compressed.to_le_bytes());
        out.extend_from_slice(&self.plain.to_le_bytes());
    }

    pub(crate) fn decode_from(c: &mut Cursor<'_>) -> Result<Chunk, SegmentError> {
        Ok(Chunk {
            offset: c.u64()?,
            compressed: c.u32()?,
            plain: c.u32()?,
        })
    }
}

/// Builds a [`SegmentIndex`] record by record, interning strings.
#[derive(Default)]
pub(crate) struct IndexBuilder {
    pub index: SegmentIndex,
    ids: HashMap<String, u32>,
    /// The id each field (type, actor, lead, workflow) got last: rows in a
    /// row often share one, and a comparison costs less than a hash.
    last: [Option<u32>; 4],
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

    /// [`Self::string`] for field `field` of [`Self::last`].
    fn field(&mut self, field: usize, s: &str) -> u32 {
        if let Some(id) = self.last[field]
            && self
                .index
                .strings
                .get(id as usize)
                .is_some_and(|last| last == s)
        {
            return id;
        }
        let id = self.string(s);
        self.last[field] = Some(id);
        id
    }

    fn opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(0, |s| self.string(s) + 1)
    }

    fn opt_field(&mut self, field: usize, s: Option<&str>) -> u32 {
        s.map_or(0, |s| self.field(field, s) + 1)
    }

    pub(crate) fn row(&mut self, r: &IndexFields<'_>, chunk: u32, offset: u32, len: u32) {
        let row = Row {
            seq: r.seq,
            timestamp: r.timestamp,
            event_type: self.field(0, &r.event_type),
            actor: self.field(1, &r.actor),
            lead: self.opt_field(2, r.lead_id.as_deref()),
            workflow: self.opt_field(3, r.workflow.as_deref()),
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
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    /// Whether every byte has been read.
    pub(crate) fn is_done(&self) -> bool {
        self.pos == self.bytes.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], SegmentError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| SegmentError::BadIndex("the file is cut short".into()))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SegmentError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SegmentError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
