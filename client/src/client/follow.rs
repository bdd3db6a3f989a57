//! [`Client::follow`] and [`Client::follow_lines`]: a live stream that
//! outlives its connection.
//!
//! A stream lost to the network or to a server going away (a restart, a
//! deploy, a cluster node dying) is opened again, on the next node when
//! there are several, after a wait that doubles from the client's
//! [`Retry::first_backoff`](super::Retry) up to its `max_backoff`, for as
//! long as the caller keeps polling. It resumes after the last record it
//! yielded, so nothing is missed and nothing comes twice, and it checks
//! that it is the same log: the resumed stream starts *at* that record
//! (with `min_seq` set to it, so a node that does not hold it says so
//! instead of waiting), and that record must come back with the signature
//! it had. A log that lost it, or holds another record there, ends the
//! follow with [`Error::NotTheSameLog`]: a tail never goes on silently
//! over a log other than the one it showed.

use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;

use super::{Client, nodes, stream_request};
use crate::{Error, Query, pb};

/// What a follow yields: the records, and word of each loss and resumption
/// so a caller can say what happened.
#[derive(Debug)]
pub enum Followed<T> {
    /// The next matching record, in seq order; none is yielded twice.
    Item(T),
    /// The stream was lost (or could not be opened); it is opened again
    /// after `retry_in`.
    Lost { error: Error, retry_in: Duration },
    /// The stream is open again on `node`, at `seq`: the last record
    /// yielded, found there with the same signature. The next item is the
    /// first one after it.
    Resumed { node: String, seq: u64 },
}

/// A follow's items ([`Client::follow`], [`Client::follow_lines`]); it ends
/// only with an error no new stream can mend.
pub type FollowStream<T> = BoxStream<'static, Result<Followed<T>, Error>>;

/// What a follow needs of a record: its seq and its signature, which tell
/// whether a resumed stream is on the same log.
trait Record: Send + 'static {
    fn seq(&self) -> Option<u64>;
    fn signature(&self) -> Option<&str>;
}

impl Record for pb::Event {
    fn seq(&self) -> Option<u64> {
        Some(self.seq)
    }

    fn signature(&self) -> Option<&str> {
        Some(&self.signature)
    }
}

impl Record for Vec<u8> {
    fn seq(&self) -> Option<u64> {
        crate::stored_seq(self)
    }

    /// A stored line ends `"signature":"<64 hex digits>"}`.
    fn signature(&self) -> Option<&str> {
        let body = self.strip_suffix(b"\"}")?;
        let hex = body.get(body.len().checked_sub(64)?..)?;
        body[..body.len() - 64]
            .ends_with(b"\"signature\":\"")
            .then(|| std::str::from_utf8(hex).ok())
            .flatten()
    }
}

/// How a follow reads one stream's answer: as events, or as stored lines
/// (`events_of`, `lines_of`).
type Decode<T> =
    fn(tonic::Streaming<pb::StreamEventsResponse>) -> BoxStream<'static, Result<T, Error>>;

struct State<T> {
    client: Client,
    query: Query,
    /// Where the first stream starts.
    from_seq: u64,
    /// The last record yielded: its seq and signature.
    last: Option<(u64, String)>,
    /// Whether it asks for stored lines, and how it reads them.
    stored_lines: bool,
    decode: Decode<T>,
    /// The open stream and the node it is on.
    stream: Option<(usize, BoxStream<'static, Result<T, Error>>)>,
    /// Whether the open stream's first record must be `last` again.
    checking: bool,
    /// The wait before the next open, once a stream was lost.
    wait: Option<Duration>,
    backoff: Duration,
    ended: bool,
}

impl Client {
    /// Events matching `query`'s filter from `from_seq` on, then live ones,
    /// as [`Client::stream`] with `follow`, across lost connections and
    /// server restarts (see [`Followed`] and the module doc). Drop the stream
    /// to stop.
    pub fn follow(&self, query: Query, from_seq: u64) -> FollowStream<pb::Event> {
        self.follow_with(query, from_seq, false, super::events_of)
    }

    /// [`Client::follow`] with each record as stored ([`Client::stream_lines`]).
    pub fn follow_lines(&self, query: Query, from_seq: u64) -> FollowStream<Vec<u8>> {
        self.follow_with(query, from_seq, true, super::lines_of)
    }

    fn follow_with<T: Record>(
        &self,
        query: Query,
        from_seq: u64,
        stored_lines: bool,
        decode: Decode<T>,
    ) -> FollowStream<T> {
        let state = State {
            client: self.clone(),
            query,
            from_seq,
            last: None,
            stored_lines,
            decode,
            stream: None,
            checking: false,
            wait: None,
            backoff: self.retry.first_backoff,
            ended: false,
        };
        futures::stream::unfold(state, move |mut state| async move {
            if state.ended {
                return None;
            }
            let next = state.next().await;
            if next.is_err() {
                state.ended = true;
            }
            Some((next, state))
        })
        .boxed()
    }
}

impl<T: Record> State<T> {
    /// The next thing to yield; an error ends the follow.
    async fn next(&mut self) -> Result<Followed<T>, Error> {
        loop {
            let Some((node, stream)) = &mut self.stream else {
                if let Some(wait) = self.wait.take() {
                    tokio::time::sleep(wait).await;
                }
                let (node, at) = self.client.nodes.current();
                let mut audit = at.audit.clone();
                match audit.stream_events(self.request()).await {
                    Ok(answer) => {
                        self.stream = Some((node, (self.decode)(answer.into_inner())));
                        self.checking = self.last.is_some();
                        continue;
                    }
                    Err(status) => return self.lost(node, status.into()),
                }
            };
            let node = *node;
            let record = match stream.next().await {
                Some(Ok(record)) => record,
                Some(Err(error)) => return self.lost(node, error),
                None => {
                    let ended = tonic::Status::unavailable("the server ended the stream");
                    return self.lost(node, ended.into());
                }
            };
            if std::mem::take(&mut self.checking)
                && let Some((last, signature)) = &self.last
            {
                let resumed = self.check_resumed(&record, *last, signature, node);
                if resumed.is_ok() {
                    self.backoff = self.client.retry.first_backoff;
                }
                return resumed;
            }
            // Each record once, in seq order, whatever a server sends.
            if let (Some(seq), Some((last, _))) = (record.seq(), &self.last)
                && seq <= *last
            {
                return Err(self.not_the_same(format!(
                    "it sent seq {seq} after seq {last}, which this follow showed: records \
                     come once each, in seq order"
                )));
            }
            if let (Some(seq), Some(signature)) = (record.seq(), record.signature()) {
                self.last = Some((seq, signature.to_owned()));
            }
            // A stream that served a record is a working one: the next loss
            // starts its waits afresh.
            self.backoff = self.client.retry.first_backoff;
            return Ok(Followed::Item(record));
        }
    }

    /// The first record of a stream opened again must be the last one
    /// yielded (`last`, `signature`): then the follow is resumed on `node`.
    fn check_resumed(
        &self,
        record: &T,
        last: u64,
        signature: &str,
        node: usize,
    ) -> Result<Followed<T>, Error> {
        let seq = record.seq();
        if seq != Some(last) {
            return Err(self.not_the_same(format!(
                "asked for seq {last} again, the last record this follow showed, it answered {}",
                seq.map_or("a record without a seq".to_owned(), |s| format!("seq {s}"))
            )));
        }
        if record.signature() != Some(signature) {
            return Err(self.not_the_same(format!(
                "its record at seq {last} is signed {}, not {signature} as the record this \
                 follow showed",
                record.signature().unwrap_or("(no signature)")
            )));
        }
        let node = self.client.nodes.list.get(node).map(|n| n.url.clone());
        Ok(Followed::Resumed {
            node: node.unwrap_or_default(),
            seq: last,
        })
    }

    /// The next stream's request: from the start, or at the last record
    /// yielded, which the node must hold (`min_seq`).
    fn request(&self) -> pb::StreamEventsRequest {
        let mut query = self.query.clone();
        let from = match &self.last {
            Some((seq, _)) => {
                query.request.min_seq = query.request.min_seq.max(*seq);
                *seq
            }
            None => self.from_seq,
        };
        stream_request(query, from, true, self.stored_lines)
    }

    /// The stream on `node` was lost (or could not be opened) with `error`:
    /// worth another stream, or the end of the follow.
    fn lost(&mut self, node: usize, error: Error) -> Result<Followed<T>, Error> {
        self.stream = None;
        let status = match &error {
            Error::Rpc(status) => status,
            _ => return Err(error),
        };
        if let Some(seq) = self.last.as_ref().map(|(seq, _)| *seq)
            && status.code() == tonic::Code::OutOfRange
        {
            return Err(self.not_the_same(format!(
                "it does not hold seq {seq}, the last record this follow showed ({})",
                status.message()
            )));
        }
        if !(nodes::worth_another_node(status) || status.message() == "the server ended the stream")
        {
            return Err(error);
        }
        self.client.nodes.failed(node);
        let retry_in = self.backoff;
        self.wait = Some(retry_in);
        self.backoff = self
            .backoff
            .saturating_mul(2)
            .min(self.client.retry.max_backoff);
        Ok(Followed::Lost { error, retry_in })
    }

    fn not_the_same(&self, reason: String) -> Error {
        Error::NotTheSameLog {
            node: self.client.current_node().to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Record;

    #[test]
    fn a_stored_line_gives_its_seq_and_signature() {
        let sig = "ab".repeat(32);
        let line = format!(
            "{{\"seq\":42,\"id\":\"x\",\"key_id\":\"k1\",\"prev\":\"{}\",\"signature\":\"{sig}\"}}",
            "0".repeat(64)
        )
        .into_bytes();
        assert_eq!(line.seq(), Some(42));
        assert_eq!(line.signature(), Some(sig.as_str()));
        // Not a record's line: neither.
        let other = b"{\"seq\":x}".to_vec();
        assert_eq!(other.seq(), None);
        assert_eq!(other.signature(), None);
        let short = format!("{{\"seq\":1,\"signature\":\"{}\"}}", "ab".repeat(31)).into_bytes();
        assert_eq!(short.signature(), None);
    }
}
