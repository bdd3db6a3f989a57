//! The leader's publish: a signed group goes to the stream fenced on the
//! stream's last sequence, so that a deposed, paused or partitioned leader
//! can never append after another took over.
//!
//! Every message carries `Nats-Expected-Last-Sequence`: the stream sequence
//! of the last message this leader knows (the tail it read on taking over,
//! then each of its own acknowledged publishes). JetStream refuses the
//! message if anything else was appended since: the leader has been
//! replaced, and steps down. A publish whose acknowledgement was lost is
//! retried with the same `Nats-Msg-Id` and the same expected sequence:
//! JetStream answers the retry of a stored message as a duplicate, with its
//! original sequence, and stores nothing twice.
//!
//! The `Nats-Msg-Id` names the content, not only the seqs:
//! `<first>-<last>-<signature of the last record>`. A clustered JetStream
//! checks the id before the expected sequence, so an id made of seqs alone
//! let a leader paused past its lease publish seqs its successor had
//! already published, be answered "duplicate" at exactly the stream
//! sequence it expected, and acknowledge records that were never stored.
//! The last record's MAC covers its `prev`, so the signature names every
//! record before it too; and a duplicate answer is believed only once the
//! stored message is read back byte for byte equal to this one.
//!
//! A group is split into messages of at most [`MAX_MESSAGE`] bytes
//! (JetStream's default `max_payload` is 1 MiB, and the headers count too),
//! only where a caller's batch ends: a replica refuses a message that ends
//! inside a batch, and each batch fits one message (`gather.rs` sees to
//! it). Each message is a whole number of records, in order;
//! `Auditlog-Seq: <first>-<last>` names them.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use super::ClusterError;
use crate::store::record::RecordHead;

/// The most record bytes in one message: 1 MiB less room for the headers.
pub(crate) const MAX_MESSAGE: usize = 1024 * 1024 - 4096;

/// The header naming the record seqs a message holds.
pub(crate) const SEQ_HEADER: &str = "Auditlog-Seq";

/// How often a publish whose outcome is unknown (a timeout, a dropped
/// connection) is retried before the group fails.
const ATTEMPTS: u32 = 3;

/// How long a publish that no JetStream server took (NATS answered "no
/// responders": the stream's subject not known yet where this node is
/// connected, just after the stream was created or its leader moved) is
/// tried again. Nothing was stored, so trying again is safe.
const UNHEARD_WAIT: Duration = Duration::from_secs(2);

/// The pause between two tries of a publish nobody took.
const UNHEARD_RETRY: Duration = Duration::from_millis(50);

/// Publishes groups for the leader of one term.
pub(crate) struct Publisher {
    js: Context,
    stream: String,
    subject: String,
    /// The stream sequence of the last message in the stream as this leader
    /// knows it: the next publish expects exactly it.
    last: u64,
}

impl Publisher {
    /// A publisher to `stream`'s `subject` continuing after the stream
    /// message `last` (0: the stream is empty).
    pub(crate) fn after(js: Context, stream: String, subject: String, last: u64) -> Publisher {
        Publisher {
            js,
            stream,
            subject,
            last,
        }
    }

    /// The stream sequence of the last message published or known.
    #[cfg(test)]
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// Publishes the record lines `lines` (seqs `first..=last`, each line
    /// ending in `\n`), split as needed at the `batch_ends` (byte offsets
    /// in `lines`); `Ok` once every part is stored on a quorum. [`ClusterError::Deposed`] means another leader appended:
    /// nothing of this group is in the stream and this node must step down.
    pub(crate) async fn publish(
        &mut self,
        lines: &[u8],
        first: u64,
        last: u64,
        batch_ends: &[usize],
    ) -> Result<(), ClusterError> {
        let parts = split(lines, first, MAX_MESSAGE, batch_ends)?;
        if parts.last().map(|p| p.2) != Some(last) {
            return Err(ClusterError::Nats(format!(
                "a group said to hold records {first}-{last} has {} lines",
                lines.split_inclusive(|&b| b == b'\n').count()
            )));
        }
        for (part, from, to) in parts {
            self.publish_one(part, from, to).await?;
        }
        Ok(())
    }

    async fn publish_one(&mut self, part: Bytes, from: u64, to: u64) -> Result<(), ClusterError> {
        let message_payload = part.clone();
        let mut headers = HeaderMap::new();
        headers.insert(SEQ_HEADER, format!("{from}-{to}").as_str());
        let message = PublishMessage::build()
            .payload(part)
            .headers(headers)
            .message_id(message_id(&message_payload, from, to)?)
            .expected_last_sequence(self.last);
        let unheard_until = Instant::now() + UNHEARD_WAIT;
        let mut attempt = 0;
        let last_error = loop {
            let outcome = match self
                .js
                .send_publish(self.subject.clone(), message.clone())
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(ack) if ack.sequence == self.last + 1 => {
                    // A duplicate is an earlier attempt of this very message
                    // only if the stream holds these bytes there.
                    if ack.duplicate && !self.next_is(&message_payload).await? {
                        return Err(ClusterError::Deposed(format!(
                            "the stream answered records {from}-{to} as a duplicate of \
                             message {}, which holds other records",
                            ack.sequence
                        )));
                    }
                    self.last = ack.sequence;
                    return Ok(());
                }
                Ok(ack) => {
                    // A duplicate acknowledged at another sequence: the
                    // stream does not hold what this leader believes.
                    return Err(ClusterError::Deposed(format!(
                        "the stream acknowledged records {from}-{to} at message {}, \
                         expected {}",
                        ack.sequence,
                        self.last + 1
                    )));
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    // JetStream checks the expected sequence before the
                    // message id: a retry of a message stored by an earlier
                    // attempt lands here. It is ours if the next message is
                    // byte for byte this one.
                    if self.next_is(&message_payload).await? {
                        self.last += 1;
                        return Ok(());
                    }
                    return Err(ClusterError::Deposed(format!(
                        "another leader appended after stream message {}",
                        self.last
                    )));
                }
                Err(e)
                    if e.kind() == PublishErrorKind::StreamNotFound
                        && Instant::now() < unheard_until =>
                {
                    tokio::time::sleep(UNHEARD_RETRY).await;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
                    ) && attempt + 1 < ATTEMPTS =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e) => break e.to_string(),
            }
        };
        Err(ClusterError::Nats(format!(
            "publishing records {from}-{to}: {last_error}"
        )))
    }
}

impl Publisher {
    /// Whether the stream's message after [`Publisher::last`] holds exactly
    /// `payload`.
    async fn next_is(&self, payload: &Bytes) -> Result<bool, ClusterError> {
        let read = async {
            let stream = self.js.get_stream_no_info(&self.stream).await?;
            let message = stream.get_raw_message(self.last + 1).await?;
            Ok::<_, async_nats::Error>(message.payload == *payload)
        };
        read.await.map_err(|e| {
            ClusterError::Nats(format!(
                "reading stream message {} after a refused publish: {e}",
                self.last + 1
            ))
        })
    }
}

/// The `Nats-Msg-Id` of the message holding records `from..=to`: their
/// seqs and the signature of the last one, whose MAC covers every record
/// before it through `prev`. Two leaders signing the same seqs never give
/// the same id, and a retry of the same bytes always does.
fn message_id(part: &[u8], from: u64, to: u64) -> Result<String, ClusterError> {
    let last = part
        .strip_suffix(b"\n")
        .and_then(|p| p.rsplit(|&b| b == b'\n').next())
        .and_then(RecordHead::peek)
        .ok_or_else(|| ClusterError::Nats(format!("record {to} is not a signed record line")))?;
    Ok(format!("{from}-{to}-{}", last.signature))
}

/// Splits `lines` (records `first..`) into parts of at most `max` bytes,
/// each ending at one of `ends` (byte offsets; the end of `lines` always
/// is one), with the seqs each holds. A stretch between two ends longer
/// than `max` is an error: `gather.rs` refuses such a batch before it is
/// signed.
fn split(
    lines: &[u8],
    first: u64,
    max: usize,
    ends: &[usize],
) -> Result<Vec<(Bytes, u64, u64)>, ClusterError> {
    let mut ends: Vec<usize> = ends
        .iter()
        .copied()
        .filter(|&e| e > 0 && e < lines.len())
        .collect();
    ends.sort_unstable();
    ends.dedup();
    if !lines.is_empty() {
        ends.push(lines.len());
    }
    let mut parts = Vec::new();
    let mut start = 0;
    let mut seq = first;
    let mut next = ends.iter().copied().peekable();
    while start < lines.len() {
        let mut end = start;
        while let Some(e) = next.next_if(|&e| e - start <= max) {
            end = e;
        }
        if end == start {
            return Err(ClusterError::Nats(format!(
                "the batch starting at record {seq} is larger than a message may be \
                 ({max} bytes)"
            )));
        }
        let count = lines[start..end].iter().filter(|&&b| b == b'\n').count() as u64;
        parts.push((
            Bytes::copy_from_slice(&lines[start..end]),
            seq,
            seq + count - 1,
        ));
        seq += count;
        start = end;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_split_only_at_batch_ends_with_their_seqs() {
        let lines = b"aaaa\nbbbb\ncc\ndddddd\n";
        let every_line = [5, 10, 13, 20];
        let parts = split(lines, 7, 10, &every_line).unwrap();
        let got: Vec<_> = parts.iter().map(|(b, f, l)| (&b[..], *f, *l)).collect();
        assert_eq!(
            got,
            vec![(&b"aaaa\nbbbb\n"[..], 7, 8), (&b"cc\ndddddd\n"[..], 9, 10)]
        );
        assert_eq!(split(lines, 1, 9, &every_line).unwrap().len(), 3);
        assert_eq!(split(lines, 1, 1 << 20, &every_line).unwrap().len(), 1);
        // Batches of records 1-2 and 3-4: never cut inside either.
        let parts = split(lines, 1, 12, &[10]).unwrap();
        let got: Vec<_> = parts.iter().map(|(_, f, l)| (*f, *l)).collect();
        assert_eq!(got, vec![(1, 2), (3, 4)]);
        assert!(split(lines, 1, 9, &[10]).is_err(), "a batch over the limit");
        assert!(split(b"0123456789ab\n", 1, 10, &[]).is_err());
    }

    /// A line with the layout `RecordHead::peek` reads, signed `sig`.
    fn line(seq: u64, sig: char) -> String {
        format!(
            "{{\"seq\":{seq},\"key_id\":\"k1\",\"prev\":\"{}\",\"signature\":\"{}\"}}\n",
            "0".repeat(64),
            sig.to_string().repeat(64)
        )
    }

    #[test]
    fn message_ids_name_the_content_not_only_the_seqs() {
        let ours = format!("{}{}", line(7, 'a'), line(8, 'b'));
        let theirs = format!("{}{}", line(7, 'c'), line(8, 'd'));
        let id = message_id(ours.as_bytes(), 7, 8).unwrap();
        assert_eq!(id, format!("7-8-{}", "b".repeat(64)));
        assert_eq!(message_id(ours.as_bytes(), 7, 8).unwrap(), id);
        assert_ne!(message_id(theirs.as_bytes(), 7, 8).unwrap(), id);
        assert!(message_id(b"not a record\n", 7, 7).is_err());
    }
}
