//! StreamEvents' answers, encoded once. A live group reaches every
//! follower alike, so its events are encoded as `StreamEventsResponse`
//! messages by the first follower that sends them ([`crate::store::Group`]
//! keeps the bytes) and copied onto every other follower's stream as they
//! are; history read from the file is encoded by the one stream reading it.
//! The generated `AuditService` (build.rs) takes [`Encoded`] where the
//! message would be; a client cannot tell the difference.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{self, DecodeContext, WireType};

use super::details::WireDetails;
use super::edge;
use crate::hub::Form;
use crate::store::{Committed, Record};

/// A `StreamEventsResponse`, already encoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Encoded(Bytes);

impl Encoded {
    fn of<D: edge::DetailsPb>(record: Record<D>) -> Encoded {
        Encoded(edge::stream_item_pb(record).encode_to_vec().into())
    }
}

impl Form for Encoded {
    fn live(group: &Committed, i: usize) -> Encoded {
        Encoded(group.wire(i, live_bytes))
    }

    fn read(record: Record) -> Encoded {
        Encoded::of(record)
    }
}

impl Message for Encoded {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    /// Never called (the server only sends these); the fields of a message
    /// decoded into one are skipped.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// A live record's answer. Its fields are encoded from the record's own
/// strings (no `pb::Event` of copies), and its details go from their JSON
/// text to their `Struct` encoding through `WireDetails`'s small tree, not
/// a `Struct`, after the event's other fields (protobuf takes fields in any
/// order).
fn live_bytes(record: &Record) -> Bytes {
    let Some(details) = WireDetails::from_json(record.details.as_str()) else {
        // Details are a JSON object by construction; if not, the long way.
        return Encoded::of(record.with_details(&record.details)).0;
    };
    let timestamp = edge::timestamp_pb(record.timestamp);
    let details_len = details.encoded_len();
    let event_len = EventFields::len(record, &timestamp)
        + 1
        + encoding::encoded_len_varint(details_len as u64)
        + details_len;
    let mut buf =
        BytesMut::with_capacity(1 + encoding::encoded_len_varint(event_len as u64) + event_len);
    encoding::encode_key(RESPONSE_EVENT, WireType::LengthDelimited, &mut buf);
    encoding::encode_varint(event_len as u64, &mut buf);
    EventFields::encode(record, &timestamp, &mut buf);
    encoding::encode_key(EVENT_DETAILS, WireType::LengthDelimited, &mut buf);
    encoding::encode_varint(details_len as u64, &mut buf);
    details.encode_raw(&mut buf);
    buf.freeze()
}

/// `StreamEventsResponse.event`'s field number.
const RESPONSE_EVENT: u32 = 1;
/// `Event.details`' field number.
const EVENT_DETAILS: u32 = 8;

/// `pb::Event`'s fields but `details`, encoded as prost encodes them (in
/// field order, empty strings and a zero seq left out) from a record's
/// own fields, the mapping of `edge::event_pb`.
struct EventFields;

impl EventFields {
    /// The string fields after the timestamp, with their field numbers.
    fn strings(r: &Record) -> [(u32, &str); 9] {
        fn opt(s: &Option<String>) -> &str {
            s.as_deref().unwrap_or("")
        }
        [
            (4, r.event_type.as_str()),
            (5, r.actor.as_str()),
            (6, opt(&r.lead_id)),
            (7, opt(&r.workflow)),
            (9, opt(&r.idempotency_key)),
            (10, r.key_id.as_str()),
            (11, r.prev.as_str()),
            (12, r.signature.as_str()),
            (13, opt(&r.caller)),
        ]
    }

    fn len(r: &Record, timestamp: &prost_types::Timestamp) -> usize {
        let seq = if r.seq == 0 {
            0
        } else {
            encoding::uint64::encoded_len(1, &r.seq)
        };
        seq + string_len(2, &r.id)
            + encoding::message::encoded_len(3, timestamp)
            + Self::strings(r)
                .iter()
                .map(|&(tag, s)| string_len(tag, s))
                .sum::<usize>()
    }

    fn encode(r: &Record, timestamp: &prost_types::Timestamp, buf: &mut BytesMut) {
        if r.seq != 0 {
            encoding::uint64::encode(1, &r.seq, buf);
        }
        put_string(2, &r.id, buf);
        encoding::message::encode(3, timestamp, buf);
        for (tag, s) in Self::strings(r) {
            put_string(tag, s, buf);
        }
    }
}

/// The encoded length of string field `tag` holding `s` (none if empty).
fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        encoding::key_len(tag) + encoding::encoded_len_varint(s.len() as u64) + s.len()
    }
}

/// Encodes string field `tag` holding `s`, unless it is empty.
fn put_string(tag: u32, s: &str, buf: &mut BytesMut) {
    if !s.is_empty() {
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(s.len() as u64, buf);
        buf.put_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use auditlog_proto::v1 as pb;

    use super::*;

    #[test]
    fn an_encoded_event_decodes_as_the_message_it_stands_for() {
        for details in [
            r#"{"score":3,"tags":["a"]}"#,
            r#"{}"#,
            r#"{"":"empty key","a":{"b":{"c":[[],{},null,true,false]}},"n":[-0.0,1e300,-9007199254740993,18446744073709551615,2.5]}"#,
            r#"{"esc":"q\"b\\n\nt\tu\u0001 é 😀","list":[{"x":1},{"y":"z"}]}"#,
        ] {
            for line in [
                format!(
                    r#"{{"seq":7,"id":"e-7","timestamp":"2026-12-04T10:00:00.000000Z","event_type":"lead.created","actor":"crm","caller":"svc","lead_id":"L-1","workflow":"w","details":{details},"idempotency_key":"k-7","key_id":"k1","prev":"00","signature":"ff"}}"#
                ),
                // Optional fields absent or empty, a timestamp before 1970
                // and one on a whole second, a seq past 2^32.
                format!(
                    r#"{{"seq":4294967297,"id":"é","timestamp":"1969-12-31T23:59:59.999999Z","event_type":"x","actor":"","lead_id":null,"workflow":"","details":{details},"key_id":"","prev":"0","signature":"s"}}"#
                ),
                format!(
                    r#"{{"seq":1,"id":"","timestamp":"2026-01-01T00:00:00.000000Z","event_type":"t","actor":"a","lead_id":"","workflow":null,"details":{details},"key_id":"k","prev":"p","signature":"s"}}"#
                ),
            ] {
                check(&line);
            }
        }
    }

    /// The live bytes of the record `line` decode as the message the
    /// generic path builds, and are encoded once for every follower.
    fn check(line: &str) {
        let record: Record = serde_json::from_str(line).unwrap();
        let expected = edge::stream_item_pb(record.clone());
        let group: Committed = std::sync::Arc::new(crate::store::Group::new(vec![record]));
        let sent = Encoded::live(&group, 0);
        // The second follower gets the same bytes, not a second encoding.
        assert_eq!(Encoded::live(&group, 0).0.as_ptr(), sent.0.as_ptr());
        let mut wire = Vec::new();
        sent.encode(&mut wire).unwrap();
        assert_eq!(
            pb::StreamEventsResponse::decode(&wire[..]).unwrap(),
            expected,
            "{line}"
        );
    }
}
