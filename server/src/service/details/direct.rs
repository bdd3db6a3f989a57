//! A `Struct`'s encoding written as JSON text in one pass, with no tree in
//! between, for the shape encoders write: every map entry its key and then
//! its value, keys in increasing byte order (prost's maps, and any encoder
//! writing a sorted or one-key map), each `Value` one member of its kind.
//!
//! Anything else answers `None` and is decoded into [`WireDetails`]' tree,
//! which knows every rule (a repeated key's last value, a oneof's last
//! member, unknown fields skipped, merging) and every error: a string that
//! is not UTF-8, a number JSON cannot hold, nesting past
//! [`MAX_DETAILS_DEPTH`], a truncated field. So this only ever writes the
//! text the tree would have written. Nesting here stops a few levels short
//! of that limit, leaving prost's own limit on nested messages to the tree.
//!
//! [`WireDetails`]: super::WireDetails

use prost::encoding::{self, WireType};

use super::json::{write_number, write_string};
use crate::wire::MAX_DETAILS_DEPTH;

/// The most levels written here; deeper goes to the tree.
const MAX_DEPTH: usize = MAX_DETAILS_DEPTH - 3;

/// The JSON object a `Struct`'s encoding `bytes` holds, if it is in the
/// shape this writes (module docs).
pub(super) fn json_of_struct(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 4 + 2);
    object(bytes, 1, &mut out)?;
    // Escaped UTF-8 and JSON punctuation.
    String::from_utf8(out).ok()
}

/// A field's number and its bytes, when it is length-delimited.
fn delimited<'a>(buf: &mut &'a [u8]) -> Option<(u32, &'a [u8])> {
    let (tag, wire_type) = encoding::decode_key(buf).ok()?;
    if wire_type != WireType::LengthDelimited {
        return None;
    }
    let len = usize::try_from(encoding::decode_varint(buf).ok()?).ok()?;
    let bytes = buf.get(..len)?;
    *buf = &buf[len..];
    Some((tag, bytes))
}

/// Writes the object a `Struct` at level `depth` encodes.
fn object(mut buf: &[u8], depth: usize, out: &mut Vec<u8>) -> Option<()> {
    out.push(b'{');
    let mut last: Option<&[u8]> = None;
    while !buf.is_empty() {
        let (1, mut entry) = delimited(&mut buf)? else {
            return None;
        };
        let (1, key) = delimited(&mut entry)? else {
            return None;
        };
        let (2, value) = delimited(&mut entry)? else {
            return None;
        };
        if !entry.is_empty() || last.is_some_and(|last| last >= key) {
            return None;
        }
        let key_text = std::str::from_utf8(key).ok()?;
        if last.is_some() {
            out.push(b',');
        }
        last = Some(key);
        write_string(key_text.as_bytes(), out);
        out.push(b':');
        self::value(value, depth, out)?;
    }
    out.push(b'}');
    Some(())
}

/// Writes a `Value` held by an object or list at level `depth`.
fn value(mut buf: &[u8], depth: usize, out: &mut Vec<u8>) -> Option<()> {
    let (tag, wire_type) = encoding::decode_key(&mut buf).ok()?;
    match (tag, wire_type) {
        (1, WireType::Varint) => {
            encoding::decode_varint(&mut buf).ok()?;
            out.extend_from_slice(b"null");
        }
        (2, WireType::SixtyFourBit) => {
            let bytes: [u8; 8] = buf.get(..8)?.try_into().ok()?;
            buf = &buf[8..];
            write_number(f64::from_le_bytes(bytes), out).ok()?;
        }
        (4, WireType::Varint) => {
            let b = encoding::decode_varint(&mut buf).ok()? != 0;
            out.extend_from_slice(if b { b"true" } else { b"false" });
        }
        (3 | 5 | 6, WireType::LengthDelimited) => {
            let len = usize::try_from(encoding::decode_varint(&mut buf).ok()?).ok()?;
            let inner = buf.get(..len)?;
            buf = &buf[len..];
            match tag {
                3 => write_string(std::str::from_utf8(inner).ok()?.as_bytes(), out),
                _ if depth >= MAX_DEPTH => return None,
                5 => object(inner, depth + 1, out)?,
                _ => list(inner, depth + 1, out)?,
            }
        }
        _ => return None,
    }
    // One member, and nothing after it.
    buf.is_empty().then_some(())
}

/// Writes the list a `ListValue` at level `depth` encodes.
fn list(mut buf: &[u8], depth: usize, out: &mut Vec<u8>) -> Option<()> {
    out.push(b'[');
    let mut first = true;
    while !buf.is_empty() {
        let (1, item) = delimited(&mut buf)? else {
            return None;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        value(item, depth, out)?;
    }
    out.push(b']');
    Some(())
}
