//! A request body that holds one gRPC message and nothing after it.
//!
//! tonic reads a unary (or server-streaming) call's first message and then
//! drains the rest of the body, dropping any further message unseen: a
//! client that sent two would be answered as if it had sent one. Every
//! method here but reflection's takes exactly one, so the body is watched
//! as it passes: the first byte of a second message ends it with
//! `INVALID_ARGUMENT`, which tonic answers before the handler runs.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tonic::Status;

/// A body whose gRPC framing is followed, refusing a second message.
pub(super) struct OneMessage {
    inner: tonic::body::Body,
    /// The prefix of the message being read, and how much of it came.
    prefix: [u8; 5],
    have: usize,
    /// Bytes of the current message still to come after its prefix.
    left: u64,
    /// Whole messages seen.
    messages: u32,
}

impl OneMessage {
    pub(super) fn new(inner: tonic::body::Body) -> OneMessage {
        OneMessage {
            inner,
            prefix: [0; 5],
            have: 0,
            left: 0,
            messages: 0,
        }
    }

    /// Follows `data` through the framing; an error at the first byte of a
    /// second message.
    fn follow(&mut self, data: &[u8]) -> Result<(), Status> {
        let mut i = 0;
        while i < data.len() {
            if self.left > 0 {
                let n = (data.len() - i).min(usize::try_from(self.left).unwrap_or(usize::MAX));
                self.left -= n as u64;
                i += n;
                if self.left == 0 {
                    self.messages += 1;
                }
                continue;
            }
            if self.messages > 0 && self.have == 0 {
                return Err(Status::invalid_argument(
                    "the request's body holds more than one gRPC message: this method takes \
                     exactly one (send each event in its own call, or many in one LogBatch)",
                ));
            }
            self.prefix[self.have] = data[i];
            self.have += 1;
            i += 1;
            if self.have == self.prefix.len() {
                let [_, a, b, c, d] = self.prefix;
                self.left = u64::from(u32::from_be_bytes([a, b, c, d]));
                self.have = 0;
                if self.left == 0 {
                    self.messages += 1;
                }
            }
        }
        Ok(())
    }
}

impl Body for OneMessage {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref()
            && let Err(refused) = self.follow(data)
        {
            return Poll::Ready(Some(Err(refused)));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// However the bytes are split into frames, one message passes and the
    /// first byte of a second is refused.
    #[test]
    fn one_message_passes_and_a_second_is_refused_wherever_frames_split() {
        let one = framed(b"hello");
        let mut two = one.clone();
        two.extend(framed(b""));
        for split in 1..=two.len() {
            let mut body = OneMessage::new(tonic::body::Body::empty());
            let whole_one: Result<(), Status> = one.chunks(split).try_for_each(|c| body.follow(c));
            assert!(whole_one.is_ok(), "split {split}");
            let mut body = OneMessage::new(tonic::body::Body::empty());
            let refused = two.chunks(split).try_for_each(|c| body.follow(c));
            let refused = refused.expect_err("a second message passed");
            assert_eq!(refused.code(), tonic::Code::InvalidArgument);
            assert!(refused.message().contains("more than one gRPC message"));
        }
        // An empty first message, then another.
        let mut body = OneMessage::new(tonic::body::Body::empty());
        assert!(body.follow(&framed(b"")).is_ok());
        assert!(body.follow(&[0]).is_err());
    }
}
