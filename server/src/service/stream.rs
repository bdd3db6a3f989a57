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

/// A live record's answer. Its details go from their JSON text to their
/// `Struct` encoding through `WireDetails`'s small tree, not a `Struct`,
/// and follow the event's other fields (protobuf takes fields in any
/// order).
fn live_bytes(record: &Record) -> Bytes {
    let Some(details) = WireDetails::from_json(record.details.as_str()) else {
        // Details are a JSON object by construction; if not, the long way.
        return Encoded::of(record.with_details(&record.details)).0;
    };
    let event = edge::event_pb(record.with_details(Later));
    let details_len = details.encoded_len();
    let event_len =
        event.encoded_len() + 1 + encoding::encoded_len_varint(details_len as u64) + details_len;
    let mut buf =
        BytesMut::with_capacity(1 + encoding::encoded_len_varint(event_len as u64) + event_len);
    encoding::encode_key(RESPONSE_EVENT, WireType::LengthDelimited, &mut buf);
    encoding::encode_varint(event_len as u64, &mut buf);
    event.encode_raw(&mut buf);
    encoding::encode_key(EVENT_DETAILS, WireType::LengthDelimited, &mut buf);
    encoding::encode_varint(details_len as u64, &mut buf);
    details.encode_raw(&mut buf);
    buf.freeze()
}

/// `StreamEventsResponse.event`'s field number.
const RESPONSE_EVENT: u32 = 1;
/// `Event.details`' field number.
const EVENT_DETAILS: u32 = 8;

/// Details written after the rest of the event (`live_bytes`): none in
/// the event message itself.
struct Later;

impl edge::DetailsPb for Later {
    fn into_struct(self) -> Option<prost_types::Struct> {
        None
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
            let record: Record = serde_json::from_str(&format!(
                r#"{{"seq":7,"id":"e-7","timestamp":"2026-12-04T10:00:00.000000Z","event_type":"lead.created","actor":"crm","caller":"svc","lead_id":"L-1","workflow":"w","details":{details},"idempotency_key":"k-7","key_id":"k1","prev":"00","signature":"ff"}}"#
            ))
            .unwrap();
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
                "{details}"
            );
        }
    }
}
