//! StreamEvents' answers, encoded once. A live group reaches every
//! follower alike, so its events are encoded as `StreamEventsResponse`
//! messages by the first follower that sends them ([`crate::store::Group`]
//! keeps the bytes) and copied onto every other follower's stream as they
//! are; history read from the file is encoded by the one stream reading it.
//! The generated `AuditService` (build.rs) takes [`Encoded`] where the
//! message would be; a client cannot tell the difference.

use bytes::Bytes;

use super::details::WireDetails;
use super::event_bytes::{self, EVENT_FIELD, EventBytes, EventView, encode_only};
use crate::hub::Form;
use crate::store::{Committed, Record};

/// A `StreamEventsResponse`, already encoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Encoded(Bytes);

impl Form for Encoded {
    fn live(group: &Committed, i: usize) -> Encoded {
        Encoded(group.wire(i, live_bytes))
    }

    type Row = EventBytes;

    /// Encoded straight from the line, as a Query page's events are.
    fn read(row: EventBytes) -> Encoded {
        Encoded(row.bytes.into())
    }
}

encode_only!(
    Encoded,
    |self, buf| {
        buf.put_slice(&self.0);
    },
    |self| { self.0.len() }
);

/// A live record's answer: the event encoded from the record's own strings
/// (`event_bytes`).
fn live_bytes(record: &Record) -> Bytes {
    let mut buf = Vec::new();
    // A live record's details are the text the ingest path wrote from a
    // `Struct` it decoded (`WireDetails`), so they read back; were they not,
    // the event goes with empty details, as `edge::event_pb` reads them.
    let details = WireDetails::from_json(record.details.as_str()).unwrap_or_default();
    event_bytes::put_event(EVENT_FIELD, &EventView::of(record), &details, &mut buf);
    buf.into()
}

#[cfg(test)]
mod tests {
    use auditlog_proto::v1 as pb;
    use prost::Message as _;

    use super::*;
    use crate::service::edge;
    use crate::store::Decoded;

    #[test]
    fn an_encoded_event_decodes_as_the_message_it_stands_for() {
        for line in event_bytes::sample_lines() {
            check(&line);
        }
    }

    /// The live bytes of the record `line` decode as the message the
    /// generic path builds, and are encoded once for every follower.
    fn check(line: &str) {
        let record: Record = serde_json::from_str(line).unwrap();
        let expected = pb::StreamEventsResponse {
            event: Some(edge::event_pb(record.clone())),
        };
        let read = Encoded::read(EventBytes::from_line(line.as_bytes()).unwrap());
        let group: Committed = std::sync::Arc::new(crate::store::Group::new(vec![record]));
        let sent = Encoded::live(&group, 0);
        // History read from the log is encoded alike.
        assert_eq!(read, sent, "{line}");
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
