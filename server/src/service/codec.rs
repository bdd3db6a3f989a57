//! The codec of the server's generated `AuditService` (build.rs names it):
//! prost's, except that a request is decoded from one contiguous slice.
//!
//! tonic hands a decoder the message in a `DecodeBuf`, a view over its
//! receive buffer. prost decoding through it calls the view's `chunk` and
//! `advance` (each a bounds check and a call into `BytesMut`) for every
//! varint and field, and copies strings through the same calls: decoding
//! a `LogBatch` of 100 events took about 9,400 instructions an event that
//! way and 6,300 from a slice, and the server's CPU per batched event fell
//! by a twentieth (callgrind and the ingest bench, 2026-12-07, issue 20).
//! tonic keeps a whole message in that buffer before it decodes it, so the
//! view is one slice: decoded as a `&[u8]`, every step is inlined pointer
//! arithmetic. Should a message ever span more than one chunk, it is decoded
//! through the view as before (never the case with tonic 0.14, whose buffer
//! is one `BytesMut`).
//!
//! Decoding errors are reported as prost's, in tonic's words (INTERNAL
//! "failed to decode Protobuf message: ..."), which `wire.rs` rewrites
//! into INVALID_ARGUMENT for the caller.

use std::marker::PhantomData;

use bytes::Buf as _;
use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// The codec: prost's encoder, the slice decoder below.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SliceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        SliceCodec(PhantomData)
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder(PhantomData)
    }
}

/// Decodes a message from its bytes as one slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SliceDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let decoded = if buf.chunk().len() == len {
            let decoded = U::decode(buf.chunk());
            buf.advance(len);
            decoded
        } else {
            U::decode(buf)
        };
        decoded.map(Some).map_err(|e| super::edge::undecodable(&e))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
