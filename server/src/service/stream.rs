//! StreamEvents' answers, encoded once. A live group reaches every
//! follower alike, so its events are encoded as `StreamEventsResponse`
//! messages by the first follower that sends them ([`crate::store::Group`]
//! keeps the bytes) and copied onto every other follower's stream as they
//! are; history read from the file is encoded by the one stream reading it.
//! The generated `AuditService` (build.rs) takes [`Encoded`] where the
//! message would be; a client cannot tell the difference.

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost::encoding::{DecodeContext, WireType};

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
        // The group keeps its records: their details are converted from
        // where they are, not from a deep copy.
        Encoded(group.wire(i, |record| Encoded::of(record.borrowing_details()).0))
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

#[cfg(test)]
mod tests {
    use auditlog_proto::v1 as pb;

    use super::*;

    #[test]
    fn an_encoded_event_decodes_as_the_message_it_stands_for() {
        let record: Record = serde_json::from_str(
            r#"{"seq":7,"id":"e-7","timestamp":"2026-12-04T10:00:00.000000Z","event_type":"lead.created","actor":"crm","caller":"svc","lead_id":"L-1","workflow":"w","details":{"score":3,"tags":["a"]},"idempotency_key":"k-7","key_id":"k1","prev":"00","signature":"ff"}"#,
        )
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
            expected
        );
    }
}
