//! A record as the bytes of a `pb::Event`, encoded straight from the
//! record's own strings: no `pb::Event` of copies, and `details` go from
//! their JSON text to their `Struct` encoding through `WireDetails`' small
//! tree instead of a `Struct` of maps. Streams (`stream.rs`) and Query pages
//! (`query.rs`) send these; a client cannot tell them from prost's encoding.

use bytes::BufMut;
use prost::Message as _;
use prost::encoding::{self, WireType};

use super::details::WireDetails;
use super::edge;
use crate::store::Record;
use crate::store::record::{Decoded, LineError, RecordRef, parse_row};

/// `Message` for an answer the server only sends (`Encoded`,
/// `EncodedPage`): `encode_raw` and `encoded_len` as given, and a message
/// decoded into one (never, on the server) skips every field.
macro_rules! encode_only {
    ($name:ty, |$this:ident, $buf:ident| $encode:block, |$this_len:ident| $len:block) => {
        impl prost::Message for $name {
            fn encode_raw(&$this, $buf: &mut impl bytes::BufMut) $encode

            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: prost::encoding::WireType,
                buf: &mut impl bytes::Buf,
                ctx: prost::encoding::DecodeContext,
            ) -> Result<(), prost::DecodeError> {
                prost::encoding::skip_field(wire_type, tag, buf, ctx)
            }

            fn encoded_len(&$this_len) -> usize $len

            fn clear(&mut self) {
                *self = Self::default();
            }
        }
    };
}
pub(super) use encode_only;

/// The fields of a record (`Record` or `RecordRef`, which name them alike)
/// but `details`, as an [`EventView`].
macro_rules! view_of {
    ($r:ident) => {
        EventView {
            seq: $r.seq,
            id: &$r.id,
            timestamp: $r.timestamp,
            strings: [
                (4, &$r.event_type),
                (5, &$r.actor),
                (6, $r.lead_id.as_deref().unwrap_or("")),
                (7, $r.workflow.as_deref().unwrap_or("")),
                (9, $r.idempotency_key.as_deref().unwrap_or("")),
                (10, &$r.key_id),
                (11, &$r.prev),
                (12, &$r.signature),
                (13, $r.caller.as_deref().unwrap_or("")),
            ],
        }
    };
}

/// The field both `StreamEventsResponse` and `QueryResponse` carry their
/// events in (`event`, `events`).
pub(super) const EVENT_FIELD: u32 = 1;

/// One event of an answer, encoded as field [`EVENT_FIELD`]: a whole
/// `StreamEventsResponse`, or one of a `QueryResponse`'s events. Decoded
/// straight from a stored line (`RecordRef`: the line's strings are
/// borrowed, not copied), so a Query page allocates once per event.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct EventBytes {
    seq: u64,
    pub(super) bytes: Vec<u8>,
}

impl EventBytes {
    /// The encoded length.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl Decoded for EventBytes {
    fn from_line(line: &[u8]) -> Result<EventBytes, LineError> {
        let record: RecordRef<'_> = parse_row(line)?;
        // A page never answers with details other than the line's: what
        // cannot be encoded is an error, as a line that cannot be parsed is.
        let details = WireDetails::from_json(record.details).ok_or_else(|| {
            LineError::Json("details cannot be encoded as a google.protobuf.Struct".into())
        })?;
        let mut bytes = Vec::new();
        put_event(
            EVENT_FIELD,
            &EventView::of_ref(&record),
            &details,
            &mut bytes,
        );
        Ok(EventBytes {
            seq: record.seq,
            bytes,
        })
    }

    fn seq(&self) -> u64 {
        self.seq
    }
}

/// An [`EventBytes`] whose details are the stored JSON text, as
/// `Event.details_json` (a Query's or stream's `details_as_json`): the line's own
/// bytes, neither parsed nor re-encoded.
#[derive(Debug)]
pub(crate) struct EventJsonBytes(pub(crate) EventBytes);

impl From<EventJsonBytes> for EventBytes {
    fn from(event: EventJsonBytes) -> EventBytes {
        event.0
    }
}

impl Decoded for EventJsonBytes {
    fn from_line(line: &[u8]) -> Result<EventJsonBytes, LineError> {
        let record: RecordRef<'_> = parse_row(line)?;
        Ok(EventJsonBytes(EventBytes {
            seq: record.seq,
            bytes: event_json(&EventView::of_ref(&record), record.details),
        }))
    }

    fn seq(&self) -> u64 {
        self.0.seq
    }
}

/// A record's fields but `details` as `pb::Event` has them, borrowed: from a
/// live [`Record`] or from a line ([`RecordRef`]).
pub(super) struct EventView<'a> {
    seq: u64,
    id: &'a str,
    timestamp: i64,
    /// The string fields after the timestamp, with their field numbers,
    /// the mapping of `edge::event_pb` (absent optional fields are empty).
    strings: [(u32, &'a str); 9],
}

impl<'a> EventView<'a> {
    pub(super) fn of(r: &'a Record) -> EventView<'a> {
        view_of!(r)
    }

    fn of_ref(r: &'a RecordRef<'a>) -> EventView<'a> {
        view_of!(r)
    }

    /// The encoded length of every field but `details`.
    fn fields_len(&self, timestamp: &prost_types::Timestamp) -> usize {
        let seq = if self.seq == 0 {
            0
        } else {
            encoding::uint64::encoded_len(1, &self.seq)
        };
        seq + string_len(2, self.id)
            + encoding::message::encoded_len(3, timestamp)
            + self
                .strings
                .iter()
                .map(|&(tag, s)| string_len(tag, s))
                .sum::<usize>()
    }

    /// Every field but `details`, as prost encodes them: in field order,
    /// empty strings and a zero seq left out.
    fn encode_fields(&self, timestamp: &prost_types::Timestamp, buf: &mut Vec<u8>) {
        if self.seq != 0 {
            encoding::uint64::encode(1, &self.seq, buf);
        }
        put_string(2, self.id, buf);
        encoding::message::encode(3, timestamp, buf);
        for (tag, s) in self.strings {
            put_string(tag, s, buf);
        }
    }
}

/// Encodes `event`, with `details` read from its text, as `pb::Event`
/// field `tag` of the message being built in `buf`, growing `buf` once by
/// the exact length.
pub(super) fn put_event(tag: u32, event: &EventView<'_>, details: &WireDetails, buf: &mut Vec<u8>) {
    let timestamp = edge::timestamp_pb(event.timestamp);
    let details_len = details.encoded_len();
    let event_len = event.fields_len(&timestamp)
        + encoding::key_len(EVENT_DETAILS)
        + encoding::encoded_len_varint(details_len as u64)
        + details_len;
    buf.reserve(
        encoding::key_len(tag) + encoding::encoded_len_varint(event_len as u64) + event_len,
    );
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(event_len as u64, buf);
    event.encode_fields(&timestamp, buf);
    // Protobuf takes fields in any order: details last.
    encoding::encode_key(EVENT_DETAILS, WireType::LengthDelimited, buf);
    encoding::encode_varint(details_len as u64, buf);
    details.encode_raw(buf);
}

/// `event` with `details`, its JSON text, as `Event.details_json`: a whole
/// `StreamEventsResponse`, or one of a `QueryResponse`'s events (field
/// [`EVENT_FIELD`]).
pub(super) fn event_json(event: &EventView<'_>, details: &str) -> Vec<u8> {
    let timestamp = edge::timestamp_pb(event.timestamp);
    let event_len = event.fields_len(&timestamp) + string_len(EVENT_DETAILS_JSON, details);
    let mut bytes = Vec::with_capacity(
        encoding::key_len(EVENT_FIELD) + encoding::encoded_len_varint(event_len as u64) + event_len,
    );
    encoding::encode_key(EVENT_FIELD, WireType::LengthDelimited, &mut bytes);
    encoding::encode_varint(event_len as u64, &mut bytes);
    event.encode_fields(&timestamp, &mut bytes);
    put_string(EVENT_DETAILS_JSON, details, &mut bytes);
    bytes
}

/// The encoded length of string field `tag` holding `s` (none if empty).
pub(super) fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        encoding::key_len(tag) + encoding::encoded_len_varint(s.len() as u64) + s.len()
    }
}

/// Encodes string field `tag` holding `s`, unless it is empty.
pub(super) fn put_string(tag: u32, s: &str, buf: &mut impl BufMut) {
    if !s.is_empty() {
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(s.len() as u64, buf);
        buf.put_slice(s.as_bytes());
    }
}

/// `Event.details`' field number.
const EVENT_DETAILS: u32 = 8;
/// `Event.details_json`'s field number.
const EVENT_DETAILS_JSON: u32 = 14;

/// Stored lines that cover what the encoding must get right: every field
/// set, optional fields absent or empty, escapes in every string field, a
/// timestamp before 1970 and one on a whole second, a seq past 2^32, and
/// details with every kind of value, escapes and numbers a `Struct` holds
/// only as doubles.
#[cfg(test)]
pub(super) fn sample_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for details in [
        r#"{"score":3,"tags":["a"]}"#,
        r#"{}"#,
        r#"{"":"empty key","a":{"b":{"c":[[],{},null,true,false]}},"n":[-0.0,1e300,-9007199254740993,18446744073709551615,2.5]}"#,
        r#"{"esc":"q\"b\\n\nt\tu\u0001 é 😀","list":[{"x":1},{"y":"z"}]}"#,
    ] {
        lines.push(format!(
            r#"{{"seq":7,"id":"e-7","timestamp":"2026-12-04T10:00:00.000000Z","event_type":"lead.created","actor":"crm","caller":"svc","lead_id":"L-1","workflow":"w","details":{details},"idempotency_key":"k-7","key_id":"k1","prev":"00","signature":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}"#
        ));
        lines.push(format!(
            r#"{{"seq":4294967297,"id":"é","timestamp":"1969-12-31T23:59:59.999999Z","event_type":"x","actor":"","lead_id":null,"workflow":"","details":{details},"key_id":"","prev":"0","signature":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}"#
        ));
        lines.push(format!(
            r#"{{"seq":1,"id":"","timestamp":"2026-01-01T00:00:00.000000Z","event_type":"t","actor":"a","lead_id":"","workflow":null,"details":{details},"key_id":"k","prev":"p","signature":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}"#
        ));
        // Escapes in the other fields: read into new strings, not borrowed.
        lines.push(format!(
            r#"{{"seq":2,"id":"i\"d","timestamp":"2026-01-01T00:00:00.5Z","event_type":"t\u00e9","actor":"a\\b","caller":"c\n","lead_id":"L\t1","workflow":"w\/","details":{details},"idempotency_key":"k\r","key_id":"k","prev":"p","signature":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}"#
        ));
    }
    lines
}
