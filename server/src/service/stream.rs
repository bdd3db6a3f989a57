//! StreamEvents' answers, encoded once. A live group reaches every
//! follower alike, so its events are encoded as `StreamEventsResponse`
//! messages by the first follower that sends them ([`crate::store::Group`]
//! keeps the bytes) and copied onto every other follower's stream as they
//! are; history read from the file is encoded by the one stream reading it.
//! The generated `AuditService` (build.rs) takes [`Encoded`] where the
//! message would be; a client cannot tell the difference.
//!
//! With `stored_lines` a message carries the records themselves, several at
//! a time ([`lines`]): a live record's line is a slice of the buffer the
//! writer wrote (no encoding at all), a record read from the file the line
//! read, whose MAC the read path checked as it does for the event form.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use prost::encoding::{self, WireType};

use super::details::WireDetails;
use super::event_bytes::{self, EVENT_FIELD, EventBytes, EventJsonBytes, EventView, encode_only};
use crate::hub::{Form, Receiver};
use crate::store::record::{Decoded, LineError, RecordHead};
use crate::store::{Committed, Record, StoreError};

/// A `StreamEventsResponse`, already encoded: one event, or stored lines.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Encoded {
    /// `event`, encoded whole (field and length included).
    Event(Bytes),
    /// `lines`, each a stored line without its newline.
    Lines(Vec<Bytes>),
}

impl Default for Encoded {
    fn default() -> Encoded {
        Encoded::Event(Bytes::new())
    }
}

impl Form for Encoded {
    fn live(group: &Committed, i: usize) -> Option<Encoded> {
        Some(Encoded::Event(group.wire(i, live_bytes)))
    }

    type Row = EventBytes;

    /// Encoded straight from the line, as a Query page's events are.
    fn read(row: EventBytes) -> Encoded {
        Encoded::Event(row.bytes.into())
    }

    fn bytes(&self) -> usize {
        match self {
            Encoded::Event(bytes) => bytes.len(),
            Encoded::Lines(lines) => lines.iter().map(Bytes::len).sum(),
        }
    }
}

/// [`Encoded`] events with their details as JSON text
/// (`StreamEventsRequest.details_as_json`), read and shared as they are.
#[derive(Debug, Clone)]
pub(crate) struct EncodedJson(pub(crate) Encoded);

impl Form for EncodedJson {
    fn live(group: &Committed, i: usize) -> Option<EncodedJson> {
        let bytes = group.wire_json(i, |record| {
            event_bytes::event_json(&EventView::of(record), record.details.as_str()).into()
        });
        Some(EncodedJson(Encoded::Event(bytes)))
    }

    type Row = EventJsonBytes;

    fn read(row: EventJsonBytes) -> EncodedJson {
        EncodedJson(Encoded::Event(row.0.bytes.into()))
    }

    fn bytes(&self) -> usize {
        self.0.bytes()
    }
}

/// `StreamEventsResponse.lines`' field number.
const LINES_FIELD: u32 = 2;

/// How many bytes of lines one message holds at most (but always one
/// line): well under the 4 MiB clients take by default, and large enough
/// that a live group is one message.
pub(crate) const LINES_BYTES: usize = 1 << 20;

encode_only!(
    Encoded,
    |self, buf| {
        match self {
            Encoded::Event(bytes) => buf.put_slice(bytes),
            Encoded::Lines(lines) => {
                for line in lines {
                    encoding::encode_key(LINES_FIELD, WireType::LengthDelimited, buf);
                    encoding::encode_varint(line.len() as u64, buf);
                    buf.put_slice(line);
                }
            }
        }
    },
    |self| {
        match self {
            Encoded::Event(bytes) => bytes.len(),
            Encoded::Lines(lines) => lines.iter().map(|l| line_len(l.len())).sum(),
        }
    }
);

/// The encoded length of one entry of `lines` holding `n` bytes.
fn line_len(n: usize) -> usize {
    encoding::key_len(LINES_FIELD) + encoding::encoded_len_varint(n as u64) + n
}

/// A record as a stored line, without its newline.
#[derive(Debug, Clone)]
pub(crate) struct Line(Bytes);

impl Form for Line {
    /// The writer's own bytes; `None` (read from the log instead) only if
    /// the group's lines do not match its records.
    fn live(group: &Committed, i: usize) -> Option<Line> {
        group.line(i).map(Line)
    }

    type Row = Line;

    fn read(row: Line) -> Line {
        row
    }

    fn bytes(&self) -> usize {
        self.0.len()
    }

    /// Lines that are under half of their group's bytes (a narrow filter)
    /// are copied out, so a chunk waiting for a slow reader does not keep
    /// the whole group's buffer.
    fn keep(chunk: Vec<Line>, group: &Committed) -> Vec<Line> {
        let sent: usize = chunk.iter().map(|l| l.0.len()).sum();
        if sent * 2 >= group.lines_len() {
            return chunk;
        }
        let mut copy = BytesMut::with_capacity(sent);
        for Line(line) in &chunk {
            copy.extend_from_slice(line);
        }
        let mut copy = copy.freeze();
        chunk
            .into_iter()
            .map(|Line(line)| Line(copy.split_to(line.len())))
            .collect()
    }
}

impl Decoded for Line {
    /// The line as read. The read path hands over only a line whose MAC it
    /// checked (`read::check_signed`, or the lead copy's check), so it is a
    /// record the server wrote: nothing is parsed again, only its head is
    /// read for its seq.
    fn from_line(line: &[u8]) -> Result<Line, LineError> {
        RecordHead::peek_seq(line)
            .ok_or_else(|| LineError::Json("the line does not start with a seq".into()))?;
        Ok(Line(Bytes::copy_from_slice(line)))
    }

    fn seq(&self) -> u64 {
        // Read in `from_line`, so the head holds one.
        RecordHead::peek_seq(&self.0).unwrap_or(0)
    }
}

/// A subscription's stored lines as messages: each chunk it gives (a live
/// group, a page from the file) in as few messages as [`LINES_BYTES`]
/// allows.
pub(crate) fn lines(rx: Receiver<Line>) -> impl Stream<Item = Result<Encoded, StoreError>> + Send {
    rx.into_chunks().flat_map(|chunk| {
        let messages: Vec<Result<Encoded, StoreError>> = match chunk {
            Ok(chunk) => messages_of(chunk).into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(messages)
    })
}

/// `chunk`'s lines in messages of at most [`LINES_BYTES`] encoded, each
/// holding at least one line.
fn messages_of(chunk: Vec<Line>) -> Vec<Encoded> {
    let mut messages = Vec::new();
    let mut lines = Vec::new();
    let mut bytes = 0;
    for Line(line) in chunk {
        let n = line_len(line.len());
        if !lines.is_empty() && bytes + n > LINES_BYTES {
            messages.push(Encoded::Lines(std::mem::take(&mut lines)));
            bytes = 0;
        }
        bytes += n;
        lines.push(line);
    }
    if !lines.is_empty() {
        messages.push(Encoded::Lines(lines));
    }
    messages
}

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
    use crate::store::Group;

    #[test]
    fn an_encoded_event_decodes_as_the_message_it_stands_for() {
        for line in event_bytes::sample_lines() {
            check(&line);
        }
    }

    /// A group of `lines` as the syncer publishes it: the records, and the
    /// lines in one buffer, each with its newline.
    fn group_of(lines: &[String]) -> Committed {
        let records = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let written: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::sync::Arc::new(Group::new(records, vec![Bytes::from(written)]))
    }

    fn decode(message: &Encoded) -> pb::StreamEventsResponse {
        let mut wire = Vec::new();
        message.encode(&mut wire).unwrap();
        assert_eq!(wire.len(), message.encoded_len());
        pb::StreamEventsResponse::decode(&wire[..]).unwrap()
    }

    /// The live bytes of the record `line` decode as the message the
    /// generic path builds, and are encoded once for every follower.
    fn check(line: &str) {
        let record: Record = serde_json::from_str(line).unwrap();
        let expected = pb::StreamEventsResponse {
            event: Some(edge::event_pb(record.clone())),
            lines: Vec::new(),
        };
        let read = Encoded::read(EventBytes::from_line(line.as_bytes()).unwrap());
        let group = group_of(&[line.to_owned()]);
        let sent = Encoded::live(&group, 0).unwrap();
        // History read from the log is encoded alike.
        assert_eq!(read, sent, "{line}");
        // The second follower gets the same bytes, not a second encoding.
        let (Encoded::Event(first), Some(Encoded::Event(second))) =
            (&sent, Encoded::live(&group, 0))
        else {
            panic!("an event's form is not Encoded::Event");
        };
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(decode(&sent), expected, "{line}");
    }

    /// Stored lines, live or read, are the bytes written, and a chunk's
    /// messages hold them all, in order, none over the bound but for a
    /// single line.
    #[test]
    fn stored_lines_are_sent_as_written_in_bounded_messages() {
        let samples = event_bytes::sample_lines();
        let group = group_of(&samples);
        let live: Vec<Line> = (0..samples.len())
            .map(|i| Line::live(&group, i).unwrap())
            .collect();
        for (line, sample) in live.iter().zip(&samples) {
            assert_eq!(&line.0[..], sample.as_bytes());
            let read = Line::from_line(sample.as_bytes()).unwrap();
            assert_eq!(read.0, line.0);
            assert_eq!(read.seq(), RecordHead::peek_seq(sample.as_bytes()).unwrap());
        }
        // A live line is a slice of the writer's buffer, not a copy, and a
        // chunk of most of the group keeps it so.
        assert_eq!(
            Line::live(&group, 1).unwrap().0.as_ptr(),
            live[1].0.as_ptr()
        );
        let kept = Line::keep(live.clone(), &group);
        assert!(
            kept.iter()
                .zip(&live)
                .all(|(k, l)| k.0.as_ptr() == l.0.as_ptr())
        );
        // A chunk of a small part of it is copied out, the same bytes.
        let few = vec![live[0].clone(), live[2].clone()];
        let kept = Line::keep(few.clone(), &group);
        for (k, l) in kept.iter().zip(&few) {
            assert_eq!(k.0, l.0);
            assert_ne!(
                k.0.as_ptr(),
                l.0.as_ptr(),
                "a narrow chunk still pins its group"
            );
        }

        // Enough lines for several messages, one of them alone over the bound.
        let big = Bytes::from(vec![b'x'; LINES_BYTES + 10]);
        let mut chunk: Vec<Line> = Vec::new();
        for n in 0..6000 {
            chunk.push(live[n % live.len()].clone());
            if n == 2500 {
                chunk.push(Line(big.clone()));
            }
        }
        let expected: Vec<Vec<u8>> = chunk.iter().map(|l| l.0.to_vec()).collect();
        let messages = messages_of(chunk);
        assert!(messages.len() >= 3, "{} messages", messages.len());
        let mut got = Vec::new();
        for message in &messages {
            let decoded = decode(message);
            assert!(decoded.event.is_none());
            assert!(!decoded.lines.is_empty());
            assert!(
                message.encoded_len() <= LINES_BYTES || decoded.lines.len() == 1,
                "a message of {} bytes holds {} lines",
                message.encoded_len(),
                decoded.lines.len()
            );
            got.extend(decoded.lines);
        }
        assert_eq!(got, expected);
    }

    /// A group whose lines do not hold its records gives no line, so the
    /// subscription reads the group from the log instead.
    #[test]
    fn a_group_whose_lines_do_not_match_its_records_gives_none() {
        let samples = event_bytes::sample_lines();
        let records: Vec<Record> = samples[..2]
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for written in [
            // One line short.
            format!("{}\n", samples[0]),
            // The lines of other records.
            format!("{}\n{}\n", samples[2], samples[3]),
            // No newline after the last.
            format!("{}\n{}", samples[0], samples[1]),
        ] {
            let group = Group::new(records.clone(), vec![Bytes::from(written)]);
            let group: Committed = std::sync::Arc::new(group);
            assert!(Line::live(&group, 0).is_none());
        }
    }
}
