//! `details` decoded from the wire straight into the JSON text the record's
//! line holds.
//!
//! `details` travel as a `google.protobuf.Struct`. Decoded the generic way,
//! each event's details became a tree of protobuf values (a map node, a
//! string and a boxed value per field), then a second tree of JSON values,
//! then text, and both trees were freed on other threads: about a
//! microsecond per event, the most of any step between the socket and the
//! writer. The server's own generated request types (`server/build.rs`)
//! take [`WireDetails`] where the `Struct` would be. It keeps every string's
//! bytes in one buffer and the structure as a small tree of ranges, and
//! [`WireDetails::into_details`] writes the text once.
//!
//! Details in the shape most encoders write (keys in order, each value one
//! member) skip the tree: [`WireDetails::take_written`] writes their text in
//! one pass over their bytes (`direct.rs`), or leaves them to the tree.
//!
//! The text is exactly what the generic path wrote: keys in byte order, a
//! repeated key's last value, strings escaped as serde_json escapes them,
//! numbers without a fraction within ±2^53 as integers, NaN and infinities
//! refused with the path of the first one. Protobuf's merge rules hold too
//! (a repeated `details` field or a repeated value merges, a oneof's last
//! member wins), and so does prost's nesting limit, since every level is
//! entered through `prost::encoding::message::merge`.
//!
//! Nesting is limited here too, by levels of JSON: details may nest
//! [`MAX_DETAILS_DEPTH`] levels of objects and lists, in any mix (the top
//! object is the first), and the next level is refused with
//! [`DETAILS_TOO_DEEP`], which `wire.rs` turns into the caller's answer.
//! prost's limit alone (100 messages) stops objects there, at three
//! messages a level, but lets lists, at two, reach 49.

use std::ops::Range;

use auditlog_proto::json::NotJson;
use bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};
use serde::de::DeserializeSeed as _;

use json::{JsonSeed, write_object};

use crate::store::Details;
use crate::wire::{DETAILS_TOO_DEEP, MAX_DETAILS_DEPTH};

/// A `google.protobuf.Struct` as the ingest path decodes it.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct WireDetails {
    text: Text,
    /// The object's fields in wire order, repeats included.
    fields: Vec<Field>,
    /// The object's JSON text, when it was written straight from its
    /// encoding ([`WireDetails::take_written`]); the tree is empty then.
    written: Option<String>,
}

/// Where decoded strings go.
#[derive(Debug, Default, Clone, PartialEq)]
struct Text {
    /// Every key's and string's bytes (checked UTF-8), back to back.
    bytes: Vec<u8>,
    /// A string that prost's decoder reads (see `merge_string`).
    scratch: String,
}

/// A key (its bytes' place) and its value.
type Field = (Range<usize>, Value);

/// A decoded value; strings are places in [`Text::bytes`].
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(Range<usize>),
    Object(Vec<Field>),
    List(Vec<Value>),
}

impl WireDetails {
    /// Takes a `Struct` field from the buffer's current chunk and writes
    /// its JSON text at once, with no tree, when its encoding is in the
    /// shape `direct.rs` writes (the buffer moving past it); `None`, the
    /// buffer untouched, for anything else, which the caller decodes into
    /// the tree (`merge`). A request's details, in the common case, cost
    /// one pass and one allocation this way.
    pub(crate) fn take_written(wire_type: WireType, buf: &mut impl Buf) -> Option<WireDetails> {
        let json = take_whole(wire_type, buf, direct::json_of_struct)?;
        Some(WireDetails {
            written: Some(json),
            ..WireDetails::default()
        })
    }

    /// The same object as a tree: a written one read back from its text
    /// (where the tree is needed: merging another `details` field into it,
    /// encoding it).
    fn tree(&self) -> std::borrow::Cow<'_, WireDetails> {
        match &self.written {
            None => std::borrow::Cow::Borrowed(self),
            Some(json) => std::borrow::Cow::Owned(
                // Text written from a `Struct` reads back as that object.
                WireDetails::from_json(json).unwrap_or_default(),
            ),
        }
    }

    /// The object's JSON text, or where it holds a number JSON cannot.
    pub(crate) fn into_details(mut self) -> Result<Details, NotJson> {
        if let Some(json) = self.written {
            return Ok(Details::from_object_text(json));
        }
        let mut out = Vec::with_capacity(self.text.bytes.len() + 16 * self.fields.len() + 2);
        write_object(&self.text.bytes, &mut self.fields, &mut out)?;
        // Escaped UTF-8 and JSON punctuation: always UTF-8.
        let text = String::from_utf8(out).unwrap_or_else(|_| "{}".to_owned());
        Ok(Details::from_object_text(text))
    }

    /// The same object as a protobuf `Struct` (what a cluster follower
    /// forwards to its leader): its own encoding, decoded the generic way.
    pub(crate) fn to_struct(&self) -> prost_types::Struct {
        // Bytes this type just encoded always decode.
        prost_types::Struct::decode(self.encode_to_vec().as_slice()).unwrap_or_default()
    }

    /// Reads a JSON object's text (a record's details) into the same tree,
    /// so it can be encoded as a `Struct` without building one: a live
    /// event's details on its way to followers. `None` if the text is not
    /// a JSON object.
    ///
    /// No nesting limit but serde_json's own: a stored text was checked
    /// when it was written, by the rules of its day.
    pub(crate) fn from_json(json: &str) -> Option<WireDetails> {
        WireDetails::of_json(json, usize::MAX).ok()
    }

    /// Reads a caller's `details_json`: a JSON object's text, read as its
    /// `Struct` would be (numbers as doubles, a repeated key's last value
    /// written) and nested at most [`MAX_DETAILS_DEPTH`] levels; else what
    /// is wrong with it, and where.
    pub(crate) fn of_json_text(json: &str) -> Result<WireDetails, String> {
        WireDetails::of_json(json, MAX_DETAILS_DEPTH)
    }

    fn of_json(json: &str, max_depth: usize) -> Result<WireDetails, String> {
        let mut text = Text::default();
        text.bytes.reserve(json.len());
        let mut de = serde_json::Deserializer::from_str(json);
        let value = JsonSeed {
            text: &mut text,
            depth: 0,
            max_depth,
        }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| format!("is not JSON text: {e}"))?;
        match value {
            Value::Object(fields) => Ok(WireDetails {
                text,
                fields,
                written: None,
            }),
            other => Err(format!(
                "is JSON {}, not an object",
                match other {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::String(_) => "a string",
                    Value::List(_) => "a list",
                    Value::Object(_) => "an object",
                }
            )),
        }
    }

    /// Decodes a `Struct`'s encoding; for details that arrive as a `Struct`
    /// (TrackPerformance's).
    pub(crate) fn of_struct(s: &prost_types::Struct) -> Result<WireDetails, DecodeError> {
        WireDetails::decode(s.encode_to_vec().as_slice())
    }
}

impl Message for WireDetails {
    /// The `Struct`'s encoding, written from the tree: entries in the order
    /// held (a JSON object's: unique keys).
    fn encode_raw(&self, buf: &mut impl BufMut) {
        let tree = self.tree();
        encode_fields(&tree.text.bytes, &tree.fields, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if self.written.is_some() {
            *self = self.tree().into_owned();
        }
        if self.fields.capacity() == 0 {
            self.fields.reserve(8);
            self.text.bytes.reserve(256);
        }
        merge_struct_field(
            &mut self.text,
            &mut self.fields,
            1,
            tag,
            wire_type,
            buf,
            ctx,
        )
    }

    fn encoded_len(&self) -> usize {
        let tree = self.tree();
        fields_len(&tree.text.bytes, &tree.fields)
    }

    fn clear(&mut self) {
        self.text.bytes.clear();
        self.fields.clear();
        self.written = None;
    }
}

/// A field of a `Struct` at level `depth` (the top one is 1): a map entry
/// (field 1) is added to `fields`.
fn merge_struct_field(
    text: &mut Text,
    fields: &mut Vec<Field>,
    depth: usize,
    tag: u32,
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    match tag {
        1 => merge_field_entry(text, fields, depth, wire_type, buf, ctx).map_err(|mut e| {
            e.push("Struct", "fields");
            e
        }),
        _ => encoding::skip_field(wire_type, tag, buf, ctx),
    }
}

/// One map entry of a `Struct` (key 1, value 2), added to `fields`; an
/// entry not marked length-delimited is refused, as protobuf and prost's
/// generated map fields refuse it. (Until prost 0.14.6 those read the
/// entry's length whatever its wire type said, and this decoder did the
/// same to decode alike: `any_bytes_decode_alike`, and the `validation`
/// fuzz target, which found the change.)
fn merge_field_entry(
    text: &mut Text,
    fields: &mut Vec<Field>,
    depth: usize,
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
    let mut entry = EntryDecoder {
        text,
        depth,
        key: 0..0,
        value: Value::Null,
    };
    encoding::message::merge(WireType::LengthDelimited, &mut entry, buf, ctx)?;
    fields.push((entry.key, entry.value));
    Ok(())
}

/// The decoders of the levels inside a `Struct`. They only decode: the
/// server never sends them.
macro_rules! decode_only {
    ($name:ident, |$this:ident, $tag:ident, $wire_type:ident, $buf:ident, $ctx:ident| $merge:block) => {
        impl Message for $name<'_> {
            fn encode_raw(&self, _: &mut impl BufMut) {}

            fn merge_field(
                &mut $this,
                $tag: u32,
                $wire_type: WireType,
                $buf: &mut impl Buf,
                $ctx: DecodeContext,
            ) -> Result<(), DecodeError> $merge

            fn encoded_len(&self) -> usize {
                0
            }

            fn clear(&mut self) {}
        }
    };
}

/// A `Struct`'s map entry, in an object at level `depth`.
struct EntryDecoder<'a> {
    text: &'a mut Text,
    depth: usize,
    key: Range<usize>,
    value: Value,
}

decode_only!(EntryDecoder, |self, tag, wire_type, buf, ctx| {
    match tag {
        1 => {
            self.key = self.text.merge_string(wire_type, buf, ctx)?;
            Ok(())
        }
        2 => {
            let mut value = ValueDecoder {
                text: self.text,
                depth: self.depth,
                value: &mut self.value,
            };
            encoding::message::merge(wire_type, &mut value, buf, ctx)
        }
        _ => encoding::skip_field(wire_type, tag, buf, ctx),
    }
});

/// A `google.protobuf.Value` held by an object or list at level `depth`
/// (an object or list it holds is at `depth + 1`): the last member of its
/// `kind` wins, and a repeated struct or list member merges into the one
/// before.
struct ValueDecoder<'a> {
    text: &'a mut Text,
    depth: usize,
    value: &'a mut Value,
}

/// The refusal of an object or list nested deeper than
/// [`MAX_DETAILS_DEPTH`]: the decoder's path to it, then
/// [`DETAILS_TOO_DEEP`].
#[cold]
fn too_deep() -> DecodeError {
    // prost offers no other way to say why a message does not decode.
    #[allow(deprecated)]
    DecodeError::new(DETAILS_TOO_DEEP)
}

decode_only!(ValueDecoder, |self, tag, wire_type, buf, ctx| {
    let merged = match tag {
        1 => {
            encoding::int32::merge(wire_type, &mut 0, buf, ctx).map(|()| *self.value = Value::Null)
        }
        2 => {
            let mut n = 0.0;
            encoding::double::merge(wire_type, &mut n, buf, ctx)
                .map(|()| *self.value = Value::Number(n))
        }
        3 => self
            .text
            .merge_string(wire_type, buf, ctx)
            .map(|s| *self.value = Value::String(s)),
        4 => {
            let mut b = false;
            encoding::bool::merge(wire_type, &mut b, buf, ctx)
                .map(|()| *self.value = Value::Bool(b))
        }
        5 | 6 if self.depth >= MAX_DETAILS_DEPTH => Err(too_deep()),
        // A oneof set again merges into what it holds when it is the same
        // kind (as prost does), else starts afresh.
        5 => {
            let mut fields = match std::mem::replace(self.value, Value::Null) {
                Value::Object(fields) => fields,
                _ => Vec::new(),
            };
            let mut object = ObjectDecoder {
                text: self.text,
                depth: self.depth + 1,
                fields: &mut fields,
            };
            let merged = encoding::message::merge(wire_type, &mut object, buf, ctx);
            *self.value = Value::Object(fields);
            merged
        }
        6 => {
            let mut items = match std::mem::replace(self.value, Value::Null) {
                Value::List(items) => items,
                _ => Vec::new(),
            };
            let mut list = ListDecoder {
                text: self.text,
                depth: self.depth + 1,
                items: &mut items,
            };
            let merged = encoding::message::merge(wire_type, &mut list, buf, ctx);
            *self.value = Value::List(items);
            merged
        }
        _ => return encoding::skip_field(wire_type, tag, buf, ctx),
    };
    merged.map_err(|mut e| {
        e.push("Value", "kind");
        e
    })
});

/// A `Struct` nested in a value, at level `depth`.
struct ObjectDecoder<'a> {
    text: &'a mut Text,
    depth: usize,
    fields: &'a mut Vec<Field>,
}

decode_only!(ObjectDecoder, |self, tag, wire_type, buf, ctx| {
    merge_struct_field(self.text, self.fields, self.depth, tag, wire_type, buf, ctx)
});

/// A `ListValue`, at level `depth`.
struct ListDecoder<'a> {
    text: &'a mut Text,
    depth: usize,
    items: &'a mut Vec<Value>,
}

decode_only!(ListDecoder, |self, tag, wire_type, buf, ctx| {
    match tag {
        1 => {
            let mut item = Value::Null;
            let mut value = ValueDecoder {
                text: self.text,
                depth: self.depth,
                value: &mut item,
            };
            encoding::message::merge(wire_type, &mut value, buf, ctx).map_err(|mut e| {
                e.push("ListValue", "values");
                e
            })?;
            self.items.push(item);
            Ok(())
        }
        _ => encoding::skip_field(wire_type, tag, buf, ctx),
    }
});

impl Text {
    /// Decodes a string and appends it to `bytes`: its place there.
    fn merge_string(
        &mut self,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<Range<usize>, DecodeError> {
        let bytes = &mut self.bytes;
        if let Some(place) = take_whole_str(wire_type, buf, |s| {
            let start = bytes.len();
            bytes.extend_from_slice(s.as_bytes());
            start..bytes.len()
        }) {
            return Ok(place);
        }
        encoding::string::merge(wire_type, &mut self.scratch, buf, ctx)?;
        let start = self.bytes.len();
        self.bytes.extend_from_slice(self.scratch.as_bytes());
        Ok(start..self.bytes.len())
    }
}

/// Takes a string field that lies whole in the buffer's current chunk
/// (always, from the server's slice decoder): `take` gets it, checked as
/// UTF-8 and not copied, and the buffer moves past it. `None`, the buffer
/// untouched, for anything else (a string across chunks, a bad length,
/// bytes that are not UTF-8), which the caller sends through prost's own
/// decoder, which also says what is wrong.
pub(super) fn take_whole_str<T>(
    wire_type: WireType,
    buf: &mut impl Buf,
    take: impl FnOnce(&str) -> T,
) -> Option<T> {
    take_whole(wire_type, buf, |bytes| {
        std::str::from_utf8(bytes).ok().map(take)
    })
}

/// Takes a length-delimited field that lies whole in the buffer's current
/// chunk when `take` makes something of its bytes (not copied), moving the
/// buffer past it; `None`, the buffer untouched, otherwise.
fn take_whole<T>(
    wire_type: WireType,
    buf: &mut impl Buf,
    take: impl FnOnce(&[u8]) -> Option<T>,
) -> Option<T> {
    if wire_type != WireType::LengthDelimited {
        return None;
    }
    let mut chunk = buf.chunk();
    let len = usize::try_from(encoding::decode_varint(&mut chunk).ok()?).ok()?;
    let value = take(chunk.get(..len)?)?;
    let taken = buf.chunk().len() - chunk.len() + len;
    buf.advance(taken);
    Some(value)
}

/// The length of a length-delimited field holding `n` bytes, with its key.
fn delimited(n: usize) -> usize {
    1 + encoding::encoded_len_varint(n as u64) + n
}

/// A length-delimited field's key and length.
fn put_delimited(tag: u32, len: usize, buf: &mut impl BufMut) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(len as u64, buf);
}

/// The encoded length of a `Struct` holding `fields`.
fn fields_len(bytes: &[u8], fields: &[Field]) -> usize {
    fields.iter().map(|f| delimited(entry_len(bytes, f))).sum()
}

/// A map entry's length: its key (left out when empty, as prost does)
/// and its value.
fn entry_len(bytes: &[u8], (key, value): &Field) -> usize {
    let key_len = if key.is_empty() {
        0
    } else {
        delimited(key.len())
    };
    key_len + delimited(value_len(bytes, value))
}

/// A `ListValue`'s length.
fn list_len(bytes: &[u8], items: &[Value]) -> usize {
    items.iter().map(|v| delimited(value_len(bytes, v))).sum()
}

/// A `google.protobuf.Value`'s length.
fn value_len(bytes: &[u8], value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 2,
        Value::Number(_) => 9,
        Value::String(s) => delimited(s.len()),
        Value::Object(fields) => delimited(fields_len(bytes, fields)),
        Value::List(items) => delimited(list_len(bytes, items)),
    }
}

fn encode_fields(bytes: &[u8], fields: &[Field], buf: &mut impl BufMut) {
    for field in fields {
        put_delimited(1, entry_len(bytes, field), buf);
        let (key, value) = field;
        if !key.is_empty() {
            put_delimited(1, key.len(), buf);
            buf.put_slice(&bytes[key.clone()]);
        }
        put_delimited(2, value_len(bytes, value), buf);
        encode_value(bytes, value, buf);
    }
}

/// A `google.protobuf.Value`'s fields (its `kind`).
fn encode_value(bytes: &[u8], value: &Value, buf: &mut impl BufMut) {
    match value {
        Value::Null => encoding::int32::encode(1, &0, buf),
        Value::Number(n) => encoding::double::encode(2, n, buf),
        Value::String(s) => {
            put_delimited(3, s.len(), buf);
            buf.put_slice(&bytes[s.clone()]);
        }
        Value::Bool(b) => encoding::bool::encode(4, b, buf),
        Value::Object(fields) => {
            put_delimited(5, fields_len(bytes, fields), buf);
            encode_fields(bytes, fields, buf);
        }
        Value::List(items) => {
            put_delimited(6, list_len(bytes, items), buf);
            for item in items {
                put_delimited(1, value_len(bytes, item), buf);
                encode_value(bytes, item, buf);
            }
        }
    }
}

mod direct;
mod json;
#[cfg(test)]
mod tests;
